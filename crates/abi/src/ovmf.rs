//! OVMF firmware-image structures: the footer GUID table (edk2
//! `ResetVectorVtf0.nasm.inc`), the SEV metadata ('ASEV', edk2
//! `OvmfSevMetadata.nasm.inc`) and the GUIDs QEMU and the tools look for.
//! Notes: shared/spec/snp-launch.md §4.

use crate::Guid;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// GUID ending the footer table (at image end − 0x30).
pub const FOOTER_TABLE_GUID: Guid = Guid::parse("96b582de-1fb2-45f7-baea-a366c55a082d");
/// Entry holding the u32 offset, from the image end, of the 'ASEV' header.
pub const SEV_METADATA_GUID: Guid = Guid::parse("dc886566-984a-4798-a75e-5585a7bf67cc");
/// Entry holding the u32 SEV-ES AP reset address (IP in bits 15:0, CS base in 31:16).
pub const SEV_ES_RESET_BLOCK_GUID: Guid = Guid::parse("00f771de-1a7e-4fcb-890e-68c77e2fb44e");
/// Entry holding the u32 base GPA and u32 size of the kernel-hashes table area.
pub const SEV_HASH_TABLE_BLOCK_GUID: Guid = Guid::parse("7255371f-3a3b-4b04-927b-1da6efa8d454");
/// Entry holding the u32 base GPA and u32 size of the legacy LAUNCH_SECRET area.
pub const SEV_SECRET_BLOCK_GUID: Guid = Guid::parse("4c2eb361-7d9b-4cc3-8081-127c90d3d294");
/// TDX metadata offset entry (ignored by SEV tools).
pub const TDX_METADATA_GUID: Guid = Guid::parse("e47a6535-984a-4798-865e-4685a7bf8ec2");
/// SVSM information entry in a COCONUT-SVSM image (u32 entry offset).
pub const SVSM_INFO_GUID: Guid = Guid::parse("a789a612-0597-4c4b-a49f-cbb1fe9d1ddd");

/// Bytes between the end of the footer table and the end of the image (VTF area).
pub const FOOTER_TABLE_END_FROM_IMAGE_END: usize = 0x20;

/// The 18 bytes ending each footer-table entry: `u16 length` (data + 18) then the GUID.
#[derive(
    Clone, Copy, PartialEq, Eq, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned,
)]
#[repr(C)]
pub struct FooterEntryTrailer {
    /// Little-endian u16: entry length including this trailer.
    pub length: [u8; 2],
    /// Entry GUID.
    pub guid: Guid,
}
crate::assert_layout!(FooterEntryTrailer, size = 18, length = 0, guid = 2);

impl FooterEntryTrailer {
    /// The entry length (data + 18).
    pub fn len(&self) -> u16 {
        u16::from_le_bytes(self.length)
    }
    /// Whether the entry length is zero.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Signature of the SEV metadata header.
pub const SEV_METADATA_SIGNATURE: [u8; 4] = *b"ASEV";

/// SEV metadata header ('ASEV').
#[derive(Clone, Copy, PartialEq, Eq, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct SevMetadataHeader {
    /// "ASEV".
    pub signature: [u8; 4],
    /// Header plus descriptors, in bytes.
    pub length: u32,
    /// Version, 1.
    pub version: u32,
    /// Number of 12-byte descriptors that follow.
    pub num_items: u32,
}
crate::assert_layout!(
    SevMetadataHeader,
    size = 16,
    signature = 0,
    length = 4,
    version = 8,
    num_items = 12
);

crate::open_enum! {
    /// Type of an SEV metadata section.
    pub struct SectionType(u32) {
        /// Pre-validated memory (measured as ZERO pages by QEMU).
        SNP_SEC_MEM = 1,
        /// SNP secrets page.
        SNP_SECRETS = 2,
        /// SNP CPUID page.
        CPUID = 3,
        /// SVSM calling-area page.
        SVSM_CAA = 4,
        /// Page holding the kernel-hashes table.
        SNP_KERNEL_HASHES = 0x10,
    }
}

/// One SEV metadata section descriptor.
#[derive(Clone, Copy, PartialEq, Eq, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct SevMetadataDesc {
    /// Base GPA.
    pub base: u32,
    /// Size in bytes (multiple of 4 KiB).
    pub size: u32,
    /// [`SectionType`] value.
    pub kind: u32,
}
crate::assert_layout!(SevMetadataDesc, size = 12, base = 0, size = 4, kind = 8);

impl SevMetadataDesc {
    /// The section type.
    pub const fn section_type(&self) -> SectionType {
        SectionType(self.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_bytes_are_efi_order() {
        assert_eq!(
            FOOTER_TABLE_GUID.0,
            [
                0xde, 0x82, 0xb5, 0x96, 0xb2, 0x1f, 0xf7, 0x45, 0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a,
                0x08, 0x2d
            ]
        );
        assert_eq!(&SEV_METADATA_GUID.0[..4], &[0x66, 0x65, 0x88, 0xdc]);
        assert_eq!(format!("{:?}", SectionType(0x10)), "SNP_KERNEL_HASHES");
    }
}
