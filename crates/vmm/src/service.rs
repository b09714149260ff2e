//! A booted SNP guest that keeps serving guest-message requests: the in-process guest
//! behind softsev's `/dev/sev-guest` and configfs-tsm front ends (frontends.md §7.1
//! step 2).
//!
//! [`GuestService::boot`] builds the platform and launches one SNP guest exactly as
//! `softsev run` does ([`crate::run`]: seeded chip identity, firmware, host, the launch
//! plan of the default configuration with the chosen product and policy), then boots
//! the guest model on vCPU 0 until its guest-message client
//! ([`softsev_guest::MsgClient`], the VMPCK taken from the secrets page) is ready. The
//! guest code then does not halt: it waits for requests, and each one is issued by the
//! guest itself on its vCPU — sealed with the VMPCK, written to the shared request page,
//! VMGEXIT (GUEST_REQUEST or EXT_GUEST_REQUEST), the host's SNP_GUEST_REQUEST to the
//! firmware, the response checked and opened by the guest. A VMM thread plays QEMU's
//! part of KVM_RUN meanwhile (page-state changes, memory faults, the certificate exit of
//! extended requests, termination). So sequence numbers, VMPCK disabling after a failure
//! and the certificate-length protocol behave as with Linux's sev-guest driver on KVM
//! (`drivers/virt/coco/sev-guest/sev-guest.c`, `snp_send_guest_request`).
//!
//! Requests are serialised (one guest thread takes them in order, as `snp_cmd_mutex`
//! does). If the guest or the host fails, the service stops: the pending and every later
//! request get [`GuestRequestError::Stopped`] naming what happened; nothing waits forever.

use crate::config::{Config, Smp};
use crate::cpu::CpuModel;
use crate::plan::LaunchPlan;
use crate::run::{RunError, RunOptions, Vmm, boot_config, hex, kvm, platform_mem};
use softsev_abi::ghcb::GuestReqVmmError;
use softsev_abi::guest_msg::MsgType;
use softsev_abi::kvm::{KVM_HC_MAP_GPA_RANGE, KVM_MEMORY_EXIT_FLAG_PRIVATE, KVM_X86_GRP_SEV};
use softsev_abi::report::AttestationReport;
use softsev_abi::{Gpa, PAGE_SIZE_4K, Product, TcbVersion};
use softsev_firmware::identity::CertChain;
use softsev_guest::{AcceptMode, CBit, CertBuf, Guest, GuestError, GuestFault, GuestPlatform};
use softsev_host::{
    Conversion, Errno, GuestCpu, GuestEnd, Hypervisor, SoftHost, SoftPlatform, SoftPlatformExt,
    Vcpu, VcpuExit, Vm,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use zeroize::Zeroizing;

/// Size of `struct snp_report_req` (include/uapi/linux/sev-guest.h), which is also the
/// MSG_REPORT_REQ payload the driver sends.
pub const REPORT_REQ_SIZE: usize = 96;
/// Size of `struct snp_derived_key_req`, the MSG_KEY_REQ payload the driver sends.
pub const KEY_REQ_SIZE: usize = 32;
/// `SEV_RET_NO_FW_CALL`: the exitinfo2 the driver starts with (`snp_guest_ioctl`) and
/// leaves when the request never reached the host.
pub const EXITINFO2_NO_FW_CALL: u64 = 0xff;
/// Certificate-buffer pages the guest has set aside in its shared region (pages 2..18
/// of the bounce region, `BootConfig::max_cert_pages`).
pub const MAX_CERT_PAGES: u32 = 16;

/// Linux errno values the driver returns (include/uapi/asm-generic/errno-base.h,
/// errno.h).
mod errno {
    pub(super) const EIO: i32 = 5;
    pub(super) const EINVAL: i32 = 22;
    pub(super) const ENOTTY: i32 = 25;
    pub(super) const EBADMSG: i32 = 74;
    pub(super) const ETIMEDOUT: i32 = 110;
}

/// How to boot the service's guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestServiceConfig {
    /// Seed of every random choice (chip identity, firmware keys): equal seeds give
    /// equal chips, equal VMPCKs and equal derived keys. `None` = random.
    pub seed: Option<Vec<u8>>,
    /// The processor generation (CPU model EPYC-Milan, EPYC-Genoa or EPYC-Turin).
    pub product: Product,
    /// SNP guest policy (LAUNCH_START), checked as QEMU and KVM check it.
    pub policy: u64,
    /// The VMPL the guest OS runs at, so the VMPCK it uses (Linux's default
    /// `vmpck_id = snp_vmpl`) and the lowest VMPL it may ask a report for.
    pub vmpl: u8,
    /// Whether the VMM hands the chip's certificate table (ARK, ASK, VCEK) to
    /// extended report requests; without, the certificate buffer stays zero.
    pub certs: bool,
}

