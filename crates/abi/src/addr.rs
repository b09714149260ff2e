//! Address and identity newtypes. Conversions are named; no bare `u64` crosses an
//! interface.

use serde::{Deserialize, Serialize};

/// 4 KiB.
pub const PAGE_SIZE_4K: u64 = 0x1000;
/// 2 MiB.
pub const PAGE_SIZE_2M: u64 = 0x20_0000;

macro_rules! addr_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw value.
            pub const fn raw(self) -> u64 { self.0 }
            /// Whether aligned to `align` (a power of two).
            pub const fn is_aligned(self, align: u64) -> bool { self.0 & (align - 1) == 0 }
            /// Round down to `align` (a power of two).
            pub const fn align_down(self, align: u64) -> Self { Self(self.0 & !(align - 1)) }
            /// Offset within the 4 KiB page.
            pub const fn page_offset(self) -> u64 { self.0 & (PAGE_SIZE_4K - 1) }
            /// Add a byte offset, or `None` on overflow.
            pub const fn checked_add(self, off: u64) -> Option<Self> {
                match self.0.checked_add(off) { Some(v) => Some(Self(v)), None => None }
            }
        }

        impl ::core::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                write!(f, concat!(stringify!($name), "({:#x})"), self.0)
            }
        }
        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }
    };
}

addr_type!(
    /// Guest physical address.
    Gpa
);
addr_type!(
    /// System physical address (host physical, as the memory controller sees it).
    Spa
);
addr_type!(
    /// Guest frame number (GPA >> 12).
    Gfn
);
addr_type!(
    /// Host page frame number (SPA >> 12).
    Pfn
);

impl Gpa {
    /// The frame holding this address.
    pub const fn gfn(self) -> Gfn {
        Gfn(self.0 >> 12)
    }
}
impl Gfn {
    /// The first byte of the frame.
    pub const fn gpa(self) -> Gpa {
        Gpa(self.0 << 12)
    }
}
impl Spa {
    /// The frame holding this address.
    pub const fn pfn(self) -> Pfn {
        Pfn(self.0 >> 12)
    }
}
impl Pfn {
    /// The first byte of the frame.
    pub const fn spa(self) -> Spa {
        Spa(self.0 << 12)
    }
}

/// Address space identifier: selects the memory-encryption key. 0 is the host.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Debug, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Asid(pub u32);

impl Asid {
    /// The host's ASID.
    pub const HOST: Asid = Asid(0);
}

/// Virtual machine privilege level, 0 (most privileged) to 3.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Debug, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Vmpl(pub u8);

impl Vmpl {
    /// Number of VMPLs.
    pub const COUNT: u8 = 4;
    /// A VMPL if `v` is 0..=3.
    pub const fn new(v: u8) -> Option<Self> {
        if v < Self::COUNT { Some(Vmpl(v)) } else { None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(Gpa(0x1234_5678).gfn(), Gfn(0x12345));
        assert_eq!(Gfn(0x12345).gpa(), Gpa(0x1234_5000));
        assert_eq!(Spa(0x2000).pfn().spa(), Spa(0x2000));
        assert!(Gpa(0x20_0000).is_aligned(PAGE_SIZE_2M));
        assert_eq!(Gpa(0x1fff).page_offset(), 0xfff);
        assert_eq!(Gpa(u64::MAX).checked_add(1), None);
        assert_eq!(format!("{:?}", Gpa(0x10)), "Gpa(0x10)");
        assert_eq!(Vmpl::new(4), None);
    }
}
