//! The SEV kernel-hashes table QEMU writes for `kernel-hashes=on` (QEMU `SevHashTable` /
//! `PaddedSevHashTable`; checked by edk2 `BlobVerifierLibSevHashes`).
//! Notes: shared/spec/snp-launch.md §5.

use crate::Guid;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Table header GUID.
pub const SEV_HASH_TABLE_GUID: Guid = Guid::parse("9438d606-4f22-4cc9-b479-a793d411fd21");
/// Command-line entry GUID.
pub const SEV_CMDLINE_ENTRY_GUID: Guid = Guid::parse("97d02dd8-bd20-4c94-aa78-e7714d36ab2a");
/// Initrd entry GUID.
pub const SEV_INITRD_ENTRY_GUID: Guid = Guid::parse("44baf731-3a2f-4bd7-9af1-41e29169781d");
/// Kernel entry GUID.
pub const SEV_KERNEL_ENTRY_GUID: Guid = Guid::parse("4de79437-abd2-427f-b835-d5b172d2045b");

/// One entry: GUID, u16 length (50), SHA-256.
#[derive(
    Clone, Copy, PartialEq, Eq, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned,
)]
#[repr(C)]
pub struct SevHashTableEntry {
    /// Entry GUID.
    pub guid: Guid,
    /// Little-endian u16 entry length (0x32).
    pub length: [u8; 2],
    /// SHA-256 of the blob.
    pub hash: [u8; 32],
}
crate::assert_layout!(
    SevHashTableEntry,
    size = 50,
    guid = 0,
    length = 16,
    hash = 18
);

/// The table (0xA8 bytes): header GUID, u16 length, then cmdline, initrd, kernel.
#[derive(
    Clone, Copy, PartialEq, Eq, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned,
)]
#[repr(C)]
pub struct SevHashTable {
    /// [`SEV_HASH_TABLE_GUID`].
    pub guid: Guid,
    /// Little-endian u16 table length (0xA8).
    pub length: [u8; 2],
    /// Command line entry.
    pub cmdline: SevHashTableEntry,
    /// Initrd entry.
    pub initrd: SevHashTableEntry,
    /// Kernel entry.
    pub kernel: SevHashTableEntry,
}
crate::assert_layout!(
    SevHashTable,
    size = 0xA8,
    guid = 0,
    length = 0x10,
    cmdline = 0x12,
    initrd = 0x44,
    kernel = 0x76
);

/// The table padded with zeros to a multiple of 16 bytes (0xB0), as QEMU measures it.
#[derive(
    Clone, Copy, PartialEq, Eq, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned,
)]
#[repr(C)]
pub struct PaddedSevHashTable {
    /// The table.
    pub table: SevHashTable,
    /// Zero padding.
    pub _padding_a8: [u8; 8],
}
crate::assert_layout!(
    PaddedSevHashTable,
    size = 0xB0,
    table = 0,
    _padding_a8 = 0xA8
);

impl PaddedSevHashTable {
    /// Build the table from the three SHA-256 digests.
    pub fn new(cmdline: [u8; 32], initrd: [u8; 32], kernel: [u8; 32]) -> Self {
        let entry = |guid, hash| SevHashTableEntry {
            guid,
            length: (core::mem::size_of::<SevHashTableEntry>() as u16).to_le_bytes(),
            hash,
        };
        PaddedSevHashTable {
            table: SevHashTable {
                guid: SEV_HASH_TABLE_GUID,
                length: (core::mem::size_of::<SevHashTable>() as u16).to_le_bytes(),
                cmdline: entry(SEV_CMDLINE_ENTRY_GUID, cmdline),
                initrd: entry(SEV_INITRD_ENTRY_GUID, initrd),
                kernel: entry(SEV_KERNEL_ENTRY_GUID, kernel),
            },
            _padding_a8: [0; 8],
        }
    }
}
