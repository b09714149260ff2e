//! Guest memory accesses and the RMP access checks of APM Table 15-39
//! (host-interfaces.md §3.4), applied after the nested walk (done by the host model)
//! has produced the SPA for a GPA.
//!
//! SEV rules applied first: instruction fetches and guest page-table accesses are
//! always private (C = 1), and so is every access while the guest runs without PAE /
//! long mode. For an SNP guest with the effective C-bit set the checks run in the
//! hardware's priority order — covered, guest-owned (ASID), reverse map (GPA),
//! mutable, page size → #NPF with the RMP bit; validated → #VC 0x404; VMPL permission
//! → #NPF with RMP|VMPL. Shared (C = 0) writes and all writes of non-SNP guests need a
//! hypervisor-owned page (#NPF with the RMP bit otherwise). Reads with C = 0 are not
//! checked (they return the raw, for a private page encrypted, bytes).

use crate::Soc;
use crate::error::{
    Fault, NPF_ENC, NPF_FINAL_GPA, NPF_PAGE_WALK, NPF_VMPL, PF_FETCH, PF_PRESENT, PF_RMP, PF_USER,
    PF_WRITE, SocError, VC_NOT_VALIDATED,
};
use crate::keys::KeySel;
use crate::rmp::authoritative;
use crate::store::RmpRegion;
use softsev_abi::rmp::{PERM_EXEC_SUPERVISOR, PERM_EXEC_USER, PERM_READ, PERM_WRITE};
use softsev_abi::{Asid, Gpa, PAGE_SIZE_4K, Spa, Vmpl};

/// A page size: of an RMP entry, an NPT mapping, or a PVALIDATE/RMPADJUST operand (one
/// definition, in abi).
pub use softsev_abi::PageSize;

/// What a guest access does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessKind {
    /// Data read.
    Read,
    /// Data write.
    Write,
    /// Instruction fetch (always private).
    Execute,
    /// Read of a guest page-table entry during a walk (always private).
    WalkRead,
    /// Accessed/dirty-bit update of a guest page-table entry (always private; a write).
    WalkWrite,
}

impl AccessKind {
    fn is_write(self) -> bool {
        matches!(self, AccessKind::Write | AccessKind::WalkWrite)
    }
    fn is_walk(self) -> bool {
        matches!(self, AccessKind::WalkRead | AccessKind::WalkWrite)
    }
}

/// Which kind of guest makes the access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GuestMode {
    /// SEV (memory encryption only).
    Sev,
    /// SEV-ES (encrypted register state).
    SevEs,
    /// SEV-SNP (RMP-checked).
    Snp,
}

/// The guest's paging mode, as far as the C-bit is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Paging {
    /// Real mode, paging off, or 32-bit paging without PAE: C-bit forced to 1.
    NoPae,
    /// PAE or long mode: the C-bit comes from the guest page tables.
    PaeOrLong,
}

/// One guest access, after both translations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestAccess {
    /// The guest's ASID.
    pub asid: Asid,
    /// The VMPL of the vCPU.
    pub vmpl: Vmpl,
    /// Guest physical address accessed.
    pub gpa: Gpa,
    /// System physical address the NPT maps it to (same page offset as `gpa`).
    pub spa: Spa,
    /// What the access does.
    pub kind: AccessKind,
    /// C-bit of the guest's mapping.
    pub c_bit: bool,
    /// CPL 3 access.
    pub user: bool,
    /// Size of the NPT mapping that translated `gpa`.
    pub npt_size: PageSize,
    /// SEV, SEV-ES or SNP guest.
    pub mode: GuestMode,
    /// The guest's paging mode.
    pub paging: Paging,
}

impl GuestAccess {
    /// A supervisor, VMPL0, long-mode SNP access through a 4 KiB NPT mapping.
    pub fn snp(asid: Asid, gpa: Gpa, spa: Spa, kind: AccessKind, c_bit: bool) -> Self {
        Self {
            asid,
            vmpl: Vmpl(0),
            gpa,
            spa,
            kind,
            c_bit,
            user: false,
            npt_size: PageSize::Size4K,
            mode: GuestMode::Snp,
            paging: Paging::PaeOrLong,
        }
    }

    /// The C-bit in force: fetches, page-table accesses and accesses without PAE /
    /// long mode are always private.
    pub fn effective_c_bit(&self) -> bool {
        self.c_bit
            || matches!(self.kind, AccessKind::Execute)
            || self.kind.is_walk()
            || self.paging == Paging::NoPae
    }

