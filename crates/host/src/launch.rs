//! The launch sequence as a typestate over the [`Vm`] trait (shared/spec/snp-launch.md
//! §1.3–1.5; the KVM uAPI `KVM_SEV_SNP_LAUNCH_*` in Documentation/virt/kvm/x86/
//! amd-memory-encryption.rst). The model is virtee/sev's `launch::{snp, sev}`:
//! every step consumes the launcher and returns the next state, so an out-of-order
//! launch does not compile.
//!
//! ```text
//! Created ──start──▶ Launching ──(measure, SEV only)──▶ Measured ──finish──▶ Finished ──▶ Running
//!                    update_data*                       inject_secret
//!                    create_vcpu*        SNP: Launching ──finish──▶ Finished
//! ```
//!
//! [`SnpLauncher`] drives SNP: `new` (KVM_SEV_INIT2 on an SNP VM) → [`SnpLauncher::start`]
//! (SNP_LAUNCH_START) → [`SnpLauncher::update_data`]* (memory attributes set private,
//! then SNP_LAUNCH_UPDATE repeated while KVM reports a remainder) and
//! [`SnpLauncher::create_vcpu`]* → [`SnpLauncher::finish`] (SNP_LAUNCH_FINISH with the ID
//! block and auth page staged in VMM memory) → [`SnpLauncher::into_running`], which
//! hands out the vCPUs: none can run before the launch is finished.
//!
//! The state markers, [`LaunchError`] and the command staging
//! ([`crate::encrypt_op_staged`]) are shared with the SEV / SEV-ES launcher
//! (start → update_data* / update_vmsa → measure → inject secret → finish).
//!
//! Illegal orders are compile errors:
//!
//! ```compile_fail,E0599
//! use softsev_host::launch::{Created, SnpFinish, SnpLauncher};
//! // SNP_LAUNCH_FINISH before SNP_LAUNCH_START.
//! fn finish_before_start(l: SnpLauncher<Created>) {
//!     let _ = l.finish(&SnpFinish::default());
//! }
//! ```
//!
//! ```compile_fail,E0599
//! use softsev_host::launch::{Finished, SnpLauncher, SnpUpdate};
//! // SNP_LAUNCH_UPDATE after SNP_LAUNCH_FINISH.
//! fn update_after_finish(mut l: SnpLauncher<Finished>, u: SnpUpdate<'_>) {
//!     let _ = l.update_data(u);
//! }
//! ```
//!
//! ```compile_fail,E0599
//! use softsev_host::launch::{Launching, SnpLauncher};
//! // Taking the vCPUs out to run them before the launch is finished.
//! fn run_before_finish(l: SnpLauncher<Launching>) {
//!     let _ = l.into_running();
//! }
//! ```
//!
//! ```compile_fail,E0599
//! use softsev_host::launch::{Launching, SnpLauncher};
//! use softsev_abi::kvm::KvmSevSnpLaunchStart;
//! // SNP_LAUNCH_START twice.
//! fn start_twice(l: SnpLauncher<Launching>) {
//!     let _ = l.start(&KvmSevSnpLaunchStart::default());
//! }
//! ```
//!
//! ```compile_fail,E0382
//! use softsev_host::launch::{Created, SnpLauncher};
//! use softsev_abi::kvm::KvmSevSnpLaunchStart;
//! // A launcher that was moved on cannot be used again.
//! fn reuse(l: SnpLauncher<Created>) {
//!     let _started = l.start(&KvmSevSnpLaunchStart::default());
//!     let _again = l.start(&KvmSevSnpLaunchStart::default());
//! }
//! ```
//!
//! The legal order compiles:
//!
//! ```no_run
//! use softsev_host::launch::{LaunchError, Running, SnpFinish, SnpLauncher, SnpUpdate};
//! use softsev_host::{Hva, Vm};
//! use softsev_abi::kvm::{KvmSevInit, KvmSevSnpLaunchStart};
//! use softsev_abi::page_info::PageType;
//! use softsev_abi::vmsa::Vmsa;
//! use softsev_abi::Gpa;
//! use std::sync::Arc;
//!
//! fn launch(vm: Arc<dyn Vm>, image: &[u8], at: Hva, vmsa: &Vmsa)
//!     -> Result<SnpLauncher<Running>, LaunchError>
//! {
//!     let mut l = SnpLauncher::new(vm, &KvmSevInit::default())?
//!         .start(&KvmSevSnpLaunchStart { policy: 0x30000, ..Default::default() })?;
//!     l.create_vcpu(0, vmsa)?;
//!     l.update_data(SnpUpdate {
//!         gpa: Gpa(0),
//!         len: image.len() as u64,
//!         page_type: PageType::NORMAL,
//!         uaddr: at,
//!         data: image,
//!     })?;
//!     Ok(l.finish(&SnpFinish::default())?.into_running())
//! }
//! ```

