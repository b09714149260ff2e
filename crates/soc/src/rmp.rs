//! The Reverse Map Table and the instructions that use it (host-interfaces.md §3.1–§3.3,
//! snp-launch.md §1.5): RMPUPDATE, PSMASH, RMPREAD (host); PVALIDATE, RMPADJUST,
//! RMPQUERY (guest); and the firmware's direct path to the table.
//!
//! A 2 MiB page is described by the entry of its 2 MiB-aligned first page (Page_Size =
//! 1); the other 511 entries stay unassigned while it exists. The *authoritative*
//! entry of a page is that head entry when it is an assigned 2 MiB entry, else the
//! page's own entry (Linux `snp_lookup_rmpentry`).

use crate::access::PageSize;
use crate::error::{Fault, NPF_ENC, NPF_FINAL_GPA, NPF_SIZEM, PF_PRESENT, PF_RMP, SocError};
use crate::store::{PAGES_PER_REGION, REGION_SIZE, RmpRegion};
use crate::{Soc, VC_NOT_VALIDATED};
use softsev_abi::rmp::{
    PERM_ALL, PERM_READ, PERM_WRITE, RMP_GPA_LIMIT, RmpEntry, RmpStatus, RmpUpdateInput,
};
use softsev_abi::{Asid, Gpa, PAGE_SIZE_2M, PAGE_SIZE_4K, Spa, Vmpl};

/// The authoritative RMP entry of a page.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Auth {
    pub entry: RmpEntry,
    pub size: PageSize,
    /// SPA of the page the entry describes (4 KiB page or 2 MiB head).
    pub base: u64,
}

impl Auth {
    /// The GPA this entry maps `spa`'s 4 KiB page to.
    pub(crate) fn expected_gpa(&self, spa: u64) -> u64 {
        self.entry
            .gpa()
            .wrapping_add((spa & !(PAGE_SIZE_4K - 1)).wrapping_sub(self.base))
    }
}

fn page_index(spa: u64) -> usize {
    ((spa % REGION_SIZE) / PAGE_SIZE_4K) as usize
}

pub(crate) fn authoritative(rmp: Option<&RmpRegion>, spa: u64) -> Auth {
    let Some(r) = rmp else {
        return Auth {
            entry: RmpEntry::default(),
            size: PageSize::Size4K,
            base: spa & !(PAGE_SIZE_4K - 1),
        };
    };
    let head = r.entry(0);
    if head.assigned() && head.is_2m() {
        Auth {
            entry: head,
            size: PageSize::Size2M,
            base: spa & !(PAGE_SIZE_2M - 1),
        }
    } else {
        Auth {
            entry: r.entry(page_index(spa)),
            size: PageSize::Size4K,
            base: spa & !(PAGE_SIZE_4K - 1),
        }
    }
}

/// PVALIDATE operands, after the guest's own translation of the VA (the GPA) and the
/// nested translation (the SPA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PvalidateReq {
    /// The guest's ASID.
    pub asid: Asid,
    /// The VMPL executing the instruction.
    pub vmpl: Vmpl,
    /// Guest physical address of the page (RAX translated).
    pub gpa: Gpa,
    /// System physical address the nested page tables map `gpa` to.
    pub spa: Spa,
    /// RCX: page size.
    pub size: PageSize,
    /// RDX: true = validate, false = rescind.
    pub validate: bool,
}

/// RMPADJUST operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RmpAdjustReq {
    /// The guest's ASID.
    pub asid: Asid,
    /// The VMPL executing the instruction.
    pub vmpl: Vmpl,
    /// Guest physical address of the page.
    pub gpa: Gpa,
    /// System physical address of the page.
    pub spa: Spa,
    /// RCX: page size.
    pub size: PageSize,
    /// RDX: bits 7:0 target VMPL, 15:8 permission mask, bit 16 VMSA; others reserved.
    pub attrs: u64,
}

/// RMPQUERY operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RmpQueryReq {
    /// The guest's ASID.
    pub asid: Asid,
    /// The VMPL executing the instruction.
    pub vmpl: Vmpl,
    /// Guest physical address of the page.
    pub gpa: Gpa,
    /// System physical address of the page.
    pub spa: Spa,
    /// The VMPL whose permissions are asked for.
    pub target_vmpl: u8,
}

/// What RMPQUERY reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RmpQuery {
    /// Permission mask of the target VMPL.
    pub perms: u8,
    /// The VMSA bit.
    pub vmsa: bool,
    /// Page size of the RMP entry.
    pub size: PageSize,
}

