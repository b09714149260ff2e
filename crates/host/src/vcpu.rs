//! vCPUs and KVM_RUN: the run loop, the exits a VMM sees (host-interfaces.md §1.9)
//! and the completion of an exit when the VMM re-enters. Guest code runs on its own
//! thread ([`crate::guest`]); the run loop waits for its VMGEXITs and faults.

use crate::error::{Errno, KvmError, KvmResult, einval};
use crate::events::Event;
use crate::ghcb::{Completion, Outcome};
use crate::guest::{GuestCpu, GuestEnd, GuestFn, ToGuest, ToHost};
use crate::state::{ApState, CpuidEntry, SevMode, VcpuShared, VcpuState};
use crate::vm::VmInner;
use softsev_abi::ghcb::{GHCB_VERSION_MIN, GhcbMsg};
use softsev_abi::kvm::{ExitReason, KVM_MEMORY_EXIT_FLAG_PRIVATE, SystemEventType, VmType};
use softsev_abi::vmsa::{VmcbSegment, Vmsa};
use softsev_abi::{CBit, Spa};
use softsev_guest::GuestFault;
use softsev_soc::Paging;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use zerocopy::{FromBytes, IntoBytes};

/// What the last KVM_RUN returned (`struct kvm_run`'s exit union). Fields the VMM
/// answers (`data` of an IN / MMIO read, `ret`) are written before the next run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VcpuExit {
    /// Never ran.
    None,
    /// The guest halted.
    Hlt,
    /// Triple fault.
    Shutdown,
    /// VMRUN failed (e.g. an AP's VMSA is not a valid VMSA page).
    FailEntry {
        /// `hardware_entry_failure_reason`.
        reason: u64,
    },
    /// KVM could not handle something.
    InternalError {
        /// Description.
        detail: String,
    },
    /// Port I/O.
    Io {
        /// Port.
        port: u16,
        /// Bytes (1, 2, 4).
        size: u8,
        /// OUT.
        write: bool,
        /// Data written, or (for IN) to be filled by the VMM.
        data: u32,
    },
    /// String port I/O (INS/OUTS through the GHCB scratch area).
    IoString {
        /// Port.
        port: u16,
        /// Bytes per element (1, 2, 4).
        size: u8,
        /// OUTS.
        write: bool,
        /// Elements.
        count: u32,
        /// `size × count` bytes written, or (for INS) to be filled by the VMM.
        data: Vec<u8>,
    },
    /// MMIO.
    Mmio {
        /// Physical address.
        gpa: u64,
        /// Length (1..=8).
        len: u8,
        /// Write.
        write: bool,
        /// Data written, or (for a read) to be filled by the VMM.
        data: [u8; 8],
    },
    /// A hypercall forwarded to userspace (MAP_GPA_RANGE for page-state changes).
    Hypercall {
        /// Hypercall number.
        nr: u64,
        /// Arguments.
        args: [u64; 6],
        /// Result, set by the VMM: 0, EINVAL or EAGAIN.
        ret: u64,
    },
    /// A system event (SEV termination).
    SystemEvent {
        /// Type.
        kind: SystemEventType,
        /// Data (`ndata` entries).
        data: Vec<u64>,
    },
    /// Private/shared mismatch (KVM_RUN fails with EFAULT; the VMM converts and retries).
    MemoryFault {
        /// `KVM_MEMORY_EXIT_FLAG_PRIVATE` if the access was private.
        flags: u64,
        /// GPA.
        gpa: u64,
        /// Size (4096).
        size: u64,
    },
    /// AP reset hold (userspace LAPIC): re-run after the SIPI.
    ApResetHold,
    /// Certificates for an extended guest request: write them to `gpa` (`npages`
    /// pages) and set `ret` 0, or set `ret` ENOSPC with `npages` = pages needed,
    /// or EAGAIN / EIO.
    SnpReqCerts {
        /// Guest buffer.
        gpa: u64,
        /// Its pages (in: guest's; on ENOSPC: needed).
        npages: u64,
        /// Result.
        ret: u64,
    },
}