    /// The EXITINFO1 bits describing this access (without the cause bits).
    fn base_error_code(&self) -> u64 {
        let mut ec = PF_PRESENT;
        if self.kind.is_write() {
            ec |= PF_WRITE;
        }
        if self.user || self.kind.is_walk() {
            ec |= PF_USER;
        }
        if self.kind == AccessKind::Execute {
            ec |= PF_FETCH;
        }
        ec |= if self.kind.is_walk() {
            NPF_PAGE_WALK
        } else {
            NPF_FINAL_GPA
        };
        if self.effective_c_bit() {
            ec |= NPF_ENC;
        }
        ec
    }

    fn required_perm(&self) -> u8 {
        match self.kind {
            AccessKind::Read | AccessKind::WalkRead => PERM_READ,
            AccessKind::Write | AccessKind::WalkWrite => PERM_WRITE,
            AccessKind::Execute if self.user => PERM_EXEC_USER,
            AccessKind::Execute => PERM_EXEC_SUPERVISOR,
        }
    }
}

impl Soc {
    /// The RMP checks for one guest access (under the RMP lock of its region).
    fn guest_check_locked(&self, a: &GuestAccess, rmp: Option<&RmpRegion>) -> Result<(), Fault> {
        if !self.snp {
            return Ok(());
        }
        let npf = |extra: u64| Fault::Npf {
            gpa: a.gpa,
            error_code: a.base_error_code() | PF_RMP | extra,
        };
        let private = a.effective_c_bit();
        let must_be_hv = match a.mode {
            GuestMode::Sev | GuestMode::SevEs => a.kind.is_write(),
            GuestMode::Snp => !private && a.kind.is_write(),
        };
        if must_be_hv {
            let owned = match a.npt_size {
                PageSize::Size4K => self.hypervisor_owned_4k(rmp, a.spa.0),
                PageSize::Size2M => self.hypervisor_owned_2m(rmp, a.spa.0),
            };
            return owned.map_err(|_| npf(0));
        }
        if a.mode != GuestMode::Snp || !private {
            return Ok(());
        }
        if !self.rmp_covered(a.spa) {
            return Err(npf(0));
        }
        let auth = authoritative(rmp, a.spa.0);
        let e = &auth.entry;
        if !e.assigned() || e.asid() != a.asid.0 {
            return Err(npf(0));
        }
        if auth.expected_gpa(a.spa.0) != a.gpa.0 & !(PAGE_SIZE_4K - 1) {
            return Err(npf(0));
        }
        if e.immutable() {
            return Err(npf(0));
        }
        if auth.size != a.npt_size {
            return Err(npf(0));
        }
        if !e.validated() {
            return Err(Fault::Vc {
                exit_code: VC_NOT_VALIDATED,
                gpa: a.gpa,
            });
        }
        let need = a.required_perm();
        if e.vmpl_perms(a.vmpl.0).unwrap_or(0) & need != need {
            return Err(npf(NPF_VMPL));
        }
        Ok(())
    }

    fn guest_prepare(&self, a: &GuestAccess, len: usize) -> Result<KeySel, SocError> {
        if a.gpa.page_offset() != a.spa.page_offset() {
            return Err(SocError::OffsetMismatch {
                gpa: a.gpa,
                spa: a.spa,
            });
        }
        if a.gpa.page_offset() + len as u64 > PAGE_SIZE_4K {
            return Err(SocError::CrossesPage {
                gpa: a.gpa,
                len: len as u64,
            });
        }
        self.check_range(a.spa, len as u64)?;
        Ok(if a.effective_c_bit() {
            KeySel::Guest(a.asid)
        } else {
            KeySel::Plain
        })
    }

    /// Check a guest access without moving data: `Ok` or the fault it raises.
    pub fn guest_check(&self, a: &GuestAccess) -> Result<(), Fault> {
        self.with_rmp(a.spa.0, |rmp| self.guest_check_locked(a, rmp))
    }

    /// A guest read of `buf.len()` bytes (within one 4 KiB page). Private accesses are
    /// decrypted with the guest's key, shared ones return the raw bytes.
    pub fn guest_read(&self, a: &GuestAccess, buf: &mut [u8]) -> Result<(), SocError> {
        let sel = self.guest_prepare(a, buf.len())?;
        let key = self.key_for(sel)?;
        self.with_rmp(a.spa.0, |rmp| {
            self.guest_check_locked(a, rmp)?;
            self.read_in_page(a.spa.0, buf, key.as_deref());
            Ok(())
        })
    }

    /// A guest write of `data` (within one 4 KiB page). Private writes are encrypted
    /// with the guest's key at the SPA, shared ones stored as they are.
    pub fn guest_write(&self, a: &GuestAccess, data: &[u8]) -> Result<(), SocError> {
        let sel = self.guest_prepare(a, data.len())?;
        let key = self.key_for(sel)?;
        self.with_rmp(a.spa.0, |rmp| {
            self.guest_check_locked(a, rmp)?;
            self.write_in_page(a.spa.0, data, key.as_deref());
            Ok(())
        })
    }
}
