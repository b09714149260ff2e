//! The legacy SEV / SEV-ES commands of KVM_MEMORY_ENCRYPT_OP (sev-legacy.md §3, §4,
//! §6.2, §7.2–7.3; Linux `arch/x86/kvm/svm/sev.c`: `sev_launch_start` …
//! `sev_receive_finish`), each with KVM's structure, checks, errnos and the
//! length-query protocol: the firmware is called through the PSP driver
//! ([`crate::psp::PspDriver::legacy`]), a firmware failure is `-EIO` with the status in
//! `kvm_sev_cmd.error`, and the lengths the firmware writes back on INVALID_LENGTH
//! reach the caller's structure exactly where KVM copies them.
//!
//! User memory is "pinned" by resolving each page of the VMM range to its physical
//! page ([`crate::UserMemory::page_spa`], allocating untouched pages as a fault
//! would; a page outside any mapping is `-ENOMEM` as a failed `pin_user_pages_fast`).
//! RLIMIT_MEMLOCK accounting is not modelled.

use crate::error::{Errno, KvmError, KvmResult, einval};
use crate::events::Event;
use crate::psp::KernelBuf;
use crate::state::SevState;
use crate::usermem::Hva;
use crate::vm::SoftVm;
use softsev_abi::kvm::{
    KvmSevAttestationReport, KvmSevCmd, KvmSevDbg, KvmSevGuestStatus, KvmSevLaunchMeasure,
    KvmSevLaunchSecret, KvmSevLaunchStart, KvmSevLaunchUpdateData, KvmSevReceiveStart,
    KvmSevReceiveUpdateData, KvmSevReceiveUpdateVmsa, KvmSevSendStart, KvmSevSendUpdateData,
    KvmSevSendUpdateVmsa, VmType,
};
use softsev_abi::sev_buf::*;
use softsev_abi::vmsa::Vmsa;
use softsev_abi::{PAGE_SIZE_4K, Spa};
use std::sync::Arc;
use zerocopy::IntoBytes;

/// `SEV_FW_BLOB_MAX_SIZE`: the largest blob KVM copies to or from the firmware.
pub(crate) const SEV_FW_BLOB_MAX_SIZE: u32 = 0x4000;

/// `DR7_FIXED_1`: the only DR7 bit a VMSA may have set at LAUNCH_UPDATE_VMSA.
const DR7_FIXED_1: u64 = 0x400;

const PAGE_MASK: u64 = !(PAGE_SIZE_4K - 1);

impl SoftVm {
    /// `sev_pin_memory`: the physical pages of `[uaddr, uaddr+len)` in the VMM's
    /// address space. `len` 0 or a wrapping range is `-EINVAL`; an unmapped page
    /// `-ENOMEM`.
    pub(super) fn pin(&self, uaddr: u64, len: u64) -> KvmResult<Vec<Spa>> {
        let end = uaddr.checked_add(len);
        if len == 0 || end.is_none() {
            return einval(format!("pin of {uaddr:#x}+{len:#x}"));
        }
        let first = uaddr & PAGE_MASK;
        let last = (uaddr + len - 1) & PAGE_MASK;
        let user = &self.inner.host.user;
        (0..=(last - first) / PAGE_SIZE_4K)
            .map(|i| {
                user.page_spa(Hva(first + i * PAGE_SIZE_4K)).map_err(|e| {
                    KvmError::new(
                        Errno::ENOMEM,
                        format!("failure locking pages: {}", e.reason),
                    )
                })
            })
            .collect()
    }

    /// `psp_copy_user_blob`: a kernel copy of a user blob; address or length 0, or a
    /// length above [`SEV_FW_BLOB_MAX_SIZE`], is `-EINVAL`.
    fn copy_user_blob(&self, uaddr: u64, len: u32) -> KvmResult<KernelBuf> {
        if uaddr == 0 || len == 0 || len > SEV_FW_BLOB_MAX_SIZE {
            return einval(format!("blob {uaddr:#x}+{len:#x}"));
        }
        let mut v = vec![0u8; len as usize];
        self.inner.host.user.read(Hva(uaddr), &mut v)?;
        KernelBuf::with(&self.inner.host.psp, &v)
    }

    /// A zeroed kernel buffer of `len` bytes (`kzalloc`).
    fn kernel_buf(&self, len: u32) -> KvmResult<KernelBuf> {
        KernelBuf::new(&self.inner.host.psp, len as usize)
    }

    /// Copy a kernel buffer's first `len` bytes out to user memory.
    fn copy_blob_to_user(&self, uaddr: u64, b: &KernelBuf, len: usize) -> KvmResult {
        let mut v = vec![0u8; len];
        b.read(0, &mut v)?;
        self.inner.host.user.write(Hva(uaddr), &v)
    }

    /// `sev_bind_asid`: ACTIVATE `handle` on the VM's ASID.
    fn bind_asid(&self, sev: &SevState, handle: u32) -> KvmResult {
        let mut a = SevActivate {
            handle,
            asid: sev.asid(),
        };
        self.inner.host.psp.legacy(&mut a)?;
        self.inner.log.push(Event::SevContext {
            handle,
            asid: sev.asid(),
            activated: true,
        });
        Ok(())
    }