impl VcpuExit {
    /// The KVM exit reason number.
    pub fn reason(&self) -> ExitReason {
        match self {
            VcpuExit::None => ExitReason::UNKNOWN,
            VcpuExit::Hlt => ExitReason::HLT,
            VcpuExit::Shutdown => ExitReason::SHUTDOWN,
            VcpuExit::FailEntry { .. } => ExitReason::FAIL_ENTRY,
            VcpuExit::InternalError { .. } => ExitReason::INTERNAL_ERROR,
            VcpuExit::Io { .. } | VcpuExit::IoString { .. } => ExitReason::IO,
            VcpuExit::Mmio { .. } => ExitReason::MMIO,
            VcpuExit::Hypercall { .. } => ExitReason::HYPERCALL,
            VcpuExit::SystemEvent { .. } => ExitReason::SYSTEM_EVENT,
            VcpuExit::MemoryFault { .. } => ExitReason::MEMORY_FAULT,
            VcpuExit::ApResetHold => ExitReason::AP_RESET_HOLD,
            VcpuExit::SnpReqCerts { .. } => ExitReason::SNP_REQ_CERTS,
        }
    }

    /// The errno KVM_RUN returns with this exit (EFAULT for a memory fault, else 0).
    pub fn errno(&self) -> Option<Errno> {
        matches!(self, VcpuExit::MemoryFault { .. }).then_some(Errno::EFAULT)
    }
}

/// The x86 RESET state in VMSA form, as KVM's `kvm_vcpu_reset` and SVM's `init_vmcb`
/// leave a new vCPU (AMD APM vol. 2 §14.1.3, Table 14-1): real mode at the reset
/// vector F000:FFF0, RDX = 0x600 (no CPUID set yet), EFER.SVME, x87/SSE at their
/// FNINIT / reset values. The VMM replaces it with the state it launches
/// ([`SoftVcpu::set_vmsa_state`]); SEV_FEATURES is the VM's.
fn reset_vmsa(sev_features: u64) -> Vmsa {
    let mut v = Vmsa::zeroed();
    let data = VmcbSegment::new(0, 0x93, 0xFFFF, 0);
    v.es = data;
    v.cs = VmcbSegment::new(0xF000, 0x9B, 0xFFFF, 0xFFFF_0000);
    v.ss = data;
    v.ds = data;
    v.fs = data;
    v.gs = data;
    v.gdtr = VmcbSegment::new(0, 0, 0xFFFF, 0);
    v.idtr = VmcbSegment::new(0, 0, 0xFFFF, 0);
    v.ldtr = VmcbSegment::new(0, 0x82, 0xFFFF, 0);
    v.tr = VmcbSegment::new(0, 0x8B, 0xFFFF, 0);
    v.efer = 0x1000;
    v.cr0 = 0x6000_0010;
    v.dr7 = 0x400;
    v.dr6 = 0xFFFF_0FF0;
    v.rflags = 0x2;
    v.rip = 0xFFF0;
    v.rdx = 0x600;
    v.g_pat = 0x0007_0406_0007_0406;
    v.xcr0 = 0x1;
    v.mxcsr = 0x1F80;
    v.x87_fcw = 0x37F;
    v.sev_features = sev_features;
    v
}

struct GuestThread {
    tx: Sender<ToGuest>,
    rx: Receiver<ToHost>,
}

/// A vCPU of the software host (a vCPU file descriptor).
pub struct SoftVcpu {
    vm: Arc<VmInner>,
    shared: Arc<VcpuShared>,
    guest_fn: Option<GuestFn>,
    thread: Option<GuestThread>,
    pending: Option<Completion>,
    resume_guest: bool,
    exit: VcpuExit,
    dead: Option<String>,
}

impl std::fmt::Debug for SoftVcpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftVcpu")
            .field("id", &self.shared.id())
            .field("exit", &self.exit)
            .finish_non_exhaustive()
    }
}

impl SoftVcpu {
    pub(crate) fn create(vm: Arc<VmInner>, id: u32) -> KvmResult<SoftVcpu> {
        let mut vcpus = vm.vcpus.lock();
        if vcpus.iter().any(|v| v.id() == id) {
            return Err(KvmError::new(Errno::EEXIST, format!("vCPU {id} exists")));
        }
        let vmsa_spa = vm.host.alloc_page()?;
        let regs = reset_vmsa(vm.sev.lock().vmsa_features());
        let shared = Arc::new(VcpuShared::new(id, VcpuState::new(regs, vmsa_spa)));
        vcpus.push(shared.clone());
        drop(vcpus);
        Ok(SoftVcpu {
            vm,
            shared,
            guest_fn: None,
            thread: None,
            pending: None,
            resume_guest: false,
            exit: VcpuExit::None,
            dead: None,
        })
    }

    /// The vCPU id.
    pub fn id(&self) -> u32 {
        self.shared.id()
    }

    /// Install the code the guest runs on this vCPU (before its first KVM_RUN).
    pub fn set_guest(
        &mut self,
        f: impl FnOnce(&mut GuestCpu) -> Result<GuestEnd, GuestFault> + Send + 'static,
    ) {
        self.guest_fn = Some(Box::new(f));
    }

