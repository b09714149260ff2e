//! The host's physical page allocator: hands out hypervisor-owned 4 KiB pages and
//! 2 MiB-aligned 2 MiB chunks of SoC memory (the buddy allocator's role in Linux, kept
//! simple: a bump pointer over 2 MiB chunks, free lists per size, 4 KiB pages carved
//! from a chunk). Pages that cannot be returned to the hypervisor state are leaked, as
//! Linux's `snp_leak_pages` does.

use parking_lot::Mutex;
use softsev_abi::{PAGE_SIZE_2M, PAGE_SIZE_4K, Spa};

#[derive(Debug)]
struct State {
    next: u64,
    free_2m: Vec<u64>,
    free_4k: Vec<u64>,
    carve: Option<(u64, u64)>,
    in_use: u64,
    leaked: u64,
}

/// Physical page allocator over `[base, limit)` of SoC memory.
#[derive(Debug)]
pub struct PhysAlloc {
    st: Mutex<State>,
    limit: u64,
}

impl PhysAlloc {
    /// An allocator over `[base, limit)`; `base` is rounded up to 2 MiB.
    pub fn new(base: u64, limit: u64) -> Self {
        Self {
            st: Mutex::new(State {
                next: base.div_ceil(PAGE_SIZE_2M) * PAGE_SIZE_2M,
                free_2m: Vec::new(),
                free_4k: Vec::new(),
                carve: None,
                in_use: 0,
                leaked: 0,
            }),
            limit,
        }
    }

    /// A 2 MiB-aligned 2 MiB chunk, `None` when memory is exhausted.
    pub fn alloc_2m(&self) -> Option<Spa> {
        let mut st = self.st.lock();
        let spa = Self::take_2m(&mut st, self.limit)?;
        st.in_use += PAGE_SIZE_2M;
        Some(Spa(spa))
    }

    fn take_2m(st: &mut State, limit: u64) -> Option<u64> {
        if let Some(s) = st.free_2m.pop() {
            return Some(s);
        }
        let s = st.next;
        if s.checked_add(PAGE_SIZE_2M)? > limit {
            return None;
        }
        st.next = s + PAGE_SIZE_2M;
        Some(s)
    }

    /// One 4 KiB page, `None` when memory is exhausted.
    pub fn alloc_4k(&self) -> Option<Spa> {
        let mut st = self.st.lock();
        let spa = if let Some(p) = st.free_4k.pop() {
            p
        } else {
            let (cur, end) = match st.carve {
                Some((c, e)) if c < e => (c, e),
                _ => {
                    let c = Self::take_2m(&mut st, self.limit)?;
                    (c, c + PAGE_SIZE_2M)
                }
            };
            st.carve = Some((cur + PAGE_SIZE_4K, end));
            cur
        };
        st.in_use += PAGE_SIZE_4K;
        Some(Spa(spa))
    }

    /// Return a 2 MiB chunk (must be hypervisor-owned again).
    pub fn free_2m(&self, spa: Spa) {
        let mut st = self.st.lock();
        st.in_use = st.in_use.saturating_sub(PAGE_SIZE_2M);
        st.free_2m.push(spa.0);
    }

    /// Return a 4 KiB page (must be hypervisor-owned again).
    pub fn free_4k(&self, spa: Spa) {
        let mut st = self.st.lock();
        st.in_use = st.in_use.saturating_sub(PAGE_SIZE_4K);
        st.free_4k.push(spa.0);
    }

    /// Give up on a page the host cannot get back (still guest or firmware owned).
    pub fn leak(&self, bytes: u64) {
        let mut st = self.st.lock();
        st.in_use = st.in_use.saturating_sub(bytes);
        st.leaked += bytes;
    }

    /// Bytes handed out and not returned.
    pub fn in_use(&self) -> u64 {
        self.st.lock().in_use
    }

    /// Bytes leaked.
    pub fn leaked(&self) -> u64 {
        self.st.lock().leaked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_alignment_and_exhaustion() {
        let a = PhysAlloc::new(0x1000, 3 * PAGE_SIZE_2M);
        let c = a.alloc_2m().unwrap();
        assert!(c.is_aligned(PAGE_SIZE_2M));
        assert_eq!(c, Spa(PAGE_SIZE_2M));
        let p = a.alloc_4k().unwrap();
        let q = a.alloc_4k().unwrap();
        assert_ne!(p, q);
        assert!(p.0 >= 2 * PAGE_SIZE_2M);
        assert_eq!(a.alloc_2m(), None);
        a.free_2m(c);
        assert_eq!(a.alloc_2m(), Some(c));
        a.free_4k(p);
        assert_eq!(a.alloc_4k(), Some(p));
        assert_eq!(a.in_use(), PAGE_SIZE_2M + 2 * PAGE_SIZE_4K);
    }
}
