//! The SEV-SNP secrets page (4 KiB), written by the firmware at
//! SNP_LAUNCH_UPDATE(type SECRETS) (SNP ABI "Secrets Page Format"; AMD firmware
//! `snp_launch_update_secrets_page_t`, version 3). Notes with sources:
//! shared/spec/snp-attestation.md §5.
//!
//! The firmware fills VERSION, IMI_EN, FMS, GOSVW, VMPCK0..3 and TSC_FACTOR (and, with
//! ABI 1.58, LAUNCH_MIT_VECTOR) and zeroes everything else. The guest-OS area at 0xA0
//! belongs to the guest; its layout ([`SecretsOsArea`]) is the GHCB specification's
//! (Linux keeps its VMPCK message counters there).
//!
//! The page holds the four VMPCKs, so [`SecretsPage`] has no derived `Debug`: its
//! `Debug` prints everything except the keys.

use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// Size of the secrets page.
pub const SECRETS_PAGE_SIZE: usize = 0x1000;
/// Number of VMPCKs (one per VMPL).
pub const VMPCK_COUNT: usize = 4;
/// Length of one VMPCK (AES-256-GCM key).
pub const VMPCK_LEN: usize = 32;
/// Offset of VMPCK0 in the page; VMPCKn is at `VMPCK_OFFSET + 32 * n`.
pub const VMPCK_OFFSET: usize = 0x20;
/// The secrets page version AMD firmware 1.55 writes.
pub const SECRETS_VERSION_3: u32 = 3;
/// IMI_EN (bit 0 of the word at 0x04): the guest was launched by a migration agent
/// import (LAUNCH_START with IMI_EN).
pub const IMI_EN: u32 = 1 << 0;

/// The guest-OS area of the secrets page (0xA0..0x100), GHCB specification layout.
/// The firmware writes zeros here; the guest owns it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct SecretsOsArea {
    /// Low 32 bits of the last message sequence number used with VMPCK0..3.
    pub msg_seqno_lo: [u32; 4],
    /// Guest physical address of the AP jump table (SEV-ES AP reset hold).
    pub ap_jump_table_pa: u64,
    /// High 32 bits of the message sequence numbers (GHCB 2.01).
    pub msg_seqno_hi: [u32; 4],
    /// Reserved.
    pub _reserved_28: [u8; 0x16],
    /// Version of this area's layout.
    pub version: u16,
    /// Free for the guest's use.
    pub guest_usage: [u8; 0x20],
}

crate::assert_layout!(
    SecretsOsArea,
    size = 0x60,
    msg_seqno_lo = 0x00,
    ap_jump_table_pa = 0x10,
    msg_seqno_hi = 0x18,
    _reserved_28 = 0x28,
    version = 0x3E,
    guest_usage = 0x40,
);

/// The SNP secrets page (0x1000 bytes).
#[derive(Clone, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct SecretsPage {
    /// VERSION of the page layout (3 from firmware 1.55 on).
    pub version: u32,
    /// Bit 0 IMI_EN ([`IMI_EN`]); bits 31:1 reserved.
    pub flags: u32,
    /// FMS: raw CPUID Fn0000_0001_EAX of the platform (family/model/stepping).
    pub fms: u32,
    /// Reserved.
    pub _reserved_0c: u32,
    /// GOSVW: guest-OS-visible workarounds, supplied by the hypervisor at LAUNCH_START.
    pub gosvw: [u8; 16],
    /// VMPCK0..3: the guest-message keys, one per VMPL.
    pub vmpck: [[u8; VMPCK_LEN]; VMPCK_COUNT],
    /// The guest-OS area (firmware writes zeros).
    pub os_area: SecretsOsArea,
    /// VMSA_TWEAK_BITMAP (bits of the VMSA that the tweak covers).
    pub vmsa_tweak_bitmap: [u8; 0x40],
    /// Reserved for the guest OS (the SVSM protocol places its calling area here).
    pub _reserved_140: [u8; 0x20],
    /// TSC_FACTOR: the spread-spectrum TSC correction in units of 0.001 %
    /// (200 = 0.2 %).
    pub tsc_factor: u32,
    /// Reserved.
    pub _reserved_164: u32,
    /// LAUNCH_MIT_VECTOR (ABI 1.58): mitigations in force when the guest launched.
    pub launch_mit_vector: u64,
    /// Reserved to the end of the page.
    pub _reserved_170: [u8; 0x1000 - 0x170],
}

crate::assert_layout!(
    SecretsPage,
    size = 0x1000,
    version = 0x000,
    flags = 0x004,
    fms = 0x008,
    _reserved_0c = 0x00C,
    gosvw = 0x010,
    vmpck = 0x020,
    os_area = 0x0A0,
    vmsa_tweak_bitmap = 0x100,
    _reserved_140 = 0x140,
    tsc_factor = 0x160,
    _reserved_164 = 0x164,
    launch_mit_vector = 0x168,
    _reserved_170 = 0x170,
);

