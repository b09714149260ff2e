//! Address and identity newtypes, and the two attributes an address carries at the
//! guest/host boundary: the page size of PVALIDATE / RMPADJUST (RCX) and of RMP and
//! NPT entries, and the C-bit of a mapping (AMD APM vol. 2 §15.34.1, §15.36). Conversions
//! are named; no bare `u64` or `bool` crosses an interface.

use serde::{Deserialize, Serialize};

/// 4 KiB.
pub const PAGE_SIZE_4K: u64 = 0x1000;
/// 2 MiB.
pub const PAGE_SIZE_2M: u64 = 0x20_0000;

/// An address or frame newtype, as a raw number (what [`crate::range::IntervalSet`]
/// stores).
pub trait Address: Copy + Ord {
    /// The raw value.
    fn raw(self) -> u64;
    /// The address with raw value `v`.
    fn from_raw(v: u64) -> Self;
}

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

        impl Address for $name {
            fn raw(self) -> u64 { self.0 }
            fn from_raw(v: u64) -> Self { Self(v) }
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

/// A page size: the PVALIDATE / RMPADJUST operand (RCX bit 0), and the size of an RMP
/// entry or an NPT mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum PageSize {
    /// 4 KiB (RCX = 0).
    #[default]
    Size4K,
    /// 2 MiB (RCX = 1).
    Size2M,
}

impl PageSize {
    /// Bytes covered.
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => PAGE_SIZE_4K,
            PageSize::Size2M => PAGE_SIZE_2M,
        }
    }

    /// 4 KiB pages covered (1 or 512).
    pub const fn pages_4k(self) -> u64 {
        self.bytes() / PAGE_SIZE_4K
    }

    /// The RCX operand / RMP `pagesize` bit (0 or 1).
    pub const fn bit(self) -> u8 {
        match self {
            PageSize::Size4K => 0,
            PageSize::Size2M => 1,
        }
    }
}

/// The C-bit of an access or mapping: private (encrypted with the guest's key, for SNP
/// RMP-checked) or shared (hypervisor-owned, plaintext to the host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CBit {
    /// C-bit set: guest-private memory.
    Private,
    /// C-bit clear: shared memory (GHCB, DMA bounce buffers, guest-request pages).
    Shared,
}

impl CBit {
    /// Whether the C-bit is set.
    pub const fn is_private(self) -> bool {
        matches!(self, CBit::Private)
    }

    /// `Private` if `set`, else `Shared` (for decoding a hardware bit).
    pub const fn from_bit(set: bool) -> Self {
        if set { CBit::Private } else { CBit::Shared }
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
        assert_eq!(PageSize::Size2M.bytes(), PAGE_SIZE_2M);
        assert_eq!(PageSize::Size2M.pages_4k(), 512);
        assert_eq!(PageSize::Size4K.bit(), 0);
        assert!(CBit::from_bit(true).is_private());
        assert_eq!(CBit::from_bit(false), CBit::Shared);
    }
}
