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
//! [`SevLauncher`] drives SEV and SEV-ES (sev-legacy.md §3, §7.2, §8.1): `new`
//! (INIT / ES_INIT on a KVM_X86_DEFAULT_VM, or INIT2 on an SEV / SEV-ES VM,
//! [`SevInit`]) → [`SevLauncher::launch_start`] (policy, optional GODH + session) →
//! [`SevLauncher::update_data`]* and, for SEV-ES, [`SevLauncher::create_vcpu`]* then
//! [`SevLauncher::update_vmsa`] → [`SevLauncher::measure`] (the 48-byte measure ‖
//! mnonce, length query first as QEMU does) → [`SevLauncher::inject_secret`]* and
//! [`SevLauncher::attestation_report`] → [`SevLauncher::finish`] →
//! [`SevLauncher::into_running`]. GUEST_STATUS and DBG work in every state.
//! The state markers, [`LaunchError`] and the command staging
//! ([`crate::encrypt_op_staged`]) are shared by both launchers.
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
//! ```compile_fail,E0599
//! use softsev_host::launch::{Created, SevLauncher};
//! // LAUNCH_MEASURE before LAUNCH_START.
//! fn measure_before_start(l: SevLauncher<Created>) {
//!     let _ = l.measure();
//! }
//! ```
//!
//! ```compile_fail,E0599
//! use softsev_host::launch::{Measured, SevLauncher};
//! // LAUNCH_UPDATE_DATA after LAUNCH_MEASURE.
//! fn update_after_measure(mut l: SevLauncher<Measured>, u: softsev_host::launch::SevUpdate<'_>) {
//!     let _ = l.update_data(u);
//! }
//! ```
//!
//! ```compile_fail,E0599
//! use softsev_host::launch::{Launching, SevLauncher};
//! // LAUNCH_FINISH without LAUNCH_MEASURE (the firmware needs LSECRET).
//! fn finish_before_measure(l: SevLauncher<Launching>) {
//!     let _ = l.finish();
//! }
//! ```
//!
//! ```compile_fail,E0599
//! use softsev_host::launch::{Launching, SevLauncher};
//! // A secret before the measurement it is bound to.
//! fn secret_before_measure(mut l: SevLauncher<Launching>) {
//!     let _ = l.inject_secret(&Default::default(), &[0u8; 16], softsev_abi::Gpa(0), softsev_host::Hva(0));
//! }
//! ```
//!
//! ```compile_fail,E0599
//! use softsev_host::launch::{Finished, SevLauncher};
//! // A secret after LAUNCH_FINISH.
//! fn secret_after_finish(mut l: SevLauncher<Finished>) {
//!     let _ = l.inject_secret(&Default::default(), &[0u8; 16], softsev_abi::Gpa(0), softsev_host::Hva(0));
//! }
//! ```
//!
//! ```compile_fail,E0599
//! use softsev_host::launch::{Measured, SevLauncher};
//! // Running the vCPUs before LAUNCH_FINISH.
//! fn run_before_finish(l: SevLauncher<Measured>) {
//!     let _ = l.into_running();
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
//!
//! ```no_run
//! use softsev_host::launch::{LaunchError, Running, SevInit, SevLauncher, SevUpdate};
//! use softsev_host::{Hva, Vm};
//! use softsev_abi::sev_buf::SevPacketHeader;
//! use softsev_abi::vmsa::Vmsa;
//! use softsev_abi::Gpa;
//! use std::sync::Arc;
//!
//! // SEV-ES with ES_INIT (QEMU legacy-vm-type=on), one vCPU, a secret at 0x80C000.
//! fn launch(vm: Arc<dyn Vm>, image: &[u8], at: Hva, vmsa: &Vmsa, hdr: &SevPacketHeader,
//!           secret: &[u8], secret_hva: Hva) -> Result<SevLauncher<Running>, LaunchError>
//! {
//!     let mut l = SevLauncher::new(vm, SevInit::EsInit)?;
//!     l.create_vcpu(0, vmsa)?;
//!     let mut l = l.launch_start(0x5, None)?;
//!     l.update_data(SevUpdate { gpa: Gpa(0xFFC0_0000), uaddr: at, data: image })?;
//!     l.update_vmsa()?;
//!     let mut l = l.measure()?;
//!     let _measure_and_mnonce = l.measurement();
//!     l.inject_secret(hdr, secret, Gpa(0x80C000), secret_hva)?;
//!     Ok(l.finish()?.into_running())
//! }
//! ```

