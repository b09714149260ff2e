//! The backend seam: what a VMM needs from a hypervisor for a confidential guest,
//! as object-safe traits (shared/spec/host-interfaces.md §1–3; the shape of
//! cloud-hypervisor's `hypervisor` crate, with kvm-ioctls' two layers for
//! `KVM_MEMORY_ENCRYPT_OP`: the raw ioctl and typed SEV commands over it).
//!
//! - [`Hypervisor`] is `/dev/kvm`: VM creation, capabilities, device attributes.
//! - [`Vm`] is a VM file descriptor: memslots with guest_memfd, memory attributes,
//!   conversion and pre-faulting, `KVM_MEMORY_ENCRYPT_OP` (raw, [`Vm::memory_encrypt_op`],
//!   and per command, [`Vm::sev_init2`] … [`Vm::snp_launch_finish`]), vCPU creation.
//! - [`Vcpu`] is a vCPU file descriptor: CPUID, register (VMSA) state, `KVM_RUN`.
//! - [`VmmMemory`] is the VMM's own address space, where user pointers handed to the
//!   hypervisor point (vm-memory's `GuestMemory` idea, seen from the VMM): command
//!   structures and guest images are staged there.
//!
//! The software backend implements them for [`SoftHost`], [`SoftVm`], [`SoftVcpu`] and
//! [`UserMemory`]; what only a simulator can do is in [`crate::SoftPlatformExt`].

// Through the crate root's re-exports only, so the modules behind them can move.
use crate::{
    CpuidEntry, Errno, Hva, KvmError, KvmResult, SoftHost, SoftVcpu, SoftVm, UserMemory, VcpuExit,
};
use softsev_abi::kvm::{
    KvmCap, KvmCreateGuestMemfd, KvmDirtyLog, KvmMemoryAttributes, KvmSevAttestationReport,
    KvmSevCmd, KvmSevDbg, KvmSevGuestStatus, KvmSevInit, KvmSevLaunchMeasure, KvmSevLaunchSecret,
    KvmSevLaunchStart, KvmSevLaunchUpdateData, KvmSevReceiveStart, KvmSevReceiveUpdateData,
    KvmSevReceiveUpdateVmsa, KvmSevSendStart, KvmSevSendUpdateData, KvmSevSendUpdateVmsa,
    KvmSevSnpLaunchFinish, KvmSevSnpLaunchStart, KvmSevSnpLaunchUpdate, KvmUserspaceMemoryRegion2,
    SevCmdId, VmType,
};
use softsev_abi::vmsa::Vmsa;
use softsev_abi::{FwStatus, Gpa};
use std::any::Any;
use std::fmt::Debug;
use std::sync::Arc;
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// The VMM's address space: anonymous mappings at host virtual addresses.
pub trait VmmMemory: Send + Sync + Debug {
    /// `mmap(MAP_ANONYMOUS)` of `len` zeroed bytes (rounded up to 4 KiB).
    fn mmap(&self, len: u64) -> KvmResult<Hva>;
    /// `munmap` of the mapping that starts at `hva`.
    fn munmap(&self, hva: Hva) -> KvmResult;
    /// Copy `data` to `hva`; `-EFAULT` outside a mapping.
    fn write(&self, hva: Hva, data: &[u8]) -> KvmResult;
    /// Copy from `hva` into `buf`; `-EFAULT` outside a mapping.
    fn read(&self, hva: Hva, buf: &mut [u8]) -> KvmResult;
    /// `madvise(MADV_DONTNEED)`: the pages of `[hva, hva+len)` read as zero again.
    fn discard(&self, hva: Hva, len: u64) -> KvmResult;
    /// mincore(2): per 4 KiB page of `[hva, hva+len)` (`hva` page aligned), whether
    /// it has been touched (has a physical page); `-ENOMEM` for an unmapped range.
    fn mincore(&self, hva: Hva, len: u64) -> KvmResult<Vec<bool>>;
}