    /// `sev_decommission`: DECOMMISSION `handle`, errors ignored.
    fn decommission_handle(&self, handle: u32) {
        let mut d = SevDecommission { handle };
        let _ = self.inner.host.psp.legacy(&mut d);
    }

    /// `sev_unbind_asid`: DEACTIVATE then DECOMMISSION `handle` (errors ignored, as at
    /// teardown).
    pub(crate) fn unbind_asid(&self, asid: u32, handle: u32) {
        unbind_asid(&self.inner.host, &self.inner.log, asid, handle);
    }

    /// KVM_SEV_LAUNCH_START: GODH and session copied if given, firmware LAUNCH_START,
    /// ACTIVATE of the VM's ASID (DECOMMISSION when that fails), the handle back to
    /// the caller (DEACTIVATE + DECOMMISSION and `-EFAULT` when that fails).
    pub(super) fn sev_launch_start(&self, sev: &mut SevState, cmd: &KvmSevCmd) -> KvmResult {
        let mut p: KvmSevLaunchStart = self.copy_from_user(cmd.data)?;
        sev.set_policy(p.policy);
        let dh = if p.dh_uaddr != 0 {
            Some(self.copy_user_blob(p.dh_uaddr, p.dh_len)?)
        } else {
            None
        };
        let session = if p.session_uaddr != 0 {
            Some(self.copy_user_blob(p.session_uaddr, p.session_len)?)
        } else {
            None
        };
        let mut start = SevLaunchStart {
            handle: p.handle,
            policy: p.policy,
            ..Default::default()
        };
        if let Some(b) = &dh {
            start.dh_cert_address = b.spa().0;
            start.dh_cert_len = p.dh_len;
        }
        if let Some(b) = &session {
            start.session_address = b.spa().0;
            start.session_len = p.session_len;
        }
        self.inner.host.psp.legacy(&mut start)?;
        let handle = start.handle;
        if let Err(e) = self.bind_asid(sev, handle) {
            self.decommission_handle(handle);
            return Err(e);
        }
        p.handle = handle;
        if let Err(e) = self.copy_to_user(cmd.data, &p) {
            self.unbind_asid(sev.asid(), handle);
            return Err(e);
        }
        sev.set_handle(handle);
        Ok(())
    }

    /// KVM_SEV_LAUNCH_UPDATE_DATA: pin the range, one firmware LAUNCH_UPDATE_DATA per
    /// physically contiguous run (address = page + offset in the first page).
    pub(super) fn sev_launch_update_data(&self, sev: &SevState, cmd: &KvmSevCmd) -> KvmResult {
        let p: KvmSevLaunchUpdateData = self.copy_from_user(cmd.data)?;
        let pages = self.pin(p.uaddr, u64::from(p.len))?;
        let mut vaddr = p.uaddr;
        let vaddr_end = p.uaddr + u64::from(p.len);
        let mut size = u64::from(p.len);
        let mut i = 0usize;
        while vaddr < vaddr_end {
            let offset = vaddr & !PAGE_MASK;
            let n = contiguous_pages(&pages[i..]);
            let len = (n as u64 * PAGE_SIZE_4K - offset).min(size);
            let mut d = SevLaunchUpdateData {
                handle: sev.handle(),
                address: pages[i].0 + offset,
                len: len as u32,
                ..Default::default()
            };
            self.inner.host.psp.legacy(&mut d)?;
            size -= len;
            vaddr += len;
            i += n;
        }
        // `sev_launch_update_data` unpins the pages dirty (§7.2).
        self.mark_dirty_uaddr(p.uaddr, u64::from(p.len));
        Ok(())
    }

    /// KVM_SEV_LAUNCH_UPDATE_VMSA (SEV-ES): for every vCPU in index order, build the
    /// VMSA from its registers (`sev_es_sync_vmsa`), firmware LAUNCH_UPDATE_VMSA of its
    /// page, and mark its state protected.
    pub(super) fn sev_launch_update_vmsa(&self, sev: &SevState) -> KvmResult {
        if !sev.is_es() {
            return Err(KvmError::new(
                Errno::ENOTTY,
                "LAUNCH_UPDATE_VMSA: not SEV-ES",
            ));
        }
        let h = &self.inner.host;
        let vcpus = self.inner.vcpus.lock().clone();
        for v in &vcpus {
            let mut st = v.state();
            let regs = st.stale().unwrap_or(st.regs()).clone();
            let vmsa = sync_vmsa(&regs, sev.vmsa_features(), self.inner.vm_type)?;
            let spa = st.vmsa_spa();
            h.soc
                .host_write(spa, false, vmsa.as_bytes())
                .map_err(|e| KvmError::new(Errno::EFAULT, e.to_string()))?;
            let mut u = SevLaunchUpdateVmsa {
                handle: sev.handle(),
                address: spa.0,
                len: PAGE_SIZE_4K as u32,
                ..Default::default()
            };
            h.psp.legacy(&mut u).map_err(|e| KvmError {
                reason: format!("vCPU {}: {}", v.id(), e.reason),
                ..e
            })?;
            st.protect(vmsa);
        }
        Ok(())
    }

