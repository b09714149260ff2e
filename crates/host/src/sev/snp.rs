//! The SNP launch commands of KVM_MEMORY_ENCRYPT_OP (snp-launch.md §1.3–1.5; Linux
//! `snp_launch_start`, `snp_launch_update`, `snp_launch_finish`): the guest context,
//! populating private memory through the firmware, measuring the VMSAs, and the
//! certificate opt-in of extended guest requests.

use crate::error::{Errno, KvmError, KvmResult, einval};
use crate::platform::SNP_POLICY_RSVD_MBO;
use crate::psp::rmp_ok;
use crate::state::{SevState, SnpState, VcpuShared};
use crate::usermem::Hva;
use crate::vm::SoftVm;
use softsev_abi::fw_buf::{
    SnpActivate, SnpLaunchFinish, SnpLaunchStart, SnpLaunchUpdate, SnpPaddr,
};
use softsev_abi::kvm::{
    KVM_SEV_SNP_ID_AUTH_SIZE, KVM_SEV_SNP_ID_BLOCK_SIZE, KvmSevCmd, KvmSevSnpLaunchFinish,
    KvmSevSnpLaunchStart, KvmSevSnpLaunchUpdate,
};
use softsev_abi::page_info::{PageType, VMSA_GPA};
use softsev_abi::rmp::RmpUpdateInput;
use softsev_abi::{FwCmd, FwStatus, Gfn, PAGE_SIZE_4K, PageSize, Spa};
use std::sync::Arc;
use zerocopy::IntoBytes;

impl SoftVm {
    /// KVM_SEV_SNP_LAUNCH_START: a guest context page (SNP_GCTX_CREATE), SNP_LAUNCH_START
    /// with the policy, SNP_ACTIVATE of the ASID; decommissioned again on failure.
    pub(super) fn snp_launch_start(&self, sev: &mut SevState, cmd: &KvmSevCmd) -> KvmResult {
        let h = &self.inner.host;
        let asid = sev.asid();
        let Some(snp) = sev.snp_mut() else {
            return Err(KvmError::new(Errno::ENOTTY, "not an SNP guest"));
        };
        if snp.context().is_some() {
            return einval("SNP_LAUNCH_START already issued");
        }
        let p: KvmSevSnpLaunchStart = self.copy_from_user(cmd.data)?;
        if p.policy & SNP_POLICY_RSVD_MBO == 0 {
            return einval(format!(
                "policy {:#x} lacks the must-be-one bit 17",
                p.policy
            ));
        }
        if p.policy & !h.snp_policy_bits() != 0 {
            return einval(format!(
                "policy {:#x} has bits outside {:#x}",
                p.policy,
                h.snp_policy_bits()
            ));
        }
        if p.flags != 0 {
            return einval(format!("flags {:#x} must be 0", p.flags));
        }
        let gctx = h.alloc_page()?;
        h.psp.make_firmware_page(gctx)?;
        let mut c = SnpPaddr { paddr: gctx.0 };
        if let Err(s) = h.psp.issue(FwCmd::SNP_GCTX_CREATE, &mut c) {
            let _ = h.psp.reclaim_page(gctx, PageSize::Size4K);
            h.alloc.free_4k(gctx);
            return Err(KvmError::new(
                Errno::ENOTTY,
                format!("SNP_GCTX_CREATE failed: {s:?}"),
            ));
        }
        snp.start(gctx, p.policy);
        let mut start = SnpLaunchStart {
            gctx_paddr: gctx.0,
            policy: p.policy,
            ma_gctx_paddr: 0,
            flags: 0,
            desired_tsc_freq: 0,
            gosvw: p.gosvw,
        };
        let r = h
            .psp
            .issue(FwCmd::SNP_LAUNCH_START, &mut start)
            .map_err(|s| KvmError::fw(s, "SNP_LAUNCH_START"))
            .and_then(|()| {
                let mut a = SnpActivate {
                    gctx_paddr: gctx.0,
                    asid,
                    pad: 0,
                };
                h.psp
                    .issue(FwCmd::SNP_ACTIVATE, &mut a)
                    .map_err(|s| KvmError::fw(s, "SNP_ACTIVATE"))
            });
        if r.is_err() {
            self.decommission(snp);
        }
        r
    }

    /// SNP_DECOMMISSION and reclaim of the context page.
    fn decommission(&self, snp: &mut SnpState) {
        let h = &self.inner.host;
        if let Some(gctx) = snp.take_context() {
            let mut c = SnpPaddr { paddr: gctx.0 };
            if h.psp.issue(FwCmd::SNP_DECOMMISSION, &mut c).is_ok()
                && h.psp.reclaim_page(gctx, PageSize::Size4K).is_ok()
            {
                h.alloc.free_4k(gctx);
            }
        }
    }