impl Default for GuestServiceConfig {
    fn default() -> Self {
        GuestServiceConfig {
            seed: None,
            product: Product::Milan,
            policy: softsev_abi::GuestPolicy::QEMU_DEFAULT.0,
            vmpl: 0,
            certs: true,
        }
    }
}

/// One guest message, as the sev-guest driver builds it from an ioctl.
#[derive(Clone, PartialEq, Eq)]
pub enum GuestRequest {
    /// MSG_REPORT_REQ over GUEST_REQUEST (`SNP_GET_REPORT`).
    Report {
        /// MSG_VERSION of the header (the ioctl's `msg_version`).
        msg_version: u8,
        /// The `snp_report_req` bytes as the caller gave them (user_data, vmpl,
        /// reserved — the firmware checks the reserved bytes).
        req: [u8; REPORT_REQ_SIZE],
    },
    /// MSG_REPORT_REQ over EXT_GUEST_REQUEST (`SNP_GET_EXT_REPORT`).
    ExtReport {
        /// MSG_VERSION.
        msg_version: u8,
        /// The `snp_report_req` part of `snp_ext_report_req`.
        req: [u8; REPORT_REQ_SIZE],
        /// Certificate-buffer pages offered (0: none, the host then says how many it
        /// needs).
        certs_pages: u32,
    },
    /// MSG_KEY_REQ over GUEST_REQUEST (`SNP_GET_DERIVED_KEY`).
    DerivedKey {
        /// MSG_VERSION.
        msg_version: u8,
        /// The 32 bytes of `snp_derived_key_req`.
        req: [u8; KEY_REQ_SIZE],
    },
}

impl std::fmt::Debug for GuestRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GuestRequest::Report { msg_version, req } => f
                .debug_struct("Report")
                .field("msg_version", msg_version)
                .field("user_data", &hex(&req[..64]))
                .field("vmpl", &u32_at(req, 64))
                .finish(),
            GuestRequest::ExtReport {
                msg_version,
                req,
                certs_pages,
            } => f
                .debug_struct("ExtReport")
                .field("msg_version", msg_version)
                .field("user_data", &hex(&req[..64]))
                .field("vmpl", &u32_at(req, 64))
                .field("certs_pages", certs_pages)
                .finish(),
            GuestRequest::DerivedKey { msg_version, req } => f
                .debug_struct("DerivedKey")
                .field("msg_version", msg_version)
                .field("req", &hex(req))
                .finish(),
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map_or(0, u32::from_le_bytes)
}

/// `snp_report_req` bytes: `user_data`, `vmpl`, reserved zero.
fn report_req(user_data: &[u8; 64], vmpl: u32) -> [u8; REPORT_REQ_SIZE] {
    let mut req = [0u8; REPORT_REQ_SIZE];
    req[..64].copy_from_slice(user_data);
    req[64..68].copy_from_slice(&vmpl.to_le_bytes());
    req
}

impl GuestRequest {
    /// A report request with message version 1.
    pub fn report(user_data: &[u8; 64], vmpl: u32) -> Self {
        GuestRequest::Report {
            msg_version: 1,
            req: report_req(user_data, vmpl),
        }
    }

    /// An extended report request with message version 1 and `certs_pages` pages.
    pub fn ext_report(user_data: &[u8; 64], vmpl: u32, certs_pages: u32) -> Self {
        GuestRequest::ExtReport {
            msg_version: 1,
            req: report_req(user_data, vmpl),
            certs_pages,
        }
    }

    /// A derived-key request with message version 1 from the 32 request bytes.
    pub fn derived_key(req: [u8; KEY_REQ_SIZE]) -> Self {
        GuestRequest::DerivedKey {
            msg_version: 1,
            req,
        }
    }
}

/// What the firmware answered, after the guest checked and opened it.
pub struct GuestResponse {
    /// The decrypted response payload (MSG_REPORT_RSP: status, report size, report;
    /// MSG_KEY_RSP: status, derived key), as the driver copies it to the caller.
    pub payload: Zeroizing<Vec<u8>>,
    /// For an extended request with pages: the whole certificate buffer
    /// (`certs_pages` × 4 KiB, the host's table zero-padded). Empty otherwise.
    pub certs: Vec<u8>,
}

impl std::fmt::Debug for GuestResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestResponse")
            .field("payload_len", &self.payload.len())
            .field("certs_len", &self.certs.len())
            .finish()
    }
}

impl GuestResponse {
    /// The `status` word at the start of the response payload.
    pub fn status(&self) -> u32 {
        u32_at(&self.payload, 0)
    }
}