    /// KVM_SEV_LAUNCH_MEASURE: `len` 0 queries the length (the firmware's
    /// INVALID_LENGTH and the 48 it writes back reach the caller with `-EIO`);
    /// otherwise the blob goes through a kernel buffer of `len` (≤ 16 KiB).
    pub(super) fn sev_launch_measure(&self, sev: &SevState, cmd: &KvmSevCmd) -> KvmResult {
        let mut p: KvmSevLaunchMeasure = self.copy_from_user(cmd.data)?;
        let mut d = SevLaunchMeasure::default();
        let mut blob = None;
        if p.len != 0 && p.uaddr != 0 {
            if p.len > SEV_FW_BLOB_MAX_SIZE {
                return einval(format!("LAUNCH_MEASURE length {:#x}", p.len));
            }
            let b = self.kernel_buf(p.len)?;
            d.address = b.spa().0;
            d.len = p.len;
            blob = Some(b);
        }
        d.handle = sev.handle();
        let r = self.inner.host.psp.legacy(&mut d);
        if p.len == 0 {
            p.len = d.len;
            self.copy_to_user(cmd.data, &p)?;
            return r;
        }
        r?;
        let mut ret = Ok(());
        if let Some(b) = &blob
            && self.copy_blob_to_user(p.uaddr, b, p.len as usize).is_err()
        {
            ret = Err(KvmError::new(Errno::EFAULT, "LAUNCH_MEASURE blob copy-out"));
        }
        p.len = d.len;
        if self.copy_to_user(cmd.data, &p).is_err() {
            ret = Err(KvmError::new(Errno::EFAULT, "LAUNCH_MEASURE copy-out"));
        }
        ret
    }

    /// KVM_SEV_LAUNCH_SECRET: the guest range pinned and physically contiguous
    /// (`-EINVAL` otherwise), transport buffer and header copied in.
    pub(super) fn sev_launch_secret(&self, sev: &SevState, cmd: &KvmSevCmd) -> KvmResult {
        let p: KvmSevLaunchSecret = self.copy_from_user(cmd.data)?;
        let pages = self.pin(p.guest_uaddr, u64::from(p.guest_len))?;
        if contiguous_pages(&pages) != pages.len() {
            return einval("LAUNCH_SECRET: the guest range is not physically contiguous");
        }
        let offset = p.guest_uaddr & !PAGE_MASK;
        let trans = self.copy_user_blob(p.trans_uaddr, p.trans_len)?;
        let hdr = self.copy_user_blob(p.hdr_uaddr, p.hdr_len)?;
        let mut d = SevLaunchSecret {
            handle: sev.handle(),
            hdr_address: hdr.spa().0,
            hdr_len: p.hdr_len,
            guest_address: pages[0].0 + offset,
            guest_len: p.guest_len,
            trans_address: trans.spa().0,
            trans_len: p.trans_len,
            ..Default::default()
        };
        self.inner.host.psp.legacy(&mut d)?;
        // `sev_launch_secret` unpins the guest range dirty.
        self.mark_dirty_uaddr(p.guest_uaddr, u64::from(p.guest_len));
        Ok(())
    }

    /// KVM_SEV_LAUNCH_FINISH.
    pub(super) fn sev_launch_finish(&self, sev: &SevState) -> KvmResult {
        let mut d = SevLaunchFinish {
            handle: sev.handle(),
        };
        self.inner.host.psp.legacy(&mut d)
    }

    /// KVM_SEV_GUEST_STATUS: handle, policy and the firmware's guest state byte.
    pub(super) fn sev_guest_status(&self, sev: &SevState, cmd: &KvmSevCmd) -> KvmResult {
        let mut d = SevGuestStatus {
            handle: sev.handle(),
            ..Default::default()
        };
        self.inner.host.psp.legacy(&mut d)?;
        let p = KvmSevGuestStatus {
            handle: d.handle,
            policy: d.policy,
            state: u32::from(d.state),
        };
        self.copy_to_user(cmd.data, &p)
    }

    /// KVM_SEV_GET_ATTESTATION_REPORT: the length-query protocol as LAUNCH_MEASURE;
    /// the mnonce is passed only in the real call.
    pub(super) fn sev_get_attestation_report(&self, sev: &SevState, cmd: &KvmSevCmd) -> KvmResult {
        let mut p: KvmSevAttestationReport = self.copy_from_user(cmd.data)?;
        let mut d = SevAttestation::default();
        let mut blob = None;
        if p.len != 0 && p.uaddr != 0 {
            if p.len > SEV_FW_BLOB_MAX_SIZE {
                return einval(format!("attestation report length {:#x}", p.len));
            }
            let b = self.kernel_buf(p.len)?;
            d.address = b.spa().0;
            d.len = p.len;
            d.mnonce = p.mnonce;
            blob = Some(b);
        }
        d.handle = sev.handle();
        let r = self.inner.host.psp.legacy(&mut d);
        if p.len == 0 {
            p.len = d.len;
            self.copy_to_user(cmd.data, &p)?;
            return r;
        }
        r?;
        let mut ret = Ok(());
        if let Some(b) = &blob
            && self.copy_blob_to_user(p.uaddr, b, p.len as usize).is_err()
        {
            ret = Err(KvmError::new(Errno::EFAULT, "report copy-out"));
        }
        p.len = d.len;
        if self.copy_to_user(cmd.data, &p).is_err() {
            ret = Err(KvmError::new(Errno::EFAULT, "report struct copy-out"));
        }
        ret
    }

