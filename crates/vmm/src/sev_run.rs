//! Launching a [`SevLaunchPlan`] on the software platform the way QEMU drives KVM for
//! a `sev-guest` (shared/spec/sev-legacy.md §7.2, §8.1), through the backend traits
//! and the host's [`SevLauncher`] typestate: KVM_CREATE_VM of the plan's type,
//! KVM_SEV_INIT / ES_INIT / INIT2, ordinary memslots (no guest_memfd: SEV memory is
//! pinned VMM memory), LAUNCH_START with the owner's GODH and session, the vCPUs,
//! LAUNCH_UPDATE_DATA of every planned range, LAUNCH_UPDATE_VMSA for SEV-ES,
//! LAUNCH_MEASURE. The guest then waits in launch-secret: [`SevVm`] implements
//! [`QmpGuest`], so the QMP monitor injects secrets and `cont` issues LAUNCH_FINISH
//! (QEMU `sev_vm_state_change`); [`SevVm::finish`] does the same without a monitor.
//!
//! After LAUNCH_FINISH the guest boots ([`SevVm::boot`], also what `cont` does): vCPU 0
//! runs the SEV guest model (`softsev_guest::sev_boot`, sev-legacy.md §8.1, §8.3) and
//! each AP `sev_ap_entry` on its own vCPU, while the loop here plays QEMU's part of
//! KVM_RUN (halt, termination). The guest's work areas are the ones the SNP runs use
//! ([`crate::run`]): GHCB page at low-RAM top − 4 MiB, 1 MiB bounce buffers at top −
//! 2 MiB, AP GHCBs from top − 12 MiB; SEV-ES APs start through the AP jump table
//! (NAE 0x8000_0005, host-interfaces.md §2.7) placed at [`AP_JUMP_TABLE_GPA`], below
//! 1 MiB as real mode requires.
//!
//! `query-sev-capabilities` goes to the host's `/dev/sev` ioctls as QEMU's
//! `sev_get_capabilities` does: SEV_PDH_CERT_EXPORT and SEV_GET_ID2, each after its
//! length query ([`softsev_host::SoftHost::sev_pdh_cert_export`],
//! [`softsev_host::SoftHost::sev_get_id2`]).

use crate::qmp::{QmpError, QmpGuest, SevCapability, SevInfo, SevState, fw_error_to_str};
use crate::run::RunError;
use crate::sev_plan::SevLaunchPlan;
use softsev_abi::kvm::{KvmSevInit, KvmUserspaceMemoryRegion2};
use softsev_abi::sev_buf::SevSession;
use softsev_abi::sev_cert::SevCert;
use softsev_abi::{FwStatus, Gpa, PAGE_SIZE_2M, SevPolicy};
use softsev_firmware::FirmwareConfig;
use softsev_guest::sev_boot::{
    SecretAreaConfig, SevApConfig, SevApReport, SevBootConfig, SevBootReport, SevMode,
    sev_ap_entry, sev_boot,
};
use softsev_guest::{GuestError, KernelBlobs, MemRange};
use softsev_host::launch::{LaunchError, Measured, Running, SevInit, SevLauncher, SevUpdate};
use softsev_host::{
    CpuidEntry, GuestCpu, GuestEnd, Hva, Hypervisor, SevUserGetId2, SevUserPdhCertExport,
    SoftPlatform, SoftPlatformExt, Vcpu, VcpuExit, Vm, VmmMemory,
};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;
use zerocopy::{FromBytes, IntoBytes};

/// First plain-SEV ASID of the simulated host.
pub const MIN_SEV_ASID: u32 = 100;

/// SEV-ES AP jump table page: private, 4 KiB aligned, below 1 MiB (Linux places it in
/// low memory for the real-mode trampoline; `sev_es_setup_ap_jump_table`).
pub const AP_JUMP_TABLE_GPA: u64 = 0x9_E000;
/// Real-mode entry of the AP trampoline the jump table points at (below 1 MiB).
pub const AP_START_IP: u32 = 0x9_F000;

/// What the booted guest reported.
#[derive(Clone, Debug)]
pub struct SevBootOutcome {
    /// The BSP's report.
    pub bsp: SevBootReport,
    /// Each AP's report, with its vCPU id.
    pub aps: Vec<(u32, SevApReport)>,
}