/// Why a guest request failed, with what the sev-guest driver reports for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestRequestError {
    /// The VMPCK was wiped after an earlier failure (`snp_send_guest_request`: "VMPCK
    /// is disabled", `-ENOTTY`).
    #[error("VMPCK{vmpck} is disabled (an earlier request failed)")]
    VmpckDisabled {
        /// The VMPCK.
        vmpck: u8,
    },
    /// The host needs a larger certificate buffer; the request was re-issued as a plain
    /// one so the sequence number advanced (`-EIO`, exitinfo2 = INVALID_LEN << 32).
    #[error("certificate buffer of {given} pages is too small: the host needs {needed}")]
    CertsTooSmall {
        /// Pages offered.
        given: u32,
        /// Pages the host asked for (RBX).
        needed: u64,
    },
    /// The host answered with an error in SW_EXITINFO2 (VMM error << 32 | firmware
    /// status). The VMPCK is disabled.
    #[error("the host answered the guest request with SW_EXITINFO2 {exitinfo2:#x}{}", if *busy { " (busy until the guest gave up)" } else { "" })]
    Host {
        /// SW_EXITINFO2.
        exitinfo2: u64,
        /// The host kept answering BUSY (`-ETIMEDOUT`).
        busy: bool,
    },
    /// The response failed the guest's checks (sequence number, type, version, size,
    /// authentication: `-EBADMSG`). The VMPCK is disabled.
    #[error("the firmware's response failed the guest's checks: {0}")]
    BadResponse(String),
    /// The message sequence number of the VMPCK is exhausted (`-EIO`).
    #[error("the message sequence number of VMPCK{vmpck} is exhausted")]
    SeqnoExhausted {
        /// The VMPCK.
        vmpck: u8,
    },
    /// The request cannot be issued as given (`-EINVAL`).
    #[error("invalid guest request: {0}")]
    Invalid(String),
    /// The guest failed while issuing the request (`-EIO`).
    #[error("guest: {0}")]
    Guest(String),
    /// The service's guest is no longer running (`-EIO`).
    #[error("the guest service has stopped: {0}")]
    Stopped(String),
}

impl GuestRequestError {
    /// The errno the sev-guest driver returns (positive).
    pub fn errno(&self) -> i32 {
        match self {
            GuestRequestError::VmpckDisabled { .. } => errno::ENOTTY,
            GuestRequestError::Host { busy: true, .. } => errno::ETIMEDOUT,
            GuestRequestError::BadResponse(_) => errno::EBADMSG,
            GuestRequestError::Invalid(_) => errno::EINVAL,
            GuestRequestError::CertsTooSmall { .. }
            | GuestRequestError::Host { .. }
            | GuestRequestError::SeqnoExhausted { .. }
            | GuestRequestError::Guest(_)
            | GuestRequestError::Stopped(_) => errno::EIO,
        }
    }

    /// The `exitinfo2` the driver leaves in `snp_guest_request_ioctl`: 0xff when the
    /// request never reached the host, SW_EXITINFO2 when it did, INVALID_LEN << 32
    /// after a too-small certificate buffer, 0 when the host succeeded but the
    /// response was bad.
    pub fn exitinfo2(&self) -> u64 {
        match self {
            GuestRequestError::CertsTooSmall { .. } => {
                u64::from(GuestReqVmmError::INVALID_LEN.0) << 32
            }
            GuestRequestError::Host { exitinfo2, .. } => *exitinfo2,
            GuestRequestError::BadResponse(_) => 0,
            GuestRequestError::VmpckDisabled { .. }
            | GuestRequestError::SeqnoExhausted { .. }
            | GuestRequestError::Invalid(_)
            | GuestRequestError::Guest(_)
            | GuestRequestError::Stopped(_) => EXITINFO2_NO_FW_CALL,
        }
    }

    /// The guest's error as the driver classifies it.
    fn from_guest(e: &GuestError) -> Self {
        match e.root() {
            GuestError::VmpckDisabled { vmpck } => {
                GuestRequestError::VmpckDisabled { vmpck: *vmpck }
            }
            GuestError::CertBufferTooSmall { given, needed } => GuestRequestError::CertsTooSmall {
                given: *given,
                needed: *needed,
            },
            GuestError::GuestRequest { vmm, fw } => GuestRequestError::Host {
                exitinfo2: (u64::from(vmm.0) << 32) | u64::from(fw.0),
                busy: *vmm == GuestReqVmmError::BUSY,
            },
            e @ (GuestError::MsgResponse { .. } | GuestError::MsgAuth { .. }) => {
                GuestRequestError::BadResponse(e.to_string())
            }
            GuestError::SeqnoExhausted { vmpck, .. } => {
                GuestRequestError::SeqnoExhausted { vmpck: *vmpck }
            }
            GuestError::Config(m) => GuestRequestError::Invalid(m.clone()),
            e => GuestRequestError::Guest(e.to_string()),
        }
    }
}