fn npf_rmp(gpa: Gpa, extra: u64) -> Fault {
    Fault::Npf {
        gpa,
        error_code: PF_PRESENT | PF_RMP | NPF_ENC | NPF_FINAL_GPA | extra,
    }
}

impl Soc {
    /// Run `f` with the RMP region of `spa` read-locked (`None` = never written: all
    /// entries zero, hypervisor-owned).
    pub(crate) fn with_rmp<R>(&self, spa: u64, f: impl FnOnce(Option<&RmpRegion>) -> R) -> R {
        match self.store.region_if_present(spa / REGION_SIZE) {
            Some(r) => {
                let g = r.rmp.read();
                f(g.as_deref())
            }
            None => f(None),
        }
    }

    /// Run `f` with the RMP region of `spa` write-locked, creating it.
    fn with_rmp_mut<R>(&self, spa: u64, f: impl FnOnce(&mut RmpRegion) -> R) -> Option<R> {
        let region = self.store.region(spa / REGION_SIZE)?;
        let mut g = region.rmp.write();
        Some(f(g.get_or_insert_with(RmpRegion::new_boxed)))
    }

    /// `Ok` if the 4 KiB page at `spa` is hypervisor-owned (not covered, or its
    /// authoritative entry is unassigned).
    pub(crate) fn hypervisor_owned_4k(&self, rmp: Option<&RmpRegion>, spa: u64) -> Result<(), ()> {
        if !self.rmp_covered(Spa(spa)) {
            return Ok(());
        }
        if authoritative(rmp, spa).entry.assigned() {
            Err(())
        } else {
            Ok(())
        }
    }

    /// `Ok` if every 4 KiB page of the 2 MiB region holding `spa` is hypervisor-owned.
    pub(crate) fn hypervisor_owned_2m(&self, rmp: Option<&RmpRegion>, spa: u64) -> Result<(), ()> {
        let Some(r) = rmp else { return Ok(()) };
        let base = spa & !(PAGE_SIZE_2M - 1);
        if r.assigned()
            .any(|(i, _)| self.rmp_covered(Spa(base + i as u64 * PAGE_SIZE_4K)))
        {
            return Err(());
        }
        Ok(())
    }

    fn rmp_covered_span(&self, spa: u64, len: u64) -> bool {
        spa.checked_add(len)
            .is_some_and(|end| end <= self.rmp_limit)
    }

    // ---- host instructions ----

    /// RMPUPDATE: write the RMP entry of the page at `spa` (host only, ASID 0).
    ///
    /// Returns FAIL_INPUT for a misaligned or uncovered SPA, reserved bits, a bad ASID
    /// or GPA; FAIL_PERMISSION if the current entry is immutable; FAIL_INUSE if the page
    /// is a running vCPU's VMCB/VMSA/AVIC page; FAIL_OVERLAP for a 2 MiB update while a
    /// 4 KiB entry of the region is assigned, or a 4 KiB update inside an assigned
    /// 2 MiB page. On success the entry gets the new fields with Validated and VMSA
    /// clear, VMPL0 permissions full (if assigned) and VMPL1–3 none.
    pub fn rmpupdate(&self, spa: Spa, input: &RmpUpdateInput) -> RmpStatus {
        let is_2m = input.pagesize & 1 == 1;
        let size = if is_2m { PAGE_SIZE_2M } else { PAGE_SIZE_4K };
        let assigned = input.assigned == 1;
        let bad_fields = input.pagesize & !1 != 0
            || input._reserved_0b != 0
            || input.assigned > 1
            || input.immutable > 1;
        let bad_addr = !spa.is_aligned(size) || !self.rmp_covered_span(spa.0, size);
        let bad_owner = if assigned {
            input.asid >= self.asid_count()
                || !input.gpa.is_multiple_of(size)
                || input.gpa >= RMP_GPA_LIMIT
        } else {
            input.asid != 0
        };
        if bad_fields || bad_addr || bad_owner {
            return RmpStatus::FAIL_INPUT;
        }
        let idx = page_index(spa.0);
        self.with_rmp_mut(spa.0, |r| {
            let head = r.entry(0);
            let head_2m = head.assigned() && head.is_2m();
            let current = if head_2m { head } else { r.entry(idx) };
            if current.immutable() {
                return RmpStatus::FAIL_PERMISSION;
            }
            let busy = if is_2m {
                r.in_use.iter().any(|w| *w != 0)
            } else {
                r.is_in_use(idx)
            };
            if busy {
                return RmpStatus::FAIL_INUSE;
            }
            let overlap = if is_2m {
                r.assigned().any(|(i, _)| i != 0)
            } else {
                head_2m
            };
            if overlap {
                return RmpStatus::FAIL_OVERLAP;
            }
            let mut e = RmpEntry::default();
            e.set_assigned(assigned);
            e.set_2m(is_2m);
            e.set_immutable(input.immutable == 1);
            if assigned {
                e.set_asid(input.asid);
                e.set_gpa(input.gpa);
                e.set_vmpl_perms(0, PERM_ALL);
            }
            r.set_entry(idx, e);
            RmpStatus::SUCCESS
        })
        .unwrap_or(RmpStatus::FAIL_INPUT)
    }