/// `/dev/kvm`: creates VMs and answers capability queries.
pub trait Hypervisor: Send + Sync + Debug {
    /// The concrete backend, for its extension traits.
    fn as_any(&self) -> &dyn Any;
    /// KVM_CREATE_VM.
    fn create_vm(&self, vm_type: VmType) -> KvmResult<Arc<dyn Vm>>;
    /// KVM_CHECK_EXTENSION.
    fn check_extension(&self, cap: KvmCap) -> u64;
    /// KVM_GET_DEVICE_ATTR (e.g. `KVM_X86_GRP_SEV` / `KVM_X86_SNP_POLICY_BITS`).
    fn get_device_attr(&self, group: u32, attr: u64) -> KvmResult<u64>;
    /// The address space user pointers given to this hypervisor resolve in.
    fn vmm_memory(&self) -> Arc<dyn VmmMemory>;
}

/// What a guest range becomes in [`Vm::convert_memory`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// PRIVATE attribute; the shared backing is discarded. With `prefault`, the private
    /// pages are prepared at once (KVM_PRE_FAULT_MEMORY).
    ToPrivate {
        /// Prepare the private pages now rather than on first access.
        prefault: bool,
    },
    /// Shared; the private backing is released (guest_memfd hole punch).
    ToShared,
}

/// A VM file descriptor.
pub trait Vm: Send + Sync + Debug {
    /// The concrete backend, for its extension traits.
    fn as_any(&self) -> &dyn Any;
    /// The VM type it was created with.
    fn vm_type(&self) -> VmType;
    /// The address space this VM's user pointers (memslots, command data) resolve in.
    fn vmm_memory(&self) -> Arc<dyn VmmMemory>;
    /// KVM_CHECK_EXTENSION on the VM.
    fn check_extension(&self, cap: KvmCap) -> u64;
    /// KVM_ENABLE_CAP.
    fn enable_cap(&self, cap: KvmCap, arg0: u64) -> KvmResult;
    /// KVM_CREATE_GUEST_MEMFD: the new fd.
    fn create_guest_memfd(&self, args: &KvmCreateGuestMemfd) -> KvmResult<u32>;
    /// KVM_SET_USER_MEMORY_REGION2.
    fn set_user_memory_region2(&self, r: &KvmUserspaceMemoryRegion2) -> KvmResult;
    /// KVM_SET_MEMORY_ATTRIBUTES.
    fn set_memory_attributes(&self, a: &KvmMemoryAttributes) -> KvmResult;
    /// KVM_GET_DIRTY_LOG: the slot's dirty bitmap written to `log.dirty_bitmap` (one
    /// bit per 4 KiB page, LSB first, u64 words) and cleared; `-ENOENT` for a slot
    /// without `KVM_MEM_LOG_DIRTY_PAGES`.
    fn get_dirty_log(&self, log: &KvmDirtyLog) -> KvmResult;
    /// `fallocate(PUNCH_HOLE)` on a guest_memfd.
    fn gmem_punch_hole(&self, fd: u32, offset: u64, len: u64) -> KvmResult;
    /// KVM_PRE_FAULT_MEMORY of `[gpa, gpa+size)`.
    fn pre_fault_memory(&self, gpa: Gpa, size: u64) -> KvmResult;
    /// What QEMU's `kvm_convert_memory` does on a page-state change or a memory-fault
    /// exit: set the attribute, then drop the backing that is no longer used.
    fn convert_memory(&self, gpa: Gpa, size: u64, to: Conversion) -> KvmResult;
    /// KVM_MEMORY_ENCRYPT_OP, raw: `cmd.data` is a user address in
    /// [`Vm::vmm_memory`], `cmd.error` receives the firmware status.
    fn memory_encrypt_op(&self, cmd: &mut KvmSevCmd) -> KvmResult;
    /// KVM_CREATE_VCPU.
    fn create_vcpu(&self, id: u32) -> KvmResult<Box<dyn Vcpu>>;
    /// KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM: take over `source`'s encryption context
    /// (intra-host migration); `-EBADF` if `source` is not a VM of this backend.
    fn move_enc_context_from(&self, source: &dyn Vm) -> KvmResult;
    /// KVM_CAP_VM_COPY_ENC_CONTEXT_FROM: become a mirror of `source`'s context;
    /// `-EBADF` if `source` is not a VM of this backend.
    fn copy_enc_context_from(&self, source: &dyn Vm) -> KvmResult;