/// A request on its way to the guest thread, with where the answer goes.
struct Job {
    req: GuestRequest,
    reply: mpsc::SyncSender<Result<GuestResponse, GuestRequestError>>,
}

/// What the guest reports once booted.
struct Booted {
    sev_status: u64,
    report: Vec<u8>,
}

/// State shared by the service, its VMM thread and its guest.
#[derive(Debug, Default)]
struct Shared {
    /// Why the service stopped, once it did.
    fault: Mutex<Option<String>>,
    /// The VMM answers certificate requests with EAGAIN (throttling).
    vmm_busy: AtomicBool,
}

impl Shared {
    fn set_fault(&self, why: String) {
        let mut f = self.fault.lock().unwrap_or_else(|p| p.into_inner());
        f.get_or_insert(why);
    }

    fn fault(&self) -> Option<String> {
        self.fault.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A booted SNP guest serving guest-message requests (see the module documentation).
pub struct GuestService {
    jobs: Option<mpsc::Sender<Job>>,
    vmm_thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    platform: Arc<SoftPlatform>,
    vm: Arc<dyn Vm>,
    chain: CertChain,
    cert_table: Vec<u8>,
    reported_tcb: TcbVersion,
    measurement: [u8; 48],
    boot_report: Vec<u8>,
    secrets_gpa: Gpa,
    sev_status: u64,
    vmpck_id: u8,
    product: Product,
}

impl std::fmt::Debug for GuestService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestService")
            .field("product", &self.product)
            .field("vmpck_id", &self.vmpck_id)
            .field("sev_status", &format_args!("{:#x}", self.sev_status))
            .field("measurement", &hex(&self.measurement))
            .field("stopped", &self.shared.fault())
            .finish_non_exhaustive()
    }
}

/// The launch configuration of the service's guest: `softsev run`'s default (built-in
/// OVMF, generated kernel with kernel hashes) on one vCPU with 512 MiB, the product's
/// CPU model and the given policy.
fn service_config(cfg: &GuestServiceConfig) -> Result<Config, RunError> {
    let mut c = Config::default_run();
    let model = match cfg.product {
        Product::Milan => "EPYC-Milan",
        Product::Genoa => "EPYC-Genoa",
        Product::Turin => "EPYC-Turin",
    };
    c.cpu = CpuModel::parse(model).map_err(|e| RunError::Platform(e.to_string()))?;
    c.smp = Smp {
        cpus: 1,
        maxcpus: 1,
        sockets: 1,
        dies: 1,
        cores: 1,
        threads: 1,
    };
    c.memory.size = 512 << 20;
    crate::config::check_policy(cfg.policy).map_err(|e| RunError::Platform(e.to_string()))?;
    let snp = c
        .snp_mut()
        .ok_or_else(|| RunError::Platform("the default configuration is not SNP".into()))?;
    snp.policy = cfg.policy;
    snp.cbitpos = crate::cpu::host_cbitpos(cfg.product);
    Ok(c)
}

