//! Byte layouts and value sets of AMD SEV / SEV-ES / SEV-SNP, shared by every softsev
//! crate: addresses, GUIDs, firmware and KVM structures, attestation report, VMSA,
//! GHCB, OVMF metadata. No behaviour beyond encode / decode / validate.
//!
//! Every structure is declared once, `#[repr(C)]`, with zerocopy derives and a
//! compile-time check of every field offset and the total size.

#![forbid(unsafe_code)]

/// Declare a spec structure: `#[repr(C)]`, zerocopy derives, each field's offset
/// written beside it and checked at compile time by `assert_layout!`, and a `LEN`
/// constant. `wire!(@with_default ...)` also derives an all-zero `Default` (the KVM
/// uAPI structures, which userspace builds field by field).
///
/// The derives name `FromBytes`, `IntoBytes`, `Immutable` and `KnownLayout` unqualified,
/// so the declaring module imports them from zerocopy.
macro_rules! wire {
    (@with_default $(#[$m:meta])* $name:ident, size = $size:expr, $fields:tt) => {
        crate::wire!($(#[$m])* $name, size = $size, $fields);
        impl Default for $name {
            fn default() -> Self { <Self as zerocopy::FromZeros>::new_zeroed() }
        }
    };
    ($(#[$m:meta])* $name:ident, size = $size:expr, { $( $(#[$fm:meta])* $f:ident : $t:ty = $off:expr ),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
        #[repr(C)]
        pub struct $name { $( $(#[$fm])* pub $f: $t, )* }
        crate::assert_layout!($name, size = $size $(, $f = $off)*);
        impl $name {
            /// Size of the structure in bytes.
            pub const LEN: usize = $size;
        }
    };
}
pub(crate) use wire;

/// Declare a packed spec structure: as [`wire!`] but `#[repr(C, packed)]` (alignment 1,
/// no padding), for the legacy SEV command buffers whose u64 fields sit at 4-aligned
/// offsets or whose size is odd (Linux declares every `sev_data_*` `__packed`). Each
/// field's offset is written beside it and checked at compile time, the total size too.
/// Packed fields are read and written by value (`let a = buf.address;`); taking a
/// reference to one does not compile. `wire_packed!(@with_default ...)` also derives an
/// all-zero `Default`.
///
/// The derives name `FromBytes`, `IntoBytes`, `Immutable`, `KnownLayout` and `Unaligned`
/// unqualified, so the declaring module imports them from zerocopy.
macro_rules! wire_packed {
    (@with_default $(#[$m:meta])* $name:ident, size = $size:expr, $fields:tt) => {
        crate::wire_packed!($(#[$m])* $name, size = $size, $fields);
        impl Default for $name {
            fn default() -> Self { <Self as zerocopy::FromZeros>::new_zeroed() }
        }
    };
    ($(#[$m:meta])* $name:ident, size = $size:expr, { $( $(#[$fm:meta])* $f:ident : $t:ty = $off:expr ),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
        #[repr(C, packed)]
        pub struct $name { $( $(#[$fm])* pub $f: $t, )* }
        crate::assert_layout!($name, size = $size $(, $f = $off)*);
        const _: () = assert!(::core::mem::align_of::<$name>() == 1);
        impl $name {
            /// Size of the structure in bytes.
            pub const LEN: usize = $size;
        }
    };
}
pub(crate) use wire_packed;

pub mod addr;
pub mod ecdsa;
pub mod fw;
// `wire!` derives Debug for every layout; zerocopy's KnownLayout derive adds a public
// helper type per layout without one, which the lint would flag at each declaration.
#[allow(missing_debug_implementations)]
pub mod fw_buf;
pub mod ghcb;
pub mod guest_msg;
pub mod guid;
pub mod id_block;
pub mod kernel_hashes;
#[allow(missing_debug_implementations)] // as fw_buf: zerocopy's helper types
pub mod kvm;
pub mod ovmf;
pub mod page_info;
pub mod policy;
pub mod product;
pub mod range;
pub mod report;
pub mod rmp;
pub mod secrets;
#[allow(missing_debug_implementations)] // as fw_buf: zerocopy's helper types
pub mod sev_buf;
#[allow(missing_debug_implementations)] // as fw_buf: zerocopy's helper types
pub mod sev_cert;
pub mod tcb;
pub mod vmsa;
#[macro_use]
mod open_enum;

pub use addr::{
    Address, Asid, CBit, Gfn, Gpa, PAGE_SIZE_2M, PAGE_SIZE_4K, PageSize, Pfn, Spa, Vmpl,
};
pub use fw::{FwCmd, FwStatus};
pub use guid::Guid;
pub use policy::{GuestPolicy, KvmPolicyError, SevPolicy, SnpPolicySupport};
pub use product::Product;
pub use range::{AddrRange, IntervalSet};
pub use tcb::{RawTcb, TcbVersion};

/// Assert at compile time that each listed field of `$t` sits at the given offset and
/// that the type has the given size. A wrong layout does not compile.
#[macro_export]
macro_rules! assert_layout {
    ($t:ty, size = $size:expr $(, $field:ident = $off:expr)* $(,)?) => {
        const _: () = {
            assert!(::core::mem::size_of::<$t>() == $size);
            $( assert!(::core::mem::offset_of!($t, $field) == $off); )*
        };
    };
}