    /// `KVM_SEV_INIT2`.
    fn sev_init2(&self, init: &KvmSevInit) -> KvmResult {
        let mut init = *init;
        encrypt_op_staged(self, SevCmdId::INIT2, &mut init)
    }
    /// `KVM_SEV_SNP_ENABLE_REQ_CERTS`: extended guest requests exit to the VMM for
    /// their certificates ([`VcpuExit::SnpReqCerts`]).
    fn snp_enable_req_certs(&self) -> KvmResult {
        encrypt_op_staged(self, SevCmdId::SNP_ENABLE_REQ_CERTS, &mut [0u8; 8])
    }
    /// `KVM_SEV_SNP_LAUNCH_START`.
    fn snp_launch_start(&self, start: &KvmSevSnpLaunchStart) -> KvmResult {
        let mut start = *start;
        encrypt_op_staged(self, SevCmdId::SNP_LAUNCH_START, &mut start)
    }
    /// One `KVM_SEV_SNP_LAUNCH_UPDATE` call: `update` gets the unprocessed remainder
    /// KVM wrote back (the caller repeats while `len > 0`).
    fn snp_launch_update(&self, update: &mut KvmSevSnpLaunchUpdate) -> KvmResult {
        encrypt_op_staged(self, SevCmdId::SNP_LAUNCH_UPDATE, update)
    }
    /// `KVM_SEV_SNP_LAUNCH_FINISH` (the ID block and auth pages, if enabled, are already
    /// in VMM memory at the addresses `finish` names).
    fn snp_launch_finish(&self, finish: &KvmSevSnpLaunchFinish) -> KvmResult {
        let mut finish = *finish;
        encrypt_op_staged(self, SevCmdId::SNP_LAUNCH_FINISH, &mut finish)
    }

