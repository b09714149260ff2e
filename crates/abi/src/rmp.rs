//! The Reverse Map Table (RMP) entry, the RMPUPDATE input structure and the return
//! codes of the RMP instructions (RMPUPDATE, PSMASH, PVALIDATE, RMPADJUST, RMPQUERY).
//!
//! Sources: host-interfaces.md §3.1–§3.3 (AMD APM vol. 2 §15.36, Linux
//! `arch/x86/include/asm/sev.h`), snp-launch.md §1.5 (firmware `sev_rmp.h`: the entry as
//! the AMD-SP sees it and its named page states). The Milan/Genoa logical format is
//! used; newer parts (segmented RMP) store entries differently but carry the same fields.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Permission bit: read (RMP VMPL permission byte, bit 0).
pub const PERM_READ: u8 = 1 << 0;
/// Permission bit: write (bit 1). Write without read is an illegal mask.
pub const PERM_WRITE: u8 = 1 << 1;
/// Permission bit: execute at CPL3 (bit 2).
pub const PERM_EXEC_USER: u8 = 1 << 2;
/// Permission bit: execute at CPL0–2 (bit 3).
pub const PERM_EXEC_SUPERVISOR: u8 = 1 << 3;
/// Permission bit: supervisor shadow stack (bit 4).
pub const PERM_SSS: u8 = 1 << 4;
/// All defined permission bits (what RMPUPDATE grants VMPL0 on assignment).
pub const PERM_ALL: u8 = 0x1F;

/// One 16-byte RMP entry, as the firmware reads it from the table (snp-launch.md §1.5).
///
/// `attrs` (quadword 0):
/// - bit 0: ASSIGNED — the page belongs to a guest or to the firmware.
/// - bit 1: PAGE_SIZE — 0 = 4 KiB, 1 = 2 MiB (only meaningful in the 2 MiB-aligned entry).
/// - bit 2: IMMUTABLE — only the AMD-SP may change the entry.
/// - bits 11:3: SUBPAGE_COUNT (firmware bookkeeping).
/// - bits 50:12: GPA\[50:12\] the page is mapped at (firmware sub-state in bits 38:36 for
///   firmware/metadata pages).
/// - bits 60:51: ASID (10 bits), 0 = hypervisor/firmware.
/// - bit 61: VMSA — the page is a guest VMSA.
/// - bit 62: VALIDATED — set by PVALIDATE or SNP_LAUNCH_UPDATE.
/// - bit 63: LOCK (firmware-internal).
///
/// `perms` (quadword 1):
/// - bits 7:0, 15:8, 23:16, 31:24: VMPL0..VMPL3 permission masks (`PERM_*`).
/// - bit 32: implicit key select; bits 53:49 root port; 61:54 IDE stream; 63:62 page
///   migration (not modelled beyond storage).
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, Default, Debug, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RmpEntry {
    /// Quadword 0: assignment, size, GPA, ASID, VMSA, validated.
    pub attrs: u64,
    /// Quadword 1: VMPL permission bytes.
    pub perms: u64,
}

crate::assert_layout!(RmpEntry, size = 16, attrs = 0, perms = 8);

const ASSIGNED: u64 = 1 << 0;
const PAGE_SIZE_2M_BIT: u64 = 1 << 1;
const IMMUTABLE: u64 = 1 << 2;
const SUBPAGE_SHIFT: u32 = 3;
const SUBPAGE_MASK: u64 = 0x1FF << SUBPAGE_SHIFT;
const GPA_MASK: u64 = ((1u64 << 51) - 1) & !0xFFF;
const ASID_SHIFT: u32 = 51;
const ASID_MASK: u64 = 0x3FF << ASID_SHIFT;
const VMSA: u64 = 1 << 61;
const VALIDATED: u64 = 1 << 62;
const LOCK: u64 = 1 << 63;

/// Largest ASID an RMP entry can hold (10-bit field).
pub const RMP_MAX_ASID: u32 = 0x3FF;
/// Largest GPA (exclusive) an RMP entry can hold (51-bit field).
pub const RMP_GPA_LIMIT: u64 = 1 << 51;

macro_rules! flag {
    ($get:ident, $set:ident, $bit:expr, $doc:literal) => {
        #[doc = concat!("Whether ", $doc, ".")]
        pub const fn $get(&self) -> bool {
            self.attrs & $bit != 0
        }
        #[doc = concat!("Set or clear: ", $doc, ".")]
        pub fn $set(&mut self, v: bool) {
            if v {
                self.attrs |= $bit
            } else {
                self.attrs &= !$bit
            }
        }
    };
}

impl RmpEntry {
    flag!(
        assigned,
        set_assigned,
        ASSIGNED,
        "the page is assigned (bit 0)"
    );
    flag!(
        is_2m,
        set_2m,
        PAGE_SIZE_2M_BIT,
        "the entry describes a 2 MiB page (bit 1)"
    );
    flag!(
        immutable,
        set_immutable,
        IMMUTABLE,
        "the entry is immutable (bit 2)"
    );
    flag!(vmsa, set_vmsa, VMSA, "the page is a VMSA (bit 61)");
    flag!(
        validated,
        set_validated,
        VALIDATED,
        "the page is validated (bit 62)"
    );
    flag!(
        lock,
        set_lock,
        LOCK,
        "the firmware lock bit is set (bit 63)"
    );