use crate::{Hva, KvmError, Vcpu, Vm, VmmMemory};
use softsev_abi::kvm::{
    KVM_MEMORY_ATTRIBUTE_PRIVATE, KvmMemoryAttributes, KvmSevAttestationReport, KvmSevDbg,
    KvmSevGuestStatus, KvmSevInit, KvmSevLaunchMeasure, KvmSevLaunchSecret, KvmSevLaunchStart,
    KvmSevLaunchUpdateData, KvmSevReceiveStart, KvmSevReceiveUpdateData, KvmSevReceiveUpdateVmsa,
    KvmSevSendStart, KvmSevSendUpdateData, KvmSevSendUpdateVmsa, KvmSevSnpLaunchFinish,
    KvmSevSnpLaunchStart, KvmSevSnpLaunchUpdate,
};
use softsev_abi::page_info::PageType;
use softsev_abi::sev_buf::{
    SEV_MEASURE_LEN, SEV_PACKET_HEADER_LEN, SEV_REPORT_LEN, SEV_SESSION_LEN, SEV_VMSA_LEN,
    SevLaunchMeasureBlob, SevPacketHeader, SevSession,
};
use softsev_abi::sev_cert::SevCert;
use softsev_abi::vmsa::Vmsa;
use softsev_abi::{FwStatus, Gpa, PAGE_SIZE_4K};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use zerocopy::{FromZeros, IntoBytes};

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
    /// `KVM_SEV_INIT` / `KVM_SEV_ES_INIT` / `KVM_SEV_INIT2` of an SEV or SEV-ES VM.
    SevInit,
    /// Staging a blob (GODH, session, packet header, secret, output buffer) in VMM
    /// memory.
    Stage(&'static str),
    /// `KVM_SEV_LAUNCH_START`.
    SevLaunchStart,
    /// `KVM_SEV_LAUNCH_UPDATE_DATA` of one range.
    SevLaunchUpdateData {
        /// First GPA.
        gpa: Gpa,
        /// Length in bytes.
        len: u32,
    },
    /// `KVM_SEV_LAUNCH_UPDATE_VMSA`.
    SevLaunchUpdateVmsa,
    /// `KVM_SEV_LAUNCH_MEASURE` (the length query or the call).
    SevLaunchMeasure,
    /// `KVM_SEV_LAUNCH_SECRET` into this GPA.
    SevLaunchSecret(Gpa),
    /// `KVM_SEV_GET_ATTESTATION_REPORT`.
    SevAttestationReport,
    /// `KVM_SEV_LAUNCH_FINISH`.
    SevLaunchFinish,
    /// `KVM_SEV_GUEST_STATUS`.
    SevGuestStatus,
    /// `KVM_SEV_DBG_DECRYPT` / `KVM_SEV_DBG_ENCRYPT`.
    SevDbg,
    /// `KVM_SEV_SEND_START` (the session-length query or the call).
    SevSendStart,
    /// `KVM_SEV_SEND_UPDATE_DATA` of the page at this VMM address.
    SevSendUpdateData(Hva),
    /// `KVM_SEV_SEND_UPDATE_VMSA` of this vCPU.
    SevSendUpdateVmsa(u32),
    /// `KVM_SEV_SEND_FINISH`.
    SevSendFinish,
    /// `KVM_SEV_SEND_CANCEL`.
    SevSendCancel,
    /// `KVM_SEV_RECEIVE_START`.
    SevReceiveStart,
    /// `KVM_SEV_RECEIVE_UPDATE_DATA` into the page at this VMM address.
    SevReceiveUpdateData(Hva),
    /// `KVM_SEV_RECEIVE_UPDATE_VMSA` of this vCPU.
    SevReceiveUpdateVmsa(u32),
    /// `KVM_SEV_RECEIVE_FINISH`.
    SevReceiveFinish,
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
            LaunchStep::SevInit => f.write_str("KVM_SEV_INIT"),
            LaunchStep::Stage(what) => write!(f, "staging the {what}"),
            LaunchStep::SevLaunchStart => f.write_str("KVM_SEV_LAUNCH_START"),
            LaunchStep::SevLaunchUpdateData { gpa, len } => {
                write!(f, "KVM_SEV_LAUNCH_UPDATE_DATA {gpa}+{len:#x}")
            }
            LaunchStep::SevLaunchUpdateVmsa => f.write_str("KVM_SEV_LAUNCH_UPDATE_VMSA"),
            LaunchStep::SevLaunchMeasure => f.write_str("KVM_SEV_LAUNCH_MEASURE"),
            LaunchStep::SevLaunchSecret(gpa) => write!(f, "KVM_SEV_LAUNCH_SECRET at {gpa}"),
            LaunchStep::SevAttestationReport => f.write_str("KVM_SEV_GET_ATTESTATION_REPORT"),
            LaunchStep::SevLaunchFinish => f.write_str("KVM_SEV_LAUNCH_FINISH"),
            LaunchStep::SevGuestStatus => f.write_str("KVM_SEV_GUEST_STATUS"),
            LaunchStep::SevDbg => f.write_str("KVM_SEV_DBG_DECRYPT/ENCRYPT"),
            LaunchStep::SevSendStart => f.write_str("KVM_SEV_SEND_START"),
            LaunchStep::SevSendUpdateData(h) => {
                write!(f, "KVM_SEV_SEND_UPDATE_DATA of {:#x}", h.0)
            }
            LaunchStep::SevSendUpdateVmsa(i) => write!(f, "KVM_SEV_SEND_UPDATE_VMSA of vCPU {i}"),
            LaunchStep::SevSendFinish => f.write_str("KVM_SEV_SEND_FINISH"),
            LaunchStep::SevSendCancel => f.write_str("KVM_SEV_SEND_CANCEL"),
            LaunchStep::SevReceiveStart => f.write_str("KVM_SEV_RECEIVE_START"),
            LaunchStep::SevReceiveUpdateData(h) => {
                write!(f, "KVM_SEV_RECEIVE_UPDATE_DATA into {:#x}", h.0)
            }
            LaunchStep::SevReceiveUpdateVmsa(i) => {
                write!(f, "KVM_SEV_RECEIVE_UPDATE_VMSA of vCPU {i}")
            }
            LaunchStep::SevReceiveFinish => f.write_str("KVM_SEV_RECEIVE_FINISH"),
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

// ---------------------------------------------------------------------------------
// SEV / SEV-ES
// ---------------------------------------------------------------------------------

/// How an SEV / SEV-ES VM is initialised (sev-legacy.md §7.2, §8.1: QEMU's
/// `legacy-vm-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SevInit {
    /// `KVM_SEV_INIT` on a KVM_X86_DEFAULT_VM (plain SEV).
    Init,
    /// `KVM_SEV_ES_INIT` on a KVM_X86_DEFAULT_VM: SEV-ES with GHCB version 1 and VMSAs
    /// without x87/SSE state (MXCSR and FCW 0 — older measurements).
    EsInit,
    /// `KVM_SEV_INIT2` on a KVM_X86_SEV_VM / SEV_ES_VM with these arguments: SEV-ES
    /// VMSAs carry the vCPU's x87/SSE state (MXCSR 0x1F80, FCW 0x37F at reset).
    Init2(KvmSevInit),
}