use crate::{Hva, KvmError, Vcpu, Vm, VmmMemory};
use softsev_abi::kvm::{
    KVM_MEMORY_ATTRIBUTE_PRIVATE, KvmMemoryAttributes, KvmSevInit, KvmSevSnpLaunchFinish,
    KvmSevSnpLaunchStart, KvmSevSnpLaunchUpdate,
};
use softsev_abi::page_info::PageType;
use softsev_abi::vmsa::Vmsa;
use softsev_abi::{FwStatus, Gpa, PAGE_SIZE_4K};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

mod sealed {
    pub trait Sealed {}
}

/// A state of a launch (one of the markers below).
pub trait LaunchState: sealed::Sealed + fmt::Debug {
    /// The state's name, as in the firmware's guest state machine.
    const NAME: &'static str;
}

macro_rules! launch_states {
    ($($(#[$m:meta])* $name:ident = $text:literal;)*) => {$(
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name;
        impl sealed::Sealed for $name {}
        impl LaunchState for $name {
            const NAME: &'static str = $text;
        }
    )*};
}

launch_states! {
    /// The VM exists and its encryption context is initialised (KVM_SEV_INIT2); no
    /// launch has started.
    Created = "created";
    /// LAUNCH_START succeeded: pages and vCPUs are added to the launch image.
    Launching = "launching";
    /// SEV / SEV-ES only: LAUNCH_MEASURE returned the digest; a secret may be injected
    /// before LAUNCH_FINISH.
    Measured = "measured";
    /// LAUNCH_FINISH succeeded: the measurement is sealed, the register state of every
    /// vCPU is protected.
    Finished = "finished";
    /// The vCPUs are handed to the VMM's run loop.
    Running = "running";
}

/// The launch step that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchStep {
    /// `KVM_SEV_INIT2`.
    Init2,
    /// `KVM_SEV_SNP_ENABLE_REQ_CERTS`.
    EnableReqCerts,
    /// `KVM_SEV_SNP_LAUNCH_START`.
    SnpLaunchStart,
    /// `KVM_CREATE_VCPU` of this vCPU.
    CreateVcpu(u32),
    /// Setting the register (VMSA) state of this vCPU.
    VcpuState(u32),
    /// Staging and `KVM_SEV_SNP_LAUNCH_UPDATE` of one range (attributes, data, command).
    SnpLaunchUpdate {
        /// Page type.
        page_type: PageType,
        /// First GPA.
        gpa: Gpa,
        /// Length in bytes.
        len: u64,
    },
    /// Staging the ID block in VMM memory.
    StageIdBlock,
    /// Staging the ID authentication page in VMM memory.
    StageIdAuth,
    /// `KVM_SEV_SNP_LAUNCH_FINISH`.
    SnpLaunchFinish,
}

impl fmt::Display for LaunchStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LaunchStep::Init2 => f.write_str("KVM_SEV_INIT2"),
            LaunchStep::EnableReqCerts => f.write_str("KVM_SEV_SNP_ENABLE_REQ_CERTS"),
            LaunchStep::SnpLaunchStart => f.write_str("KVM_SEV_SNP_LAUNCH_START"),
            LaunchStep::CreateVcpu(i) => write!(f, "KVM_CREATE_VCPU({i})"),
            LaunchStep::VcpuState(i) => write!(f, "vCPU {i} registers"),
            LaunchStep::SnpLaunchUpdate {
                page_type,
                gpa,
                len,
            } => write!(f, "KVM_SEV_SNP_LAUNCH_UPDATE {page_type:?} {gpa}+{len:#x}"),
            LaunchStep::StageIdBlock => f.write_str("id block"),
            LaunchStep::StageIdAuth => f.write_str("id auth"),
            LaunchStep::SnpLaunchFinish => f.write_str("KVM_SEV_SNP_LAUNCH_FINISH"),
        }
    }
}

/// Why a launch step failed. The firmware status, when there is one, is in the KVM
/// error ([`KvmError::fw`]) and nowhere else; the message includes the KVM error (it
/// is not also a `source`, so an error chain prints it once).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    /// An ioctl (or a VMM-memory access staging its data) failed.
    #[error("{step}: {error}")]
    Kvm {
        /// The step.
        step: LaunchStep,
        /// The KVM error: errno, firmware status, reason.
        error: KvmError,
    },
    /// SNP_LAUNCH_UPDATE returned success without consuming any of the range.
    #[error("{step}: no progress ({remaining:#x} bytes left)")]
    NoProgress {
        /// The step.
        step: LaunchStep,
        /// Bytes KVM left unprocessed.
        remaining: u64,
    },
}