    /// The guest physical address (bits 50:12, page aligned).
    pub const fn gpa(&self) -> u64 {
        self.attrs & GPA_MASK
    }
    /// Store a GPA; bits outside 50:12 are dropped.
    pub fn set_gpa(&mut self, gpa: u64) {
        self.attrs = (self.attrs & !GPA_MASK) | (gpa & GPA_MASK);
    }
    /// The owning ASID (bits 60:51).
    pub const fn asid(&self) -> u32 {
        ((self.attrs & ASID_MASK) >> ASID_SHIFT) as u32
    }
    /// Store an ASID; bits above the 10-bit field are dropped.
    pub fn set_asid(&mut self, asid: u32) {
        self.attrs = (self.attrs & !ASID_MASK) | ((u64::from(asid) << ASID_SHIFT) & ASID_MASK);
    }
    /// SUBPAGE_COUNT (bits 11:3).
    pub const fn subpage_count(&self) -> u16 {
        ((self.attrs & SUBPAGE_MASK) >> SUBPAGE_SHIFT) as u16
    }
    /// Store SUBPAGE_COUNT; bits above the 9-bit field are dropped.
    pub fn set_subpage_count(&mut self, n: u16) {
        self.attrs =
            (self.attrs & !SUBPAGE_MASK) | ((u64::from(n) << SUBPAGE_SHIFT) & SUBPAGE_MASK);
    }
    /// The permission mask of `vmpl` (0..=3); `None` for a VMPL above 3.
    pub const fn vmpl_perms(&self, vmpl: u8) -> Option<u8> {
        if vmpl > 3 {
            None
        } else {
            Some((self.perms >> (8 * vmpl as u32)) as u8)
        }
    }
    /// Store the permission mask of `vmpl`; a VMPL above 3 is ignored.
    pub fn set_vmpl_perms(&mut self, vmpl: u8, mask: u8) {
        if vmpl <= 3 {
            let shift = 8 * u32::from(vmpl);
            self.perms = (self.perms & !(0xFF << shift)) | (u64::from(mask) << shift);
        }
    }

    /// The firmware's name for the state this entry is in (snp-launch.md §1.5 table).
    pub fn page_state(&self) -> PageState {
        let asid = self.asid();
        match (self.assigned(), self.immutable()) {
            (false, false) => PageState::HYPERVISOR,
            (false, true) => PageState::HV_FIXED,
            (true, false) if asid == 0 => PageState::RECLAIM,
            (true, false) if self.validated() => PageState::GUEST_VALID,
            (true, false) => PageState::GUEST_INVALID,
            (true, true) if asid != 0 && self.validated() => PageState::PRE_SWAP,
            (true, true) if asid != 0 => PageState::PRE_GUEST,
            (true, true) if self.vmsa() => PageState::CONTEXT,
            (true, true) if self.gpa() != 0 => PageState::METADATA,
            (true, true) => PageState::FIRMWARE,
        }
    }
}

crate::open_enum! {
    /// Named RMP page states of the SNP firmware (`snp_page_state_t`, snp-launch.md §1.5).
    pub struct PageState(u8) {
        /// Not a valid state.
        INVALID = 0,
        /// Default.
        DEFAULT = 1,
        /// Hypervisor-owned: not assigned, mutable.
        HYPERVISOR = 2,
        /// Hypervisor-owned and fixed (immutable).
        HV_FIXED = 3,
        /// Firmware page (assigned, ASID 0, immutable).
        FIRMWARE = 4,
        /// Firmware page used by the IOMMU.
        FIRMWARE_IOMMU = 5,
        /// Reclaim: assigned, ASID 0, mutable; RMPUPDATE may return it to the hypervisor.
        RECLAIM = 6,
        /// Guest context page (firmware page with the VMSA bit).
        CONTEXT = 7,
        /// Metadata page (firmware page with a non-zero GPA field).
        METADATA = 8,
        /// Pre-guest: assigned to a guest, immutable, not validated (before LAUNCH_UPDATE).
        PRE_GUEST = 9,
        /// Pre-swap: assigned to a guest, immutable, validated.
        PRE_SWAP = 10,
        /// Guest-invalid: assigned to a guest, mutable, not validated.
        GUEST_INVALID = 11,
        /// Guest-valid: assigned to a guest, mutable, validated.
        GUEST_VALID = 12,
    }
}

/// RMPUPDATE input (the 16 bytes RCX points to; host-interfaces.md §3.3, Linux
/// `struct rmp_state`).
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, Default, Debug, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RmpUpdateInput {
    /// GPA the page is mapped at (page aligned; 2 MiB aligned for a 2 MiB page).
    pub gpa: u64,
    /// 1 = assigned.
    pub assigned: u8,
    /// Bit 0: page size (0 = 4 KiB, 1 = 2 MiB); other bits reserved.
    pub pagesize: u8,
    /// 1 = immutable.
    pub immutable: u8,
    /// Reserved, zero.
    pub _reserved_0b: u8,
    /// Owning ASID.
    pub asid: u32,
}