/// The guest's boot configuration for `plan`: mode from the policy's ES bit, the work
/// areas above, the OVMF secret area from the footer, the kernel hashes check when the
/// plan measured a hashes table (`kernel-hashes=on` with a kernel) and `blobs` are the
/// kernel, initrd and command line QEMU loaded, and the APs for more than one vCPU.
pub fn boot_config(
    plan: &SevLaunchPlan,
    blobs: Option<&crate::plan::BootBlobs>,
) -> Result<SevBootConfig, RunError> {
    let mode = if plan.es {
        SevMode::SevEs
    } else {
        SevMode::Sev
    };
    let low_top = plan.memory.below_4g;
    if low_top < 16 << 20 {
        return Err(RunError::Platform(format!(
            "{low_top:#x} bytes of RAM below 4 GiB: softsev's guest needs at least 16 MiB"
        )));
    }
    let mut cfg = SevBootConfig::new(
        mode,
        Gpa(low_top - (4 << 20)),
        MemRange::new(low_top - (2 << 20), 1 << 20),
    );
    cfg.secret = plan.secret_area.map(|(base, size)| SecretAreaConfig {
        gpa: Gpa(u64::from(base)),
        size,
    });
    let table = plan
        .updates
        .iter()
        .find(|u| u.what == "kernel hashes table");
    if let (Some(t), Some(b)) = (table, blobs) {
        let mut cmdline = b.cmdline.clone().unwrap_or_default().into_bytes();
        cmdline.push(0);
        cfg.kernel = Some(KernelBlobs {
            table_gpa: t.gpa,
            area_size: 4096 - (t.gpa.0 & 0xFFF) as u32,
            kernel: b.kernel.clone(),
            initrd: b.initrd.clone().unwrap_or_default(),
            cmdline,
        });
        cfg.kernel_load_gpa = Some(Gpa(16 << 20));
    }
    if plan.vcpus > 1 {
        cfg.aps = Some(SevApConfig {
            apic_ids: (1..plan.vcpus).collect(),
            jump_table_gpa: Gpa(AP_JUMP_TABLE_GPA),
            start_ip: AP_START_IP,
            ghcb_base: plan.es.then(|| Gpa(low_top - (12 << 20))),
        });
    }
    Ok(cfg)
}

/// QEMU's part of KVM_RUN for an SEV / SEV-ES vCPU: the guest model handles its own
/// intercepts through the host, so the VMM sees only the end (halt or termination).
/// With `workload_port`, the exit at the end of a workload batch is the guest running
/// on (the migration engine runs it further, [`crate::migration::sev`]).
fn run_vcpu(vcpu: &mut dyn Vcpu, workload_port: Option<u16>) -> Result<(), RunError> {
    let id = vcpu.id();
    match vcpu.run().map_err(kvm(format!("KVM_RUN vCPU {id}")))? {
        VcpuExit::Hlt => Ok(()),
        VcpuExit::Io {
            port, write: true, ..
        } if Some(*port) == workload_port => Ok(()),
        VcpuExit::SystemEvent { data, .. } => {
            let v = data.first().copied().unwrap_or(0);
            // GHCB termination request: bits 15:12 reason set, 23:16 reason code.
            Err(RunError::Terminated {
                set: (v >> 12) & 0xF,
                code: (v >> 16) & 0xFF,
                cause: None,
            })
        }
        other => Err(RunError::Exit {
            vcpu: id,
            exit: format!("{other:?}"),
        }),
    }
}

/// One memslot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    pub(crate) gpa: u64,
    pub(crate) size: u64,
    pub(crate) hva: Hva,
}

/// Where the launch is.
pub(crate) enum Stage {
    /// LAUNCH_MEASURE done: launch-secret.
    Measured(SevLauncher<Measured>),
    /// LAUNCH_FINISH done (or RECEIVE_FINISH on a migration target).
    Running(SevLauncher<Running>),
    /// A migration target before its stream (`-incoming`): the VM and its memslots,
    /// no firmware context yet.
    Incoming(Arc<dyn Vm>),
    /// SEND_FINISH done: the guest was migrated away (firmware state SENT).
    Sent(SevLauncher<Running>),
    /// A failed transition left nothing to drive.
    Gone,
}

/// What the VM was built from, for a migration stream's header and a target's check.
#[derive(Clone, Debug)]
pub(crate) struct VmShape {
    pub(crate) es: bool,
    pub(crate) vcpus: u32,
    pub(crate) kvm_init: crate::config::SevKvmInit,
    pub(crate) vcpu_states: Vec<softsev_abi::vmsa::Vmsa>,
    pub(crate) ram_size: u64,
    pub(crate) launch_digest: [u8; 32],
}