/// One range of the launch image for [`SevLauncher::update_data`].
#[derive(Debug, Clone, Copy)]
pub struct SevUpdate<'a> {
    /// The first GPA (for the record and errors; the firmware encrypts the VMM pages).
    pub gpa: Gpa,
    /// The VMM address of `gpa` (the memslot's backing, as QEMU passes it).
    pub uaddr: Hva,
    /// The contents, copied to `uaddr` first; its length is the range's.
    pub data: &'a [u8],
}

/// The SEV / SEV-ES launch of one VM, in state `S`.
pub struct SevLauncher<S: LaunchState, V: Vm + ?Sized = dyn Vm> {
    vm: Arc<V>,
    vcpus: Vec<Box<dyn Vcpu>>,
    handle: u32,
    measurement: Option<SevLaunchMeasureBlob>,
    /// The SEND_UPDATE_* header length once queried (0 before).
    send_hdr_len: u32,
    /// The header and transport buffers SEND_UPDATE_* reuse (mapped at first use).
    staging: Option<Staging>,
    state: PhantomData<S>,
}

impl<S: LaunchState, V: Vm + ?Sized> fmt::Debug for SevLauncher<S, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SevLauncher")
            .field("state", &S::NAME)
            .field("vm", &self.vm)
            .field("handle", &self.handle)
            .field("vcpus", &self.vcpus.len())
            .finish()
    }
}

impl<S: LaunchState, V: Vm + ?Sized> SevLauncher<S, V> {
    /// The VM being launched.
    pub fn vm(&self) -> &Arc<V> {
        &self.vm
    }

    /// The vCPUs created so far, in creation order.
    pub fn vcpus(&self) -> &[Box<dyn Vcpu>] {
        &self.vcpus
    }

    /// The firmware guest handle (0 before LAUNCH_START).
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// KVM_SEV_GUEST_STATUS: handle, policy and firmware guest state.
    pub fn guest_status(&self) -> Result<KvmSevGuestStatus, LaunchError> {
        self.vm
            .sev_guest_status()
            .map_err(at(LaunchStep::SevGuestStatus))
    }

    /// KVM_SEV_DBG_DECRYPT: `len` bytes of guest memory at the VMM address `src`
    /// decrypted (refused by the firmware for a NODBG policy).
    pub fn dbg_decrypt(&self, src: Hva, len: u32) -> Result<Vec<u8>, LaunchError> {
        let mem = self.vm.vmm_memory();
        let dst = mem
            .mmap(u64::from(len).max(1))
            .map_err(at(LaunchStep::Stage("debug buffer")))?;
        let r = self
            .vm
            .sev_dbg_decrypt(&KvmSevDbg {
                src_uaddr: src.0,
                dst_uaddr: dst.0,
                len,
                ..Default::default()
            })
            .and_then(|()| {
                let mut v = vec![0u8; len as usize];
                mem.read(dst, &mut v).map(|()| v)
            });
        let _ = mem.munmap(dst);
        r.map_err(at(LaunchStep::SevDbg))
    }

    /// KVM_SEV_DBG_ENCRYPT: `data` encrypted into guest memory at the VMM address
    /// `dst`.
    pub fn dbg_encrypt(&self, dst: Hva, data: &[u8]) -> Result<(), LaunchError> {
        let mem = self.vm.vmm_memory();
        let src = stage(&*mem, Some(data), LaunchStep::Stage("debug buffer"))?.unwrap_or_default();
        let r = self.vm.sev_dbg_encrypt(&KvmSevDbg {
            src_uaddr: src.0,
            dst_uaddr: dst.0,
            len: data.len() as u32,
            ..Default::default()
        });
        let _ = mem.munmap(src);
        r.map_err(at(LaunchStep::SevDbg))
    }

    fn into_state<T: LaunchState>(self) -> SevLauncher<T, V> {
        SevLauncher {
            vm: self.vm,
            vcpus: self.vcpus,
            handle: self.handle,
            measurement: self.measurement,
            send_hdr_len: self.send_hdr_len,
            staging: self.staging,
            state: PhantomData,
        }
    }

    fn add_vcpu(&mut self, id: u32, vmsa: &Vmsa) -> Result<(), LaunchError> {
        let vcpu = self
            .vm
            .create_vcpu(id)
            .map_err(at(LaunchStep::CreateVcpu(id)))?;
        vcpu.set_vmsa_state(vmsa)
            .map_err(at(LaunchStep::VcpuState(id)))?;
        self.vcpus.push(vcpu);
        Ok(())
    }
}