    /// PSMASH: split the assigned 2 MiB entry at `spa` (2 MiB aligned) into 512 4 KiB
    /// entries with consecutive GPAs; every other field (ASID, Validated, VMSA, VMPL
    /// permissions, Immutable) is copied. FAIL_INPUT for a misaligned or uncovered SPA,
    /// FAIL_INUSE if a page of the region is in use, FAIL_BADADDR if the entry is not
    /// an assigned 2 MiB entry.
    pub fn psmash(&self, spa: Spa) -> RmpStatus {
        if !spa.is_aligned(PAGE_SIZE_2M) || !self.rmp_covered_span(spa.0, PAGE_SIZE_2M) {
            return RmpStatus::FAIL_INPUT;
        }
        self.with_rmp_mut(spa.0, |r| {
            let head = r.entry(0);
            if !(head.assigned() && head.is_2m()) {
                return RmpStatus::FAIL_BADADDR;
            }
            if r.in_use.iter().any(|w| *w != 0) {
                return RmpStatus::FAIL_INUSE;
            }
            for i in 0..PAGES_PER_REGION {
                let mut e = head;
                e.set_2m(false);
                e.set_gpa(head.gpa() + i as u64 * PAGE_SIZE_4K);
                r.set_entry(i, e);
            }
            RmpStatus::SUCCESS
        })
        .unwrap_or(RmpStatus::FAIL_INPUT)
    }

    /// RMPREAD: the raw 4 KiB entry of the page at `spa` (FAIL_INPUT if misaligned or
    /// not covered).
    pub fn rmpread(&self, spa: Spa) -> Result<RmpEntry, RmpStatus> {
        if !spa.is_aligned(PAGE_SIZE_4K) || !self.rmp_covered(spa) {
            return Err(RmpStatus::FAIL_INPUT);
        }
        Ok(self.with_rmp(spa.0, |r| {
            r.map(|r| r.entry(page_index(spa.0))).unwrap_or_default()
        }))
    }

    /// The authoritative entry of the page holding `spa` and its size (the 2 MiB head
    /// entry for a page inside an assigned 2 MiB page).
    pub fn rmp_lookup(&self, spa: Spa) -> Result<(RmpEntry, PageSize), SocError> {
        if !self.rmp_covered(spa) {
            return Err(SocError::NotCovered(spa));
        }
        let a = self.with_rmp(spa.0, |r| authoritative(r, spa.0));
        Ok((a.entry, a.size))
    }

    /// Mark the page at `spa` as in use by a running vCPU (VMCB, VMSA, AVIC backing
    /// page) or release it. RMPUPDATE / PSMASH of an in-use page return FAIL_INUSE.
    pub fn set_in_use(&self, spa: Spa, in_use: bool) -> Result<(), SocError> {
        if !self.rmp_covered(spa) {
            return Err(SocError::NotCovered(spa));
        }
        self.with_rmp_mut(spa.0, |r| r.set_in_use(page_index(spa.0), in_use))
            .ok_or(SocError::NotCovered(spa))
    }

    // ---- firmware path ----

    /// Firmware: read the raw 4 KiB RMP entry of the page holding `spa`.
    pub fn fw_rmp_read(&self, spa: Spa) -> Result<RmpEntry, SocError> {
        if !self.rmp_covered(spa) {
            return Err(SocError::NotCovered(spa));
        }
        Ok(self.with_rmp(spa.0, |r| {
            r.map(|r| r.entry(page_index(spa.0))).unwrap_or_default()
        }))
    }

    /// Firmware: initialise the RMP (SNP_INIT with RMP initialisation): every entry
    /// becomes hypervisor-owned (all zero) and every in-use mark is cleared.
    pub fn fw_rmp_reset(&self) {
        for idx in 0..self.store.regions() {
            if let Some(r) = self.store.region_if_present(idx) {
                let mut g = r.rmp.write();
                *g = None;
            }
        }
    }