/// An SEV / SEV-ES VM launched up to LAUNCH_MEASURE, and then further.
pub struct SevVm {
    pub(crate) platform: Arc<SoftPlatform>,
    pub(crate) mem: Arc<dyn VmmMemory>,
    pub(crate) slots: Vec<Slot>,
    pub(crate) stage: Stage,
    measurement: [u8; 48],
    pub(crate) policy: u32,
    pub(crate) product: softsev_abi::Product,
    pub(crate) secret_area: Option<(u32, u32)>,
    quit: bool,
    pub(crate) boot_cfg: SevBootConfig,
    booted: Option<Result<SevBootOutcome, String>>,
    pub(crate) shape: VmShape,
    /// The guest's workload and how the migration engine paces it.
    pub(crate) workload: Option<crate::migration::sev::WorkloadRun>,
    /// The last migration (source or target) and the moved guest's check.
    pub(crate) migration: crate::migration::sev::MigrationState,
}

impl std::fmt::Debug for SevVm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SevVm")
            .field("policy", &self.policy)
            .field("running", &matches!(self.stage, Stage::Running(_)))
            .finish_non_exhaustive()
    }
}

fn kvm(step: impl Into<String>) -> impl FnOnce(softsev_host::KvmError) -> RunError {
    let step = step.into();
    move |err| RunError::Kvm { step, err }
}

/// `ret=-errno fw_error=N 'text'` as QEMU prints a failed KVM_MEMORY_ENCRYPT_OP.
fn qemu_fw(e: &LaunchError) -> (i32, u32) {
    let ret = e.kvm().map_or(-5, |k| -k.errno.0);
    let fw = e.fw_status().map_or(0, |s| s.0);
    (ret, fw)
}

/// The certificates a guest owner checks a platform with: see
/// [`SevVm::owner_certificates`].
#[derive(Clone, Debug)]
pub struct SevOwnerCerts {
    /// PDH ‖ PEK ‖ OCA ‖ CEK (KDS-signed), 4 × 0x824 bytes.
    pub sev_chain: Vec<u8>,
    /// ASK ‖ ARK in AMD's CA-certificate format.
    pub ca: Vec<u8>,
}

/// A platform, its VM, the VMM's memory and the memslots.
type BuiltVm = (
    Arc<SoftPlatform>,
    Arc<dyn Vm>,
    Arc<dyn VmmMemory>,
    Vec<Slot>,
);

impl SevVm {
    /// The platform and the VM with its memslots for `plan` (what QEMU sets up before
    /// the confidential guest's launch, or before an incoming migration). The host's
    /// SEV-ES migration extension is on, so SEV-ES guests can be sent and received.
    fn build_vm(plan: &SevLaunchPlan, seed: Option<&[u8]>) -> Result<BuiltVm, RunError> {
        let top = plan
            .memory
            .regions
            .iter()
            .map(|r| r.gpa.0 + r.size)
            .max()
            .unwrap_or(0);
        // The BIOS's "SEV-ES ASID space limit": ASIDs 1..=99 for SEV-ES (and SNP),
        // 100.. for plain SEV (CPUID 0x8000001F EDX = min_sev_asid); the platform's
        // default gives every ASID to SEV-ES/SNP, which leaves plain SEV none.
        let mut fw = FirmwareConfig::for_product(plan.product);
        fw.min_sev_asid = fw.min_sev_asid.min(MIN_SEV_ASID);
        if let Some(s) = seed {
            fw.seed = Some(s.to_vec());
        }
        let params = softsev_host::ModuleParams {
            sev_es_migration: true,
            ..Default::default()
        };
        let mut builder = SoftPlatform::builder(plan.product)
            .firmware_config(fw)
            .module_params(params)
            .mem(
                (plan.memory.ram_size + top)
                    .saturating_add(1 << 30)
                    .next_multiple_of(PAGE_SIZE_2M),
            );
        if let Some(s) = seed {
            builder = builder.seed(s.to_vec());
        }
        let platform = Arc::new(builder.build()?);
        let vm_type = plan.kvm_init.vm_type();
        let vm = platform
            .create_vm(vm_type)
            .map_err(kvm(format!("KVM_CREATE_VM({})", vm_type.0)))?;
        let mem = vm.vmm_memory();
        let mut slots = Vec::new();
        for (i, r) in plan.memory.regions.iter().enumerate() {
            let hva = mem.mmap(r.size).map_err(kvm("mmap guest memory"))?;
            vm.set_user_memory_region2(&KvmUserspaceMemoryRegion2 {
                slot: i as u32,
                guest_phys_addr: r.gpa.0,
                memory_size: r.size,
                userspace_addr: hva.0,
                ..Default::default()
            })
            .map_err(kvm("KVM_SET_USER_MEMORY_REGION2"))?;
            slots.push(Slot {
                gpa: r.gpa.0,
                size: r.size,
                hva,
            });
        }
        let vm: Arc<dyn Vm> = vm;
        Ok((platform, vm, mem, slots))
    }