    /// KVM_SEV_DBG_DECRYPT / DBG_ENCRYPT (`sev_dbg_crypt`, sev-legacy.md §6.2): one
    /// step per source page, each pinning one source and one destination page; the
    /// firmware's 16-byte alignment is met with KVM's bounce pages (decrypt) and
    /// read-modify-write (encrypt).
    pub(super) fn sev_dbg_crypt(&self, sev: &SevState, cmd: &KvmSevCmd, dec: bool) -> KvmResult {
        let p: KvmSevDbg = self.copy_from_user(cmd.data)?;
        if p.len == 0 || p.src_uaddr.checked_add(u64::from(p.len)).is_none() {
            return einval(format!("DBG of {:#x}+{:#x}", p.src_uaddr, p.len));
        }
        if p.dst_uaddr == 0 {
            return einval("DBG without a destination");
        }
        let mut vaddr = p.src_uaddr;
        let vaddr_end = vaddr + u64::from(p.len);
        let mut dst_vaddr = p.dst_uaddr;
        let mut size = u64::from(p.len);
        while vaddr < vaddr_end {
            let src = self.pin(vaddr & PAGE_MASK, PAGE_SIZE_4K)?[0];
            let dst = self.pin(dst_vaddr & PAGE_MASK, PAGE_SIZE_4K)?[0];
            let s_off = vaddr & !PAGE_MASK;
            let d_off = dst_vaddr & !PAGE_MASK;
            let len = (PAGE_SIZE_4K - s_off).min(size);
            if dec {
                self.dbg_decrypt_user(sev, src.0 + s_off, Hva(dst_vaddr), dst.0 + d_off, len)?;
            } else {
                self.dbg_encrypt_user(
                    sev,
                    src.0 + s_off,
                    Hva(vaddr),
                    dst.0 + d_off,
                    Hva(dst_vaddr),
                    len,
                )?;
                // `sev_dbg_crypt` unpins the destination page dirty.
                self.mark_dirty_uaddr(dst_vaddr, len);
            }
            vaddr += len;
            dst_vaddr += len;
            size -= len;
        }
        Ok(())
    }

    /// `__sev_issue_dbg_cmd`.
    fn dbg_cmd(&self, sev: &SevState, src: u64, dst: u64, len: u64, enc: bool) -> KvmResult {
        let h = &self.inner.host.psp;
        if enc {
            let mut d = SevDbgEncrypt {
                handle: sev.handle(),
                src_addr: src,
                dst_addr: dst,
                len: len as u32,
                ..Default::default()
            };
            h.legacy(&mut d)
        } else {
            let mut d = SevDbgDecrypt {
                handle: sev.handle(),
                src_addr: src,
                dst_addr: dst,
                len: len as u32,
                ..Default::default()
            };
            h.legacy(&mut d)
        }
    }

    /// `__sev_dbg_decrypt`: the source rounded down to 16 bytes and the size up.
    fn dbg_decrypt(&self, sev: &SevState, src: u64, dst: u64, size: u64) -> KvmResult {
        let offset = src & 15;
        let src = src & !15;
        let size = (size + offset).next_multiple_of(16);
        self.dbg_cmd(sev, src, dst, size, false)
    }

    /// `__sev_dbg_decrypt_user`: straight into the destination page when everything
    /// is 16-aligned, else into a zeroed bounce page and copied out from the source's
    /// offset in its 16-byte block.
    fn dbg_decrypt_user(
        &self,
        sev: &SevState,
        paddr: u64,
        dst_uaddr: Hva,
        dst_paddr: u64,
        size: u64,
    ) -> KvmResult {
        let bounce = if !dst_paddr.is_multiple_of(16)
            || !paddr.is_multiple_of(16)
            || !size.is_multiple_of(16)
        {
            Some(self.kernel_buf(PAGE_SIZE_4K as u32)?)
        } else {
            None
        };
        let target = bounce.as_ref().map_or(dst_paddr, |b| b.spa().0);
        self.dbg_decrypt(sev, paddr, target, size)?;
        if let Some(b) = &bounce {
            let mut v = vec![0u8; size as usize];
            b.read((paddr & 15) as usize, &mut v)?;
            self.inner.host.user.write(dst_uaddr, &v)?;
        }
        Ok(())
    }