    /// Firmware: the number of RMP entries assigned to `asid` (SNP_ACTIVATE refuses an
    /// ASID that still owns pages). Walks every touched region.
    pub fn fw_rmp_count_asid(&self, asid: u32) -> u64 {
        let mut n = 0u64;
        for idx in 0..self.store.regions() {
            if let Some(r) = self.store.region_if_present(idx)
                && let Some(rr) = r.rmp.read().as_deref()
            {
                n += rr.assigned().filter(|(_, e)| e.asid() == asid).count() as u64;
            }
        }
        n
    }

    /// Firmware: overwrite the raw 4 KiB RMP entry of the page holding `spa`.
    pub fn fw_rmp_write(&self, spa: Spa, entry: RmpEntry) -> Result<(), SocError> {
        self.fw_rmp_modify(spa, |e| *e = entry).map(|_| ())
    }

    /// Firmware: atomically read-modify-write the raw 4 KiB RMP entry of the page
    /// holding `spa`; returns the new entry. (The firmware moves pages between its
    /// named states this way: pre-guest → guest-valid, firmware, context, reclaim.)
    pub fn fw_rmp_modify(
        &self,
        spa: Spa,
        f: impl FnOnce(&mut RmpEntry),
    ) -> Result<RmpEntry, SocError> {
        if !self.rmp_covered(spa) {
            return Err(SocError::NotCovered(spa));
        }
        let idx = page_index(spa.0);
        self.with_rmp_mut(spa.0, |r| {
            r.entry_mut(idx).map(|e| {
                f(e);
                *e
            })
        })
        .flatten()
        .ok_or(SocError::NotCovered(spa))
    }

    // ---- guest instructions ----

    /// PVALIDATE: set (validate) or clear (rescind) the Validated bit of a private page.
    ///
    /// `Ok(SUCCESS)`; `Ok(FAIL_UNCHANGED)` if the bit already had that value (CF = 1);
    /// `Ok(FAIL_INPUT)` for misaligned addresses; `Ok(FAIL_PERMISSION)` when not at
    /// VMPL0; `Ok(FAIL_SIZEMISMATCH)` for a 2 MiB request on a 4 KiB RMP entry.
    /// `Err(Npf)` with RMP|SIZEM for a 4 KiB request on a 2 MiB entry, and with RMP for
    /// a page that is not this guest's at this GPA or is immutable.
    pub fn pvalidate(&self, req: &PvalidateReq) -> Result<RmpStatus, Fault> {
        let size = req.size.bytes();
        if !req.gpa.is_aligned(size) || !req.spa.is_aligned(size) {
            return Ok(RmpStatus::FAIL_INPUT);
        }
        if req.vmpl.0 != 0 {
            return Ok(RmpStatus::FAIL_PERMISSION);
        }
        if !self.rmp_covered_span(req.spa.0, size) {
            return Err(npf_rmp(req.gpa, 0));
        }
        let idx = page_index(req.spa.0);
        self.with_rmp_mut(req.spa.0, |r| {
            let a = authoritative(Some(r), req.spa.0);
            Self::owned_check(&a, req.asid, req.gpa, req.spa)?;
            match (a.size, req.size) {
                (PageSize::Size2M, PageSize::Size4K) => return Err(npf_rmp(req.gpa, NPF_SIZEM)),
                (PageSize::Size4K, PageSize::Size2M) => return Ok(RmpStatus::FAIL_SIZEMISMATCH),
                _ => {}
            }
            if a.entry.validated() == req.validate {
                return Ok(RmpStatus::FAIL_UNCHANGED);
            }
            let slot = if a.size == PageSize::Size2M { 0 } else { idx };
            match r.entry_mut(slot) {
                Some(e) => {
                    e.set_validated(req.validate);
                    Ok(RmpStatus::SUCCESS)
                }
                None => Ok(RmpStatus::FAIL_INPUT),
            }
        })
        .unwrap_or(Ok(RmpStatus::FAIL_INPUT))
    }

    /// The ownership part of the guest checks: assigned to `asid`, mapped at `gpa`,
    /// mutable; else #NPF with the RMP bit.
    fn owned_check(a: &Auth, asid: Asid, gpa: Gpa, spa: Spa) -> Result<(), Fault> {
        let e = &a.entry;
        if !e.assigned()
            || e.asid() != asid.0
            || a.expected_gpa(spa.0) != gpa.0 & !(PAGE_SIZE_4K - 1)
            || e.immutable()
        {
            return Err(npf_rmp(gpa, 0));
        }
        Ok(())
    }

