//! Running a launch plan on the software platform: the SoC, the secure-processor
//! firmware and the KVM-shaped host are built, the plan is executed the way QEMU drives
//! KVM for an SNP guest (VM of type SNP, INIT2, guest_memfd memslots, SNP_LAUNCH_START,
//! LAUNCH_UPDATE of every planned range with the memory attributes set private first,
//! a VMSA per vCPU, SNP_LAUNCH_FINISH), then vCPU 0 runs the guest model
//! (`softsev_guest::boot`) while this module plays QEMU's part of the run loop:
//! MAP_GPA_RANGE page-state changes, memory faults, the certificate exit of extended
//! guest requests, termination.

use crate::plan::{LaunchPlan, RegionKind};
use softsev_abi::kvm::*;
use softsev_abi::ovmf::SectionType;
use softsev_abi::page_info::PageType;
use softsev_abi::{Gpa, PAGE_SIZE_2M, PAGE_SIZE_4K, TcbVersion};
use softsev_firmware::identity::{CertChain, Chip};
use softsev_firmware::{Firmware, FirmwareConfig};
use softsev_guest::{
    AcceptMode, ApConfig, BootConfig, BootReport, GuestError, KernelBlobs, MemRange,
};
use softsev_host::{
    Backing, Errno, GuestCpu, GuestEnd, Hva, KvmError, MemAttr, ModuleParams, Prefault, SoftHost,
    SoftVcpu, SoftVm, VcpuExit,
};
use softsev_soc::{Soc, SocConfig};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use zerocopy::IntoBytes;

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
    /// The launch digest the firmware computed.
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
    Platform(String),
    /// A KVM call failed.
    #[error("{step}: {err}{}", fw_status(*.fw_error))]
    Kvm {
        /// What was being done.
        step: String,
        /// The KVM error.
        err: KvmError,
        /// The firmware status KVM passed back (`kvm_sev_cmd.error`).
        fw_error: u32,
    },
    /// The firmware rejected CPUID functions of the CPUID page.
    #[error(
        "SNP_LAUNCH_UPDATE of the CPUID page: the firmware rejected function(s) {0:?} (corrected values were written back)"
    )]
    CpuidRejected(Vec<usize>),
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