impl LaunchError {
    /// The step that failed.
    pub fn step(&self) -> &LaunchStep {
        match self {
            LaunchError::Kvm { step, .. } | LaunchError::NoProgress { step, .. } => step,
        }
    }

    /// The KVM error, if an ioctl failed.
    pub fn kvm(&self) -> Option<&KvmError> {
        match self {
            LaunchError::Kvm { error, .. } => Some(error),
            LaunchError::NoProgress { .. } => None,
        }
    }

    /// The firmware status KVM passed back (`kvm_sev_cmd.error`), if any.
    pub fn fw_status(&self) -> Option<FwStatus> {
        self.kvm().and_then(|e| e.fw)
    }
}

fn at(step: LaunchStep) -> impl FnOnce(KvmError) -> LaunchError {
    move |error| LaunchError::Kvm { step, error }
}

/// One range of the launch image for [`SnpLauncher::update_data`].
#[derive(Debug, Clone, Copy)]
pub struct SnpUpdate<'a> {
    /// First GPA (4 KiB aligned).
    pub gpa: Gpa,
    /// Length in bytes (4 KiB multiple).
    pub len: u64,
    /// Page type (NORMAL, ZERO, UNMEASURED, SECRETS, CPUID).
    pub page_type: PageType,
    /// The VMM address the source is read from (the memslot's shared backing of
    /// `gpa`, as QEMU passes it).
    pub uaddr: Hva,
    /// The contents, copied to `uaddr` first; empty = what is there already (zero for
    /// fresh memory).
    pub data: &'a [u8],
}

/// What SNP_LAUNCH_FINISH seals into the guest context.
#[derive(Debug, Clone, Copy, Default)]
pub struct SnpFinish<'a> {
    /// The 96-byte ID block (ID_BLOCK_EN is set when present).
    pub id_block: Option<&'a [u8]>,
    /// The 4096-byte ID authentication page.
    pub id_auth: Option<&'a [u8]>,
    /// AUTHOR_KEY_EN.
    pub auth_key_en: bool,
    /// VCEK_DISABLED (reports signed with the VLEK only).
    pub vcek_disabled: bool,
    /// HOST_DATA, copied into every report.
    pub host_data: [u8; 32],
}

/// The SNP launch of one VM, in state `S`.
pub struct SnpLauncher<S: LaunchState, V: Vm + ?Sized = dyn Vm> {
    vm: Arc<V>,
    vcpus: Vec<Box<dyn Vcpu>>,
    state: PhantomData<S>,
}

impl<S: LaunchState, V: Vm + ?Sized> fmt::Debug for SnpLauncher<S, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnpLauncher")
            .field("state", &S::NAME)
            .field("vm", &self.vm)
            .field("vcpus", &self.vcpus.len())
            .finish()
    }
}

impl<S: LaunchState, V: Vm + ?Sized> SnpLauncher<S, V> {
    /// The VM being launched.
    pub fn vm(&self) -> &Arc<V> {
        &self.vm
    }

    /// The vCPUs created so far, in creation order.
    pub fn vcpus(&self) -> &[Box<dyn Vcpu>] {
        &self.vcpus
    }

    fn into_state<T: LaunchState>(self) -> SnpLauncher<T, V> {
        SnpLauncher {
            vm: self.vm,
            vcpus: self.vcpus,
            state: PhantomData,
        }
    }
}

impl<V: Vm + ?Sized> SnpLauncher<Created, V> {
    /// KVM_SEV_INIT2 on a fresh SNP VM (`init`: VMSA features, GHCB version).
    pub fn new(vm: Arc<V>, init: &KvmSevInit) -> Result<Self, LaunchError> {
        vm.sev_init2(init).map_err(at(LaunchStep::Init2))?;
        Ok(SnpLauncher {
            vm,
            vcpus: Vec::new(),
            state: PhantomData,
        })
    }

    /// KVM_SEV_SNP_ENABLE_REQ_CERTS: the certificates of extended guest requests
    /// come from the VMM.
    pub fn enable_req_certs(&mut self) -> Result<(), LaunchError> {
        self.vm
            .snp_enable_req_certs()
            .map_err(at(LaunchStep::EnableReqCerts))
    }

    /// SNP_LAUNCH_START (policy, GOSVW).
    pub fn start(
        self,
        start: &KvmSevSnpLaunchStart,
    ) -> Result<SnpLauncher<Launching, V>, LaunchError> {
        self.vm
            .snp_launch_start(start)
            .map_err(at(LaunchStep::SnpLaunchStart))?;
        Ok(self.into_state::<Launching>())
    }
}