impl GuestService {
    /// Build the platform, launch the guest and boot it until its message client is
    /// ready (see the module documentation).
    pub fn boot(cfg: &GuestServiceConfig) -> Result<GuestService, RunError> {
        if cfg.vmpl > 3 {
            return Err(RunError::Platform(format!(
                "VMPL {} does not exist (0..=3)",
                cfg.vmpl
            )));
        }
        let config = service_config(cfg)?;
        let plan = LaunchPlan::build(&config).map_err(|e| RunError::Platform(e.to_string()))?;

        // The machine and the launch, as `run` does them.
        let mut builder = SoftPlatform::builder(plan.product).mem(platform_mem(&plan));
        if let Some(seed) = &cfg.seed {
            builder = builder.seed(seed.clone());
        }
        let platform = Arc::new(builder.build()?);
        let (vmm, launcher) = Vmm::create(&*platform, &plan)?;
        let policy_bits = platform
            .get_device_attr(KVM_X86_GRP_SEV, softsev_abi::kvm::KVM_X86_SNP_POLICY_BITS)
            .map_err(kvm("KVM_GET_DEVICE_ATTR(KVM_X86_SNP_POLICY_BITS)"))?;
        crate::config::check_policy_on_host(plan.start.policy, policy_bits)
            .map_err(|e| RunError::Platform(e.to_string()))?;
        let launched = vmm.launch(launcher, &plan)?;

        let reported_tcb = platform.firmware().reported_tcb();
        let chain = platform
            .chip()
            .vcek_chain(&reported_tcb)
            .map_err(|e| RunError::Platform(format!("VCEK chain: {e}")))?;
        let cert_table = if cfg.certs {
            chain
                .cert_table()
                .to_bytes()
                .map_err(|e| RunError::Platform(format!("certificate table: {e}")))?
        } else {
            Vec::new()
        };

        // The guest: boot as `softsev run` does (VMPCK of its VMPL, a boot report at
        // that VMPL, no derived key), then serve requests.
        let nonce = {
            let mut n = [0u8; 64];
            n[..24].copy_from_slice(b"softsev guest service \0\0");
            n
        };
        let opts = RunOptions {
            seed: cfg.seed.clone(),
            nonce,
            accept: AcceptMode::Full,
            start_aps: false,
            tamper_gpa: None,
        };
        let mut boot_cfg = boot_config(&plan, &opts)?;
        boot_cfg.vmpck = cfg.vmpl;
        boot_cfg.report.vmpl = u32::from(cfg.vmpl);
        boot_cfg.key = None;
        boot_cfg.max_cert_pages = MAX_CERT_PAGES;
        let secrets_gpa = boot_cfg.secrets_gpa;
        let layout = Layout {
            certs: Gpa(boot_cfg.bounce.start.0 + 2 * PAGE_SIZE_4K),
        };

        let (_, mut vcpus) = launched.into_parts();
        if vcpus.is_empty() {
            return Err(RunError::Platform("no vCPUs".into()));
        }
        let (boot_tx, boot_rx) = mpsc::channel::<Result<Booted, GuestError>>();
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let guest = move |cpu: &mut GuestCpu| match Guest::boot(&mut *cpu, &boot_cfg) {
            Ok((mut g, report)) => {
                let _ = boot_tx.send(Ok(Booted {
                    sev_status: report.sev_status,
                    report: report.report,
                }));
                drop(boot_tx);
                serve(cpu, &mut g, &jobs_rx, &layout)
            }
            Err(e) => {
                let _ = boot_tx.send(Err(e));
                Ok(GuestEnd::Shutdown)
            }
        };
        platform
            .set_guest(&mut *vcpus[0], Box::new(guest))
            .map_err(kvm("install the guest on vCPU 0"))?;

        let shared = Arc::new(Shared::default());
        let vm = vmm.vm.clone();
        let (tshared, tcerts) = (shared.clone(), cert_table.clone());
        let vmm_thread = std::thread::Builder::new()
            .name("softsev-guest-vmm".into())
            .spawn(move || {
                let r = vmm_loop(&vmm, &mut *vcpus[0], &tcerts, &tshared);
                let why = match r {
                    Ok(()) => "the guest halted".to_string(),
                    Err(e) => {
                        tracing::warn!(error = %e, "guest service: the vCPU stopped");
                        e.to_string()
                    }
                };
                tshared.set_fault(why);
                // Tear the vCPU down so a guest still waiting on its VMGEXIT ends.
                drop(vcpus);
            })
            .map_err(|e| RunError::Platform(format!("cannot start the VMM thread: {e}")))?;

        let mut svc = GuestService {
            jobs: Some(jobs_tx),
            vmm_thread: Some(vmm_thread),
            shared,
            platform,
            vm,
            chain,
            cert_table,
            reported_tcb,
            measurement: [0; 48],
            boot_report: Vec::new(),
            secrets_gpa,
            sev_status: 0,
            vmpck_id: cfg.vmpl,
            product: plan.product,
        };
        match boot_rx.recv() {
            Ok(Ok(b)) => {
                svc.sev_status = b.sev_status;
                let attested = AttestationReport::parse(&b.report)
                    .map_err(RunError::Report)?
                    .measurement;
                if attested != plan.expected_digest {
                    return Err(RunError::MeasurementMismatch {
                        expected: hex(&plan.expected_digest),
                        attested: hex(&attested),
                    });
                }
                svc.measurement = attested;
                svc.boot_report = b.report;
                Ok(svc)
            }
            Ok(Err(e)) => {
                let cause = e.root().to_string();
                // The host stopped the vCPU: its account is the better one.
                let host_stopped = matches!(
                    e.root(),
                    GuestError::Fault {
                        fault: GuestFault::Stopped,
                        ..
                    }
                );
                let fault = svc.stop();
                Err(match (e, fault) {
                    (GuestError::Terminated { set, code, .. }, _) => RunError::Terminated {
                        set: u64::from(set),
                        code: u64::from(code),
                        cause: Some(cause),
                    },
                    (_, Some(exit)) if host_stopped => RunError::Exit { vcpu: 0, exit },
                    (e, _) => RunError::Guest(e),
                })
            }
            Err(_) => {
                let fault = svc.stop();
                Err(RunError::Exit {
                    vcpu: 0,
                    exit: fault.unwrap_or_else(|| "guest ended without a result".into()),
                })
            }
        }
    }