fn fw_status(e: u32) -> String {
    if e == 0 {
        String::new()
    } else {
        format!(" (firmware status {})", softsev_abi::FwStatus(e))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

struct Vmm {
    host: Arc<SoftHost>,
    vm: SoftVm,
    /// (gpa, size, hva) of each memslot.
    slots: Vec<(u64, u64, Hva)>,
}

impl Vmm {
    fn hva(&self, gpa: u64) -> Option<Hva> {
        self.slots
            .iter()
            .find(|(g, s, _)| gpa >= *g && gpa < g + s)
            .map(|(g, _, h)| Hva(h.0 + (gpa - g)))
    }

    fn kvm(step: impl Into<String>, err: KvmError) -> RunError {
        RunError::Kvm {
            step: step.into(),
            err,
            fw_error: 0,
        }
    }

    /// KVM_MEMORY_ENCRYPT_OP with `data` staged in VMM memory; `data` gets KVM's copy back.
    fn sev<T: IntoBytes + zerocopy::FromBytes + zerocopy::Immutable>(
        &self,
        step: &str,
        id: SevCmdId,
        data: &mut T,
    ) -> Result<(), RunError> {
        let user = self.host.user();
        let len = std::mem::size_of::<T>().max(1) as u64;
        let hva = user.mmap(len).map_err(|e| Self::kvm(step, e))?;
        user.write(hva, data.as_bytes())
            .map_err(|e| Self::kvm(step, e))?;
        let mut cmd = KvmSevCmd {
            id: id.0,
            data: hva.0,
            sev_fd: 3,
            ..Default::default()
        };
        let r = self.vm.memory_encrypt_op(&mut cmd);
        let back = user.read(hva, data.as_mut_bytes());
        let _ = user.munmap(hva);
        match r {
            Ok(()) => back.map_err(|e| Self::kvm(step, e)),
            Err(err) => Err(RunError::Kvm {
                step: step.to_string(),
                err,
                fw_error: cmd.error,
            }),
        }
    }
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
    let top = plan
        .memory
        .regions
        .iter()
        .map(|r| r.gpa.0 + r.size)
        .max()
        .unwrap_or(0);
    let soc_bytes = (plan.memory.ram_size + top)
        .saturating_add(1 << 30)
        .next_multiple_of(PAGE_SIZE_2M);
    let soc = Arc::new(Soc::new(SocConfig {
        seed: opts.seed.clone(),
        ..SocConfig::new(soc_bytes)
    }));
    let chip = Arc::new(
        match &opts.seed {
            Some(s) => Chip::from_seed(plan.product, s),
            None => Chip::random(plan.product),
        }
        .map_err(|e| RunError::Platform(format!("chip: {e}")))?,
    );
    let mut fwcfg = FirmwareConfig::for_product(plan.product);
    fwcfg.seed = opts.seed.clone();
    let fw = Arc::new(Firmware::new(soc, chip.clone(), fwcfg));
    let host = SoftHost::new(fw.clone(), ModuleParams::default())
        .map_err(|e| RunError::Platform(format!("host: {e}")))?;
    let vm = host
        .create_vm(VmType::SNP)
        .map_err(|e| Vmm::kvm("KVM_CREATE_VM(SNP)", e))?;
    let mut vmm = Vmm {
        host: host.clone(),
        vm,
        slots: Vec::new(),
    };
    let mut init = KvmSevInit {
        vmsa_features: plan.init2.vmsa_features,
        ghcb_version: plan.init2.ghcb_version,
        ..Default::default()
    };
    vmm.sev("KVM_SEV_INIT2", SevCmdId::INIT2, &mut init)?;
    // Certificates for extended guest requests come from the VMM (QEMU's certs-path,
    // else the chip's own chain).
    let mut none = [0u8; 8];
    vmm.sev(
        "KVM_SEV_SNP_ENABLE_REQ_CERTS",
        SevCmdId::SNP_ENABLE_REQ_CERTS,
        &mut none,
    )?;
    vmm.vm
        .enable_cap(KvmCap::EXIT_HYPERCALL, 1 << KVM_HC_MAP_GPA_RANGE)
        .map_err(|e| Vmm::kvm("KVM_ENABLE_CAP(EXIT_HYPERCALL)", e))?;
    for (slot, r) in plan.memory.regions.iter().enumerate() {
        let hva = host
            .user()
            .mmap(r.size)
            .map_err(|e| Vmm::kvm("mmap guest memory", e))?;
        let gmem = vmm
            .vm
            .create_guest_memfd(&KvmCreateGuestMemfd {
                size: r.size,
                ..Default::default()
            })
            .map_err(|e| Vmm::kvm("KVM_CREATE_GUEST_MEMFD", e))?;
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
            .map_err(|e| Vmm::kvm("KVM_SET_USER_MEMORY_REGION2", e))?;
        vmm.slots.push((r.gpa.0, r.size, hva));
    }
    mark("platform", &mut t, &mut phases);

    // ---- launch ----
    progress("launch");
    let policy_bits = host
        .get_device_attr(KVM_X86_GRP_SEV, KVM_X86_SNP_POLICY_BITS)
        .map_err(|e| Vmm::kvm("KVM_GET_DEVICE_ATTR(KVM_X86_SNP_POLICY_BITS)", e))?;
    crate::config::check_policy_on_host(plan.start.policy, policy_bits)
        .map_err(|e| RunError::Platform(e.to_string()))?;
    let mut start = KvmSevSnpLaunchStart {
        policy: plan.start.policy.0,
        gosvw: plan.start.gosvw,
        ..Default::default()
    };
    vmm.sev(
        "KVM_SEV_SNP_LAUNCH_START",
        SevCmdId::SNP_LAUNCH_START,
        &mut start,
    )?;
    let mut vcpus: Vec<SoftVcpu> = Vec::new();
    for i in 0..plan.vcpus {
        let v = vmm
            .vm
            .create_vcpu(i)
            .map_err(|e| Vmm::kvm(format!("KVM_CREATE_VCPU({i})"), e))?;
        let state = plan
            .vmsa(i)
            .ok_or_else(|| RunError::Platform(format!("no VMSA for vCPU {i}")))?;
        v.set_vmsa_state(state)
            .map_err(|e| Vmm::kvm(format!("vCPU {i} registers"), e))?;
        vcpus.push(v);
    }
    for u in &plan.updates {
        let step = format!(
            "KVM_SEV_SNP_LAUNCH_UPDATE {:?} {}+{:#x}",
            u.page_type, u.gpa, u.len
        );
        let hva = vmm
            .hva(u.gpa.0)
            .ok_or_else(|| RunError::Platform(format!("{step}: no memslot")))?;
        if !u.data.is_empty() {
            host.user()
                .write(hva, &u.data)
                .map_err(|e| Vmm::kvm(step.clone(), e))?;
        }
        vmm.vm
            .set_memory_attributes(&KvmMemoryAttributes {
                address: u.gpa.0,
                size: u.len,
                attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE,
                flags: 0,
            })
            .map_err(|e| Vmm::kvm(step.clone(), e))?;
        let mut lu = KvmSevSnpLaunchUpdate {
            gfn_start: u.gpa.0 / PAGE_SIZE_4K,
            uaddr: hva.0,
            len: u.len,
            page_type: u.page_type.0,
            ..Default::default()
        };
        while lu.len > 0 {
            let before = lu.len;
            match vmm.sev(&step, SevCmdId::SNP_LAUNCH_UPDATE, &mut lu) {
                Ok(()) => {}
                Err(RunError::Kvm { fw_error, .. })
                    if u.page_type == PageType::CPUID
                        && fw_error == softsev_abi::FwStatus::INVALID_PARAM.0 =>
                {
                    let mut page = vec![0u8; PAGE_SIZE_4K as usize];
                    let _ = host.user().read(hva, &mut page);
                    let rejected = zerocopy::FromBytes::read_from_bytes(&page[..])
                        .map(|p| {
                            softsev_firmware::cpuid::rejected_functions(
                                &softsev_firmware::cpuid::PlatformCpuid::for_product(plan.product),
                                &p,
                            )
                        })
                        .unwrap_or_default();
                    return Err(RunError::CpuidRejected(rejected));
                }
                Err(e) => return Err(e),
            }
            if lu.len == before {
                return Err(RunError::Platform(format!("{step}: no progress")));
            }
        }
    }
    let id_block_hva = match &plan.finish.id_block {
        Some(b) => {
            let h = host
                .user()
                .mmap(4096)
                .map_err(|e| Vmm::kvm("id block", e))?;
            host.user()
                .write(h, b)
                .map_err(|e| Vmm::kvm("id block", e))?;
            h.0
        }
        None => 0,
    };
    let id_auth_hva = match &plan.finish.id_auth {
        Some(a) => {
            let h = host.user().mmap(4096).map_err(|e| Vmm::kvm("id auth", e))?;
            host.user()
                .write(h, &a[..])
                .map_err(|e| Vmm::kvm("id auth", e))?;
            h.0
        }
        None => 0,
    };
    let mut finish = KvmSevSnpLaunchFinish {
        id_block_uaddr: id_block_hva,
        id_auth_uaddr: id_auth_hva,
        id_block_en: u8::from(plan.finish.id_block.is_some()),
        auth_key_en: u8::from(plan.finish.auth_key_en),
        vcek_disabled: u8::from(plan.finish.vcek_disabled),
        host_data: plan.finish.host_data,
        ..Default::default()
    };
    vmm.sev(
        "KVM_SEV_SNP_LAUNCH_FINISH",
        SevCmdId::SNP_LAUNCH_FINISH,
        &mut finish,
    )?;
    let measurement = vmm
        .vm
        .sev_state()
        .snp_context()
        .and_then(|gctx| fw.launch_digest(gctx))
        .ok_or_else(|| RunError::Platform("no guest context after LAUNCH_FINISH".into()))?;
    mark("launch", &mut t, &mut phases);

    // ---- the guest ----
    progress("boot");
    let boot_cfg = boot_config(plan, opts)?;
    let reported_tcb = fw.reported_tcb();
    let chain = chip
        .vcek_chain(&reported_tcb)
        .map_err(|e| RunError::Platform(format!("VCEK chain: {e}")))?;
    let cert_table = match &plan.certs {
        Some(c) => c.clone(),
        None => chain
            .cert_table()
            .to_bytes()
            .map_err(|e| RunError::Platform(format!("certificate table: {e}")))?,
    };
    let (tx, rx) = mpsc::channel::<Result<(BootReport, Option<TamperResult>), GuestError>>();
    let Some(bsp) = vcpus.first_mut() else {
        return Err(RunError::Platform("no vCPUs".into()));
    };
    let tamper_gpa = opts.tamper_gpa;
    let (tvm, tsoc) = (vmm.vm.clone(), host.soc().clone());
    bsp.set_guest(move |cpu: &mut GuestCpu| {
        match softsev_guest::Guest::boot(&mut *cpu, &boot_cfg) {
            Ok((mut guest, report)) => {
                let tamper = tamper_gpa.map(|gpa| {
                    let host_action = tamper_page(&tvm, &tsoc, gpa);
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
        }
    });
    if let Err(e) = run_loop(&vmm, bsp, &cert_table) {
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
        let Some(i) = boot.aps_started.iter().position(|id| *id == v.id()) else {
            continue;
        };
        let Some(ghcb) = boot.ap_ghcbs.get(i).copied() else {
            continue;
        };
        let id = v.id();
        v.set_guest(
            move |cpu: &mut GuestCpu| match softsev_guest::ap::ap_entry(cpu, ghcb) {
                Ok(_) => Ok(GuestEnd::Halt),
                Err(e) => {
                    tracing::warn!(ap = id, error = %e, "AP failed");
                    Ok(GuestEnd::Shutdown)
                }
            },
        );
        run_loop(&vmm, v, &cert_table)?;
    }
    mark("boot", &mut t, &mut phases);
    let events = host.events().to_json_lines();
    Ok(RunOutcome {
        measurement,
        chain,
        boot,
        reported_tcb,
        chip,
        events,
        phases,
        tamper,
    })
}

/// The malicious host's move: RMPUPDATE the page backing `gpa` to the owner it already
/// has. Any hypervisor change of an RMP entry clears the validated bit.
fn tamper_page(vm: &SoftVm, soc: &Soc, gpa: u64) -> String {
    let Some(Backing::Private(spa)) = vm.lookup(Gpa(gpa)) else {
        return format!("GPA {gpa:#x} is not private guest memory; nothing changed");
    };
    let Ok((e, size)) = soc.rmp_lookup(spa) else {
        return format!("no RMP entry for {spa}; nothing changed");
    };
    // A 2 MiB entry is changed at its head.
    let spa = if size == softsev_soc::PageSize::Size2M {
        softsev_abi::Spa(spa.0 & !(PAGE_SIZE_2M - 1))
    } else {
        spa
    };
    let st = soc.rmpupdate(
        spa,
        &softsev_abi::rmp::RmpUpdateInput {
            gpa: e.gpa(),
            assigned: u8::from(e.assigned()),
            pagesize: u8::from(e.is_2m()),
            immutable: 0,
            asid: e.asid(),
            ..Default::default()
        },
    );
    format!(
        "RMPUPDATE of {spa} (GPA {gpa:#x}, ASID {}) to its current owner: {st:?}",
        e.asid()
    )
}

/// QEMU's part of KVM_RUN: loop until the vCPU halts.
fn run_loop(vmm: &Vmm, vcpu: &mut SoftVcpu, certs: &[u8]) -> Result<(), RunError> {
    let id = vcpu.id();
    loop {
        let exit = vcpu
            .run()
            .map_err(|e| Vmm::kvm(format!("KVM_RUN vCPU {id}"), e))?;
        match exit {
            VcpuExit::Hlt => return Ok(()),
            VcpuExit::Hypercall { .. } => {
                if !vmm.vm.handle_map_gpa_range(exit, Prefault::Now) {
                    return Err(RunError::Exit {
                        vcpu: id,
                        exit: format!("{exit:?}"),
                    });
                }
            }
            VcpuExit::MemoryFault { flags, gpa, size } => {
                let to = if *flags & KVM_MEMORY_EXIT_FLAG_PRIVATE != 0 {
                    MemAttr::Private
                } else {
                    MemAttr::Shared
                };
                let (gpa, size) = (*gpa, *size);
                vmm.vm
                    .convert_memory(Gpa(gpa), size, to, Prefault::OnAccess)
                    .map_err(|e| Vmm::kvm(format!("convert {gpa:#x}"), e))?;
            }
            VcpuExit::SnpReqCerts { gpa, npages, ret } => {
                let need = (certs.len() as u64).div_ceil(PAGE_SIZE_4K);
                if *npages < need {
                    *ret = Errno::ENOSPC.0 as u64;
                    *npages = need;
                } else {
                    let hva = vmm.hva(*gpa).ok_or_else(|| RunError::Exit {
                        vcpu: id,
                        exit: format!("certificate buffer {gpa:#x} outside memory"),
                    })?;
                    vmm.host
                        .user()
                        .write(hva, certs)
                        .map_err(|e| Vmm::kvm("write certificates", e))?;
                    *ret = 0;
                }
            }
            VcpuExit::SystemEvent { data, .. } => {
                let v = data.first().copied().unwrap_or(0);
                // GHCB termination request: bits 15:12 reason set, 23:16 reason code.
                return Err(RunError::Terminated {
                    set: (v >> 12) & 0xF,
                    code: (v >> 16) & 0xFF,
                    cause: None,
                });
            }
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
fn boot_config(plan: &LaunchPlan, opts: &RunOptions) -> Result<BootConfig, RunError> {
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