impl<V: Vm + ?Sized> SevLauncher<Created, V> {
    /// Make the VM an SEV or SEV-ES guest (`init`; the VM type must fit: DEFAULT for
    /// INIT / ES_INIT, SEV / SEV_ES for INIT2).
    pub fn new(vm: Arc<V>, init: SevInit) -> Result<Self, LaunchError> {
        match init {
            SevInit::Init => vm.sev_init(),
            SevInit::EsInit => vm.sev_es_init(),
            SevInit::Init2(a) => vm.sev_init2(&a),
        }
        .map_err(at(LaunchStep::SevInit))?;
        Ok(SevLauncher {
            vm,
            vcpus: Vec::new(),
            handle: 0,
            measurement: None,
            send_hdr_len: 0,
            staging: None,
            state: PhantomData,
        })
    }

    /// KVM_CREATE_VCPU with its register state (QEMU creates the vCPUs before
    /// LAUNCH_START).
    pub fn create_vcpu(&mut self, id: u32, vmsa: &Vmsa) -> Result<(), LaunchError> {
        self.add_vcpu(id, vmsa)
    }

    /// KVM_SEV_LAUNCH_START with `policy` and, for a guest owner's session, its DH
    /// certificate and session blob (staged in VMM memory for the call). Without one
    /// the firmware uses all-zero TEK/TIK (sev-legacy.md §0.2-4).
    pub fn launch_start(
        self,
        policy: u32,
        session: Option<(SevCert, SevSession)>,
    ) -> Result<SevLauncher<Launching, V>, LaunchError> {
        let mem = self.vm.vmm_memory();
        let (dh, ses) = match &session {
            Some((cert, s)) => (
                stage(
                    &*mem,
                    Some(cert.as_bytes()),
                    LaunchStep::Stage("GODH certificate"),
                )?,
                stage(&*mem, Some(s.as_bytes()), LaunchStep::Stage("session"))?,
            ),
            None => (None, None),
        };
        let mut start = KvmSevLaunchStart {
            policy,
            ..Default::default()
        };
        if let (Some(d), Some(s), Some((cert, ses_blob))) = (dh, ses, &session) {
            start.dh_uaddr = d.0;
            start.dh_len = cert.as_bytes().len() as u32;
            start.session_uaddr = s.0;
            start.session_len = ses_blob.as_bytes().len() as u32;
        }
        let r = self.vm.sev_launch_start(&mut start);
        for hva in [dh, ses].into_iter().flatten() {
            let _ = mem.munmap(hva);
        }
        r.map_err(at(LaunchStep::SevLaunchStart))?;
        let mut l = self.into_state::<Launching>();
        l.handle = start.handle;
        Ok(l)
    }
}

impl<V: Vm + ?Sized> SevLauncher<Launching, V> {
    /// KVM_CREATE_VCPU with its register state (before [`SevLauncher::update_vmsa`]).
    pub fn create_vcpu(&mut self, id: u32, vmsa: &Vmsa) -> Result<(), LaunchError> {
        self.add_vcpu(id, vmsa)
    }

    /// Copy `update.data` to `update.uaddr` and KVM_SEV_LAUNCH_UPDATE_DATA it (the
    /// firmware measures it and encrypts it in place).
    pub fn update_data(&mut self, update: SevUpdate<'_>) -> Result<(), LaunchError> {
        let step = LaunchStep::SevLaunchUpdateData {
            gpa: update.gpa,
            len: update.data.len() as u32,
        };
        self.vm
            .vmm_memory()
            .write(update.uaddr, update.data)
            .map_err(at(step.clone()))?;
        self.vm
            .sev_launch_update_data(&KvmSevLaunchUpdateData {
                uaddr: update.uaddr.0,
                len: update.data.len() as u32,
                ..Default::default()
            })
            .map_err(at(step))
    }

    /// KVM_SEV_LAUNCH_UPDATE_VMSA (SEV-ES): every vCPU's VMSA, in creation order.
    pub fn update_vmsa(&mut self) -> Result<(), LaunchError> {
        self.vm
            .sev_launch_update_vmsa()
            .map_err(at(LaunchStep::SevLaunchUpdateVmsa))
    }

    /// KVM_SEV_LAUNCH_MEASURE: the length query (`-EIO` with INVALID_LENGTH and the
    /// length written back, as QEMU reads it), then the call with a buffer of that
    /// length. The guest is in the firmware's LSECRET state afterwards.
    pub fn measure(self) -> Result<SevLauncher<Measured, V>, LaunchError> {
        let step = LaunchStep::SevLaunchMeasure;
        let mut q = KvmSevLaunchMeasure::default();
        let queried = self.vm.sev_launch_measure(&mut q);
        if q.len == 0 {
            queried.map_err(at(step.clone()))?;
        }
        let len = q.len.max(SEV_MEASURE_LEN as u32);
        let mem = self.vm.vmm_memory();
        let buf = mem
            .mmap(u64::from(len))
            .map_err(at(LaunchStep::Stage("measurement buffer")))?;
        let mut m = KvmSevLaunchMeasure {
            uaddr: buf.0,
            len,
            ..Default::default()
        };
        let r = self.vm.sev_launch_measure(&mut m).and_then(|()| {
            let mut blob = SevLaunchMeasureBlob::new_zeroed();
            mem.read(buf, blob.as_mut_bytes()).map(|()| blob)
        });
        let _ = mem.munmap(buf);
        let blob = r.map_err(at(step))?;
        let mut l = self.into_state::<Measured>();
        l.measurement = Some(blob);
        Ok(l)
    }
}

impl<V: Vm + ?Sized> SevLauncher<Measured, V> {
    /// The LAUNCH_MEASURE output: measure (32 bytes) ‖ mnonce (16 bytes).
    pub fn measurement(&self) -> SevLaunchMeasureBlob {
        self.measurement
            .unwrap_or_else(SevLaunchMeasureBlob::new_zeroed)
    }

