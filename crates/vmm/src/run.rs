//! Running a launch plan on the software platform. The platform comes from
//! [`SoftPlatform::builder`]; the plan is executed the way QEMU drives KVM for an SNP
//! guest, through the backend traits only ([`Hypervisor`], [`Vm`], [`Vcpu`],
//! [`VmmMemory`]) and the host's launch typestate ([`SnpLauncher`]): VM of type SNP,
//! INIT2, guest_memfd memslots, SNP_LAUNCH_START, a VMSA per vCPU, LAUNCH_UPDATE of
//! every planned range with the memory attributes set private first,
//! SNP_LAUNCH_FINISH. vCPU 0 then runs the guest model (`softsev_guest::boot`) while
//! `run_loop` plays QEMU's part of KVM_RUN: MAP_GPA_RANGE page-state changes, memory
//! faults, the certificate exit of extended guest requests, termination.
//!
//! The software-only parts go through [`SoftPlatformExt`]: installing the guest model on
//! a vCPU, the tampering demo, the chip's certificate chain and the event log. The
//! launch digest is what the guest attests (the MEASUREMENT field of its report, as a
//! relying party sees it), checked against the plan's; a rejected CPUID page is
//! explained by comparing the page sent with the one KVM copied back, as QEMU does.

use crate::plan::{LaunchPlan, RegionKind};
use softsev_abi::fw_buf::{SNP_CPUID_COUNT_MAX, SnpCpuidPage};
use softsev_abi::kvm::{
    KVM_HC_MAP_GPA_RANGE, KVM_MAP_GPA_RANGE_ENCRYPTED, KVM_MEM_GUEST_MEMFD,
    KVM_MEMORY_EXIT_FLAG_PRIVATE, KVM_X86_GRP_SEV, KVM_X86_SNP_POLICY_BITS, KvmCap,
    KvmCreateGuestMemfd, KvmSevInit, KvmSevSnpLaunchStart, KvmUserspaceMemoryRegion2, VmType,
};
use softsev_abi::ovmf::SectionType;
use softsev_abi::page_info::PageType;
use softsev_abi::report::{AttestationReport, ReportError};
use softsev_abi::{FwStatus, Gpa, PAGE_SIZE_2M, PAGE_SIZE_4K, TcbVersion};
use softsev_firmware::identity::{CertChain, Chip};
use softsev_guest::{
    AcceptMode, ApConfig, BootConfig, BootReport, GuestError, KernelBlobs, MemRange,
};
use softsev_host::launch::{
    Created, LaunchError, LaunchStep, Running, SnpFinish, SnpLauncher, SnpUpdate,
};
use softsev_host::{
    Conversion, Errno, GuestCpu, GuestEnd, Hva, Hypervisor, KvmError, PlatformError, SoftPlatform,
    SoftPlatformExt, Vcpu, VcpuExit, Vm, VmmMemory,
};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use zerocopy::FromBytes;

/// How to run a plan.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Seed for every random choice (chip identity, firmware keys, guest nonces are the
    /// caller's): the same plan, options and seed give the same bytes. `None` = random.
    pub seed: Option<Vec<u8>>,
    /// REPORT_DATA of the attestation report.
    pub nonce: [u8; 64],
    /// Memory acceptance at boot.
    pub accept: AcceptMode,
    /// Start the APs through AP creation.
    pub start_aps: bool,
    /// Act as a malicious host once the guest has booted: change the RMP entry of the
    /// guest page at this GPA (RMPUPDATE to the same owner, which clears its validated
    /// bit), then let the guest read the page. The outcome says whether it noticed.
    pub tamper_gpa: Option<u64>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            seed: None,
            nonce: [0; 64],
            accept: AcceptMode::Full,
            start_aps: true,
            tamper_gpa: None,
        }
    }
}