    fn shape(plan: &SevLaunchPlan) -> VmShape {
        VmShape {
            es: plan.es,
            vcpus: plan.vcpus,
            kvm_init: plan.kvm_init,
            vcpu_states: plan.vcpu_states.clone(),
            ram_size: plan.memory.ram_size,
            launch_digest: plan.expected_digest,
        }
    }

    /// A migration target for `plan` (QEMU with `-incoming`): the platform, the VM and
    /// its memslots, no launch; the guest arrives through
    /// [`crate::migration::sev::receive`] (or `migrate-incoming` / `-incoming URI`).
    pub fn incoming(plan: &SevLaunchPlan, seed: Option<&[u8]>) -> Result<SevVm, RunError> {
        if plan.handle != 0 {
            return Err(RunError::Platform(
                "sev-guest handle≠0 (key sharing) cannot receive a migrated guest".into(),
            ));
        }
        let (platform, vm, mem, slots) = Self::build_vm(plan, seed)?;
        Ok(SevVm {
            platform,
            mem,
            slots,
            stage: Stage::Incoming(vm),
            measurement: [0; 48],
            policy: plan.policy,
            product: plan.product,
            secret_area: plan.secret_area,
            quit: false,
            boot_cfg: boot_config(plan, None)?,
            booted: None,
            shape: Self::shape(plan),
            workload: None,
            migration: crate::migration::sev::MigrationState::default(),
        })
    }

    /// Build the platform and launch `plan` up to LAUNCH_MEASURE.
    pub fn launch(plan: &SevLaunchPlan, seed: Option<&[u8]>) -> Result<SevVm, RunError> {
        let (platform, vm, mem, slots) = Self::build_vm(plan, seed)?;
        let init = match plan.kvm_init {
            crate::config::SevKvmInit::SevInit => SevInit::Init,
            crate::config::SevKvmInit::SevEsInit => SevInit::EsInit,
            // QEMU passes all-zero INIT2 arguments (sev_common_kvm_init).
            crate::config::SevKvmInit::Init2(_) => SevInit::Init2(KvmSevInit::default()),
        };
        let session = match (&plan.owner.dh_cert, &plan.owner.session) {
            (None, None) => None,
            (Some(d), Some(s)) => {
                let cert = SevCert::read_from_bytes(d).map_err(|_| {
                    RunError::Platform(format!(
                        "dh-cert-file: {} bytes, an SEV certificate is 0x824",
                        d.len()
                    ))
                })?;
                let ses = SevSession::read_from_bytes(s).map_err(|_| {
                    RunError::Platform(format!(
                        "session-file: {} bytes, a launch session is 128",
                        s.len()
                    ))
                })?;
                Some((cert, ses))
            }
            _ => {
                return Err(RunError::Platform(
                    "sev-guest: dh-cert-file and session-file go together (the firmware \
                     needs both for a session)"
                        .into(),
                ));
            }
        };
        // QEMU: the confidential guest's kvm_init (LAUNCH_START) runs at accelerator
        // init, before the vCPUs exist.
        let launcher = SevLauncher::new(vm, init)?;
        // `handle` ≠ 0 asks to share the key of a running guest context on this
        // platform; in one `softsev run` there is none, so the firmware answers
        // INVALID_GUEST, and QEMU fails as `sev_launch_start` reports it.
        let mut l = launcher
            .launch_start_sharing(plan.policy, plan.handle, session)
            .map_err(|e| {
                let (ret, fw) = qemu_fw(&e);
                RunError::Platform(format!(
                    "sev_launch_start: LAUNCH_START ret={ret} fw_error={fw} '{}'",
                    fw_error_to_str(fw)
                ))
            })?;
        // KVM_CREATE_VCPU, then KVM_SET_CPUID2 with QEMU's table for the CPU model
        // (the host answers a plain SEV guest's CPUID from it, and an SEV-ES guest's
        // through the GHCB; not measured, sev-legacy.md §8.1).
        let cpuid: Vec<CpuidEntry> = crate::cpuid::qemu_cpuid_functions(plan.product, plan.vcpus)
            .iter()
            .map(|f| CpuidEntry {
                function: f.eax_in,
                index: f.ecx_in,
                eax: f.eax,
                ebx: f.ebx,
                ecx: f.ecx,
                edx: f.edx,
            })
            .collect();
        for (i, state) in plan.vcpu_states.iter().enumerate() {
            l.create_vcpu(i as u32, state)?;
        }
        for v in l.vcpus() {
            v.set_cpuid(&cpuid)
                .map_err(kvm(format!("KVM_SET_CPUID2 vCPU {}", v.id())))?;
        }
        let hva = |gpa: Gpa| {
            slots
                .iter()
                .find(|s| gpa.0 >= s.gpa && gpa.0 < s.gpa + s.size)
                .map(|s| Hva(s.hva.0 + (gpa.0 - s.gpa)))
        };
        for u in &plan.updates {
            let uaddr =
                hva(u.gpa).ok_or_else(|| RunError::Platform(format!("{u:?}: no memslot")))?;
            l.update_data(SevUpdate {
                gpa: u.gpa,
                uaddr,
                data: &u.data,
            })?;
        }
        if plan.es {
            l.update_vmsa()?;
        }
        let l = l.measure()?;
        let boot_cfg = boot_config(plan, None)?;
        let mut measurement = [0u8; 48];
        measurement.copy_from_slice(l.measurement().as_bytes());
        Ok(SevVm {
            platform,
            mem,
            slots,
            stage: Stage::Measured(l),
            measurement,
            policy: plan.policy,
            product: plan.product,
            secret_area: plan.secret_area,
            quit: false,
            boot_cfg,
            booted: None,
            shape: Self::shape(plan),
            workload: None,
            migration: crate::migration::sev::MigrationState::default(),
        })
    }