    /// `__sev_dbg_encrypt_user`: an unaligned source is copied to a bounce page; an
    /// unaligned destination or size is read-modify-write — the destination's
    /// 16-byte blocks decrypted into a bounce page, patched, and encrypted back. As in
    /// KVM, the write-back covers `round_up(size, 16)` bytes from the destination
    /// rounded down to 16, which for a destination offset with `offset + size`
    /// beyond that leaves the last bytes unwritten.
    fn dbg_encrypt_user(
        &self,
        sev: &SevState,
        mut paddr: u64,
        vaddr: Hva,
        mut dst_paddr: u64,
        dst_vaddr: Hva,
        size: u64,
    ) -> KvmResult {
        let mut len = size;
        let user = &self.inner.host.user;
        let src_bounce = if !vaddr.0.is_multiple_of(16) {
            let mut v = vec![0u8; size as usize];
            user.read(vaddr, &mut v)?;
            let b = KernelBuf::with(&self.inner.host.psp, &v)?;
            paddr = b.spa().0;
            Some(b)
        } else {
            None
        };
        let mut dst_bounce = None;
        if !dst_vaddr.0.is_multiple_of(16) || !size.is_multiple_of(16) {
            let b = self.kernel_buf(PAGE_SIZE_4K as u32)?;
            self.dbg_decrypt(sev, dst_paddr, b.spa().0, size)?;
            let dst_offset = (dst_paddr & 15) as usize;
            let mut v = vec![0u8; size as usize];
            match &src_bounce {
                Some(s) => s.read(0, &mut v)?,
                None => user.read(vaddr, &mut v)?,
            }
            b.write(dst_offset, &v)?;
            paddr = b.spa().0;
            dst_paddr &= !15;
            len = size.next_multiple_of(16);
            dst_bounce = Some(b);
        }
        let r = self.dbg_cmd(sev, paddr, dst_paddr, len, true);
        drop(dst_bounce);
        drop(src_bounce);
        r
    }

    /// KVM_SEV_SEND_START (issue 13 implements migration in the firmware; until then
    /// the firmware refuses the command and this returns what KVM returns then).
    pub(super) fn sev_send_start(&self, sev: &SevState, cmd: &KvmSevCmd) -> KvmResult {
        let mut p: KvmSevSendStart = self.copy_from_user(cmd.data)?;
        let mut d = SevSendStart {
            handle: sev.handle(),
            ..Default::default()
        };
        if p.session_len == 0 {
            // `__sev_send_start_query_session_length`.
            let r = self.inner.host.psp.legacy(&mut d);
            p.session_len = d.session_len;
            self.copy_to_user(cmd.data, &p)?;
            return r;
        }
        if p.pdh_cert_uaddr == 0
            || p.pdh_cert_len == 0
            || p.session_uaddr == 0
            || p.session_len > SEV_FW_BLOB_MAX_SIZE
        {
            return einval("SEND_START: PDH and session are required");
        }
        let session = self.kernel_buf(p.session_len)?;
        let pdh = self.copy_user_blob(p.pdh_cert_uaddr, p.pdh_cert_len)?;
        let plat = self.copy_user_blob(p.plat_certs_uaddr, p.plat_certs_len)?;
        let amd = self.copy_user_blob(p.amd_certs_uaddr, p.amd_certs_len)?;
        d.pdh_cert_address = pdh.spa().0;
        d.pdh_cert_len = p.pdh_cert_len;
        d.plat_certs_address = plat.spa().0;
        d.plat_certs_len = p.plat_certs_len;
        d.amd_certs_address = amd.spa().0;
        d.amd_certs_len = p.amd_certs_len;
        d.session_address = session.spa().0;
        d.session_len = p.session_len;
        let r = self.inner.host.psp.legacy(&mut d);
        let mut ret = r;
        if ret.is_ok()
            && self
                .copy_blob_to_user(p.session_uaddr, &session, p.session_len as usize)
                .is_err()
        {
            ret = Err(KvmError::new(Errno::EFAULT, "SEND_START session copy-out"));
        }
        p.policy = d.policy;
        p.session_len = d.session_len;
        if self.copy_to_user(cmd.data, &p).is_err() {
            ret = Err(KvmError::new(Errno::EFAULT, "SEND_START copy-out"));
        }
        ret
    }