    /// KVM_SEV_LAUNCH_SECRET: `header` and `ciphertext` (guest_len = trans_len =
    /// its length) into guest memory at `gpa`, whose VMM address is `uaddr` (QEMU's
    /// `sev-inject-launch-secret`). May be repeated until [`SevLauncher::finish`].
    pub fn inject_secret(
        &mut self,
        header: &SevPacketHeader,
        ciphertext: &[u8],
        gpa: Gpa,
        uaddr: Hva,
    ) -> Result<(), LaunchError> {
        let mem = self.vm.vmm_memory();
        let hdr = stage(
            &*mem,
            Some(header.as_bytes()),
            LaunchStep::Stage("packet header"),
        )?
        .unwrap_or_default();
        let trans = match stage(&*mem, Some(ciphertext), LaunchStep::Stage("secret")) {
            Ok(t) => t.unwrap_or_default(),
            Err(e) => {
                let _ = mem.munmap(hdr);
                return Err(e);
            }
        };
        let r = self.vm.sev_launch_secret(&KvmSevLaunchSecret {
            hdr_uaddr: hdr.0,
            hdr_len: header.as_bytes().len() as u32,
            guest_uaddr: uaddr.0,
            guest_len: ciphertext.len() as u32,
            trans_uaddr: trans.0,
            trans_len: ciphertext.len() as u32,
            ..Default::default()
        });
        let _ = mem.munmap(hdr);
        let _ = mem.munmap(trans);
        r.map_err(at(LaunchStep::SevLaunchSecret(gpa)))
    }

    /// KVM_SEV_GET_ATTESTATION_REPORT with `mnonce`: the length query, then the
    /// 0xD0-byte report signed by the PEK.
    pub fn attestation_report(&self, mnonce: [u8; 16]) -> Result<Vec<u8>, LaunchError> {
        attestation_report(&*self.vm, mnonce)
    }

    /// KVM_SEV_LAUNCH_FINISH: the guest is RUNNING for the firmware.
    pub fn finish(self) -> Result<SevLauncher<Finished, V>, LaunchError> {
        self.vm
            .sev_launch_finish()
            .map_err(at(LaunchStep::SevLaunchFinish))?;
        Ok(self.into_state::<Finished>())
    }
}

/// The length query and the report (QEMU `sev_get_attestation_report`).
fn attestation_report<V: Vm + ?Sized>(vm: &V, mnonce: [u8; 16]) -> Result<Vec<u8>, LaunchError> {
    let step = LaunchStep::SevAttestationReport;
    let mut q = KvmSevAttestationReport::default();
    let queried = vm.sev_get_attestation_report(&mut q);
    if q.len == 0 {
        queried.map_err(at(step.clone()))?;
    }
    let len = q.len.max(SEV_REPORT_LEN as u32);
    let mem = vm.vmm_memory();
    let buf = mem
        .mmap(u64::from(len))
        .map_err(at(LaunchStep::Stage("report buffer")))?;
    let mut r = KvmSevAttestationReport {
        mnonce,
        uaddr: buf.0,
        len,
        ..Default::default()
    };
    let out = vm.sev_get_attestation_report(&mut r).and_then(|()| {
        let mut v = vec![0u8; r.len as usize];
        mem.read(buf, &mut v).map(|()| v)
    });
    let _ = mem.munmap(buf);
    out.map_err(at(step))
}

impl<V: Vm + ?Sized> SevLauncher<Finished, V> {
    /// KVM_SEV_GET_ATTESTATION_REPORT of the running guest.
    pub fn attestation_report(&self, mnonce: [u8; 16]) -> Result<Vec<u8>, LaunchError> {
        attestation_report(&*self.vm, mnonce)
    }

    /// Hand the vCPUs to the run loop.
    pub fn into_running(self) -> SevLauncher<Running, V> {
        self.into_state::<Running>()
    }
}

impl<V: Vm + ?Sized> SevLauncher<Running, V> {
    /// KVM_SEV_GET_ATTESTATION_REPORT of the running guest.
    pub fn attestation_report(&self, mnonce: [u8; 16]) -> Result<Vec<u8>, LaunchError> {
        attestation_report(&*self.vm, mnonce)
    }