    /// Replace the guest's boot configuration (e.g. [`boot_config`] with the kernel
    /// blobs, for the kernel hashes check).
    pub fn set_boot_config(&mut self, cfg: SevBootConfig) {
        self.boot_cfg = cfg;
    }

    /// The guest's boot configuration.
    pub fn boot_config(&self) -> &SevBootConfig {
        &self.boot_cfg
    }

    /// Give the guest a memory workload to run after its boot (before the boot;
    /// [`crate::migration::sev::default_workload`] makes one), paced at `dirty_rate`
    /// bytes per second while a migration sends.
    pub fn set_workload(&mut self, desc: crate::migration::stream::WorkloadDesc, dirty_rate: u64) {
        self.workload = Some(crate::migration::sev::WorkloadRun {
            desc,
            dirty_rate,
            batches: 0,
            running: false,
        });
    }

    /// The workload, once set (or received).
    pub fn workload(&self) -> Option<&crate::migration::sev::WorkloadRun> {
        self.workload.as_ref()
    }

    /// The last migration of this VM.
    pub fn migration_state(&self) -> &crate::migration::sev::MigrationState {
        &self.migration
    }

    /// The boot's outcome, once [`SevVm::boot`] ran (`Err` = why it failed).
    pub fn boot_outcome(&self) -> Option<&Result<SevBootOutcome, String>> {
        self.booted.as_ref()
    }

    /// Boot the guest after LAUNCH_FINISH (once; later calls return the first outcome):
    /// `sev_boot` on vCPU 0, then `sev_ap_entry` on each AP the guest started.
    pub fn boot(&mut self) -> Result<&SevBootOutcome, RunError> {
        if self.booted.is_none() {
            let r = self.boot_once().map_err(|e| e.to_string());
            self.booted = Some(r);
        }
        match &self.booted {
            Some(Ok(o)) => Ok(o),
            Some(Err(e)) => Err(RunError::Platform(format!("SEV guest boot: {e}"))),
            None => Err(RunError::Platform("SEV guest boot did not run".into())),
        }
    }