impl Default for SecretsPage {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

impl core::fmt::Debug for SecretsPage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SecretsPage")
            .field("version", &self.version)
            .field("flags", &format_args!("{:#x}", self.flags))
            .field("fms", &format_args!("{:#010x}", self.fms))
            .field("gosvw", &self.gosvw)
            .field("vmpck", &"<secret>")
            .field("os_area", &self.os_area)
            .field("tsc_factor", &self.tsc_factor)
            .field(
                "launch_mit_vector",
                &format_args!("{:#x}", self.launch_mit_vector),
            )
            .finish_non_exhaustive()
    }
}

/// Why bytes are not a secrets page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    /// The buffer is not exactly one page.
    #[error("secrets page: {got} bytes where {SECRETS_PAGE_SIZE} were expected")]
    Size {
        /// Bytes given.
        got: usize,
    },
}

impl SecretsPage {
    /// A page as the firmware writes it at LAUNCH_UPDATE(SECRETS): the given fields
    /// set, everything else zero.
    pub fn new(
        version: u32,
        imi_en: bool,
        fms: u32,
        gosvw: [u8; 16],
        vmpck: &[[u8; VMPCK_LEN]; VMPCK_COUNT],
        tsc_factor: u32,
    ) -> Self {
        let mut p = Self::new_zeroed();
        p.version = version;
        p.flags = if imi_en { IMI_EN } else { 0 };
        p.fms = fms;
        p.gosvw = gosvw;
        p.vmpck = *vmpck;
        p.tsc_factor = tsc_factor;
        p
    }

    /// Read a page from exactly 0x1000 bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, SecretsError> {
        Self::read_from_bytes(bytes).map_err(|_| SecretsError::Size { got: bytes.len() })
    }

    /// IMI_EN.
    pub fn imi_en(&self) -> bool {
        self.flags & IMI_EN != 0
    }

    /// VMPCK `n` (0..=3), or `None` for another index.
    pub fn vmpck(&self, n: usize) -> Option<&[u8; VMPCK_LEN]> {
        self.vmpck.get(n)
    }

    /// Zero VMPCK `n` (what an SVSM does before handing a copy of the page to a
    /// less-privileged VMPL, and what Linux does to a key after a failed request).
    /// Out-of-range indexes are ignored.
    pub fn wipe_vmpck(&mut self, n: usize) {
        if let Some(k) = self.vmpck.get_mut(n) {
            k.fill(0);
        }
    }

    /// The 64-bit message sequence number the guest OS last used with VMPCK `n`
    /// (low and high halves of the GHCB guest-OS area).
    pub fn os_msg_seqno(&self, n: usize) -> Option<u64> {
        let lo = *self.os_area.msg_seqno_lo.get(n)?;
        let hi = *self.os_area.msg_seqno_hi.get(n)?;
        Some(u64::from(hi) << 32 | u64::from(lo))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_sets_fields_at_their_offsets_and_zeroes_the_rest() {
        let keys = [[0x11; 32], [0x22; 32], [0x33; 32], [0x44; 32]];
        let p = SecretsPage::new(3, true, 0x00A0_0F11, [0xAB; 16], &keys, 200);
        let b = p.as_bytes();
        assert_eq!(b.len(), 0x1000);
        assert_eq!(&b[0..4], &3u32.to_le_bytes());
        assert_eq!(&b[4..8], &1u32.to_le_bytes());
        assert_eq!(&b[8..12], &0x00A0_0F11u32.to_le_bytes());
        assert_eq!(&b[0x10..0x20], &[0xAB; 16]);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(&b[0x20 + 32 * i..0x40 + 32 * i], k);
        }
        assert!(b[0xA0..0x160].iter().all(|&x| x == 0));
        assert_eq!(&b[0x160..0x164], &200u32.to_le_bytes());
        assert!(b[0x164..].iter().all(|&x| x == 0));
        let q = SecretsPage::parse(b).unwrap();
        assert_eq!(q, p);
        assert!(q.imi_en());
        assert_eq!(q.vmpck(2), Some(&[0x33; 32]));
        assert_eq!(q.vmpck(4), None);
    }

    #[test]
    fn debug_hides_keys_and_wipe_zeroes_one_key() {
        let keys = [[0xC5; 32]; 4];
        let mut p = SecretsPage::new(3, false, 0, [0; 16], &keys, 0);
        let s = format!("{p:?}");
        assert!(s.contains("<secret>"));
        assert!(!s.contains("197"), "key byte 0xC5 printed: {s}");
        p.wipe_vmpck(1);
        p.wipe_vmpck(9);
        assert_eq!(p.vmpck[1], [0; 32]);
        assert_eq!(p.vmpck[0], [0xC5; 32]);
    }

    #[test]
    fn os_area_seqno_and_sizes() {
        let mut b = [0u8; 0x1000];
        b[0xA4..0xA8].copy_from_slice(&5u32.to_le_bytes());
        b[0xBC..0xC0].copy_from_slice(&1u32.to_le_bytes());
        let p = SecretsPage::parse(&b).unwrap();
        assert_eq!(p.os_msg_seqno(1), Some((1u64 << 32) | 5));
        assert_eq!(p.os_msg_seqno(4), None);
        assert_eq!(
            SecretsPage::parse(&b[..0xFFF]),
            Err(SecretsError::Size { got: 0xFFF })
        );
    }
}