    /// Issue one request through the guest (thread-safe; requests are served one at a
    /// time, in order).
    pub fn request(&self, req: GuestRequest) -> Result<GuestResponse, GuestRequestError> {
        let stopped = || {
            GuestRequestError::Stopped(
                self.shared
                    .fault()
                    .unwrap_or_else(|| "the guest is gone".into()),
            )
        };
        let Some(jobs) = &self.jobs else {
            return Err(stopped());
        };
        let (tx, rx) = mpsc::sync_channel(1);
        jobs.send(Job { req, reply: tx }).map_err(|_| stopped())?;
        rx.recv().map_err(|_| stopped())?
    }

    /// SEV_STATUS (MSR 0xC0010131) as the guest read it at boot.
    pub fn sev_status(&self) -> u64 {
        self.sev_status
    }

    /// The VMPCK the guest uses (configfs-tsm's `privlevel_floor`).
    pub fn vmpck_id(&self) -> u8 {
        self.vmpck_id
    }

    /// The host, for the host-side front ends on the same chip.
    pub fn host(&self) -> Arc<SoftHost> {
        self.platform.host().clone()
    }

    /// The platform (chip, firmware, host).
    pub fn platform(&self) -> &Arc<SoftPlatform> {
        &self.platform
    }

    /// The product.
    pub fn product(&self) -> Product {
        self.product
    }

    /// ARK, ASK and VCEK (of REPORTED_TCB) of the chip, for verifiers.
    pub fn chain(&self) -> &CertChain {
        &self.chain
    }

    /// The GHCB certificate table the VMM hands to extended requests (empty when the
    /// service was configured without certificates).
    pub fn cert_table(&self) -> &[u8] {
        &self.cert_table
    }

    /// REPORTED_TCB of the platform at boot.
    pub fn reported_tcb(&self) -> TcbVersion {
        self.reported_tcb
    }

    /// The launch digest the guest attested at boot.
    pub fn measurement(&self) -> [u8; 48] {
        self.measurement
    }

    /// The attestation report the guest requested while booting.
    pub fn boot_report(&self) -> &[u8] {
        &self.boot_report
    }

    /// GPA of the guest's secrets page.
    pub fn secrets_gpa(&self) -> Gpa {
        self.secrets_gpa
    }

    /// Why the service stopped, if it did.
    pub fn stopped(&self) -> Option<String> {
        self.shared.fault()
    }

    /// Make the VMM answer certificate requests of extended guest requests with
    /// EAGAIN (throttling, `KVM_EXIT_SNP_REQ_CERTS` ret), which KVM passes to the guest
    /// as SNP_GUEST_VMM_ERR_BUSY.
    pub fn set_vmm_busy(&self, busy: bool) {
        self.shared.vmm_busy.store(busy, Ordering::SeqCst);
    }

    /// Act as a malicious host: RMPUPDATE the page backing `gpa` (its validated bit
    /// clears). The guest notices on its next access to it. Returns what was done.
    pub fn tamper_rmp_entry(&self, gpa: Gpa) -> Result<String, RunError> {
        self.platform
            .tamper_rmp_entry(&*self.vm, gpa)
            .map_err(kvm(format!("tamper with the RMP entry of {gpa}")))
    }

    /// Stop the guest (it halts when no request is pending) and wait for its vCPU.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) -> Option<String> {
        self.jobs = None;
        if let Some(t) = self.vmm_thread.take() {
            let _ = t.join();
        }
        self.shared.fault()
    }
}