    fn boot_once(&mut self) -> Result<SevBootOutcome, RunError> {
        let Stage::Running(l) = &mut self.stage else {
            return Err(RunError::Platform(
                "the guest boots after LAUNCH_FINISH (cont)".into(),
            ));
        };
        let cfg = self.boot_cfg.clone();
        let mode = cfg.mode;
        // After the boot the BSP runs the workload, if any: batch after batch, each
        // ending in its OUT to the workload's port.
        let workload = match &self.workload {
            Some(w) => Some(
                crate::migration::sev::workload_config(&cfg, &w.desc)
                    .map_err(|e| RunError::Platform(e.to_string()))?,
            ),
            None => None,
        };
        let port = workload.as_ref().map(|w| w.exit_port);
        let vcpus = l.vcpus_mut();
        let Some(bsp) = vcpus.first_mut() else {
            return Err(RunError::Platform("no vCPUs".into()));
        };
        let (tx, rx) = mpsc::channel::<Result<SevBootReport, GuestError>>();
        let guest = move |cpu: &mut GuestCpu| {
            let r = sev_boot(&mut *cpu, &cfg);
            let ok = r.is_ok();
            let _ = tx.send(r);
            if !ok {
                return Ok(GuestEnd::Shutdown);
            }
            if let Some(w) = workload {
                use softsev_guest::workload::{workload_init, workload_step};
                let e = match workload_init(&mut *cpu, &w) {
                    Err(e) => e,
                    Ok(()) => loop {
                        if let Err(e) = workload_step(&mut *cpu, &w) {
                            break e;
                        }
                    },
                };
                tracing::debug!(error = %e, "the guest's workload stopped");
                return Ok(GuestEnd::Shutdown);
            }
            Ok(GuestEnd::Halt)
        };
        self.platform
            .set_guest(&mut **bsp, Box::new(guest))
            .map_err(kvm("install the guest on vCPU 0"))?;
        let ran = run_vcpu(&mut **bsp, port);
        let got = rx.recv_timeout(Duration::from_secs(2)).ok();
        let bsp_report = match (ran, got) {
            (Ok(()), Some(Ok(r))) => r,
            (_, Some(Err(e))) => {
                return Err(RunError::Platform(format!(
                    "vCPU 0: the SEV guest failed: {}",
                    e.root()
                )));
            }
            (Err(e), _) => return Err(e),
            (Ok(()), None) => {
                return Err(RunError::Exit {
                    vcpu: 0,
                    exit: "guest ended without a result".into(),
                });
            }
        };
        let mut aps = Vec::new();
        for v in vcpus.iter_mut().skip(1) {
            let id = v.id();
            let Some(i) = bsp_report.aps.iter().position(|a| *a == id) else {
                continue;
            };
            let ghcb = bsp_report.ap_ghcbs.get(i).copied();
            let (tx, rx) = mpsc::channel::<Result<SevApReport, GuestError>>();
            let ap = move |cpu: &mut GuestCpu| {
                let r = sev_ap_entry(&mut *cpu, mode, ghcb);
                let end = if r.is_ok() {
                    GuestEnd::Halt
                } else {
                    GuestEnd::Shutdown
                };
                let _ = tx.send(r);
                Ok(end)
            };
            self.platform
                .set_guest(&mut **v, Box::new(ap))
                .map_err(kvm(format!("install the guest on vCPU {id}")))?;
            let ran = run_vcpu(&mut **v, None);
            match (ran, rx.recv_timeout(Duration::from_secs(2)).ok()) {
                (Ok(()), Some(Ok(r))) => aps.push((id, r)),
                (_, Some(Err(e))) => {
                    return Err(RunError::Platform(format!(
                        "vCPU {id}: the SEV AP failed: {}",
                        e.root()
                    )));
                }
                (Err(e), _) => return Err(e),
                (Ok(()), None) => {
                    return Err(RunError::Exit {
                        vcpu: id,
                        exit: "AP ended without a result".into(),
                    });
                }
            }
        }
        if let Some(w) = self.workload.as_mut() {
            // The BSP stopped at the end of its first batch.
            w.running = true;
            w.batches = 1;
        }
        Ok(SevBootOutcome {
            bsp: bsp_report,
            aps,
        })
    }

    /// The LAUNCH_MEASURE blob (measure ‖ mnonce).
    pub fn measurement(&self) -> [u8; 48] {
        self.measurement
    }

    /// The platform's certificates as a guest owner collects them (sevctl `export
    /// --full` plus AMD's KDS, sev-legacy.md §2.4, §9.4): PDH ‖ PEK ‖ OCA from
    /// SEV_PDH_CERT_EXPORT with the CEK AMD's KDS signs for this chip in place of the
    /// unsigned one the firmware exports (the `--sev` file of `sevctl verify`), and
    /// ASK ‖ ARK (its `--ca` file). The KDS CEK and the AMD CA come from the simulated
    /// AMD side of the platform (simulator accessors).
    pub fn owner_certificates(&mut self) -> Result<SevOwnerCerts, QmpError> {
        let caps = self.capabilities()?;
        let (ask, ark) = self.platform.firmware().sev_ca_certs();
        let cek = self.platform.firmware().sev_kds_cek();
        let pek_oca = caps
            .cert_chain
            .get(..2 * softsev_abi::sev_buf::SEV_CERT_LEN)
            .ok_or_else(|| QmpError::generic("SEV: PDH_CERT_EXPORT returned a short chain"))?;
        let mut sev_chain = caps.pdh;
        sev_chain.extend_from_slice(pek_oca);
        sev_chain.extend_from_slice(cek.as_bytes());
        let mut ca = ask;
        ca.extend_from_slice(&ark);
        Ok(SevOwnerCerts { sev_chain, ca })
    }

    /// The firmware's launch digest of this guest (simulator accessor), to check the
    /// plan's expectation.
    pub fn firmware_launch_digest(&self) -> Option<[u8; 32]> {
        let handle = match &self.stage {
            Stage::Measured(l) => l.handle(),
            Stage::Running(l) | Stage::Sent(l) => l.handle(),
            Stage::Incoming(_) | Stage::Gone => return None,
        };
        self.platform.firmware().sev_launch_digest(handle)
    }

    /// Whether LAUNCH_FINISH was issued.
    pub fn finished(&self) -> bool {
        matches!(self.stage, Stage::Running(_))
    }