    /// KVM_SEV_SEND_UPDATE_DATA: `hdr_len` or `trans_len` 0 queries both lengths; else
    /// one guest page at most (no crossing), the guest address with the C-bit set.
    pub(super) fn sev_send_update_data(&self, sev: &SevState, cmd: &KvmSevCmd) -> KvmResult {
        let mut p: KvmSevSendUpdateData = self.copy_from_user(cmd.data)?;
        let mut d = SevSendUpdateData {
            handle: sev.handle(),
            ..Default::default()
        };
        if p.trans_len == 0 || p.hdr_len == 0 {
            let r = self.inner.host.psp.legacy(&mut d);
            p.hdr_len = d.hdr_len;
            p.trans_len = d.trans_len;
            self.copy_to_user(cmd.data, &p)?;
            return r;
        }
        if p.trans_uaddr == 0 || p.guest_uaddr == 0 || p.guest_len == 0 || p.hdr_uaddr == 0 {
            return einval("SEND_UPDATE_DATA: addresses and lengths are required");
        }
        let offset = p.guest_uaddr & !PAGE_MASK;
        if u64::from(p.guest_len) > PAGE_SIZE_4K || u64::from(p.guest_len) + offset > PAGE_SIZE_4K {
            return einval("SEND_UPDATE_DATA: the guest range crosses a page");
        }
        let page = self.pin(p.guest_uaddr & PAGE_MASK, PAGE_SIZE_4K)?[0];
        let hdr = self.kernel_buf(p.hdr_len)?;
        let trans = self.kernel_buf(p.trans_len)?;
        d.hdr_address = hdr.spa().0;
        d.hdr_len = p.hdr_len;
        d.trans_address = trans.spa().0;
        d.trans_len = p.trans_len;
        d.guest_address = (page.0 + offset) | self.me_mask();
        d.guest_len = p.guest_len;
        self.inner.host.psp.legacy(&mut d)?;
        self.copy_blob_to_user(p.trans_uaddr, &trans, p.trans_len as usize)
            .map_err(|_| KvmError::new(Errno::EFAULT, "SEND_UPDATE_DATA copy-out"))?;
        self.copy_blob_to_user(p.hdr_uaddr, &hdr, p.hdr_len as usize)
            .map_err(|_| KvmError::new(Errno::EFAULT, "SEND_UPDATE_DATA copy-out"))
    }

    /// KVM_SEV_RECEIVE_START: PDH and session required; firmware RECEIVE_START, then
    /// ACTIVATE as LAUNCH_START.
    pub(super) fn sev_receive_start(&self, sev: &mut SevState, cmd: &KvmSevCmd) -> KvmResult {
        let mut p: KvmSevReceiveStart = self.copy_from_user(cmd.data)?;
        if p.pdh_uaddr == 0 || p.pdh_len == 0 || p.session_uaddr == 0 || p.session_len == 0 {
            return einval("RECEIVE_START: PDH and session are required");
        }
        let pdh = self.copy_user_blob(p.pdh_uaddr, p.pdh_len)?;
        let session = self.copy_user_blob(p.session_uaddr, p.session_len)?;
        let mut start = SevReceiveStart {
            handle: p.handle,
            policy: p.policy,
            pdh_cert_address: pdh.spa().0,
            pdh_cert_len: p.pdh_len,
            session_address: session.spa().0,
            session_len: p.session_len,
            ..Default::default()
        };
        self.inner.host.psp.legacy(&mut start)?;
        let handle = start.handle;
        if let Err(e) = self.bind_asid(sev, handle) {
            self.decommission_handle(handle);
            return Err(e);
        }
        p.handle = handle;
        if let Err(e) = self.copy_to_user(cmd.data, &p) {
            self.unbind_asid(sev.asid(), handle);
            return Err(e);
        }
        sev.set_handle(handle);
        Ok(())
    }

    /// KVM_SEV_RECEIVE_UPDATE_DATA: every field required, one guest page, pinned for
    /// writing, the guest address with the C-bit set.
    pub(super) fn sev_receive_update_data(&self, sev: &SevState, cmd: &KvmSevCmd) -> KvmResult {
        let p: KvmSevReceiveUpdateData = self.copy_from_user(cmd.data)?;
        if p.hdr_uaddr == 0
            || p.hdr_len == 0
            || p.guest_uaddr == 0
            || p.guest_len == 0
            || p.trans_uaddr == 0
            || p.trans_len == 0
        {
            return einval("RECEIVE_UPDATE_DATA: every field is required");
        }
        let offset = p.guest_uaddr & !PAGE_MASK;
        if u64::from(p.guest_len) > PAGE_SIZE_4K || u64::from(p.guest_len) + offset > PAGE_SIZE_4K {
            return einval("RECEIVE_UPDATE_DATA: the guest range crosses a page");
        }
        let hdr = self.copy_user_blob(p.hdr_uaddr, p.hdr_len)?;
        let trans = self.copy_user_blob(p.trans_uaddr, p.trans_len)?;
        let page = self.pin(p.guest_uaddr & PAGE_MASK, PAGE_SIZE_4K)?[0];
        let mut d = SevReceiveUpdateData {
            handle: sev.handle(),
            hdr_address: hdr.spa().0,
            hdr_len: p.hdr_len,
            guest_address: (page.0 + offset) | self.me_mask(),
            guest_len: p.guest_len,
            trans_address: trans.spa().0,
            trans_len: p.trans_len,
            ..Default::default()
        };
        self.inner.host.psp.legacy(&mut d)?;
        // `sev_receive_update_data` unpins with `sev_unpin_memory(.., dirty)`: the
        // page KVM wrote for the guest is dirty.
        self.mark_dirty_uaddr(p.guest_uaddr, u64::from(p.guest_len));
        Ok(())
    }