    /// KVM_SET_CPUID2.
    pub fn set_cpuid(&self, entries: &[CpuidEntry]) {
        self.shared.state().set_cpuid(entries);
    }

    /// Set the register state the launch measures (KVM_SET_REGS/SREGS/XSAVE as one
    /// VMSA image; SEV_FEATURES is replaced by the VM's). Once the VMSA is encrypted
    /// (LAUNCH_UPDATE_VMSA, SNP_LAUNCH_FINISH) the state is protected: `-EINVAL` for
    /// the VM types that have protected state (SEV-ES, SNP: KVM's
    /// `kvm->arch.has_protected_state`); on a KVM_X86_DEFAULT_VM made SEV-ES by
    /// ES_INIT KVM still accepts the write into its own copy, which the guest never
    /// sees. Plain SEV guests' registers are never protected.
    pub fn set_vmsa_state(&self, v: &Vmsa) -> KvmResult {
        let mut st = self.shared.state();
        if st.set_regs(v) {
            return Ok(());
        }
        if self.vm.vm_type == VmType::DEFAULT {
            st.set_stale(v);
            return Ok(());
        }
        einval("guest state is protected")
    }

    /// The register state: before protection the state the launch will measure;
    /// once protected `-EINVAL` for SEV-ES / SNP VM types, and on a DEFAULT-type VM
    /// made SEV-ES by ES_INIT KVM's stale copy (as measured, or as last written).
    pub fn get_vmsa_state(&self) -> KvmResult<Vmsa> {
        let st = self.shared.state();
        if !st.protected() {
            return Ok(st.regs().clone());
        }
        if self.vm.vm_type == VmType::DEFAULT {
            return Ok(st.stale().unwrap_or(st.regs()).clone());
        }
        einval("guest state is protected")
    }

    /// The register state as measured (the host's record of the launch VMSA, readable
    /// whatever the protection; a simulator view, see [`SoftVcpu::get_vmsa_state`] for
    /// what KVM_GET_REGS answers).
    pub fn vmsa_state(&self) -> Vmsa {
        self.shared.state().regs().clone()
    }

    /// The SPA of the vCPU's launch VMSA page.
    pub fn vmsa_spa(&self) -> Spa {
        self.shared.state().vmsa_spa()
    }

    /// Deliver INIT (as the BSP's INIT-SIPI would): a CREATE_ON_INIT VMSA takes effect.
    pub fn send_init(&self) {
        self.shared.state().deliver_init();
    }

    /// The AP-creation state.
    pub fn ap_state(&self) -> ApState {
        self.shared.state().ap()
    }

    /// The current GHCB MSR value (host view, as saved in the VMCB).
    pub fn ghcb_msr(&self) -> u64 {
        self.shared.ghcb_msr()
    }

    /// The last exit (`kvm_run`), writable for the VMM's answer.
    pub fn exit_mut(&mut self) -> &mut VcpuExit {
        &mut self.exit
    }

    /// KVM_RUN.
    pub fn run(&mut self) -> KvmResult<&mut VcpuExit> {
        let span = tracing::debug_span!("kvm_run", vcpu = self.shared.id());
        let _g = span.enter();
        if let Some(why) = &self.dead {
            return einval(format!("vCPU {} cannot run: {why}", self.shared.id()));
        }
        self.check_runnable()?;
        if let Err(why) = self.es_vmrun_load() {
            // VMRUN refuses a VMSA whose integrity check fails.
            tracing::debug!(vcpu = self.shared.id(), %why, "VMRUN fails");
            self.dead = Some(why);
            self.exit = VcpuExit::FailEntry { reason: u64::MAX };
            return Ok(&mut self.exit);
        }
        let exit = match (
            self.thread.is_none(),
            crate::ghcb::check_ap_vmsa(&self.vm, &self.shared),
        ) {
            (true, Some(why)) => {
                tracing::debug!(vcpu = self.shared.id(), %why, "VMRUN fails");
                VcpuExit::FailEntry { reason: u64::MAX }
            }
            _ => {
                // The VMSA is in use by the CPU while the vCPU runs: RMPUPDATE / PSMASH
                // of it fail with FAIL_INUSE meanwhile.
                let vmsa = self.current_vmsa();
                if let Some(spa) = vmsa {
                    let _ = self.vm.host.soc.set_in_use(spa, true);
                }
                let r = self.run_inner();
                if let Some(spa) = vmsa {
                    let _ = self.vm.host.soc.set_in_use(spa, false);
                }
                self.es_vmexit_save();
                if let Err(e) = &r
                    && self.thread.is_some()
                {
                    // An exit KVM could not handle fails KVM_RUN; the guest is left
                    // mid-instruction, so the vCPU cannot be resumed.
                    self.dead = Some(e.to_string());
                }
                r?
            }
        };
        self.vm.log.push(Event::Exit {
            vcpu: self.shared.id(),
            reason: exit.reason().0,
            detail: format!("{exit:?}"),
        });
        if matches!(
            exit,
            VcpuExit::SystemEvent { .. } | VcpuExit::Shutdown | VcpuExit::FailEntry { .. }
        ) {
            self.dead = Some(format!("{:?}", exit.reason()));
        }
        self.exit = exit;
        Ok(&mut self.exit)
    }