    /// Whether `quit` was executed.
    pub fn has_quit(&self) -> bool {
        self.quit
    }

    /// LAUNCH_FINISH (what the first `cont`, or a start without `-S`, does).
    pub fn finish(&mut self) -> Result<(), LaunchError> {
        match std::mem::replace(&mut self.stage, Stage::Gone) {
            Stage::Measured(l) => {
                self.stage = Stage::Running(l.finish()?.into_running());
                Ok(())
            }
            other => {
                self.stage = other;
                Ok(())
            }
        }
    }

    /// The guest's firmware state byte (GUEST_STATUS).
    pub fn guest_state(&self) -> Option<u32> {
        match &self.stage {
            Stage::Measured(l) => l.guest_status().ok().map(|s| s.state),
            Stage::Running(l) | Stage::Sent(l) => l.guest_status().ok().map(|s| s.state),
            Stage::Incoming(_) | Stage::Gone => None,
        }
    }

    pub(crate) fn hva(&self, gpa: u64, len: u64) -> Option<Hva> {
        let s = self
            .slots
            .iter()
            .find(|s| gpa >= s.gpa && gpa < s.gpa + s.size)?;
        (gpa.checked_add(len)? <= s.gpa + s.size).then(|| Hva(s.hva.0 + (gpa - s.gpa)))
    }
}

impl QmpGuest for SevVm {
    fn sev_info(&self) -> SevInfo {
        let v = self.platform.firmware().current_image().version;
        let (state, handle) = match &self.stage {
            Stage::Measured(l) => (SevState::LaunchSecret, l.handle()),
            Stage::Running(l) => (SevState::Running, l.handle()),
            // QEMU's SevState has no "sent": after SEND_FINISH the source stays in
            // send-update.
            Stage::Sent(l) => (SevState::SendUpdate, l.handle()),
            Stage::Incoming(_) | Stage::Gone => (SevState::Uninit, 0),
        };
        SevInfo {
            enabled: true,
            api_major: v.major,
            api_minor: v.minor,
            build_id: v.build,
            state,
            policy: self.policy,
            handle,
        }
    }

    fn capabilities(&mut self) -> Result<SevCapability, QmpError> {
        // QEMU sev_get_capabilities: sev_get_pdh_info (SEV_PDH_CERT_EXPORT length
        // query, then the export), sev_get_cpu0_id (SEV_GET_ID2 likewise), the host's
        // CPUID 0x8000001F EBX[5:0] and reduced-phys-bits 1 (sev-legacy.md §1.7–1.8).
        let host = self.platform.host();
        let ioctl_err = |what: &str, e: &softsev_host::KvmError| {
            let fw = e.fw.map_or(0, |s| s.0);
            QmpError::generic(format!(
                "SEV: Failed to {what} ret={} fw_err={fw} ({})",
                -e.errno.0,
                fw_error_to_str(fw)
            ))
        };
        let mut pdh = SevUserPdhCertExport::default();
        match host.sev_pdh_cert_export(&mut pdh) {
            Err(e) if e.fw == Some(FwStatus::INVALID_LENGTH) => {}
            Err(e) => return Err(ioctl_err("export PDH cert", &e)),
            Ok(()) => {}
        }
        pdh.pdh_cert = Some(vec![0; pdh.pdh_cert_len as usize]);
        pdh.cert_chain = Some(vec![0; pdh.cert_chain_len as usize]);
        host.sev_pdh_cert_export(&mut pdh)
            .map_err(|e| ioctl_err("export PDH cert", &e))?;
        let mut id = SevUserGetId2::default();
        match host.sev_get_id2(&mut id) {
            Err(e) if e.fw == Some(FwStatus::INVALID_LENGTH) => {}
            Err(e) => return Err(ioctl_err("get ID", &e)),
            Ok(()) => {}
        }
        id.data = Some(vec![0; id.length as usize]);
        host.sev_get_id2(&mut id)
            .map_err(|e| ioctl_err("get ID", &e))?;
        let cbitpos = crate::cpuid::qemu_cpuid_functions(self.product, 1)
            .iter()
            .find(|f| f.eax_in == 0x8000_001F)
            .map_or(0, |f| f.ebx & 0x3F);
        Ok(SevCapability {
            pdh: pdh.pdh_cert.unwrap_or_default(),
            cert_chain: pdh.cert_chain.unwrap_or_default(),
            cpu0_id: id.data.unwrap_or_default(),
            cbitpos,
            reduced_phys_bits: 1,
        })
    }

    fn launch_measure(&self) -> Option<Vec<u8>> {
        Some(self.measurement.to_vec())
    }