    /// `KVM_SEV_INIT` (deprecated, KVM_X86_DEFAULT_VM only): an SEV guest.
    fn sev_init(&self) -> KvmResult {
        encrypt_op_staged(self, SevCmdId::INIT, &mut [0u8; 8])
    }
    /// `KVM_SEV_ES_INIT` (deprecated, KVM_X86_DEFAULT_VM only): an SEV-ES guest with
    /// GHCB version 1 and, unlike INIT2, no x87/SSE state in its VMSAs.
    fn sev_es_init(&self) -> KvmResult {
        encrypt_op_staged(self, SevCmdId::ES_INIT, &mut [0u8; 8])
    }
    /// `KVM_SEV_LAUNCH_START`: `start.handle` receives the new handle (the GODH and
    /// session, if any, are already in VMM memory at the addresses `start` names).
    fn sev_launch_start(&self, start: &mut KvmSevLaunchStart) -> KvmResult {
        encrypt_op_staged(self, SevCmdId::LAUNCH_START, start)
    }
    /// `KVM_SEV_LAUNCH_UPDATE_DATA` of VMM memory (encrypted in place).
    fn sev_launch_update_data(&self, update: &KvmSevLaunchUpdateData) -> KvmResult {
        let mut update = *update;
        encrypt_op_staged(self, SevCmdId::LAUNCH_UPDATE_DATA, &mut update)
    }
    /// `KVM_SEV_LAUNCH_UPDATE_VMSA` (SEV-ES): every vCPU's VMSA encrypted and measured.
    fn sev_launch_update_vmsa(&self) -> KvmResult {
        encrypt_op_staged(self, SevCmdId::LAUNCH_UPDATE_VMSA, &mut [0u8; 8])
    }
    /// `KVM_SEV_LAUNCH_MEASURE`: `len` 0 queries the length (`-EIO`, firmware status
    /// INVALID_LENGTH, `len` written back).
    fn sev_launch_measure(&self, measure: &mut KvmSevLaunchMeasure) -> KvmResult {
        encrypt_op_staged(self, SevCmdId::LAUNCH_MEASURE, measure)
    }
    /// `KVM_SEV_LAUNCH_SECRET`.
    fn sev_launch_secret(&self, secret: &KvmSevLaunchSecret) -> KvmResult {
        let mut secret = *secret;
        encrypt_op_staged(self, SevCmdId::LAUNCH_SECRET, &mut secret)
    }
    /// `KVM_SEV_LAUNCH_FINISH`.
    fn sev_launch_finish(&self) -> KvmResult {
        encrypt_op_staged(self, SevCmdId::LAUNCH_FINISH, &mut [0u8; 8])
    }
    /// `KVM_SEV_GUEST_STATUS`.
    fn sev_guest_status(&self) -> KvmResult<KvmSevGuestStatus> {
        let mut st = KvmSevGuestStatus::default();
        encrypt_op_staged(self, SevCmdId::GUEST_STATUS, &mut st)?;
        Ok(st)
    }
    /// `KVM_SEV_DBG_DECRYPT`: guest memory at `src_uaddr` (the VMM's mapping of it)
    /// decrypted to `dst_uaddr`.
    fn sev_dbg_decrypt(&self, dbg: &KvmSevDbg) -> KvmResult {
        let mut dbg = *dbg;
        encrypt_op_staged(self, SevCmdId::DBG_DECRYPT, &mut dbg)
    }
    /// `KVM_SEV_DBG_ENCRYPT`: plaintext at `src_uaddr` encrypted into guest memory at
    /// `dst_uaddr`.
    fn sev_dbg_encrypt(&self, dbg: &KvmSevDbg) -> KvmResult {
        let mut dbg = *dbg;
        encrypt_op_staged(self, SevCmdId::DBG_ENCRYPT, &mut dbg)
    }
    /// `KVM_SEV_GET_ATTESTATION_REPORT`: `len` 0 queries the length, as LAUNCH_MEASURE.
    fn sev_get_attestation_report(&self, report: &mut KvmSevAttestationReport) -> KvmResult {
        encrypt_op_staged(self, SevCmdId::GET_ATTESTATION_REPORT, report)
    }
    /// `KVM_SEV_SEND_START`: `session_len` 0 queries the session length (`-EIO`,
    /// INVALID_LENGTH, 128 written back); else the session and the policy come back.
    fn sev_send_start(&self, start: &mut KvmSevSendStart) -> KvmResult {
        encrypt_op_staged(self, SevCmdId::SEND_START, start)
    }
    /// `KVM_SEV_SEND_UPDATE_DATA`: `hdr_len` or `trans_len` 0 queries the lengths.
    fn sev_send_update_data(&self, update: &mut KvmSevSendUpdateData) -> KvmResult {
        encrypt_op_staged(self, SevCmdId::SEND_UPDATE_DATA, update)
    }
    /// `KVM_SEV_SEND_UPDATE_VMSA` (softsev extension, [`crate::ModuleParams::sev_es_migration`]).
    fn sev_send_update_vmsa(&self, update: &mut KvmSevSendUpdateVmsa) -> KvmResult {
        encrypt_op_staged(self, SevCmdId::SEND_UPDATE_VMSA, update)
    }
    /// `KVM_SEV_SEND_FINISH`.
    fn sev_send_finish(&self) -> KvmResult {
        encrypt_op_staged(self, SevCmdId::SEND_FINISH, &mut [0u8; 8])
    }
    /// `KVM_SEV_SEND_CANCEL`.
    fn sev_send_cancel(&self) -> KvmResult {
        encrypt_op_staged(self, SevCmdId::SEND_CANCEL, &mut [0u8; 8])
    }
    /// `KVM_SEV_RECEIVE_START`: `start.handle` receives the new handle.
    fn sev_receive_start(&self, start: &mut KvmSevReceiveStart) -> KvmResult {
        encrypt_op_staged(self, SevCmdId::RECEIVE_START, start)
    }
    /// `KVM_SEV_RECEIVE_UPDATE_DATA`.
    fn sev_receive_update_data(&self, update: &KvmSevReceiveUpdateData) -> KvmResult {
        let mut update = *update;
        encrypt_op_staged(self, SevCmdId::RECEIVE_UPDATE_DATA, &mut update)
    }
    /// `KVM_SEV_RECEIVE_UPDATE_VMSA` (softsev extension, as SEND_UPDATE_VMSA).
    fn sev_receive_update_vmsa(&self, update: &KvmSevReceiveUpdateVmsa) -> KvmResult {
        let mut update = *update;
        encrypt_op_staged(self, SevCmdId::RECEIVE_UPDATE_VMSA, &mut update)
    }
    /// `KVM_SEV_RECEIVE_FINISH`.
    fn sev_receive_finish(&self) -> KvmResult {
        encrypt_op_staged(self, SevCmdId::RECEIVE_FINISH, &mut [0u8; 8])
    }
}