    /// KVM_SEV_SEND_START to the platform `target` names (sev-legacy.md §5.1, §7.2):
    /// the session-length query first (`-EIO` with INVALID_LENGTH and 128 written
    /// back, as QEMU's SEV migration series reads it), then the call with the target's
    /// PDH, PEK ‖ OCA ‖ CEK and ASK ‖ ARK staged in VMM memory. The firmware checks the
    /// policy (NOSEND, DOMAIN, SEV) and the chain before anything is sent; the guest
    /// is in SUPDATE afterwards.
    pub fn send_start(&mut self, target: &SevTargetCerts) -> Result<SevSendStartOut, LaunchError> {
        let step = LaunchStep::SevSendStart;
        let mut q = KvmSevSendStart::default();
        let queried = self.vm.sev_send_start(&mut q);
        if q.session_len == 0 {
            queried.map_err(at(step.clone()))?;
        }
        let session_len = q.session_len.max(SEV_SESSION_LEN as u32);
        let mem = self.vm.vmm_memory();
        let mut staged: Vec<Hva> = Vec::new();
        let r = (|| {
            let mut stage_one = |bytes: &[u8], what: &'static str| -> Result<Hva, LaunchError> {
                let hva = stage(&*mem, Some(bytes), LaunchStep::Stage(what))?.unwrap_or_default();
                staged.push(hva);
                Ok(hva)
            };
            let pdh = stage_one(target.pdh.as_bytes(), "target PDH")?;
            let plat = stage_one(&target.plat_certs, "target platform certificates")?;
            let amd = stage_one(&target.amd_certs, "target AMD certificates")?;
            let ses = stage_one(&vec![0u8; session_len as usize], "session buffer")?;
            let mut start = KvmSevSendStart {
                pdh_cert_uaddr: pdh.0,
                pdh_cert_len: target.pdh.as_bytes().len() as u32,
                plat_certs_uaddr: plat.0,
                plat_certs_len: target.plat_certs.len() as u32,
                amd_certs_uaddr: amd.0,
                amd_certs_len: target.amd_certs.len() as u32,
                session_uaddr: ses.0,
                session_len,
                ..Default::default()
            };
            self.vm
                .sev_send_start(&mut start)
                .map_err(at(step.clone()))?;
            let mut session = SevSession::new_zeroed();
            mem.read(ses, session.as_mut_bytes())
                .map_err(at(step.clone()))?;
            Ok(SevSendStartOut {
                policy: start.policy,
                session,
            })
        })();
        for hva in staged {
            let _ = mem.munmap(hva);
        }
        r
    }

    /// KVM_SEV_SEND_UPDATE_DATA of `len` bytes of guest memory at the VMM address
    /// `uaddr` (at most one page, not crossing it: KVM's rule, `-EINVAL`). The header
    /// length is queried once (52) as QEMU does; the packet is the header and exactly
    /// `len` bytes of ciphertext.
    pub fn send_update_data(&mut self, uaddr: Hva, len: u32) -> Result<SevPacket, LaunchError> {
        let step = LaunchStep::SevSendUpdateData(uaddr);
        let hdr_len = self.send_hdr_len(step.clone(), |vm, q| {
            let mut d = KvmSevSendUpdateData::default();
            let r = vm.sev_send_update_data(&mut d);
            *q = d.hdr_len;
            r
        })?;
        let bufs = Staging::get(&mut self.staging, &*self.vm, hdr_len, len, step.clone())?;
        let (hdr, trans) = (bufs.hdr, bufs.trans);
        let r = self.vm.sev_send_update_data(&mut KvmSevSendUpdateData {
            hdr_uaddr: hdr.0,
            hdr_len,
            guest_uaddr: uaddr.0,
            guest_len: len,
            trans_uaddr: trans.0,
            trans_len: len,
            ..Default::default()
        });
        r.and_then(|()| bufs.packet(len)).map_err(at(step))
    }

    /// KVM_SEV_SEND_UPDATE_VMSA of vCPU `vcpu_id` (SEV-ES; the softsev extension
    /// behind [`crate::ModuleParams::sev_es_migration`], `-EINVAL` without it as
    /// upstream KVM): the encrypted VMSA page, holding the registers of the vCPU's
    /// last exit, as a 4096-byte packet.
    pub fn send_update_vmsa(&mut self, vcpu_id: u32) -> Result<SevPacket, LaunchError> {
        let step = LaunchStep::SevSendUpdateVmsa(vcpu_id);
        let hdr_len = self.send_hdr_len(step.clone(), |vm, q| {
            let mut d = KvmSevSendUpdateVmsa::default();
            let r = vm.sev_send_update_vmsa(&mut d);
            *q = d.hdr_len;
            r
        })?;
        let len = SEV_VMSA_LEN as u32;
        let bufs = Staging::get(&mut self.staging, &*self.vm, hdr_len, len, step.clone())?;
        let (hdr, trans) = (bufs.hdr, bufs.trans);
        let r = self.vm.sev_send_update_vmsa(&mut KvmSevSendUpdateVmsa {
            vcpu_id,
            hdr_uaddr: hdr.0,
            hdr_len,
            trans_uaddr: trans.0,
            trans_len: len,
            ..Default::default()
        });
        r.and_then(|()| bufs.packet(len)).map_err(at(step))
    }

    /// KVM_SEV_SEND_FINISH: the guest is SENT (it cannot run again on this platform).
    pub fn send_finish(&mut self) -> Result<(), LaunchError> {
        self.staging = None;
        self.vm
            .sev_send_finish()
            .map_err(at(LaunchStep::SevSendFinish))
    }

    /// KVM_SEV_SEND_CANCEL: back to RUNNING (the guest keeps running here).
    pub fn send_cancel(&mut self) -> Result<(), LaunchError> {
        self.staging = None;
        self.vm
            .sev_send_cancel()
            .map_err(at(LaunchStep::SevSendCancel))
    }

    /// The packet-header length of SEND_UPDATE_*: queried once through `query` (the
    /// firmware's INVALID_LENGTH with 52 written back), then remembered.
    fn send_hdr_len(
        &mut self,
        step: LaunchStep,
        query: impl FnOnce(&V, &mut u32) -> Result<(), KvmError>,
    ) -> Result<u32, LaunchError> {
        if self.send_hdr_len == 0 {
            let mut n = 0;
            let r = query(&*self.vm, &mut n);
            if n == 0 {
                r.map_err(at(step))?;
            }
            self.send_hdr_len = n.max(SEV_PACKET_HEADER_LEN as u32);
        }
        Ok(self.send_hdr_len)
    }

    /// The vCPUs, to run.
    pub fn vcpus_mut(&mut self) -> &mut [Box<dyn Vcpu>] {
        &mut self.vcpus
    }

    /// The VM and its vCPUs (in creation order).
    pub fn into_parts(self) -> (Arc<V>, Vec<Box<dyn Vcpu>>) {
        (self.vm, self.vcpus)
    }
}

