//! The KVM-shaped host of softsev: what Linux KVM does for SEV / SEV-ES / SEV-SNP guests
//! (`arch/x86/kvm/svm/sev.c`), with an API shaped like KVM's uAPI so a VMM written
//! against it ports to `/dev/kvm` (shared/spec/host-interfaces.md §1–3,
//! snp-launch.md §1.3–1.5).
//!
//! - [`SoftHost`]: `/dev/kvm` — module parameters ([`ModuleParams`]), VM types,
//!   capabilities, device attributes, ASID allocation and recycling (WBINVD +
//!   SNP_DF_FLUSH), the PSP-driver path to the firmware, the VMM address space
//!   ([`UserMemory`]) and a physical page allocator.
//! - [`SoftVm`]: a VM — memslots with shared VMM memory and private guest_memfd
//!   memory, KVM_SET_MEMORY_ATTRIBUTES, the gmem prepare/invalidate hooks (RMPUPDATE to
//!   guest-owned and back), and KVM_MEMORY_ENCRYPT_OP (INIT2, SNP_LAUNCH_START/UPDATE/
//!   FINISH, ENABLE_REQ_CERTS) with KVM's checks and errnos.
//! - [`SoftVcpu`]: KVM_RUN and its exits ([`VcpuExit`]); VMGEXIT handling (GHCB MSR
//!   protocol and NAE events) happens inside, as in KVM. Guest code runs through
//!   [`GuestCpu`], which is the guest model's `GuestPlatform`.
//!
//! Inside, the modules follow Linux's split: `vm` (the VM object and memory ioctls,
//! `kvm_main.c`), `sev` (KVM_MEMORY_ENCRYPT_OP: INIT, the SNP launch, context
//! move/mirror, `svm/sev.c`), `ghcb` (VMGEXIT: MSR protocol, NAE events, page state
//! changes, AP creation, guest requests), `psp` (the PSP driver, `ccp/sev-dev.c`), with
//! the per-VM and per-vCPU state as a leaf (`state`: [`SevState`], [`SevMode`]).
//! - [`Hypervisor`], [`Vm`], [`Vcpu`]: the traits a VMM programs against; the
//!   software platform is one backend.
//! - [`EventLog`]: every exit and decision, also emitted with `tracing`.

#![forbid(unsafe_code)]

mod alloc;
mod error;
mod events;
#[doc(hidden)]
pub mod fuzz;
mod ghcb;
mod guest;
mod mem;
mod platform;
mod psp;
mod sev;
mod state;
mod usermem;
mod vcpu;
mod vm;

pub use alloc::PhysAlloc;
pub use error::{Errno, KvmError, KvmResult};
pub use events::{Event, EventLog};
pub use guest::{GuestCpu, GuestEnd, GuestFn};
pub use mem::{GmemBinding, Mapping, Memslot};
pub use platform::{
    AsidClass, AsidCounts, AsidRange, KVM_SNP_POLICY_MASK, ModuleParams, SNP_POLICY_RSVD_MBO,
    SoftHost,
};
pub use softsev_guest::GuestFault;
pub use state::{
    ApState, ContextRole, CpuidEntry, GuestRequestPages, SevMode, SevState, SnpLaunch, SnpState,
};
pub use usermem::{Hva, USER_BASE, UserMemory};
pub use vcpu::{SoftVcpu, VcpuExit};
pub use vm::{
    Backing, GHCB_VERSION_DEFAULT, GHCB_VERSION_MAX, GfnState, MemAttr, Prefault, RmpState, SoftVm,
};

use softsev_abi::kvm::{
    KvmCap, KvmCreateGuestMemfd, KvmMemoryAttributes, KvmSevCmd, KvmUserspaceMemoryRegion2, VmType,
};
use std::sync::Arc;

/// `/dev/kvm`: creates VMs and answers capability queries.
pub trait Hypervisor {
    /// The VM type of this backend.
    type Vm: Vm;
    /// KVM_CREATE_VM.
    fn create_vm(&self, vm_type: VmType) -> KvmResult<Self::Vm>;
    /// KVM_CHECK_EXTENSION.
    fn check_extension(&self, cap: KvmCap) -> u64;
    /// KVM_GET_DEVICE_ATTR.
    fn get_device_attr(&self, group: u32, attr: u64) -> KvmResult<u64>;
}

/// A VM file descriptor.
pub trait Vm {
    /// The vCPU type of this backend.
    type Vcpu: Vcpu;
    /// KVM_MEMORY_ENCRYPT_OP.
    fn memory_encrypt_op(&self, cmd: &mut KvmSevCmd) -> KvmResult;
    /// KVM_CREATE_GUEST_MEMFD.
    fn create_guest_memfd(&self, args: &KvmCreateGuestMemfd) -> KvmResult<u32>;
    /// KVM_SET_USER_MEMORY_REGION2.
    fn set_user_memory_region2(&self, r: &KvmUserspaceMemoryRegion2) -> KvmResult;
    /// KVM_SET_MEMORY_ATTRIBUTES.
    fn set_memory_attributes(&self, a: &KvmMemoryAttributes) -> KvmResult;
    /// KVM_ENABLE_CAP.
    fn enable_cap(&self, cap: KvmCap, arg0: u64) -> KvmResult;
    /// KVM_CREATE_VCPU.
    fn create_vcpu(&self, id: u32) -> KvmResult<Self::Vcpu>;
}

/// A vCPU file descriptor.
pub trait Vcpu {
    /// KVM_RUN: the exit, writable for the VMM's answer.
    fn run(&mut self) -> KvmResult<&mut VcpuExit>;
}

impl Hypervisor for Arc<SoftHost> {
    type Vm = SoftVm;
    fn create_vm(&self, vm_type: VmType) -> KvmResult<SoftVm> {
        SoftHost::create_vm(self, vm_type)
    }
    fn check_extension(&self, cap: KvmCap) -> u64 {
        SoftHost::check_extension(self, cap)
    }
    fn get_device_attr(&self, group: u32, attr: u64) -> KvmResult<u64> {
        SoftHost::get_device_attr(self, group, attr)
    }
}

impl Vm for SoftVm {
    type Vcpu = SoftVcpu;
    fn memory_encrypt_op(&self, cmd: &mut KvmSevCmd) -> KvmResult {
        SoftVm::memory_encrypt_op(self, cmd)
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
    fn enable_cap(&self, cap: KvmCap, arg0: u64) -> KvmResult {
        SoftVm::enable_cap(self, cap, arg0)
    }
    fn create_vcpu(&self, id: u32) -> KvmResult<SoftVcpu> {
        SoftVm::create_vcpu(self, id)
    }
}

impl Vcpu for SoftVcpu {
    fn run(&mut self) -> KvmResult<&mut VcpuExit> {
        SoftVcpu::run(self)
    }
}