impl<V: Vm + ?Sized> SnpLauncher<Launching, V> {
    /// KVM_CREATE_VCPU with the register state the launch measures (its VMSA is
    /// encrypted and measured at [`SnpLauncher::finish`], in creation order).
    pub fn create_vcpu(&mut self, id: u32, vmsa: &Vmsa) -> Result<(), LaunchError> {
        let vcpu = self
            .vm
            .create_vcpu(id)
            .map_err(at(LaunchStep::CreateVcpu(id)))?;
        vcpu.set_vmsa_state(vmsa)
            .map_err(at(LaunchStep::VcpuState(id)))?;
        self.vcpus.push(vcpu);
        Ok(())
    }

    /// Add a range to the launch image: copy `data` to `uaddr`, make the range
    /// private (KVM_SET_MEMORY_ATTRIBUTES), then SNP_LAUNCH_UPDATE, repeated while KVM
    /// writes back an unprocessed remainder. On a failed CPUID page KVM has written the
    /// firmware's corrected page back to `uaddr`.
    pub fn update_data(&mut self, update: SnpUpdate<'_>) -> Result<(), LaunchError> {
        let step = LaunchStep::SnpLaunchUpdate {
            page_type: update.page_type,
            gpa: update.gpa,
            len: update.len,
        };
        if !update.data.is_empty() {
            self.vm
                .vmm_memory()
                .write(update.uaddr, update.data)
                .map_err(at(step.clone()))?;
        }
        self.vm
            .set_memory_attributes(&KvmMemoryAttributes {
                address: update.gpa.0,
                size: update.len,
                attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE,
                flags: 0,
            })
            .map_err(at(step.clone()))?;
        let mut cmd = KvmSevSnpLaunchUpdate {
            gfn_start: update.gpa.0 / PAGE_SIZE_4K,
            uaddr: update.uaddr.0,
            len: update.len,
            page_type: update.page_type.0,
            ..Default::default()
        };
        while cmd.len > 0 {
            let before = cmd.len;
            self.vm
                .snp_launch_update(&mut cmd)
                .map_err(at(step.clone()))?;
            if cmd.len == before {
                return Err(LaunchError::NoProgress {
                    step,
                    remaining: cmd.len,
                });
            }
        }
        Ok(())
    }

    /// SNP_LAUNCH_FINISH: the ID block and auth page are staged in VMM memory for the
    /// call and unmapped after it.
    pub fn finish(self, finish: &SnpFinish<'_>) -> Result<SnpLauncher<Finished, V>, LaunchError> {
        let mem = self.vm.vmm_memory();
        let id_block = stage(&*mem, finish.id_block, LaunchStep::StageIdBlock)?;
        let id_auth = stage(&*mem, finish.id_auth, LaunchStep::StageIdAuth)?;
        let r = self.vm.snp_launch_finish(&KvmSevSnpLaunchFinish {
            id_block_uaddr: id_block.map_or(0, |h| h.0),
            id_auth_uaddr: id_auth.map_or(0, |h| h.0),
            id_block_en: u8::from(finish.id_block.is_some()),
            auth_key_en: u8::from(finish.auth_key_en),
            vcek_disabled: u8::from(finish.vcek_disabled),
            host_data: finish.host_data,
            ..Default::default()
        });
        for hva in [id_block, id_auth].into_iter().flatten() {
            // The ioctl has copied the pages; an unmap failure leaks a mapping only.
            let _ = mem.munmap(hva);
        }
        r.map_err(at(LaunchStep::SnpLaunchFinish))?;
        Ok(self.into_state::<Finished>())
    }
}

/// Copy `bytes` (if any) into a fresh page-rounded mapping of VMM memory.
fn stage(
    mem: &dyn VmmMemory,
    bytes: Option<&[u8]>,
    step: LaunchStep,
) -> Result<Option<Hva>, LaunchError> {
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    let len = (bytes.len() as u64).max(PAGE_SIZE_4K);
    let hva = mem.mmap(len).map_err(at(step.clone()))?;
    mem.write(hva, bytes).map_err(at(step))?;
    Ok(Some(hva))
}

impl<V: Vm + ?Sized> SnpLauncher<Finished, V> {
    /// Hand the vCPUs to the run loop.
    pub fn into_running(self) -> SnpLauncher<Running, V> {
        self.into_state::<Running>()
    }
}

impl<V: Vm + ?Sized> SnpLauncher<Running, V> {
    /// The vCPUs, to run.
    pub fn vcpus_mut(&mut self) -> &mut [Box<dyn Vcpu>] {
        &mut self.vcpus
    }

    /// The VM and its vCPUs (in creation order).
    pub fn into_parts(self) -> (Arc<V>, Vec<Box<dyn Vcpu>>) {
        (self.vm, self.vcpus)
    }
}