/// A vCPU file descriptor.
pub trait Vcpu: Send + Debug {
    /// The concrete backend, for its extension traits.
    fn as_any(&self) -> &dyn Any;
    /// The concrete backend, mutably.
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// The vCPU id (APIC id).
    fn id(&self) -> u32;
    /// KVM_SET_CPUID2.
    fn set_cpuid(&self, entries: &[CpuidEntry]) -> KvmResult;
    /// The register state the launch measures (KVM_SET_REGS/SREGS/XSAVE as one VMSA
    /// image); refused once the state is protected.
    fn set_vmsa_state(&self, vmsa: &Vmsa) -> KvmResult;
    /// The register state (KVM_GET_REGS/SREGS/XSAVE as one VMSA image); refused once
    /// the state is protected on VM types with protected state (SEV-ES, SNP).
    fn vmsa_state(&self) -> KvmResult<Vmsa>;
    /// KVM_RUN: the exit, writable for the VMM's answer before the next run.
    fn run(&mut self) -> KvmResult<&mut VcpuExit>;
}

/// `KVM_MEMORY_ENCRYPT_OP` of command `id` with `data` staged in the VM's VMM memory:
/// the structure is copied to a fresh mapping, the ioctl runs, and `data` receives
/// what KVM copied back. A firmware status in `kvm_sev_cmd.error` is folded into the
/// error's [`KvmError::fw`], so it is reported once.
pub fn encrypt_op_staged<V, T>(vm: &V, id: SevCmdId, data: &mut T) -> KvmResult
where
    V: Vm + ?Sized,
    T: IntoBytes + FromBytes + Immutable,
{
    let mem = vm.vmm_memory();
    let hva = mem.mmap(std::mem::size_of::<T>().max(1) as u64)?;
    let staged = mem.write(hva, data.as_bytes()).and_then(|()| {
        let mut cmd = KvmSevCmd {
            id: id.0,
            data: hva.0,
            sev_fd: 3,
            ..Default::default()
        };
        let r = vm.memory_encrypt_op(&mut cmd).map_err(|mut e| {
            if e.fw.is_none() && cmd.error != 0 {
                e.fw = Some(FwStatus(cmd.error));
            }
            e
        });
        let back = mem.read(hva, data.as_mut_bytes());
        r.and(back)
    });
    let unmapped = mem.munmap(hva);
    staged.and(unmapped)
}

// ---- the software backend ----

impl VmmMemory for UserMemory {
    fn mmap(&self, len: u64) -> KvmResult<Hva> {
        UserMemory::mmap(self, len)
    }
    fn munmap(&self, hva: Hva) -> KvmResult {
        UserMemory::munmap(self, hva)
    }
    fn write(&self, hva: Hva, data: &[u8]) -> KvmResult {
        UserMemory::write(self, hva, data)
    }
    fn read(&self, hva: Hva, buf: &mut [u8]) -> KvmResult {
        UserMemory::read(self, hva, buf)
    }
    fn discard(&self, hva: Hva, len: u64) -> KvmResult {
        UserMemory::discard(self, hva, len)
    }
    fn mincore(&self, hva: Hva, len: u64) -> KvmResult<Vec<bool>> {
        UserMemory::mincore(self, hva, len)
    }
}

impl Hypervisor for Arc<SoftHost> {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn create_vm(&self, vm_type: VmType) -> KvmResult<Arc<dyn Vm>> {
        Ok(Arc::new(SoftHost::create_vm(self, vm_type)?))
    }
    fn check_extension(&self, cap: KvmCap) -> u64 {
        SoftHost::check_extension(self, cap)
    }
    fn get_device_attr(&self, group: u32, attr: u64) -> KvmResult<u64> {
        SoftHost::get_device_attr(self, group, attr)
    }
    fn vmm_memory(&self) -> Arc<dyn VmmMemory> {
        self.user().clone()
    }
}