/// Everything a run produced.
pub struct RunOutcome {
    /// The launch digest, as the guest attests it (MEASUREMENT of its report); equal
    /// to the plan's expected digest, or the run fails.
    pub measurement: [u8; 48],
    /// ARK, ASK and VCEK (of REPORTED_TCB) of the chip, for verifiers.
    pub chain: CertChain,
    /// The guest's own account of its boot: the attestation report (0x4A0 bytes), the
    /// certificate table the host supplied with it, the derived key, counters, timings.
    pub boot: BootReport,
    /// REPORTED_TCB of the platform.
    pub reported_tcb: TcbVersion,
    /// The chip.
    pub chip: Arc<Chip>,
    /// Host events (exits and decisions), JSON lines.
    pub events: String,
    /// Wall time per phase.
    pub phases: Vec<(&'static str, Duration)>,
    /// What happened when the host tampered with a page ([`RunOptions::tamper_gpa`]).
    pub tamper: Option<TamperResult>,
}

/// A host-side change of a validated guest page and what the guest saw.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TamperResult {
    /// The page.
    pub gpa: u64,
    /// What the host did (or why it could not).
    pub host_action: String,
    /// The error the guest reported on its next access (`None`: it noticed nothing).
    pub guest_saw: Option<String>,
}

impl TamperResult {
    /// The guest noticed: its access failed with #VC 0x404 (page not validated).
    pub fn detected(&self) -> bool {
        self.guest_saw.is_some()
    }
}

impl std::fmt::Debug for RunOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOutcome")
            .field("measurement", &hex(&self.measurement))
            .field("boot", &self.boot)
            .field("phases", &self.phases)
            .finish_non_exhaustive()
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The platform could not be built.
    #[error("platform: {0}")]
    Build(PlatformError),
    /// The plan or the platform does not fit what the run needs.
    #[error("platform: {0}")]
    Platform(String),
    /// A launch step failed (the step, the errno, the firmware status once).
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// A KVM call outside the launch sequence failed.
    #[error("{step}: {err}")]
    Kvm {
        /// What was being done.
        step: String,
        /// The KVM error (errno, firmware status, reason).
        err: KvmError,
    },
    /// The firmware rejected CPUID functions of the CPUID page.
    #[error(
        "SNP_LAUNCH_UPDATE of the CPUID page: the firmware rejected function(s) {0:?} (corrected values were written back)"
    )]
    CpuidRejected(Vec<usize>),
    /// The guest's attestation report could not be parsed.
    #[error("the guest's attestation report: {0}")]
    Report(ReportError),
    /// The guest attests another launch digest than the plan expects.
    #[error("the guest attests measurement {attested}, the plan expects {expected}")]
    MeasurementMismatch {
        /// The plan's digest (hex).
        expected: String,
        /// MEASUREMENT of the guest's report (hex).
        attested: String,
    },
    /// The guest failed.
    #[error("guest: {0}")]
    Guest(#[from] GuestError),
    /// The guest asked the host to terminate it.
    #[error("guest terminated: reason set {set}, code {code:#x}{}", cause.as_ref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Terminated {
        /// Reason set (0 GHCB, 1 Linux).
        set: u64,
        /// Reason code.
        code: u64,
        /// What the guest reported, when it could say.
        cause: Option<String>,
    },
    /// The vCPU stopped in an unexpected way.
    #[error("vCPU {vcpu}: {exit}")]
    Exit {
        /// vCPU.
        vcpu: u32,
        /// The exit.
        exit: String,
    },
}