    /// SEV-ES (not SNP) with protected state: the register file lives in the
    /// encrypted VMSA page whenever the vCPU is out of KVM_RUN.
    fn es_state_in_vmsa(&self) -> bool {
        *self.vm.sev.lock().mode() == SevMode::SevEs && self.shared.state().protected()
    }

    /// #VMEXIT of an SEV-ES vCPU: the CPU saves the register file into the VMSA page
    /// with the guest's key and updates its TMR integrity value
    /// ([`softsev_firmware::Firmware::cpu_sev_es_save_vmsa`]), so SEND_UPDATE_VMSA
    /// carries the current registers.
    fn es_vmexit_save(&self) {
        if !self.es_state_in_vmsa() {
            return;
        }
        let (spa, page) = {
            let st = self.shared.state();
            let mut page = [0u8; 4096];
            page.copy_from_slice(st.regs().as_bytes());
            (st.vmsa_spa(), page)
        };
        let asid = self.vm.asid.load(std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = self
            .vm
            .host
            .firmware()
            .cpu_sev_es_save_vmsa(asid, spa, &page)
        {
            tracing::debug!(vcpu = self.shared.id(), error = %e, "VMSA save at #VMEXIT failed");
        }
    }

    /// VMRUN after RECEIVE_UPDATE_VMSA: the register file is loaded from the VMSA page
    /// (decrypted with the guest's key, integrity-checked against the TMR).
    fn es_vmrun_load(&self) -> Result<(), String> {
        let (spa, load) = {
            let mut st = self.shared.state();
            (st.vmsa_spa(), st.take_load_vmsa())
        };
        if !load {
            return Ok(());
        }
        let asid = self.vm.asid.load(std::sync::atomic::Ordering::Relaxed);
        let page = self
            .vm
            .host
            .firmware()
            .cpu_sev_es_load_vmsa(asid, spa)
            .map_err(|e| format!("vCPU {}: {e}", self.shared.id()))?;
        let v = Vmsa::read_from_bytes(&page[..])
            .map_err(|_| format!("vCPU {}: VMSA page size", self.shared.id()))?;
        *self.shared.state().regs_mut() = v;
        Ok(())
    }

    /// The SPA of the VMSA the vCPU runs from (SNP only).
    fn current_vmsa(&self) -> Option<Spa> {
        if !self.vm.snp() {
            return None;
        }
        let (ap, launch) = {
            let c = self.shared.state();
            (c.ap(), c.vmsa_spa())
        };
        match ap {
            ApState::Launch | ApState::PendingInit(_) => Some(launch),
            ApState::Created(gpa) => self.vm.mem.lock().gmem_peek(gpa.gfn().0),
            ApState::Destroyed => None,
        }
    }

    fn check_runnable(&mut self) -> KvmResult {
        let (pending, active) = {
            let s = self.vm.sev.lock();
            (s.snp_launch_pending(), s.is_active())
        };
        if matches!(
            self.vm.vm_type,
            softsev_abi::kvm::VmType::SEV
                | softsev_abi::kvm::VmType::SEV_ES
                | softsev_abi::kvm::VmType::SNP
        ) && !active
        {
            return einval("KVM_RUN before KVM_SEV_INIT2");
        }
        if pending {
            return einval("KVM_RUN of an SNP vCPU before SNP_LAUNCH_FINISH");
        }
        let ap = self.shared.state().ap();
        match ap {
            ApState::Destroyed => einval(format!(
                "vCPU {} has no VMSA (AP destroyed)",
                self.shared.id()
            )),
            _ => Ok(()),
        }
    }

    fn run_inner(&mut self) -> KvmResult<VcpuExit> {
        // Complete the exit the VMM answered.
        if let Some(c) = self.pending.take() {
            let exit = std::mem::replace(&mut self.exit, VcpuExit::None);
            match crate::ghcb::complete(&self.vm, &self.shared, c, &exit)? {
                Outcome::Resume => self.resume_guest = true,
                Outcome::Exit(e, c) => {
                    self.pending = c;
                    return Ok(e);
                }
            }
        }
        if self.thread.is_none() {
            let Some(f) = self.guest_fn.take() else {
                return einval(format!("vCPU {} has no guest code", self.shared.id()));
            };
            // The GHCB MSR at RESET holds the SEV-info response.
            let max = self.vm.sev.lock().ghcb_version();
            self.shared.set_ghcb_msr(
                GhcbMsg::SevInfoResp {
                    max,
                    min: GHCB_VERSION_MIN,
                    cbit: self.vm.host.params.cbit,
                }
                .encode(),
            );
            self.start_guest(f);
        } else if self.resume_guest {
            self.resume_guest = false;
            if let Some(t) = &self.thread {
                t.tx.send(ToGuest::Resume)
                    .map_err(|_| KvmError::new(Errno::EIO, "guest thread is gone"))?;
            }
        } else {
            // The guest ended earlier: it stays halted.
            return Ok(VcpuExit::Hlt);
        }
        loop {
            let ev = match &self.thread {
                Some(t) => t.rx.recv(),
                None => return Ok(VcpuExit::Hlt),
            };
            match ev {
                Ok(ToHost::Vmgexit) => match crate::ghcb::handle_vmgexit(&self.vm, &self.shared)? {
                    Outcome::Resume => {
                        if let Some(t) = &self.thread {
                            t.tx.send(ToGuest::Resume)
                                .map_err(|_| KvmError::new(Errno::EIO, "guest thread is gone"))?;
                        }
                    }
                    Outcome::Exit(e, c) => {
                        self.pending = c;
                        if self.pending.is_none() {
                            self.resume_guest = true;
                        }
                        return Ok(e);
                    }
                },
                Ok(ToHost::MemoryFault { gpa, c_bit }) => {
                    self.resume_guest = true;
                    return Ok(VcpuExit::MemoryFault {
                        flags: if c_bit == CBit::Private {
                            KVM_MEMORY_EXIT_FLAG_PRIVATE
                        } else {
                            0
                        },
                        gpa: gpa.0,
                        size: softsev_abi::PAGE_SIZE_4K,
                    });
                }
                Ok(ToHost::IoOut { port, size, data }) => {
                    // Nothing to complete for an OUT: the guest resumes at the next run.
                    self.resume_guest = true;
                    return Ok(VcpuExit::Io {
                        port,
                        size,
                        write: true,
                        data,
                    });
                }
                Ok(ToHost::Done(r)) => {
                    self.thread = None;
                    return Ok(match r {
                        Ok(GuestEnd::Halt) => VcpuExit::Hlt,
                        Ok(GuestEnd::Shutdown) => VcpuExit::Shutdown,
                        Err(GuestFault::Stopped) => VcpuExit::Shutdown,
                        Err(f) => {
                            tracing::debug!(fault = %f, "guest code ended with an unhandled fault");
                            VcpuExit::Shutdown
                        }
                    });
                }
                Err(_) => {
                    self.thread = None;
                    return Ok(VcpuExit::InternalError {
                        detail: "guest thread ended without reporting".into(),
                    });
                }
            }
        }
    }

    fn start_guest(&mut self, f: GuestFn) {
        let (to_host, from_guest) = channel();
        let (to_guest, from_host) = channel();
        let mut cpu = GuestCpu {
            vm: self.vm.clone(),
            vcpu: self.shared.clone(),
            tx: to_host.clone(),
            rx: from_host,
            vmpl: softsev_abi::Vmpl(0),
            paging: Paging::PaeOrLong,
        };
        let id = self.shared.id();
        let name = format!("guest-vcpu{id}");
        let spawn = std::thread::Builder::new().name(name).spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut cpu)))
                .unwrap_or_else(|_| {
                    tracing::debug!(vcpu = id, "guest code panicked");
                    Err(GuestFault::Stopped)
                });
            // Release the VM before reporting, so a VMM that drops its handles after
            // this exit tears the VM down at once.
            drop(cpu);
            let _ = to_host.send(ToHost::Done(r));
        });
        if spawn.is_err() {
            tracing::debug!(vcpu = id, "cannot start the guest thread");
            let (tx, rx) = channel();
            let _ = tx.send(ToHost::Done(Err(GuestFault::Stopped)));
            self.thread = Some(GuestThread { tx: to_guest, rx });
            return;
        }
        self.thread = Some(GuestThread {
            tx: to_guest,
            rx: from_guest,
        });
    }
}