    /// The vCPU `id` of this VM (`kvm_get_vcpu_by_id`), `-EINVAL` if none.
    fn vcpu_by_id(&self, id: u32, what: &str) -> KvmResult<Arc<crate::state::VcpuShared>> {
        self.inner
            .vcpus
            .lock()
            .iter()
            .find(|v| v.id() == id)
            .cloned()
            .ok_or_else(|| KvmError::inval(format!("{what}: no vCPU {id}")))
    }

    /// KVM_SEV_SEND_UPDATE_VMSA, a softsev extension modelled on the out-of-tree SEV-ES
    /// migration series (Hygon CSV2, deepin-community/kernel `arch/x86/kvm/svm/csv.c`
    /// `csv_send_update_vmsa`): not SEV-ES → `-ENOTTY`; `trans_len` or `hdr_len` 0 is
    /// the length query (firmware SEND_UPDATE_VMSA with only the handle, both lengths
    /// written back); a missing address or unknown vCPU → `-EINVAL`; the firmware
    /// reads the vCPU's VMSA page (address with the C-bit, 4096 bytes) and the packet
    /// goes to the caller. The page holds the registers of the vCPU's last #VMEXIT.
    pub(super) fn sev_send_update_vmsa(&self, sev: &SevState, cmd: &KvmSevCmd) -> KvmResult {
        if !sev.is_es() {
            return Err(KvmError::new(Errno::ENOTTY, "SEND_UPDATE_VMSA: not SEV-ES"));
        }
        let mut p: KvmSevSendUpdateVmsa = self.copy_from_user(cmd.data)?;
        let mut d = SevSendUpdateVmsa {
            handle: sev.handle(),
            ..Default::default()
        };
        if p.trans_len == 0 || p.hdr_len == 0 {
            let r = self.inner.host.psp.legacy(&mut d);
            p.hdr_len = d.hdr_len;
            p.trans_len = d.trans_len;
            self.copy_to_user(cmd.data, &p)?;
            return r;
        }
        if p.trans_uaddr == 0 || p.hdr_uaddr == 0 {
            return einval("SEND_UPDATE_VMSA: addresses are required");
        }
        let vcpu = self.vcpu_by_id(p.vcpu_id, "SEND_UPDATE_VMSA")?;
        let spa = vcpu.state().vmsa_spa();
        let hdr = self.kernel_buf(p.hdr_len)?;
        let trans = self.kernel_buf(p.trans_len)?;
        d.hdr_address = hdr.spa().0;
        d.hdr_len = p.hdr_len;
        d.trans_address = trans.spa().0;
        d.trans_len = p.trans_len;
        d.guest_address = spa.0 | self.me_mask();
        d.guest_len = PAGE_SIZE_4K as u32;
        self.inner.host.psp.legacy(&mut d)?;
        self.copy_blob_to_user(p.trans_uaddr, &trans, p.trans_len as usize)
            .map_err(|_| KvmError::new(Errno::EFAULT, "SEND_UPDATE_VMSA copy-out"))?;
        self.copy_blob_to_user(p.hdr_uaddr, &hdr, p.hdr_len as usize)
            .map_err(|_| KvmError::new(Errno::EFAULT, "SEND_UPDATE_VMSA copy-out"))
    }

    /// KVM_SEV_RECEIVE_UPDATE_VMSA, the extension's other half (`csv_receive_update_vmsa`):
    /// not SEV-ES → `-ENOTTY`; header and transport required, unknown vCPU → `-EINVAL`;
    /// the firmware decrypts the packet into the vCPU's VMSA page; on success the
    /// vCPU's state is protected and its register file is loaded from that page at
    /// its next KVM_RUN (VMRUN).
    pub(super) fn sev_receive_update_vmsa(&self, sev: &SevState, cmd: &KvmSevCmd) -> KvmResult {
        if !sev.is_es() {
            return Err(KvmError::new(
                Errno::ENOTTY,
                "RECEIVE_UPDATE_VMSA: not SEV-ES",
            ));
        }
        let p: KvmSevReceiveUpdateVmsa = self.copy_from_user(cmd.data)?;
        if p.hdr_uaddr == 0 || p.hdr_len == 0 || p.trans_uaddr == 0 || p.trans_len == 0 {
            return einval("RECEIVE_UPDATE_VMSA: header and transport are required");
        }
        let vcpu = self.vcpu_by_id(p.vcpu_id, "RECEIVE_UPDATE_VMSA")?;
        let hdr = self.copy_user_blob(p.hdr_uaddr, p.hdr_len)?;
        let trans = self.copy_user_blob(p.trans_uaddr, p.trans_len)?;
        let spa = vcpu.state().vmsa_spa();
        let mut d = SevReceiveUpdateVmsa {
            handle: sev.handle(),
            hdr_address: hdr.spa().0,
            hdr_len: p.hdr_len,
            guest_address: spa.0 | self.me_mask(),
            guest_len: PAGE_SIZE_4K as u32,
            trans_address: trans.spa().0,
            trans_len: p.trans_len,
            ..Default::default()
        };
        self.inner.host.psp.legacy(&mut d)?;
        vcpu.state().received_vmsa();
        Ok(())
    }