crate::assert_layout!(
    RmpUpdateInput,
    size = 16,
    gpa = 0,
    assigned = 8,
    pagesize = 9,
    immutable = 10,
    _reserved_0b = 11,
    asid = 12
);

crate::open_enum! {
    /// Return code (RAX) of RMPUPDATE, PSMASH, PVALIDATE, RMPADJUST and RMPQUERY
    /// (APM vol. 2; Linux `asm/sev.h`; Microsoft intrinsic docs). `FAIL_UNCHANGED` is
    /// not a hardware RAX value: it is Linux's software code (255) for PVALIDATE
    /// succeeding with RFLAGS.CF = 1 (the validated bit already had the requested value).
    pub struct RmpStatus(u32) {
        /// Success.
        SUCCESS = 0,
        /// Invalid input (alignment, reserved fields, range).
        FAIL_INPUT = 1,
        /// Not permitted (immutable entry, ASID ≠ 0 for host instructions, VMPL rules).
        FAIL_PERMISSION = 2,
        /// The entry is in use (running VMCB/VMSA/AVIC page, or another CPU holds it).
        FAIL_INUSE = 3,
        /// 4 KiB / 2 MiB entries overlap (RMPUPDATE).
        FAIL_OVERLAP = 4,
        /// Page-size mismatch: a 2 MiB request on a 4 KiB RMP entry (PVALIDATE, RMPADJUST).
        FAIL_SIZEMISMATCH = 6,
        /// PSMASH: the entry is not one that can be expanded (Microsoft `__psmash`
        /// documents 7; an early Linux patch used 4).
        FAIL_BADADDR = 7,
        /// PVALIDATE: success with CF = 1, nothing changed (Linux software code).
        FAIL_UNCHANGED = 255,
    }
}

impl RmpStatus {
    /// Whether the instruction succeeded (including `FAIL_UNCHANGED`, which is a
    /// success with nothing to do).
    pub const fn is_success(self) -> bool {
        self.0 == 0 || self.0 == 255
    }
}

/// RMPADJUST attribute word (RDX) bit: set the VMSA bit of the page (VMPL0 only).
pub const RMPADJUST_VMSA_PAGE_BIT: u64 = 1 << 16;

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::IntoBytes;

    #[test]
    fn entry_fields_roundtrip() {
        let mut e = RmpEntry::default();
        e.set_assigned(true);
        e.set_2m(true);
        e.set_gpa(0x1234_5678_9000);
        e.set_asid(0x3FF);
        e.set_validated(true);
        e.set_vmpl_perms(0, PERM_ALL);
        e.set_vmpl_perms(3, PERM_READ);
        assert!(e.assigned() && e.is_2m() && e.validated() && !e.vmsa() && !e.immutable());
        assert_eq!(e.gpa(), 0x1234_5678_9000);
        assert_eq!(e.asid(), 0x3FF);
        assert_eq!(e.vmpl_perms(0), Some(0x1F));
        assert_eq!(e.vmpl_perms(3), Some(PERM_READ));
        assert_eq!(e.vmpl_perms(4), None);
        assert_eq!(
            e.attrs,
            1 | 2 | 0x1234_5678_9000 | (0x3FF << 51) | (1 << 62)
        );
        assert_eq!(e.perms, 0x0100_001F);
        e.set_asid(0x400); // out of range: dropped
        assert_eq!(e.asid(), 0);
        let bytes = e.as_bytes();
        assert_eq!(bytes.len(), 16);
    }

    #[test]
    fn page_states() {
        let mut e = RmpEntry::default();
        assert_eq!(e.page_state(), PageState::HYPERVISOR);
        e.set_assigned(true);
        e.set_immutable(true);
        assert_eq!(e.page_state(), PageState::FIRMWARE);
        e.set_vmsa(true);
        assert_eq!(e.page_state(), PageState::CONTEXT);
        e.set_vmsa(false);
        e.set_asid(5);
        assert_eq!(e.page_state(), PageState::PRE_GUEST);
        e.set_immutable(false);
        assert_eq!(e.page_state(), PageState::GUEST_INVALID);
        e.set_validated(true);
        assert_eq!(e.page_state(), PageState::GUEST_VALID);
        e.set_asid(0);
        assert_eq!(e.page_state(), PageState::RECLAIM);
    }

    #[test]
    fn status_names() {
        assert_eq!(format!("{:?}", RmpStatus::FAIL_OVERLAP), "FAIL_OVERLAP");
        assert_eq!(format!("{:?}", RmpStatus(9)), "RmpStatus(0x9)");
        assert!(RmpStatus::FAIL_UNCHANGED.is_success());
        assert!(!RmpStatus::FAIL_INPUT.is_success());
    }
}
