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
//! - [`Hypervisor`], [`Vm`], [`Vcpu`], [`VmmMemory`]: the traits a VMM programs
//!   against (backend.rs); [`hypervisor`] makes one at run time.
//! - [`launch`]: the launch typestate over [`Vm`] ([`launch::SnpLauncher`]).
//! - [`SoftPlatform`]: SoC + chip + firmware + host from one builder, itself a
//!   [`Hypervisor`]; [`SoftPlatformExt`] holds what only the simulator can do.
//!
//! Inside, the modules follow Linux's split: `vm` (the VM object and memory ioctls,
//! `kvm_main.c`), `sev` (KVM_MEMORY_ENCRYPT_OP: INIT, the SNP launch, context
//! move/mirror, `svm/sev.c`), `ghcb` (VMGEXIT: MSR protocol, NAE events, page state
//! changes, AP creation, guest requests), `psp` (the PSP driver, `ccp/sev-dev.c`), with
//! the per-VM and per-vCPU state as a leaf (`state`: [`SevState`], [`SevMode`]).
//! - [`EventLog`]: every exit and decision, also emitted with `tracing`.

#![forbid(unsafe_code)]

mod alloc;
mod backend;
mod error;
mod events;
#[doc(hidden)]
pub mod fuzz;
mod ghcb;
mod guest;
pub mod launch;
mod mem;
mod platform;
mod psp;
mod sev;
mod sev_dev;
mod soft_platform;
mod state;
mod usermem;
mod vcpu;
mod vm;

pub use alloc::PhysAlloc;
pub use backend::{Conversion, Hypervisor, Vcpu, Vm, VmmMemory, encrypt_op_staged};
pub use error::{Errno, KvmError, KvmResult};
pub use events::{Event, EventLog};
pub use guest::{GuestCpu, GuestEnd, GuestFn};
pub use mem::{GmemBinding, Mapping, Memslot};
pub use platform::{
    AsidClass, AsidCounts, AsidRange, KVM_SNP_POLICY_MASK, ModuleParams, SNP_POLICY_RSVD_MBO,
    SoftHost,
};
pub use sev_dev::{SevUserGetId2, SevUserPdhCertExport, SevUserPekCsr};
pub use soft_platform::{
    HypervisorKind, PlatformError, SoftPlatform, SoftPlatformBuilder, SoftPlatformExt, hypervisor,
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