impl Vm for SoftVm {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn vm_type(&self) -> VmType {
        SoftVm::vm_type(self)
    }
    fn vmm_memory(&self) -> Arc<dyn VmmMemory> {
        self.host().user().clone()
    }
    fn check_extension(&self, cap: KvmCap) -> u64 {
        SoftVm::check_extension(self, cap)
    }
    fn enable_cap(&self, cap: KvmCap, arg0: u64) -> KvmResult {
        SoftVm::enable_cap(self, cap, arg0)
    }
    fn create_guest_memfd(&self, args: &KvmCreateGuestMemfd) -> KvmResult<u32> {
        SoftVm::create_guest_memfd(self, args)
    }
    fn set_user_memory_region2(&self, r: &KvmUserspaceMemoryRegion2) -> KvmResult {
        SoftVm::set_user_memory_region2(self, r)
    }
    fn set_memory_attributes(&self, a: &KvmMemoryAttributes) -> KvmResult {
        SoftVm::set_memory_attributes(self, a)
    }
    fn get_dirty_log(&self, log: &KvmDirtyLog) -> KvmResult {
        SoftVm::get_dirty_log(self, log)
    }
    fn gmem_punch_hole(&self, fd: u32, offset: u64, len: u64) -> KvmResult {
        SoftVm::gmem_punch_hole(self, fd, offset, len)
    }
    fn pre_fault_memory(&self, gpa: Gpa, size: u64) -> KvmResult {
        SoftVm::pre_fault_memory(self, gpa, size)
    }
    fn convert_memory(&self, gpa: Gpa, size: u64, to: Conversion) -> KvmResult {
        match to {
            Conversion::ToPrivate { prefault } => SoftVm::convert_memory(
                self,
                gpa,
                size,
                crate::MemAttr::Private,
                if prefault {
                    crate::Prefault::Now
                } else {
                    crate::Prefault::OnAccess
                },
            ),
            Conversion::ToShared => SoftVm::convert_memory(
                self,
                gpa,
                size,
                crate::MemAttr::Shared,
                crate::Prefault::OnAccess,
            ),
        }
    }
    fn memory_encrypt_op(&self, cmd: &mut KvmSevCmd) -> KvmResult {
        SoftVm::memory_encrypt_op(self, cmd)
    }
    fn create_vcpu(&self, id: u32) -> KvmResult<Box<dyn Vcpu>> {
        Ok(Box::new(SoftVm::create_vcpu(self, id)?))
    }
    fn move_enc_context_from(&self, source: &dyn Vm) -> KvmResult {
        SoftVm::move_enc_context_from(self, soft_source(source)?)
    }
    fn copy_enc_context_from(&self, source: &dyn Vm) -> KvmResult {
        SoftVm::copy_enc_context_from(self, soft_source(source)?)
    }
}

/// The source VM of a context move/copy: a file descriptor that is not a VM of this
/// backend is EBADF, as for a non-VM fd.
fn soft_source(source: &dyn Vm) -> KvmResult<&SoftVm> {
    source.as_any().downcast_ref().ok_or_else(|| {
        KvmError::new(
            Errno::EBADF,
            "the source is not a VM of the software backend",
        )
    })
}

impl Vcpu for SoftVcpu {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn id(&self) -> u32 {
        SoftVcpu::id(self)
    }
    fn set_cpuid(&self, entries: &[CpuidEntry]) -> KvmResult {
        SoftVcpu::set_cpuid(self, entries);
        Ok(())
    }
    fn set_vmsa_state(&self, vmsa: &Vmsa) -> KvmResult {
        SoftVcpu::set_vmsa_state(self, vmsa)
    }
    fn vmsa_state(&self) -> KvmResult<Vmsa> {
        SoftVcpu::get_vmsa_state(self)
    }
    fn run(&mut self) -> KvmResult<&mut VcpuExit> {
        SoftVcpu::run(self)
    }
}