// ---------------------------------------------------------------------------------
// SEV / SEV-ES migration (sev-legacy.md §5, §7.2)
// ---------------------------------------------------------------------------------

/// The target platform's certificates SEND_START needs (sev-legacy.md §5.1; QEMU's
/// SEV live-migration series passes them as `sev-pdh`, `sev-plat-cert`,
/// `sev-amd-cert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SevTargetCerts {
    /// The target's PDH certificate.
    pub pdh: SevCert,
    /// The target's PEK ‖ OCA ‖ CEK (0x186C bytes).
    pub plat_certs: Vec<u8>,
    /// The target's ASK ‖ ARK (AMD format).
    pub amd_certs: Vec<u8>,
}

/// What SEND_START returns: the guest's policy and the session for RECEIVE_START.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SevSendStartOut {
    /// The guest policy (RECEIVE_START must be given the same).
    pub policy: u32,
    /// The 128-byte session blob wrapping TEK ‖ TIK for the target.
    pub session: SevSession,
}

/// One SEND_UPDATE_* packet: the 52-byte header (flags, IV, MAC) and the
/// ciphertext ("trans" blob; exactly as long as the guest range sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SevPacket {
    /// flags ‖ IV ‖ MAC (sev-legacy.md §5.3).
    pub header: SevPacketHeader,
    /// AES-128-CTR ciphertext.
    pub data: Vec<u8>,
}

/// The header and transport buffers of SEND/RECEIVE_UPDATE_* in VMM memory, mapped
/// once and reused for every packet (a page each is enough: KVM moves at most one page
/// per call), unmapped when dropped.
struct Staging {
    mem: Arc<dyn VmmMemory>,
    hdr: Hva,
    trans: Hva,
}

/// The largest packet KVM moves in one call (one page, sev-legacy.md §7.2).
const STAGING_LEN: u32 = PAGE_SIZE_4K as u32;

impl fmt::Debug for Staging {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Staging")
            .field("hdr", &self.hdr)
            .field("trans", &self.trans)
            .finish()
    }
}

impl Staging {
    /// The staging of `slot`, mapped now if it is not yet; a header or packet longer
    /// than a page gets fresh buffers of its size.
    fn get<'a, V: Vm + ?Sized>(
        slot: &'a mut Option<Staging>,
        vm: &V,
        hdr_len: u32,
        trans_len: u32,
        step: LaunchStep,
    ) -> Result<&'a Staging, LaunchError> {
        let need = hdr_len.max(trans_len).max(1);
        if need > STAGING_LEN {
            *slot = None;
        }
        if slot.is_none() {
            let mem = vm.vmm_memory();
            let size = u64::from(need.max(STAGING_LEN));
            let hdr = mem.mmap(size).map_err(at(step.clone()))?;
            let trans = match mem.mmap(size) {
                Ok(t) => t,
                Err(e) => {
                    let _ = mem.munmap(hdr);
                    return Err(at(step)(e));
                }
            };
            *slot = Some(Staging { mem, hdr, trans });
        }
        slot.as_ref()
            .ok_or_else(|| at(step)(KvmError::inval("staging buffers")))
    }

    /// The packet KVM left in the buffers.
    fn packet(&self, len: u32) -> Result<SevPacket, KvmError> {
        let mut header = SevPacketHeader::new_zeroed();
        self.mem.read(self.hdr, header.as_mut_bytes())?;
        let mut data = vec![0u8; len as usize];
        self.mem.read(self.trans, &mut data)?;
        Ok(SevPacket { header, data })
    }

    /// Put `packet` into the buffers.
    fn put(&self, packet: &SevPacket) -> Result<(), KvmError> {
        self.mem.write(self.hdr, packet.header.as_bytes())?;
        self.mem.write(self.trans, &packet.data)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // Unmapping fails only for a mapping that is already gone.
        let _ = self.mem.munmap(self.hdr);
        let _ = self.mem.munmap(self.trans);
    }
}

/// The target side of an SEV / SEV-ES migration (or of a snapshot restore): a VM made
/// an SEV guest, its vCPUs, RECEIVE_START with the source's PDH and session,
/// RECEIVE_UPDATE_DATA per page and (SEV-ES) RECEIVE_UPDATE_VMSA per vCPU, then
/// RECEIVE_FINISH hands a running launcher to the VMM. Dropping a receiver before
/// RECEIVE_FINISH leaves no runnable guest (its context is decommissioned with the VM).
pub struct SevReceiver<V: Vm + ?Sized = dyn Vm> {
    vm: Arc<V>,
    vcpus: Vec<Box<dyn Vcpu>>,
    handle: u32,
    staging: Option<Staging>,
}

impl<V: Vm + ?Sized> fmt::Debug for SevReceiver<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SevReceiver")
            .field("vm", &self.vm)
            .field("handle", &self.handle)
            .field("vcpus", &self.vcpus.len())
            .finish()
    }
}

impl<V: Vm + ?Sized> SevReceiver<V> {
    /// Make `vm` an SEV or SEV-ES guest to receive into (`init` as for
    /// [`SevLauncher::new`]).
    pub fn new(vm: Arc<V>, init: SevInit) -> Result<Self, LaunchError> {
        match init {
            SevInit::Init => vm.sev_init(),
            SevInit::EsInit => vm.sev_es_init(),
            SevInit::Init2(a) => vm.sev_init2(&a),
        }
        .map_err(at(LaunchStep::SevInit))?;
        Ok(SevReceiver {
            vm,
            vcpus: Vec::new(),
            handle: 0,
            staging: None,
        })
    }

