//! Half-open address ranges and a merged set of them, over any address newtype
//! ([`Gpa`], [`Gfn`], [`Spa`], [`Pfn`]): what KVM's PRIVATE memory attribute (an
//! xarray over GFNs) and a guest's record of validated or unaccepted memory (GPAs)
//! both are.

use crate::addr::{Address, Gfn, Gpa, PAGE_SIZE_4K, Pfn, Spa};
use std::collections::BTreeMap;
use std::marker::PhantomData;

/// A half-open range `[start, end)` of addresses of one kind.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct AddrRange<A> {
    /// First element.
    pub start: A,
    /// One past the last element.
    pub end: A,
}

macro_rules! range_consts {
    ($($name:ident),*) => {$(
        impl AddrRange<$name> {
            /// `[start, start + len)` (the end saturates).
            pub const fn new(start: u64, len: u64) -> Self {
                AddrRange { start: $name(start), end: $name(start.saturating_add(len)) }
            }
            /// Length (in the unit of the address: bytes or frames).
            pub const fn len(&self) -> u64 {
                self.end.0.saturating_sub(self.start.0)
            }
            /// Whether the range is empty.
            pub const fn is_empty(&self) -> bool {
                self.len() == 0
            }
            /// Both ends 4 KiB aligned.
            pub const fn is_page_aligned(&self) -> bool {
                self.start.is_aligned(PAGE_SIZE_4K) && self.end.is_aligned(PAGE_SIZE_4K)
            }
        }
    )*};
}
range_consts!(Gpa, Gfn, Spa, Pfn);

/// A set of disjoint, merged (never touching) ranges of addresses of one kind.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct IntervalSet<A> {
    map: BTreeMap<u64, u64>,
    kind: PhantomData<A>,
}

impl<A> Default for IntervalSet<A> {
    fn default() -> Self {
        IntervalSet {
            map: BTreeMap::new(),
            kind: PhantomData,
        }
    }
}

impl<A: Address> IntervalSet<A> {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add `r`, merging with ranges it overlaps or touches.
    pub fn insert(&mut self, r: AddrRange<A>) {
        let (mut s, mut e) = (r.start.raw(), r.end.raw());
        if s >= e {
            return;
        }
        // Merge with a range starting at or before s that reaches s.
        if let Some((&ps, &pe)) = self.map.range(..=s).next_back()
            && pe >= s
        {
            s = ps;
            e = e.max(pe);
            self.map.remove(&ps);
        }
        // Merge with ranges starting inside [s, e].
        let inside: Vec<(u64, u64)> = self.map.range(s..=e).map(|(&a, &b)| (a, b)).collect();
        for (a, b) in inside {
            e = e.max(b);
            self.map.remove(&a);
        }
        self.map.insert(s, e);
    }

    /// Remove `r`, splitting ranges it cuts.
    pub fn remove(&mut self, r: AddrRange<A>) {
        let (s, e) = (r.start.raw(), r.end.raw());
        if s >= e {
            return;
        }
        let hit: Vec<(u64, u64)> = self
            .map
            .range(..e)
            .filter(|&(_, &b)| b > s)
            .map(|(&a, &b)| (a, b))
            .collect();
        for (a, b) in hit {
            self.map.remove(&a);
            if a < s {
                self.map.insert(a, s);
            }
            if b > e {
                self.map.insert(e, b);
            }
        }
    }

    /// Whether `x` is in the set.
    pub fn contains(&self, x: A) -> bool {
        let x = x.raw();
        self.map
            .range(..=x)
            .next_back()
            .is_some_and(|(_, &e)| e > x)
    }

    /// Whether all of `r` is in the set (an empty `r` is).
    pub fn contains_all(&self, r: AddrRange<A>) -> bool {
        let (s, e) = (r.start.raw(), r.end.raw());
        s >= e
            || self
                .map
                .range(..=s)
                .next_back()
                .is_some_and(|(_, &end)| e <= end)
    }

    /// The parts of `r` inside the set, in order.
    pub fn intersect(&self, r: AddrRange<A>) -> Vec<AddrRange<A>> {
        let (s, e) = (r.start.raw(), r.end.raw());
        self.map
            .range(..e)
            .filter(|&(_, &b)| b > s)
            .map(|(&a, &b)| AddrRange {
                start: A::from_raw(a.max(s)),
                end: A::from_raw(b.min(e)),
            })
            .collect()
    }

    /// The parts of `r` outside the set, in order.
    pub fn subtract_from(&self, r: AddrRange<A>) -> Vec<AddrRange<A>> {
        let mut out = Vec::new();
        let mut cur = r.start.raw();
        for i in self.intersect(r) {
            if i.start.raw() > cur {
                out.push(AddrRange {
                    start: A::from_raw(cur),
                    end: i.start,
                });
            }
            cur = i.end.raw();
        }
        if cur < r.end.raw() {
            out.push(AddrRange {
                start: A::from_raw(cur),
                end: r.end,
            });
        }
        out
    }

    /// Number of elements (bytes or frames) in the set.
    pub fn total(&self) -> u64 {
        self.map.iter().map(|(a, b)| b - a).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The ranges, in order.
    pub fn ranges(&self) -> Vec<AddrRange<A>> {
        self.map
            .iter()
            .map(|(&a, &b)| AddrRange {
                start: A::from_raw(a),
                end: A::from_raw(b),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_merge() {
        let mut r = IntervalSet::<Gfn>::new();
        r.insert(AddrRange::<Gfn>::new(10, 10));
        r.insert(AddrRange::<Gfn>::new(20, 10));
        assert!(r.contains_all(AddrRange::<Gfn>::new(10, 20)));
        assert_eq!(r.total(), 20);
        r.remove(AddrRange::<Gfn>::new(15, 1));
        assert!(!r.contains(Gfn(15)));
        assert!(r.contains(Gfn(14)) && r.contains(Gfn(16)));
        assert_eq!(r.ranges().len(), 2);
        assert_eq!(
            r.subtract_from(AddrRange::<Gfn>::new(0, 40)),
            vec![
                AddrRange::<Gfn>::new(0, 10),
                AddrRange::<Gfn>::new(15, 1),
                AddrRange::<Gfn>::new(30, 10)
            ]
        );
        r.remove(AddrRange::<Gfn>::new(0, 100));
        assert!(r.is_empty());
    }
}