impl Drop for GuestService {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where the guest keeps its certificate buffer.
#[derive(Clone, Copy, Debug)]
struct Layout {
    certs: Gpa,
}

/// The guest after boot: take requests until the service closes the queue.
fn serve(
    cpu: &mut GuestCpu,
    g: &mut Guest,
    jobs: &mpsc::Receiver<Job>,
    layout: &Layout,
) -> Result<GuestEnd, GuestFault> {
    while let Ok(job) = jobs.recv() {
        let r = handle(cpu, g, &job.req, layout);
        match r {
            Ok(resp) => {
                let _ = job.reply.send(Ok(resp));
            }
            Err(e) => {
                // What Linux treats as fatal (a #VC for a page the guest validated, ...)
                // ends in a termination request, as at boot.
                if let Some((set, code)) = e.termination_reason() {
                    let cause = e.root().to_string();
                    let _ = g.ghcb.terminate(&mut *cpu, set, code);
                    let _ = job.reply.send(Err(GuestRequestError::Stopped(format!(
                        "the guest terminated (reason set {set}, code {code:#x}): {cause}"
                    ))));
                    return Ok(GuestEnd::Shutdown);
                }
                let stopped = matches!(
                    e.root(),
                    GuestError::Fault {
                        fault: GuestFault::Stopped,
                        ..
                    }
                );
                let _ = job.reply.send(Err(if stopped {
                    GuestRequestError::Stopped(e.to_string())
                } else {
                    GuestRequestError::from_guest(&e)
                }));
                if stopped {
                    return Err(GuestFault::Stopped);
                }
            }
        }
    }
    Ok(GuestEnd::Halt)
}

/// One request on the guest's vCPU.
fn handle(
    cpu: &mut GuestCpu,
    g: &mut Guest,
    req: &GuestRequest,
    layout: &Layout,
) -> Result<GuestResponse, GuestError> {
    let Guest { ghcb, msg, .. } = g;
    let m = msg
        .as_mut()
        .ok_or_else(|| GuestError::Config("the secrets page has not been read".into()))?;
    match req {
        GuestRequest::Report { msg_version, req } => {
            let payload = m.send(cpu, ghcb, MsgType::REPORT_REQ, *msg_version, req, None)?;
            Ok(GuestResponse {
                payload,
                certs: Vec::new(),
            })
        }
        GuestRequest::ExtReport {
            msg_version,
            req,
            certs_pages,
        } => {
            if *certs_pages > MAX_CERT_PAGES {
                return Err(GuestError::Config(format!(
                    "{certs_pages} certificate pages requested, the guest has {MAX_CERT_PAGES}"
                )));
            }
            let len = *certs_pages as usize * PAGE_SIZE_4K as usize;
            // The driver clears its certificate buffer first, so a host that writes
            // nothing leaves zeros (`get_ext_report`).
            if len > 0 {
                cpu.write(layout.certs, CBit::Shared, &vec![0u8; len])
                    .map_err(|f| GuestError::Fault {
                        op: "certificate buffer clear",
                        gpa: layout.certs,
                        fault: f,
                    })?;
            }
            let buf = CertBuf {
                gpa: layout.certs,
                pages: *certs_pages,
            };
            let payload = m.send(cpu, ghcb, MsgType::REPORT_REQ, *msg_version, req, Some(buf))?;
            let mut certs = vec![0u8; len];
            if len > 0 {
                cpu.read(layout.certs, CBit::Shared, &mut certs)
                    .map_err(|f| GuestError::Fault {
                        op: "certificate buffer read",
                        gpa: layout.certs,
                        fault: f,
                    })?;
            }
            Ok(GuestResponse { payload, certs })
        }
        GuestRequest::DerivedKey { msg_version, req } => {
            let payload = m.send(cpu, ghcb, MsgType::KEY_REQ, *msg_version, req, None)?;
            Ok(GuestResponse {
                payload,
                certs: Vec::new(),
            })
        }
    }
}

/// QEMU's part of KVM_RUN for the service's vCPU: as `run`'s loop, with the
/// certificate exit answered from `certs` (EAGAIN while the VMM is set busy).
fn vmm_loop(vmm: &Vmm, vcpu: &mut dyn Vcpu, certs: &[u8], shared: &Shared) -> Result<(), RunError> {
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
                if shared.vmm_busy.load(Ordering::SeqCst) {
                    *ret = Errno::EAGAIN.0 as u64;
                } else if *npages < need {
                    *ret = Errno::ENOSPC.0 as u64;
                    *npages = need;
                } else {
                    if !certs.is_empty() {
                        crate::run::write_req_certs(vmm, id, *gpa, certs)?;
                    }
                    *ret = 0;
                }
            }
            VcpuExit::SystemEvent { data, .. } => return Err(crate::run::termination(data)),
            other => {
                return Err(RunError::Exit {
                    vcpu: id,
                    exit: format!("{other:?}"),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeded(seed: &str) -> GuestServiceConfig {
        GuestServiceConfig {
            seed: Some(seed.as_bytes().to_vec()),
            ..GuestServiceConfig::default()
        }
    }

    fn report_of(resp: &GuestResponse) -> AttestationReport {
        assert_eq!(resp.status(), 0);
        assert_eq!(u32_at(&resp.payload, 4), 0x4A0);
        AttestationReport::parse(&resp.payload[0x20..0x20 + 0x4A0]).unwrap()
    }

    #[test]
    fn serves_reports_keys_and_ext_reports_from_concurrent_callers() {
        eprintln!("seed: service-1");
        let svc = Arc::new(GuestService::boot(&seeded("service-1")).unwrap());
        assert_eq!(svc.sev_status() & 7, 7, "SEV, SEV-ES and SNP");
        assert_eq!(svc.vmpck_id(), 0);
        let threads: Vec<_> = (0..4u8)
            .map(|i| {
                let svc = svc.clone();
                std::thread::spawn(move || {
                    for j in 0..3u8 {
                        let nonce = [i * 16 + j; 64];
                        let r = svc.request(GuestRequest::report(&nonce, 0)).unwrap();
                        let rep = report_of(&r);
                        assert_eq!(rep.report_data, nonce);
                        assert_eq!(rep.measurement, svc.measurement());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // An extended request without pages: the host says how many it needs, and the
        // sequence number still advanced (the next request works).
        let need = svc.cert_table().len().div_ceil(4096) as u64;
        assert!(need >= 1);
        let e = svc
            .request(GuestRequest::ext_report(&[1; 64], 0, 0))
            .unwrap_err();
        assert_eq!(
            e,
            GuestRequestError::CertsTooSmall {
                given: 0,
                needed: need
            }
        );
        assert_eq!((e.errno(), e.exitinfo2()), (5, 1 << 32));
        let r = svc
            .request(GuestRequest::ext_report(&[2; 64], 0, need as u32))
            .unwrap();
        assert_eq!(report_of(&r).report_data, [2; 64]);
        assert_eq!(r.certs.len(), need as usize * 4096);
        assert_eq!(&r.certs[..svc.cert_table().len()], svc.cert_table());
        // A VMPL below the VMPCK's is the firmware's INVALID_PARAM in the payload.
        let k = svc
            .request(GuestRequest::derived_key([0; KEY_REQ_SIZE]))
            .unwrap();
        assert_eq!((k.status(), k.payload.len()), (0, 0x40));
        Arc::try_unwrap(svc).unwrap().shutdown();
    }

    #[test]
    fn a_failure_disables_the_vmpck_and_a_faulting_guest_stops_with_a_reason() {
        eprintln!("seed: service-2");
        let svc = GuestService::boot(&seeded("service-2")).unwrap();
        // The VMM keeps answering BUSY: the guest gives up and wipes its VMPCK.
        svc.set_vmm_busy(true);
        let e = svc
            .request(GuestRequest::ext_report(&[0; 64], 0, 4))
            .unwrap_err();
        assert!(
            matches!(e, GuestRequestError::Host { busy: true, .. }),
            "{e}"
        );
        assert_eq!((e.errno(), e.exitinfo2()), (110, 2 << 32));
        svc.set_vmm_busy(false);
        let e = svc.request(GuestRequest::report(&[0; 64], 0)).unwrap_err();
        assert_eq!(e, GuestRequestError::VmpckDisabled { vmpck: 0 });
        assert_eq!((e.errno(), e.exitinfo2()), (25, 0xff));
        drop(svc);

        // A host that changes the secrets page's RMP entry: the guest's next access
        // faults (#VC 0x404), it asks to be terminated, and callers learn why.
        let svc = GuestService::boot(&seeded("service-3")).unwrap();
        let what = svc.tamper_rmp_entry(svc.secrets_gpa()).unwrap();
        assert!(!what.is_empty());
        let e = svc.request(GuestRequest::report(&[0; 64], 0)).unwrap_err();
        let GuestRequestError::Stopped(why) = &e else {
            panic!("{e}");
        };
        assert!(why.contains("terminated"), "{why}");
        let e = svc.request(GuestRequest::report(&[0; 64], 0)).unwrap_err();
        assert!(matches!(e, GuestRequestError::Stopped(_)), "{e}");
        assert!(svc.stopped().is_some());
        svc.shutdown();
    }

    #[test]
    fn without_certificates_extended_requests_get_an_empty_buffer() {
        let svc = GuestService::boot(&GuestServiceConfig {
            certs: false,
            ..seeded("service-nocerts")
        })
        .unwrap();
        assert!(svc.cert_table().is_empty());
        let r = svc
            .request(GuestRequest::ext_report(&[4; 64], 0, 0))
            .unwrap();
        assert_eq!(report_of(&r).report_data, [4; 64]);
        assert!(r.certs.is_empty());
        let r = svc
            .request(GuestRequest::ext_report(&[5; 64], 0, 4))
            .unwrap();
        assert_eq!(r.certs.len(), 4 * 4096);
        assert!(r.certs.iter().all(|&b| b == 0));
        let e = svc
            .request(GuestRequest::ext_report(&[5; 64], 0, MAX_CERT_PAGES + 1))
            .unwrap_err();
        assert!(matches!(e, GuestRequestError::Invalid(_)), "{e}");
        assert_eq!(e.errno(), 22);
        // An invalid request is refused before anything is sent: the VMPCK lives on.
        assert!(svc.request(GuestRequest::report(&[6; 64], 0)).is_ok());
    }

    #[test]
    fn config_is_checked() {
        let bad = GuestServiceConfig {
            vmpl: 4,
            ..GuestServiceConfig::default()
        };
        assert!(
            GuestService::boot(&bad)
                .unwrap_err()
                .to_string()
                .contains("VMPL 4")
        );
        let bad = GuestServiceConfig {
            policy: 0x10000,
            ..GuestServiceConfig::default()
        };
        assert!(GuestService::boot(&bad).is_err());
    }
}