    /// KVM_SEV_SNP_ENABLE_REQ_CERTS: extended guest requests exit to the VMM for the
    /// certificates (before any vCPU exists).
    pub(super) fn snp_enable_req_certs(&self, sev: &mut SevState) -> KvmResult {
        let Some(snp) = sev.snp_mut() else {
            return Err(KvmError::new(Errno::ENOTTY, "not an SNP guest"));
        };
        if !self.inner.vcpus.lock().is_empty() {
            return einval("SNP_ENABLE_REQ_CERTS after vCPUs were created");
        }
        snp.enable_req_certs();
        Ok(())
    }

    /// KVM_SEV_SNP_LAUNCH_UPDATE: populate private GFNs from VMM memory
    /// (`kvm_gmem_populate`), one SNP_LAUNCH_UPDATE per page, returning the progress in
    /// the command structure.
    pub(super) fn snp_launch_update(&self, sev: &SevState, cmd: &KvmSevCmd) -> KvmResult {
        let h = &self.inner.host;
        let Some(gctx) = sev.snp_context() else {
            return einval("SNP_LAUNCH_UPDATE without SNP_LAUNCH_START");
        };
        let mut p: KvmSevSnpLaunchUpdate = self.copy_from_user(cmd.data)?;
        let ty = PageType(p.page_type);
        let type_ok = matches!(
            ty,
            PageType::NORMAL
                | PageType::ZERO
                | PageType::UNMEASURED
                | PageType::SECRETS
                | PageType::CPUID
        );
        if p.len == 0 || !p.len.is_multiple_of(PAGE_SIZE_4K) || p.flags != 0 || !type_ok {
            return einval(format!(
                "len {:#x}, flags {:#x}, type {} must be non-zero page multiple, 0, one of 1/3/4/5/6",
                p.len, p.flags, p.page_type
            ));
        }
        let src = (ty != PageType::ZERO).then_some(p.uaddr);
        if src.is_some_and(|u| !u.is_multiple_of(PAGE_SIZE_4K)) {
            return einval(format!("uaddr {:#x} not page aligned", p.uaddr));
        }
        let npages = p.len / PAGE_SIZE_4K;
        let (slot_end, can_private) = {
            let m = self.inner.mem.lock();
            match m.slot_of(p.gfn_start) {
                Some(s) => (s.base_gfn + s.npages, s.gmem.is_some()),
                None => (0, false),
            }
        };
        if !can_private {
            return einval(format!(
                "GFN {:#x} is not in a guest_memfd memslot",
                p.gfn_start
            ));
        }
        let mut todo = npages.min(slot_end - p.gfn_start);
        if let Some(b) = h.params.launch_update_batch {
            todo = todo.min(b.max(1));
        }
        let mut done = 0u64;
        let mut failure: Option<KvmError> = None;
        while done < todo {
            let gfn = p.gfn_start + done;
            match self.populate_one(
                sev.asid(),
                gctx,
                gfn,
                ty,
                src.map(|u| u + done * PAGE_SIZE_4K),
            ) {
                Ok(()) => done += 1,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if done == 0
            && let Some(e) = failure
        {
            // kvm_gmem_populate failed on its first page: the ioctl returns -EIO and
            // `error` carries the firmware status (0 for a KVM-side check).
            return Err(KvmError {
                errno: Errno::EIO,
                fw: e.fw.or(Some(FwStatus::SUCCESS)),
                reason: format!("SNP_LAUNCH_UPDATE of GFN {:#x}: {}", p.gfn_start, e.reason),
            });
        }
        p.gfn_start += done;
        p.len -= done * PAGE_SIZE_4K;
        if ty != PageType::ZERO {
            p.uaddr += done * PAGE_SIZE_4K;
        }
        self.copy_to_user(cmd.data, &p)
    }

    fn populate_one(
        &self,
        asid: u32,
        gctx: Spa,
        gfn: u64,
        ty: PageType,
        src: Option<u64>,
    ) -> KvmResult {
        let h = &self.inner.host;
        let spa = {
            let mut m = self.inner.mem.lock();
            if !m.private.contains(Gfn(gfn)) {
                return einval(format!("GFN {gfn:#x} is not private"));
            }
            m.gmem_spa(h, gfn)?
        };
        let (e, _) = h
            .soc
            .rmp_lookup(spa)
            .map_err(|e| KvmError::inval(e.to_string()))?;
        if e.assigned() {
            return einval(format!(
                "the page {spa} of GFN {gfn:#x} is already assigned in the RMP"
            ));
        }
        let mut page = [0u8; PAGE_SIZE_4K as usize];
        if let Some(u) = src {
            h.user.read(Hva(u), &mut page)?;
        }
        h.soc
            .host_write(spa, false, &page)
            .map_err(|e| KvmError::new(Errno::EFAULT, e.to_string()))?;
        let st = h.soc.rmpupdate(
            spa,
            &RmpUpdateInput {
                gpa: gfn * PAGE_SIZE_4K,
                assigned: 1,
                immutable: 1,
                asid,
                ..Default::default()
            },
        );
        rmp_ok(st, spa, "to pre-guest")?;
        let mut u = SnpLaunchUpdate {
            gctx_paddr: gctx.0,
            page_flags: SnpLaunchUpdate::flags(false, ty.0, false),
            reserved: 0,
            page_paddr: spa.0,
            vmpl_perms: 0,
            reserved2: 0,
        };
        if let Err(s) = h.psp.issue(FwCmd::SNP_LAUNCH_UPDATE, &mut u) {
            if h.psp.reclaim_page(spa, PageSize::Size4K).is_ok()
                && ty == PageType::CPUID
                && s == FwStatus::INVALID_PARAM
                && let Some(u) = src
            {
                let mut fixed = [0u8; PAGE_SIZE_4K as usize];
                if h.soc.host_read(spa, false, &mut fixed).is_ok() {
                    let _ = h.user.write(Hva(u), &fixed);
                }
            }
            return Err(KvmError::fw(
                s,
                format!("SNP_LAUNCH_UPDATE of GFN {gfn:#x}"),
            ));
        }
        Ok(())
    }

    /// KVM_SEV_SNP_LAUNCH_FINISH: measure every vCPU's VMSA (in vCPU order), then
    /// SNP_LAUNCH_FINISH with the ID block and authentication key staged in firmware-
    /// readable pages.
    pub(super) fn snp_launch_finish(&self, sev: &mut SevState, cmd: &KvmSevCmd) -> KvmResult {
        let h = &self.inner.host;
        let (asid, vmsa_features) = (sev.asid(), sev.vmsa_features());
        let Some(snp) = sev.snp_mut() else {
            return Err(KvmError::new(Errno::ENOTTY, "not an SNP guest"));
        };
        let Some(gctx) = snp.context() else {
            return einval("SNP_LAUNCH_FINISH without SNP_LAUNCH_START");
        };
        let p: KvmSevSnpLaunchFinish = self.copy_from_user(cmd.data)?;
        if p.flags != 0 {
            return einval(format!("flags {:#x} must be 0", p.flags));
        }
        // Measure every vCPU's VMSA, in vCPU index order.
        let vcpus: Vec<Arc<VcpuShared>> = self.inner.vcpus.lock().clone();
        for v in &vcpus {
            let mut c = v.state();
            if c.protected() {
                continue;
            }
            let mut regs = c.regs().clone();
            regs.sev_features = vmsa_features;
            let spa = c.vmsa_spa();
            h.soc
                .host_write(spa, false, regs.as_bytes())
                .map_err(|e| KvmError::new(Errno::EFAULT, e.to_string()))?;
            let st = h.soc.rmpupdate(
                spa,
                &RmpUpdateInput {
                    gpa: VMSA_GPA,
                    assigned: 1,
                    immutable: 1,
                    asid,
                    ..Default::default()
                },
            );
            rmp_ok(st, spa, "VMSA to pre-guest")?;
            let mut u = SnpLaunchUpdate {
                gctx_paddr: gctx.0,
                page_flags: SnpLaunchUpdate::flags(false, PageType::VMSA.0, false),
                reserved: 0,
                page_paddr: spa.0,
                vmpl_perms: 0,
                reserved2: 0,
            };
            if let Err(s) = h.psp.issue(FwCmd::SNP_LAUNCH_UPDATE, &mut u) {
                let _ = h.psp.reclaim_page(spa, PageSize::Size4K);
                return Err(KvmError::fw(
                    s,
                    format!("SNP_LAUNCH_UPDATE of the VMSA of vCPU {}", v.id()),
                ));
            }
            c.protect(regs);
        }
        let mut f = SnpLaunchFinish {
            gctx_paddr: gctx.0,
            id_block_paddr: 0,
            id_auth_paddr: 0,
            flags: 0,
            host_data: p.host_data,
        };
        let mut pages = Vec::new();
        if p.id_block_en != 0 {
            let mut blk = vec![0u8; KVM_SEV_SNP_ID_BLOCK_SIZE];
            h.user.read(Hva(p.id_block_uaddr), &mut blk)?;
            let mut auth = vec![0u8; KVM_SEV_SNP_ID_AUTH_SIZE];
            h.user.read(Hva(p.id_auth_uaddr), &mut auth)?;
            let bp = h.alloc_page()?;
            let ap = h.alloc_page()?;
            pages.push(bp);
            pages.push(ap);
            for (spa, d) in [(bp, &blk), (ap, &auth)] {
                h.soc
                    .host_write(spa, false, d)
                    .map_err(|e| KvmError::new(Errno::EFAULT, e.to_string()))?;
            }
            f.id_block_paddr = bp.0;
            f.id_auth_paddr = ap.0;
            f.flags |= SnpLaunchFinish::ID_BLOCK_EN;
            if p.auth_key_en != 0 {
                f.flags |= SnpLaunchFinish::AUTH_KEY_EN;
            }
        }
        if p.vcek_disabled != 0 {
            f.flags |= SnpLaunchFinish::VCEK_DIS;
        }
        let r = h.psp.issue(FwCmd::SNP_LAUNCH_FINISH, &mut f);
        for pg in pages {
            h.alloc.free_4k(pg);
        }
        r.map_err(|s| KvmError::fw(s, "SNP_LAUNCH_FINISH"))?;
        snp.finish();
        Ok(())
    }
}