    /// The VM.
    pub fn vm(&self) -> &Arc<V> {
        &self.vm
    }

    /// The vCPUs created so far.
    pub fn vcpus(&self) -> &[Box<dyn Vcpu>] {
        &self.vcpus
    }

    /// The firmware handle (0 before RECEIVE_START).
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// KVM_SEV_GUEST_STATUS.
    pub fn guest_status(&self) -> Result<KvmSevGuestStatus, LaunchError> {
        self.vm
            .sev_guest_status()
            .map_err(at(LaunchStep::SevGuestStatus))
    }

    /// KVM_CREATE_VCPU with `vmsa` as its register state: for SEV the registers the
    /// source sent in the clear (as QEMU migrates them); for SEV-ES the state is
    /// replaced by [`SevReceiver::receive_update_vmsa`].
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

    /// KVM_SEV_RECEIVE_START with the guest's `policy`, the **source** platform's
    /// PDH and the session SEND_START made (staged in VMM memory): the firmware
    /// checks the session and policy MACs; the new handle is returned.
    pub fn receive_start(
        &mut self,
        policy: u32,
        source_pdh: &SevCert,
        session: &SevSession,
    ) -> Result<u32, LaunchError> {
        let step = LaunchStep::SevReceiveStart;
        let mem = self.vm.vmm_memory();
        let pdh = stage(
            &*mem,
            Some(source_pdh.as_bytes()),
            LaunchStep::Stage("source PDH"),
        )?
        .unwrap_or_default();
        let ses = match stage(
            &*mem,
            Some(session.as_bytes()),
            LaunchStep::Stage("session"),
        ) {
            Ok(h) => h.unwrap_or_default(),
            Err(e) => {
                let _ = mem.munmap(pdh);
                return Err(e);
            }
        };
        let mut start = KvmSevReceiveStart {
            policy,
            pdh_uaddr: pdh.0,
            pdh_len: source_pdh.as_bytes().len() as u32,
            session_uaddr: ses.0,
            session_len: session.as_bytes().len() as u32,
            ..Default::default()
        };
        let r = self.vm.sev_receive_start(&mut start);
        let _ = mem.munmap(pdh);
        let _ = mem.munmap(ses);
        r.map_err(at(step))?;
        self.handle = start.handle;
        Ok(start.handle)
    }

    /// KVM_SEV_RECEIVE_UPDATE_DATA of `packet` into guest memory at the VMM address
    /// `uaddr` (one page, not crossing it). A packet whose MAC does not verify is
    /// refused with BAD_MEASUREMENT (sev-legacy.md §5.5).
    pub fn receive_update_data(
        &mut self,
        uaddr: Hva,
        packet: &SevPacket,
    ) -> Result<(), LaunchError> {
        let step = LaunchStep::SevReceiveUpdateData(uaddr);
        let (hdr, trans) = self.stage_packet(packet, step.clone())?;
        let r = self.vm.sev_receive_update_data(&KvmSevReceiveUpdateData {
            hdr_uaddr: hdr.0,
            hdr_len: packet.header.as_bytes().len() as u32,
            guest_uaddr: uaddr.0,
            guest_len: packet.data.len() as u32,
            trans_uaddr: trans.0,
            trans_len: packet.data.len() as u32,
            ..Default::default()
        });
        r.map_err(at(step))
    }

    /// KVM_SEV_RECEIVE_UPDATE_VMSA of `packet` into vCPU `vcpu_id`'s VMSA (SEV-ES,
    /// the softsev extension as [`SevLauncher::send_update_vmsa`]): the vCPU continues
    /// from the sent registers at its first KVM_RUN.
    pub fn receive_update_vmsa(
        &mut self,
        vcpu_id: u32,
        packet: &SevPacket,
    ) -> Result<(), LaunchError> {
        let step = LaunchStep::SevReceiveUpdateVmsa(vcpu_id);
        let (hdr, trans) = self.stage_packet(packet, step.clone())?;
        let r = self.vm.sev_receive_update_vmsa(&KvmSevReceiveUpdateVmsa {
            vcpu_id,
            hdr_uaddr: hdr.0,
            hdr_len: packet.header.as_bytes().len() as u32,
            trans_uaddr: trans.0,
            trans_len: packet.data.len() as u32,
            ..Default::default()
        });
        r.map_err(at(step))
    }

    /// KVM_SEV_RECEIVE_FINISH: the guest is RUNNING; the launcher of a running guest
    /// is handed back (its vCPUs to run, SEND_* to migrate it on).
    pub fn receive_finish(self) -> Result<SevLauncher<Running, V>, LaunchError> {
        self.vm
            .sev_receive_finish()
            .map_err(at(LaunchStep::SevReceiveFinish))?;
        Ok(SevLauncher {
            vm: self.vm,
            vcpus: self.vcpus,
            handle: self.handle,
            measurement: None,
            send_hdr_len: 0,
            staging: None,
            state: PhantomData,
        })
    }

    /// The packet in the reused staging buffers; their addresses.
    fn stage_packet(
        &mut self,
        packet: &SevPacket,
        step: LaunchStep,
    ) -> Result<(Hva, Hva), LaunchError> {
        let hdr_len = packet.header.as_bytes().len() as u32;
        let len = u32::try_from(packet.data.len()).unwrap_or(u32::MAX);
        let bufs = Staging::get(&mut self.staging, &*self.vm, hdr_len, len, step.clone())?;
        bufs.put(packet).map_err(at(step))?;
        Ok((bufs.hdr, bufs.trans))
    }
}