    /// SEND_FINISH, SEND_CANCEL, RECEIVE_FINISH: the handle only.
    pub(super) fn sev_handle_only(&self, sev: &SevState, which: HandleOnly) -> KvmResult {
        let handle = sev.handle();
        let psp = &self.inner.host.psp;
        match which {
            HandleOnly::SendFinish => psp.legacy(&mut SevSendFinish { handle }),
            HandleOnly::SendCancel => psp.legacy(&mut SevSendCancel { handle }),
            HandleOnly::ReceiveFinish => psp.legacy(&mut SevReceiveFinish { handle }),
        }
    }

    /// `sev_me_mask`: the C-bit as a physical-address bit.
    fn me_mask(&self) -> u64 {
        1u64 << self.inner.host.params.cbit
    }
}

/// `sev_unbind_asid` (also at VM teardown, `sev_vm_destroy`): DEACTIVATE then
/// DECOMMISSION, errors ignored.
pub(crate) fn unbind_asid(h: &crate::SoftHost, log: &crate::EventLog, asid: u32, handle: u32) {
    if handle == 0 {
        return;
    }
    let _ = h.psp.legacy(&mut SevDeactivate { handle });
    let _ = h.psp.legacy(&mut SevDecommission { handle });
    log.push(Event::SevContext {
        handle,
        asid,
        activated: false,
    });
}

/// The commands that pass only the handle.
#[derive(Debug, Clone, Copy)]
pub(super) enum HandleOnly {
    SendFinish,
    SendCancel,
    ReceiveFinish,
}

/// `get_num_contig_pages`: how many pages from the first are physically consecutive.
fn contiguous_pages(pages: &[Spa]) -> usize {
    let mut n = 1;
    while n < pages.len() && pages[n].0 == pages[n - 1].0 + PAGE_SIZE_4K {
        n += 1;
    }
    n.min(pages.len())
}

/// `sev_es_sync_vmsa`: the VMSA KVM encrypts for a vCPU — its registers with the VM's
/// SEV_FEATURES; DR7 may hold only the fixed bit 10 (`-EINVAL`). The x87/SSE/AVX
/// state is written only for the VM types made by INIT2 (2–4); a KVM_X86_DEFAULT_VM
/// made SEV-ES by ES_INIT leaves it zero "to avoid breaking older measurements"
/// (sev-legacy.md §8.1: MXCSR at 0x408, FCW at 0x410 then differ).
pub(crate) fn sync_vmsa(regs: &Vmsa, vmsa_features: u64, vm_type: VmType) -> KvmResult<Vmsa> {
    if regs.dr7 & !DR7_FIXED_1 != 0 {
        return einval(format!(
            "DR7 {:#x} has bits other than DR7_FIXED_1",
            regs.dr7
        ));
    }
    let mut v = regs.clone();
    v.sev_features = vmsa_features;
    if vm_type == VmType::DEFAULT {
        v.x87_dp = 0;
        v.mxcsr = 0;
        v.x87_ftw = 0;
        v.x87_fsw = 0;
        v.x87_fcw = 0;
        v.x87_fop = 0;
        v.x87_ds = 0;
        v.x87_cs = 0;
        v.x87_rip = 0;
        v.fpreg_x87 = [0; 80];
        v.fpreg_xmm = [0; 256];
        v.fpreg_ymm = [0; 256];
    } else {
        v.x87_ds = 0;
        v.x87_cs = 0;
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_runs() {
        let p = |a: &[u64]| a.iter().map(|x| Spa(*x)).collect::<Vec<_>>();
        assert_eq!(contiguous_pages(&p(&[0x1000, 0x2000, 0x3000, 0x9000])), 3);
        assert_eq!(contiguous_pages(&p(&[0x1000, 0x3000])), 1);
        assert_eq!(contiguous_pages(&p(&[0x5000])), 1);
    }

    #[test]
    fn es_init_vmsa_leaves_the_fpu_zero_init2_keeps_it() {
        let mut r = Vmsa::zeroed();
        r.mxcsr = 0x1F80;
        r.x87_fcw = 0x37F;
        r.x87_cs = 8;
        r.dr7 = 0x400;
        let es = sync_vmsa(&r, 0, VmType::DEFAULT).unwrap();
        let i2 = sync_vmsa(&r, 0x20, VmType::SEV_ES).unwrap();
        assert_eq!((es.mxcsr, es.x87_fcw), (0, 0));
        assert_eq!((i2.mxcsr, i2.x87_fcw, i2.x87_cs), (0x1F80, 0x37F, 0));
        assert_eq!(i2.sev_features, 0x20);
        let diff: Vec<usize> = es
            .as_bytes()
            .iter()
            .zip(i2.as_bytes())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, _)| i)
            .collect();
        // SEV_FEATURES (0x3B0) aside, exactly MXCSR 0x408..0x409 and FCW 0x410..0x411.
        assert_eq!(diff, vec![0x3B0, 0x408, 0x409, 0x410, 0x411]);
        r.dr7 = 0x401;
        assert_eq!(
            sync_vmsa(&r, 0, VmType::SEV_ES).unwrap_err().errno,
            Errno::EINVAL
        );
    }
}