    fn secret_area(&self) -> Option<(u32, u32)> {
        self.secret_area
    }

    fn inject_secret(&mut self, header: &[u8], secret: &[u8], gpa: u64) -> Result<(), QmpError> {
        let Some(uaddr) = self.hva(gpa, secret.len() as u64) else {
            return Err(QmpError::generic(format!(
                "SEV: Failed to calculate guest address: No memory is mapped at address {gpa:#x}"
            )));
        };
        let Stage::Measured(l) = &mut self.stage else {
            return Err(QmpError::generic(format!(
                "SEV: failed to inject secret ret=-5 fw_error=2 '{}'",
                fw_error_to_str(2)
            )));
        };
        // The header goes through as the owner's bytes: the firmware checks hdr_len ≠ 52
        // (INVALID_LENGTH) after the guest address's alignment (§3.5).
        l.inject_secret_raw(header, secret, Gpa(gpa), uaddr)
            .map_err(|e| {
                let (ret, fw) = qemu_fw(&e);
                QmpError::generic(format!(
                    "SEV: failed to inject secret ret={ret} fw_error={fw} '{}'",
                    fw_error_to_str(fw)
                ))
            })
    }

    fn attestation_report(&mut self, mnonce: &[u8; 16]) -> Result<Vec<u8>, QmpError> {
        let r = match &self.stage {
            Stage::Measured(l) => l.attestation_report(*mnonce),
            Stage::Running(l) | Stage::Sent(l) => l.attestation_report(*mnonce),
            Stage::Incoming(_) | Stage::Gone => {
                return Err(QmpError::generic("SEV is not enabled"));
            }
        };
        r.map_err(|e| {
            let (ret, fw) = qemu_fw(&e);
            QmpError::generic(format!(
                "SEV: Failed to query the attestation report length ret={ret} fw_err={fw} ({})",
                fw_error_to_str(fw)
            ))
        })
    }

    fn read_phys(&mut self, gpa: u64, buf: &mut [u8]) -> bool {
        let Some(hva) = self.hva(gpa, buf.len() as u64) else {
            return false;
        };
        if SevPolicy(self.policy).0 & SevPolicy::NODBG != 0 {
            // No debug ops under NODBG: what the host sees.
            return self.mem.read(hva, buf).is_ok();
        }
        let r = match &self.stage {
            Stage::Measured(l) => l.dbg_decrypt(hva, buf.len() as u32),
            Stage::Running(l) | Stage::Sent(l) => l.dbg_decrypt(hva, buf.len() as u32),
            Stage::Incoming(_) | Stage::Gone => return false,
        };
        match r {
            Ok(v) if v.len() == buf.len() => {
                buf.copy_from_slice(&v);
                true
            }
            _ => false,
        }
    }

    fn translate(&mut self, _cpu: u32, _vaddr: u64) -> Option<u64> {
        None
    }

    fn start(&mut self) -> Result<(), QmpError> {
        self.finish().map_err(|e| {
            let (ret, fw) = qemu_fw(&e);
            QmpError::generic(format!(
                "sev_launch_finish: LAUNCH_FINISH ret={ret} fw_error={fw} '{}'",
                fw_error_to_str(fw)
            ))
        })?;
        if !matches!(self.stage, Stage::Running(_)) {
            return Err(QmpError::generic(
                "SEV: there is no runnable guest (it was migrated away, or an incoming \
                 migration failed)",
            ));
        }
        // A migrated-in guest continues where it stopped; it does not boot again.
        if self.migration.received.is_some() {
            if let Err(e) = crate::migration::sev::resume(self) {
                tracing::warn!(error = %e, "the migrated SEV guest failed");
            }
            return Ok(());
        }
        // The vCPUs run: the guest boots. A failed boot is the guest's business (the
        // outcome is kept for the run's summary), not an error of `cont`.
        if let Err(e) = self.boot() {
            tracing::warn!(error = %e, "SEV guest boot failed");
        }
        Ok(())
    }

    fn migrate_out(
        &mut self,
        uri: &crate::migration::MigrationUri,
        params: &crate::migration::MigrationParameters,
        status: &mut dyn FnMut(crate::migration::MigrationStatus),
    ) -> Result<crate::migration::MigrationInfo, QmpError> {
        crate::migration::sev::qmp_migrate_out(self, uri, params, status)
    }

    fn migrate_in(
        &mut self,
        uri: &crate::migration::MigrationUri,
        status: &mut dyn FnMut(crate::migration::MigrationStatus),
    ) -> Result<crate::migration::MigrationInfo, QmpError> {
        crate::migration::sev::qmp_migrate_in(self, uri, status)
    }

    fn stop(&mut self) {}

    fn quit(&mut self) {
        self.quit = true;
    }
}
