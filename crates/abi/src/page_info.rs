//! SNP launch PAGE_INFO (AMD SEV firmware `snp_mcmd_launch_update_page_info_t`; SNP ABI
//! "Layout of the PAGE_INFO structure") and the LAUNCH_UPDATE page types.
//! Notes: shared/spec/snp-launch.md §2.1–§2.2.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

crate::open_enum! {
    /// SNP_LAUNCH_UPDATE page type (PAGE_TYPE field, bits 3:1 of the command word).
    pub struct PageType(u8) {
        /// Data page: contents measured and encrypted.
        NORMAL = 1,
        /// VMSA page: measured with GUEST_TSC_SCALE/OFFSET zeroed.
        VMSA = 2,
        /// Zero page: firmware zero-fills; not measured (CONTENTS = 0).
        ZERO = 3,
        /// Unmeasured page: contents kept, not measured.
        UNMEASURED = 4,
        /// Secrets page: replaced by the firmware secrets page.
        SECRETS = 5,
        /// CPUID page: validated by the firmware.
        CPUID = 6,
    }
}

impl PageType {
    /// Whether the page contents enter the digest (NORMAL and VMSA); the others
    /// contribute 48 zero bytes as CONTENTS.
    pub const fn is_measured(self) -> bool {
        matches!(self.0, 1 | 2)
    }
}

/// Size of [`PageInfo`] and the value of its LENGTH field.
pub const PAGE_INFO_LEN: u16 = 0x70;

/// GPA the KVM places every VMSA page at in the RMP (`INITIAL_VMSA_GPA`), hence the
/// GPA of every VMSA PAGE_INFO.
pub const VMSA_GPA: u64 = 0x0000_FFFF_FFFF_F000;

/// Byte range of GUEST_TSC_SCALE and GUEST_TSC_OFFSET in a VMSA page, which the firmware
/// zeroes before hashing a VMSA page.
pub const VMSA_TSC_FIELDS: core::ops::Range<usize> = 0x2F0..0x300;

/// PAGE_INFO: what the firmware hashes into the launch digest for each 4 KiB page
/// (`LD ← SHA-384(PAGE_INFO)`). Byte order of the permission bytes follows the AMD
/// firmware (reserved, VMPL1, VMPL2, VMPL3 at 0x64..0x67).
#[derive(Clone, Copy, PartialEq, Eq, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct PageInfo {
    /// Launch digest before this update.
    pub digest_cur: [u8; 48],
    /// SHA-384 of the page, or zeros for unmeasured types.
    pub contents: [u8; 48],
    /// Structure length, 0x70.
    pub length: u16,
    /// [`PageType`] value.
    pub page_type: u8,
    /// Bit 0: IMI_PAGE; bits 7:1 reserved.
    pub imi_page: u8,
    /// Reserved, zero.
    pub _reserved_64: u8,
    /// VMPL1 permission byte from the command.
    pub vmpl1_perms: u8,
    /// VMPL2 permission byte from the command.
    pub vmpl2_perms: u8,
    /// VMPL3 permission byte from the command.
    pub vmpl3_perms: u8,
    /// GPA of the page (from its RMP entry).
    pub gpa: u64,
}

crate::assert_layout!(
    PageInfo,
    size = 0x70,
    digest_cur = 0x00,
    contents = 0x30,
    length = 0x60,
    page_type = 0x62,
    imi_page = 0x63,
    _reserved_64 = 0x64,
    vmpl1_perms = 0x65,
    vmpl2_perms = 0x66,
    vmpl3_perms = 0x67,
    gpa = 0x68,
);

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::IntoBytes;

    #[test]
    fn tail_bytes_match_worked_example() {
        // spec §2.2 worked example: bytes 0x60..0x70 of the first OVMF page's PAGE_INFO.
        let pi = PageInfo {
            digest_cur: [0; 48],
            contents: [0; 48],
            length: PAGE_INFO_LEN,
            page_type: PageType::NORMAL.0,
            imi_page: 0,
            _reserved_64: 0,
            vmpl1_perms: 0,
            vmpl2_perms: 0,
            vmpl3_perms: 0,
            gpa: 0xFFFF_F000,
        };
        assert_eq!(
            &pi.as_bytes()[0x60..],
            &[
                0x70, 0, 1, 0, 0, 0, 0, 0, 0x00, 0xf0, 0xff, 0xff, 0, 0, 0, 0
            ]
        );
        assert!(PageType::VMSA.is_measured());
        assert!(!PageType::CPUID.is_measured());
    }
}