impl From<PlatformError> for RunError {
    fn from(e: PlatformError) -> Self {
        RunError::Build(e)
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(crate) fn kvm(step: impl Into<String>) -> impl FnOnce(KvmError) -> RunError {
    let step = step.into();
    move |err| RunError::Kvm { step, err }
}

/// One memslot: guest range and its shared backing in VMM memory.
#[derive(Debug, Clone, Copy)]
struct Slot {
    gpa: Gpa,
    size: u64,
    hva: Hva,
}

/// QEMU's side of one VM: the VM, the VMM's memory and the memslots it set up.
pub(crate) struct Vmm {
    pub(crate) vm: Arc<dyn Vm>,
    pub(crate) mem: Arc<dyn VmmMemory>,
    slots: Vec<Slot>,
}

impl Vmm {
    /// The VMM address backing `gpa`.
    pub(crate) fn hva(&self, gpa: Gpa) -> Option<Hva> {
        self.slots
            .iter()
            .find(|s| gpa.0 >= s.gpa.0 && gpa.0 < s.gpa.0 + s.size)
            .map(|s| Hva(s.hva.0 + (gpa.0 - s.gpa.0)))
    }

    /// KVM_CREATE_VM(SNP) and INIT2, the certificate exit, the MAP_GPA_RANGE exit and a
    /// guest_memfd memslot per planned region: the launcher in its `Created` state.
    pub(crate) fn create(
        hv: &dyn Hypervisor,
        plan: &LaunchPlan,
    ) -> Result<(Vmm, SnpLauncher<Created>), RunError> {
        let vm = hv
            .create_vm(VmType::SNP)
            .map_err(kvm("KVM_CREATE_VM(SNP)"))?;
        let mut launcher = SnpLauncher::new(
            vm.clone(),
            &KvmSevInit {
                vmsa_features: plan.init2.vmsa_features,
                ghcb_version: plan.init2.ghcb_version,
                ..Default::default()
            },
        )?;
        // Certificates for extended guest requests come from the VMM (QEMU's
        // certs-path, else the chip's own chain).
        launcher.enable_req_certs()?;
        vm.enable_cap(KvmCap::EXIT_HYPERCALL, 1 << KVM_HC_MAP_GPA_RANGE)
            .map_err(kvm("KVM_ENABLE_CAP(EXIT_HYPERCALL)"))?;
        let mut vmm = Vmm {
            mem: vm.vmm_memory(),
            vm,
            slots: Vec::new(),
        };
        for (slot, r) in plan.memory.regions.iter().enumerate() {
            let hva = vmm.mem.mmap(r.size).map_err(kvm("mmap guest memory"))?;
            let gmem = vmm
                .vm
                .create_guest_memfd(&KvmCreateGuestMemfd {
                    size: r.size,
                    ..Default::default()
                })
                .map_err(kvm("KVM_CREATE_GUEST_MEMFD"))?;
            vmm.vm
                .set_user_memory_region2(&KvmUserspaceMemoryRegion2 {
                    slot: slot as u32,
                    flags: KVM_MEM_GUEST_MEMFD,
                    guest_phys_addr: r.gpa.0,
                    memory_size: r.size,
                    userspace_addr: hva.0,
                    guest_memfd_offset: 0,
                    guest_memfd: gmem,
                    ..Default::default()
                })
                .map_err(kvm("KVM_SET_USER_MEMORY_REGION2"))?;
            vmm.slots.push(Slot {
                gpa: r.gpa,
                size: r.size,
                hva,
            });
        }
        Ok((vmm, launcher))
    }

    /// The launch proper: SNP_LAUNCH_START, the vCPUs with their VMSAs, every planned
    /// range, SNP_LAUNCH_FINISH.
    pub(crate) fn launch(
        &self,
        launcher: SnpLauncher<Created>,
        plan: &LaunchPlan,
    ) -> Result<SnpLauncher<Running>, RunError> {
        let mut l = launcher.start(&KvmSevSnpLaunchStart {
            policy: plan.start.policy.0,
            gosvw: plan.start.gosvw,
            ..Default::default()
        })?;
        for i in 0..plan.vcpus {
            let state = plan
                .vmsa(i)
                .ok_or_else(|| RunError::Platform(format!("no VMSA for vCPU {i}")))?;
            l.create_vcpu(i, state)?;
        }
        for u in &plan.updates {
            let uaddr = self.hva(u.gpa).ok_or_else(|| {
                let step = LaunchStep::SnpLaunchUpdate {
                    page_type: u.page_type,
                    gpa: u.gpa,
                    len: u.len,
                };
                RunError::Platform(format!("{step}: no memslot"))
            })?;
            let update = SnpUpdate {
                gpa: u.gpa,
                len: u.len,
                page_type: u.page_type,
                uaddr,
                data: &u.data,
            };
            match l.update_data(update) {
                Err(e)
                    if u.page_type == PageType::CPUID
                        && e.fw_status() == Some(FwStatus::INVALID_PARAM) =>
                {
                    return Err(RunError::CpuidRejected(self.cpuid_rejected(uaddr, &u.data)));
                }
                r => r?,
            }
        }
        let finish = SnpFinish {
            id_block: plan.finish.id_block.as_ref().map(|b| &b[..]),
            id_auth: plan.finish.id_auth.as_ref().map(|a| &a[..]),
            auth_key_en: plan.finish.auth_key_en,
            vcek_disabled: plan.finish.vcek_disabled,
            host_data: plan.finish.host_data,
        };
        Ok(l.finish(&finish)?.into_running())
    }

    /// What QEMU reports when SNP_LAUNCH_UPDATE refuses the CPUID page: the functions
    /// whose values differ between the page it sent and the page the firmware
    /// corrected, which KVM copied back to `uaddr`.
    fn cpuid_rejected(&self, uaddr: Hva, sent: &[u8]) -> Vec<usize> {
        let mut back = vec![0u8; PAGE_SIZE_4K as usize];
        if self.mem.read(uaddr, &mut back).is_err() {
            return Vec::new();
        }
        let (Ok(sent), Ok(back)) = (
            SnpCpuidPage::read_from_bytes(sent),
            SnpCpuidPage::read_from_bytes(&back[..]),
        ) else {
            return Vec::new();
        };
        let count = (sent.count as usize).min(SNP_CPUID_COUNT_MAX);
        sent.functions
            .iter()
            .zip(back.functions.iter())
            .take(count)
            .enumerate()
            .filter(|(_, (s, b))| s != b)
            .map(|(i, _)| i)
            .collect()
    }

    /// QEMU's `kvm_handle_hc_map_gpa_range`: convert `npages` pages at `gpa` (private
    /// pages prepared at once); 0, or EINVAL for a range outside the memslots or a
    /// failed conversion.
    pub(crate) fn map_gpa_range(&self, gpa: u64, npages: u64, attrs: u64) -> u64 {
        let einval = Errno::EINVAL.0 as u64;
        let Some(size) = npages.checked_mul(PAGE_SIZE_4K) else {
            return einval;
        };
        let Some(end) = gpa.checked_add(size) else {
            return einval;
        };
        if !gpa.is_multiple_of(PAGE_SIZE_4K) || !self.covers(gpa, end) {
            return einval;
        }
        let to = if attrs & KVM_MAP_GPA_RANGE_ENCRYPTED != 0 {
            Conversion::ToPrivate { prefault: true }
        } else {
            Conversion::ToShared
        };
        match self.vm.convert_memory(Gpa(gpa), size, to) {
            Ok(()) => 0,
            Err(_) => einval,
        }
    }

    /// Whether the memslots cover every page of `[gpa, end)`.
    fn covers(&self, gpa: u64, end: u64) -> bool {
        let mut at = gpa & !(PAGE_SIZE_4K - 1);
        let end = end & !(PAGE_SIZE_4K - 1);
        while at < end {
            match self
                .slots
                .iter()
                .find(|s| at >= s.gpa.0 && at < s.gpa.0 + s.size)
            {
                Some(s) => at = s.gpa.0 + s.size,
                None => return false,
            }
        }
        true
    }
}

/// Memory of the platform for `plan`: the guest's RAM and regions plus 1 GiB for the
/// host's own pages, in whole 2 MiB.
pub(crate) fn platform_mem(plan: &LaunchPlan) -> u64 {
    let top = plan
        .memory
        .regions
        .iter()
        .map(|r| r.gpa.0 + r.size)
        .max()
        .unwrap_or(0);
    (plan.memory.ram_size + top)
        .saturating_add(1 << 30)
        .next_multiple_of(PAGE_SIZE_2M)
}

/// Run `plan` on a fresh software platform; `progress(phase)` is called as phases start.
pub fn run(
    plan: &LaunchPlan,
    opts: &RunOptions,
    progress: &mut dyn FnMut(&'static str),
) -> Result<RunOutcome, RunError> {
    let mut phases: Vec<(&'static str, Duration)> = Vec::new();
    let mut t = Instant::now();
    let mark = |name: &'static str, t: &mut Instant, phases: &mut Vec<_>| {
        phases.push((name, t.elapsed()));
        *t = Instant::now();
    };

    // ---- the machine ----
    progress("platform");
    let mut builder = SoftPlatform::builder(plan.product).mem(platform_mem(plan));
    if let Some(seed) = &opts.seed {
        builder = builder.seed(seed.clone());
    }
    let platform = Arc::new(builder.build()?);
    let (vmm, launcher) = Vmm::create(&*platform, plan)?;
    mark("platform", &mut t, &mut phases);

    // ---- launch ----
    progress("launch");
    // As QEMU asks KVM which SNP policy bits it accepts before SNP_LAUNCH_START.
    let policy_bits = platform
        .get_device_attr(KVM_X86_GRP_SEV, KVM_X86_SNP_POLICY_BITS)
        .map_err(|err| RunError::Kvm {
            step: "KVM_GET_DEVICE_ATTR(KVM_X86_SNP_POLICY_BITS)".into(),
            err,
        })?;
    crate::config::check_policy_on_host(plan.start.policy, policy_bits)
        .map_err(|e| RunError::Platform(e.to_string()))?;
    let launched = vmm.launch(launcher, plan)?;
    mark("launch", &mut t, &mut phases);

    // ---- the guest ----
    progress("boot");
    let reported_tcb = platform.firmware().reported_tcb();
    let chain = platform
        .chip()
        .vcek_chain(&reported_tcb)
        .map_err(|e| RunError::Platform(format!("VCEK chain: {e}")))?;
    let cert_table = match &plan.certs {
        Some(c) => c.clone(),
        None => chain
            .cert_table()
            .to_bytes()
            .map_err(|e| RunError::Platform(format!("certificate table: {e}")))?,
    };
    let (boot, tamper) = boot(&platform, &vmm, launched, plan, opts, &cert_table)?;
    let attested = AttestationReport::parse(&boot.report)
        .map_err(RunError::Report)?
        .measurement;
    if attested != plan.expected_digest {
        return Err(RunError::MeasurementMismatch {
            expected: hex(&plan.expected_digest),
            attested: hex(&attested),
        });
    }
    mark("boot", &mut t, &mut phases);
    Ok(RunOutcome {
        measurement: attested,
        chain,
        boot,
        reported_tcb,
        chip: platform.chip().clone(),
        events: platform.events().to_json_lines(),
        phases,
        tamper,
    })
}

/// Boot the launched guest: the guest model on vCPU 0 (then the tampering demo, if
/// asked), the APs it started on theirs.
fn boot(
    platform: &Arc<SoftPlatform>,
    vmm: &Vmm,
    launched: SnpLauncher<Running>,
    plan: &LaunchPlan,
    opts: &RunOptions,
    cert_table: &[u8],
) -> Result<(BootReport, Option<TamperResult>), RunError> {
    let boot_cfg = boot_config(plan, opts)?;
    let (_, mut vcpus) = launched.into_parts();
    let (tx, rx) = mpsc::channel::<Result<(BootReport, Option<TamperResult>), GuestError>>();
    let Some(bsp) = vcpus.first_mut() else {
        return Err(RunError::Platform("no vCPUs".into()));
    };
    let tamper_gpa = opts.tamper_gpa;
    let (tplatform, tvm) = (platform.clone(), vmm.vm.clone());
    let guest = move |cpu: &mut GuestCpu| match softsev_guest::Guest::boot(&mut *cpu, &boot_cfg) {
        Ok((mut guest, report)) => {
            let tamper = tamper_gpa.map(|gpa| {
                let host_action = tplatform
                    .tamper_rmp_entry(&*tvm, Gpa(gpa))
                    .unwrap_or_else(|e| e.to_string());
                let mut buf = [0u8; 8];
                let guest_saw = guest
                    .read_private(&mut *cpu, Gpa(gpa), &mut buf)
                    .err()
                    .map(|e| e.to_string());
                TamperResult {
                    gpa,
                    host_action,
                    guest_saw,
                }
            });
            let _ = tx.send(Ok((report, tamper)));
            Ok(GuestEnd::Halt)
        }
        Err(e) => {
            let _ = tx.send(Err(e));
            Ok(GuestEnd::Shutdown)
        }
    };
    platform
        .set_guest(&mut **bsp, Box::new(guest))
        .map_err(kvm("install the guest on vCPU 0"))?;
    if let Err(e) = run_loop(vmm, &mut **bsp, cert_table) {
        // Tear the vCPUs down so a guest still waiting on its VMGEXIT ends, then take
        // its own account of what went wrong.
        drop(vcpus);
        return Err(match e {
            RunError::Terminated { set, code, .. } => RunError::Terminated {
                set,
                code,
                cause: rx
                    .recv_timeout(Duration::from_secs(2))
                    .ok()
                    .and_then(|r| r.err())
                    .map(|g: GuestError| g.root().to_string()),
            },
            e => e,
        });
    }
    let (boot, tamper) = match rx.try_recv() {
        Ok(r) => r?,
        Err(_) => {
            return Err(RunError::Exit {
                vcpu: 0,
                exit: "guest ended without a result".into(),
            });
        }
    };
    // The APs the guest created run from their new VMSA: check SEV_STATUS, register
    // their own GHCB, query the hypervisor features, halt.
    for v in vcpus.iter_mut().skip(1) {
        let id = v.id();
        let Some(i) = boot.aps_started.iter().position(|ap| *ap == id) else {
            continue;
        };
        let Some(ghcb) = boot.ap_ghcbs.get(i).copied() else {
            continue;
        };
        let ap = move |cpu: &mut GuestCpu| match softsev_guest::ap::ap_entry(cpu, ghcb) {
            Ok(_) => Ok(GuestEnd::Halt),
            Err(e) => {
                tracing::warn!(ap = id, error = %e, "AP failed");
                Ok(GuestEnd::Shutdown)
            }
        };
        platform
            .set_guest(&mut **v, Box::new(ap))
            .map_err(kvm(format!("install the guest on vCPU {id}")))?;
        run_loop(vmm, &mut **v, cert_table)?;
    }
    Ok((boot, tamper))
}

/// QEMU's part of KVM_RUN, over any backend's vCPU: loop until the vCPU halts.
/// KVM_EXIT_SNP_REQ_CERTS with a buffer large enough: the certificate table into the
/// guest's pages at `gpa` (QEMU's answer before it sets `ret` = 0).
pub(crate) fn write_req_certs(
    vmm: &Vmm,
    vcpu: u32,
    gpa: u64,
    certs: &[u8],
) -> Result<(), RunError> {
    let hva = vmm.hva(Gpa(gpa)).ok_or_else(|| RunError::Exit {
        vcpu,
        exit: format!("certificate buffer {gpa:#x} outside memory"),
    })?;
    vmm.mem.write(hva, certs).map_err(kvm("write certificates"))
}

/// KVM_EXIT_SYSTEM_EVENT from a GHCB termination request: bits 15:12 of the request
/// are the reason set, 23:16 the reason code.
pub(crate) fn termination(data: &[u64]) -> RunError {
    let v = data.first().copied().unwrap_or(0);
    RunError::Terminated {
        set: (v >> 12) & 0xF,
        code: (v >> 16) & 0xFF,
        cause: None,
    }
}

fn run_loop(vmm: &Vmm, vcpu: &mut dyn Vcpu, certs: &[u8]) -> Result<(), RunError> {
    let id = vcpu.id();
    loop {
        let exit = vcpu.run().map_err(kvm(format!("KVM_RUN vCPU {id}")))?;
        match exit {
            VcpuExit::Hlt => return Ok(()),
            VcpuExit::Hypercall { nr, args, ret } if *nr == KVM_HC_MAP_GPA_RANGE => {
                *ret = vmm.map_gpa_range(args[0], args[1], args[2]);
            }
            VcpuExit::MemoryFault { flags, gpa, size } => {
                let to = if *flags & KVM_MEMORY_EXIT_FLAG_PRIVATE != 0 {
                    Conversion::ToPrivate { prefault: false }
                } else {
                    Conversion::ToShared
                };
                let (gpa, size) = (*gpa, *size);
                vmm.vm
                    .convert_memory(Gpa(gpa), size, to)
                    .map_err(kvm(format!("convert {gpa:#x}")))?;
            }
            VcpuExit::SnpReqCerts { gpa, npages, ret } => {
                let need = (certs.len() as u64).div_ceil(PAGE_SIZE_4K);
                if *npages < need {
                    *ret = Errno::ENOSPC.0 as u64;
                    *npages = need;
                } else {
                    write_req_certs(vmm, id, *gpa, certs)?;
                    *ret = 0;
                }
            }
            VcpuExit::SystemEvent { data, .. } => return Err(termination(data)),
            other => {
                return Err(RunError::Exit {
                    vcpu: id,
                    exit: format!("{other:?}"),
                });
            }
        }
    }
}

/// What OVMF and Linux would know at boot, from the plan.
pub(crate) fn boot_config(plan: &LaunchPlan, opts: &RunOptions) -> Result<BootConfig, RunError> {
    let section = |kind: SectionType| {
        plan.updates.iter().find(|u| {
            matches!(u.source, crate::plan::UpdateSource::Metadata { kind: k, .. } if k == kind)
        })
    };
    let secrets = section(SectionType::SNP_SECRETS)
        .ok_or_else(|| RunError::Platform("the firmware has no SNP secrets page".into()))?
        .gpa;
    let ram: Vec<MemRange> = plan
        .memory
        .regions
        .iter()
        .filter(|r| r.kind == RegionKind::Ram)
        .map(|r| MemRange::new(r.gpa.0, r.size))
        .collect();
    let prevalidated: Vec<MemRange> = plan
        .updates
        .iter()
        .map(|u| MemRange::new(u.gpa.0, u.len))
        .collect();
    // Work areas near the top of low RAM: the GHCB page, the bounce buffers and the AP
    // VMSA pages (what Linux would allocate).
    let low_top = plan.memory.below_4g;
    if low_top < 16 << 20 {
        return Err(RunError::Platform(format!(
            "{low_top:#x} bytes of RAM below 4 GiB: softsev's guest needs at least 16 MiB"
        )));
    }
    let bounce = MemRange::new(low_top - (2 << 20), 1 << 20);
    let ghcb = Gpa(low_top - (4 << 20));
    let mut cfg = BootConfig::new(ghcb, secrets, ram, bounce, opts.nonce);
    cfg.prevalidated = prevalidated;
    cfg.cpuid_gpa = section(SectionType::CPUID).map(|u| u.gpa);
    cfg.accept = opts.accept;
    if opts.start_aps && plan.vcpus > 1 {
        cfg.aps = Some(ApConfig {
            apic_ids: (1..plan.vcpus).collect(),
            vmsa_base: Gpa(low_top - (8 << 20) + PAGE_SIZE_4K),
            start_ip: 0xFFFF_FFF0,
        });
        // Each AP registers its own GHCB page, made shared by the BSP beforehand.
        cfg.ap_ghcb_base = Some(Gpa(low_top - (12 << 20)));
    }
    if let (Some(b), Some(gpa)) = (&plan.boot, plan.kernel_hashes_gpa) {
        let mut cmdline = b.cmdline.clone().unwrap_or_default().into_bytes();
        cmdline.push(0);
        cfg.kernel = Some(KernelBlobs {
            table_gpa: gpa,
            area_size: 4096 - (gpa.0 & 0xFFF) as u32,
            kernel: b.kernel.clone(),
            initrd: b.initrd.clone().unwrap_or_default(),
            cmdline,
        });
        cfg.kernel_load_gpa = Some(Gpa(16 << 20));
    }
    Ok(cfg)
}