    /// RMPADJUST: from VMPL `n`, change the permissions of a VMPL numerically greater
    /// than `n` (never granting more than VMPL `n` holds), and from VMPL0 the VMSA bit.
    ///
    /// `Ok(FAIL_INPUT)` for reserved attribute bits, a target VMPL above 3, an illegal
    /// mask (undefined bits, write without read) or misalignment; `Ok(FAIL_PERMISSION)`
    /// for a target VMPL not above the current one, the VMSA bit from VMPL > 0, or a
    /// mask exceeding the current VMPL's; `Ok(FAIL_SIZEMISMATCH)` for 2 MiB on a 4 KiB
    /// entry; `Err(Npf)` (RMP|SIZEM) for 4 KiB on a 2 MiB entry or (RMP) for a page not
    /// owned at this GPA; `Err(Vc 0x404)` for a page that is not validated.
    pub fn rmpadjust(&self, req: &RmpAdjustReq) -> Result<RmpStatus, Fault> {
        let target = (req.attrs & 0xFF) as u8;
        let perms = ((req.attrs >> 8) & 0xFF) as u8;
        let vmsa = req.attrs & softsev_abi::rmp::RMPADJUST_VMSA_PAGE_BIT != 0;
        let size = req.size.bytes();
        if req.attrs & !0x1_FFFF != 0
            || target > 3
            || perms & !PERM_ALL != 0
            || (perms & PERM_WRITE != 0 && perms & PERM_READ == 0)
            || !req.gpa.is_aligned(size)
            || !req.spa.is_aligned(size)
        {
            return Ok(RmpStatus::FAIL_INPUT);
        }
        if target <= req.vmpl.0 || (vmsa && req.vmpl.0 != 0) {
            return Ok(RmpStatus::FAIL_PERMISSION);
        }
        if !self.rmp_covered_span(req.spa.0, size) {
            return Err(npf_rmp(req.gpa, 0));
        }
        let idx = page_index(req.spa.0);
        self.with_rmp_mut(req.spa.0, |r| {
            let a = authoritative(Some(r), req.spa.0);
            Self::owned_check(&a, req.asid, req.gpa, req.spa)?;
            match (a.size, req.size) {
                (PageSize::Size2M, PageSize::Size4K) => return Err(npf_rmp(req.gpa, NPF_SIZEM)),
                (PageSize::Size4K, PageSize::Size2M) => return Ok(RmpStatus::FAIL_SIZEMISMATCH),
                _ => {}
            }
            if !a.entry.validated() {
                return Err(Fault::Vc {
                    exit_code: VC_NOT_VALIDATED,
                    gpa: req.gpa,
                });
            }
            let mine = a.entry.vmpl_perms(req.vmpl.0).unwrap_or(0);
            if perms & !mine != 0 {
                return Ok(RmpStatus::FAIL_PERMISSION);
            }
            let slot = if a.size == PageSize::Size2M { 0 } else { idx };
            match r.entry_mut(slot) {
                Some(e) => {
                    e.set_vmpl_perms(target, perms);
                    if req.vmpl.0 == 0 {
                        e.set_vmsa(vmsa);
                    }
                    Ok(RmpStatus::SUCCESS)
                }
                None => Ok(RmpStatus::FAIL_INPUT),
            }
        })
        .unwrap_or(Ok(RmpStatus::FAIL_INPUT))
    }

    /// RMPQUERY: the permissions of `target_vmpl` (≥ the caller's VMPL) on a page the
    /// guest owns. `FAIL_INPUT` for a target above 3, `FAIL_PERMISSION` for a more
    /// privileged target; #NPF (RMP) for a page not owned at this GPA.
    pub fn rmpquery(&self, req: &RmpQueryReq) -> Result<(RmpStatus, RmpQuery), Fault> {
        if req.target_vmpl > 3 {
            return Ok((RmpStatus::FAIL_INPUT, RmpQuery::default()));
        }
        if req.target_vmpl < req.vmpl.0 {
            return Ok((RmpStatus::FAIL_PERMISSION, RmpQuery::default()));
        }
        if !self.rmp_covered(req.spa) {
            return Err(npf_rmp(req.gpa, 0));
        }
        let a = self.with_rmp(req.spa.0, |r| authoritative(r, req.spa.0));
        Self::owned_check(&a, req.asid, req.gpa, req.spa)?;
        Ok((
            RmpStatus::SUCCESS,
            RmpQuery {
                perms: a.entry.vmpl_perms(req.target_vmpl).unwrap_or(0),
                vmsa: a.entry.vmsa(),
                size: a.size,
            },
        ))
    }
}
