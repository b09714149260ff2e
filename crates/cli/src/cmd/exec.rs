//! `softsev exec` and `softsev serve` (frontends.md §7.1; issue 14): boot the platform and
//! one SNP guest in-process, serve the chosen front ends inside a private mount
//! namespace, and run an unmodified tool there (`exec`), or wait for tools entered with
//! `nsenter` (`serve`).
//!
//! | flag | what the namespace gets |
//! |---|---|
//! | `--guest` | `/dev/sev-guest`, `/dev/cpu/0/msr` (SEV_STATUS), `/sys/devices/platform/sev-guest` |
//! | `--tsm` | `/sys/kernel/config/tsm/report` (configfs-tsm), over the same guest |
//! | `--host` | `/dev/sev`, `/dev/cpu/0/msr` (SYSCFG, RMP_BASE/END), `/sys/module/kvm_amd/parameters`, and for dynamically linked programs the AMD EPYC CPUID (the `softsev-cpuid` preload) |
//! | `--kds` | AMD's KDS at `https://kdsintf.amd.com` (127.0.0.1:443/444 in a private network namespace, `/etc/hosts`, `SSL_CERT_FILE` = system bundle + the run's CA) and a plain-HTTP base URL |
//!
//! Everything is torn down when the command ends: FUSE sessions are unmounted, and the
//! namespaces die with the process (nothing is visible outside them at any time).
//! `--events FILE` (the spec's `--log FILE`; `--log` is already softsev's global log
//! filter) writes every served operation and KDS request as JSON lines.

use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use nix::sys::signal::{SigSet, Signal};
use softsev_abi::Product;
use softsev_devices::guest::{EventSink, GuestMsrs, PlatformDir, SevGuestDevice, TsmReports};
use softsev_devices::host::{HostMsrs, ModuleParams, SevDevice, SevEvent, SevObserver};
use softsev_devices::kds::{Kds, KdsEvent, KdsObserver, KdsServer, KdsServerConfig};
use softsev_devices::msr::{MsrFile, MsrSource};
use softsev_host::{SoftHost, SoftPlatform};
use softsev_os::fuse::{IoctlDecoder, ServeOptions, Served, serve};
use softsev_os::log::JsonLog;
use softsev_os::ns::{Graft, PrivateWorld, WorldSpec};
use softsev_vfs::{Caller, CallerMemory, Event, EventLog, FieldValue};
use softsev_vmm::service::{GuestService, GuestServiceConfig};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// The front ends and the platform, shared by `exec` and `serve`.
#[derive(ClapArgs, Debug, Clone)]
pub(crate) struct FrontArgs {
    /// Serve /dev/sev-guest, the guest's SEV_STATUS MSR and /sys/devices/platform/sev-guest.
    #[arg(long)]
    guest: bool,
    /// Serve /sys/kernel/config/tsm/report (configfs-tsm) for the same guest.
    #[arg(long)]
    tsm: bool,
    /// Serve /dev/sev, the host MSRs, the kvm_amd module parameters and the AMD CPUID.
    #[arg(long)]
    host: bool,
    /// Serve AMD's KDS (kdsintf.amd.com, ports 443 and 444) from the chip's identity.
    #[arg(long)]
    kds: bool,
    /// Seed of every random choice (chip identity, keys): equal seeds give equal chips,
    /// VCEKs and derived keys. Without it the chip is random.
    #[arg(long)]
    seed: Option<String>,
    /// Processor generation: milan, genoa or turin.
    #[arg(long, default_value = "milan", value_parser = parse_product)]
    product: Product,
    /// SNP guest policy (hex), as QEMU's sev-snp-guest policy=.
    #[arg(long, value_name = "HEX", value_parser = parse_hex)]
    policy: Option<u64>,
    /// The VMPL the guest OS runs at (its VMPCK and the lowest VMPL it may ask for).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=3))]
    vmpl: u8,
    /// Write every served operation and KDS request to FILE as JSON lines (the spec's
    /// `--log FILE`; `--log` is softsev's global log filter).
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,
}

/// Arguments of `softsev exec`.
#[derive(ClapArgs, Debug)]
#[command(after_help = "\
Examples (as root):
  softsev exec --guest --seed ci -- snpguest report att.bin req.bin --random
  softsev exec --guest --tsm -- sh -c 'ls /sys/kernel/config/tsm/report'
  softsev exec --host --seed ci -- snphost show tcb
  softsev exec --guest --kds --seed ci -- snpguest fetch ca pem kds milan")]
pub(crate) struct Args {
    #[command(flatten)]
    fe: FrontArgs,
    /// The command to run inside the private namespace, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    cmd: Vec<String>,
}

/// Arguments of `softsev serve`.
#[derive(ClapArgs, Debug)]
#[command(after_help = "\
Example (as root):
  softsev serve --guest --seed ci &
  nsenter --mount=/proc/PID/ns/mnt -- snpguest report att.bin req.bin --random")]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    fe: FrontArgs,
}

fn parse_product(s: &str) -> std::result::Result<Product, String> {
    Product::from_name(s).ok_or_else(|| format!("unknown product {s:?} (milan, genoa, turin)"))
}

fn parse_hex(s: &str) -> std::result::Result<u64, String> {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).map_err(|e| format!("{s:?}: {e}"))
}

/// Signals that end `serve` and are forwarded to the child of `exec`.
fn stop_signals() -> SigSet {
    let mut s = SigSet::empty();
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        s.add(sig);
    }
    s
}

/// Where the CPUID preload library is: `$SOFTSEV_CPUID_LIB`, else beside the softsev
/// executable (cargo puts both in target/<profile>/), else in its `deps/`.
fn cpuid_library() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("SOFTSEV_CPUID_LIB") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("locating the softsev executable")?;
    let dir = exe
        .parent()
        .context("the softsev executable has no directory")?;
    [
        dir.join("libsoftsev_cpuid.so"),
        dir.join("deps/libsoftsev_cpuid.so"),
    ]
    .into_iter()
    .find(|p| p.exists())
    .with_context(|| {
        format!(
            "--host needs libsoftsev_cpuid.so beside {} (cargo build -p softsev-cpuid) or SOFTSEV_CPUID_LIB",
            exe.display()
        )
    })
}

/// The log that goes to the JSON file and (for the KDS) gets events from elsewhere.
#[derive(Debug)]
struct Logs {
    file: Option<Arc<JsonLog>>,
}

impl Logs {
    fn sink(&self) -> Option<Arc<dyn EventLog>> {
        self.file.clone().map(|f| f as Arc<dyn EventLog>)
    }
}

/// Everything that runs while the command runs.
struct Running {
    served: Vec<Served>,
    machine: Option<Machine>,
    kds: Option<KdsServer>,
    env: Vec<(String, String)>,
    logs: Logs,
    notes: Vec<String>,
    _world: PrivateWorld,
}

impl Running {
    /// Unmount, stop the services, finish the log.
    fn stop(mut self) -> Result<()> {
        let mut first: Option<anyhow::Error> = None;
        for s in self.served.drain(..).rev() {
            let m = s.mountpoint().display().to_string();
            if let Err(e) = s.unmount()
                && first.is_none()
            {
                first = Some(anyhow::Error::new(e).context(format!("unmounting {m}")));
            }
        }
        if let Some(k) = self.kds.take() {
            k.shutdown();
        }
        // The devices (dropped with their FUSE sessions above) held the other references.
        if let Some(Machine::Guest(g)) = self.machine.take()
            && let Some(g) = Arc::into_inner(g)
        {
            g.shutdown();
        }
        if let Some(f) = &self.logs.file
            && let Err(e) = f.finish()
            && first.is_none()
        {
            first = Some(anyhow::Error::new(e).context("writing the --events file"));
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// A directory in the overlaid `/dev` for files only the namespace sees (the KDS CA and
/// the CA bundle).
const PRIVATE_DIR: &str = "/dev/softsev";

fn spec_for(fe: &FrontArgs) -> WorldSpec {
    let mut spec = WorldSpec::default();
    if fe.guest {
        spec.dev_files.push("/dev/sev-guest".into());
        spec.overlays.push((
            "/sys/devices/platform".into(),
            vec![Graft::Dir("sev-guest".into())],
        ));
    }
    if fe.host || fe.kds {
        spec.private_dirs.push(PRIVATE_DIR.into());
    }
    if fe.host {
        spec.dev_files.push("/dev/sev".into());
        spec.overlays.push((
            "/sys/module".into(),
            vec![Graft::Dir("kvm_amd/parameters".into())],
        ));
    }
    if fe.guest || fe.host {
        spec.dev_files.push("/dev/cpu/0/msr".into());
    }
    if fe.tsm {
        spec.overlays
            .push(("/sys/kernel".into(), vec![Graft::Dir("config/tsm".into())]));
    }
    if fe.kds {
        let mut hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        if !hosts.ends_with('\n') && !hosts.is_empty() {
            hosts.push('\n');
        }
        hosts.push_str("# softsev exec --kds: AMD's KDS is served on this machine\n");
        hosts.push_str("127.0.0.1 kdsintf.amd.com\n127.0.0.1 kdsint.amd.com\n");
        spec.hosts = Some(hosts);
        spec.private_net = true;
    }
    spec
}

/// The machine behind the front ends: a booted guest (whose host serves `--host` too:
/// one chip), or for host-only front ends just the platform.
enum Machine {
    Guest(Arc<GuestService>),
    Platform(Box<SoftPlatform>),
}

impl Machine {
    fn host(&self) -> Arc<SoftHost> {
        match self {
            Machine::Guest(g) => g.host(),
            Machine::Platform(p) => p.host().clone(),
        }
    }
}

fn boot(fe: &FrontArgs, seed: Option<Vec<u8>>) -> Result<Machine> {
    if fe.guest || fe.tsm {
        let mut cfg = GuestServiceConfig {
            seed,
            product: fe.product,
            vmpl: fe.vmpl,
            ..GuestServiceConfig::default()
        };
        if let Some(p) = fe.policy {
            cfg.policy = p;
        }
        let g = GuestService::boot(&cfg).context("booting the platform and its guest")?;
        Ok(Machine::Guest(Arc::new(g)))
    } else {
        let mut b = SoftPlatform::builder(fe.product).mem(256 << 20);
        if let Some(s) = seed {
            b = b.seed(s);
        }
        Ok(Machine::Platform(Box::new(
            b.build().context("building the platform")?,
        )))
    }
}

fn start(fe: &FrontArgs) -> Result<Running> {
    if !(fe.guest || fe.tsm || fe.host || fe.kds) {
        bail!("nothing to serve: give at least one of --guest, --tsm, --host, --kds");
    }
    softsev_os::require_root()?;
    // Before any thread exists: the mask is inherited by every thread (the FUSE servers,
    // the guest's vCPU), so only the thread that waits for these signals receives them.
    stop_signals()
        .thread_block()
        .context("blocking SIGINT/SIGTERM/SIGHUP")?;
    let world = PrivateWorld::enter(&spec_for(fe))?;

    let logs = Logs {
        file: match &fe.events {
            Some(p) => Some(Arc::new(
                JsonLog::create(p).with_context(|| format!("--events {}", p.display()))?,
            )),
            None => None,
        },
    };
    let seed = fe.seed.as_ref().map(|s| s.as_bytes().to_vec());
    let machine = boot(fe, seed.clone())?;
    let sink = logs.sink();
    let mut run = Running {
        served: Vec::new(),
        machine: None,
        kds: None,
        env: Vec::new(),
        logs,
        notes: Vec::new(),
        _world: world,
    };
    let mk = |name: &str, decoder: Option<IoctlDecoder>| {
        let mut o = ServeOptions::new(name);
        o.log = sink.clone();
        o.decoder = decoder;
        o
    };
    let mut msr_sources: Vec<Arc<dyn MsrSource>> = Vec::new();
    if let Machine::Guest(guest) = &machine {
        if fe.guest {
            let mut dev = SevGuestDevice::new(guest.clone());
            if let Some(l) = &sink {
                dev = dev.with_log(model_sink(l.clone(), "/dev/sev-guest"));
            }
            run.served.push(serve(
                Arc::new(dev),
                Path::new("/dev/sev-guest"),
                mk("sev-guest", Some(decode_sev_guest)),
            )?);
            run.served.push(serve(
                Arc::new(PlatformDir::new()),
                Path::new("/sys/devices/platform/sev-guest"),
                mk("platform-sev-guest", None),
            )?);
            msr_sources.push(Arc::new(GuestMsrs::new(guest.sev_status())));
        }
        if fe.tsm {
            let mut tsm = TsmReports::new(guest.clone());
            if let Some(l) = &sink {
                tsm = tsm.with_log(model_sink(
                    l.clone(),
                    softsev_devices::guest::tsm::MOUNT_POINT,
                ));
            }
            run.served.push(serve(
                Arc::new(tsm),
                Path::new(softsev_devices::guest::tsm::MOUNT_POINT),
                mk("tsm", None),
            )?);
        }
    }
    let host = machine.host();
    if fe.host {
        // With kvm_amd loaded (sev=Y, as the module parameters say) the PSP driver has
        // initialised the legacy SEV platform: since Linux 6.11 KVM asks for it at module
        // init (sev_platform_init from sev_hardware_setup), before that the ccp driver
        // did at probe. `snphost ok` checks "SEV initialized".
        host.sev_platform_init()
            .map_err(|e| anyhow::anyhow!("initialising the SEV platform: {e}"))?;
        let mut dev = SevDevice::new(host.clone());
        if let Some(l) = &sink {
            let l = l.clone();
            dev = dev.with_observer(Arc::new(move |e: &SevEvent| {
                l.record(Event {
                    source: "/dev/sev".into(),
                    op: "model",
                    path: String::new(),
                    caller: Caller {
                        pid: e.pid,
                        uid: 0,
                        gid: 0,
                    },
                    fields: vec![
                        ("sev_cmd", FieldValue::U64(u64::from(e.cmd))),
                        (
                            "sev_cmd_name",
                            FieldValue::Str(e.name.unwrap_or("?").into()),
                        ),
                        ("data", addr(e.data)),
                        ("writable", FieldValue::U64(u64::from(e.writable))),
                        (
                            "error",
                            e.error
                                .map_or(FieldValue::Str("not copied back".into()), |v| {
                                    FieldValue::U64(u64::from(v))
                                }),
                        ),
                    ],
                    result: i64::from(e.result),
                })
            }) as SevObserver);
        }
        run.served.push(serve(
            Arc::new(dev),
            Path::new("/dev/sev"),
            mk("sev", Some(decode_sev)),
        )?);
        run.served.push(serve(
            Arc::new(ModuleParams::new(host.params())),
            Path::new("/sys/module/kvm_amd/parameters"),
            mk("kvm_amd-parameters", None),
        )?);
        msr_sources.push(Arc::new(HostMsrs::new(&host)));
        // The legacy SEV AMD CA (ASK ‖ ARK) of this chip, for `sevctl verify --ca`.
        let (ask, ark) = host.firmware().sev_ca_certs();
        std::fs::write(
            Path::new(PRIVATE_DIR).join("sev-ca.cert"),
            [ask, ark].concat(),
        )
        .context("writing the SEV CA file")?;
        let lib = cpuid_library()?;
        let m = softsev_measure::qemu::QemuCpuModel::for_product(fe.product);
        let brand = softsev_measure::qemu::CpuidFeatures::for_product(fe.product).brand;
        let table = softsev_os::cpuid::epyc_host(m.signature(), brand);
        run.env.push((
            softsev_os::cpuid::ENV.into(),
            softsev_os::cpuid::encode(&table),
        ));
        let mut pre = lib.display().to_string();
        if let Some(old) = std::env::var_os("LD_PRELOAD") {
            pre = format!("{pre}:{}", old.to_string_lossy());
        }
        run.env.push(("LD_PRELOAD".into(), pre));
    }
    if !msr_sources.is_empty() {
        run.served.push(serve(
            Arc::new(MsrFile::new(msr_sources)),
            Path::new("/dev/cpu/0/msr"),
            mk("msr", None),
        )?);
    }
    if fe.kds {
        start_kds(&host, seed, sink.clone(), &mut run)?;
    }
    run.machine = Some(machine);
    Ok(run)
}

/// The KDS on 127.0.0.1:443/444 (TLS) and an ephemeral plain-HTTP port, its CA and the
/// CA bundle in the namespace's private directory, and the environment naming them.
fn start_kds(
    host: &Arc<SoftHost>,
    seed: Option<Vec<u8>>,
    sink: Option<Arc<dyn EventLog>>,
    run: &mut Running,
) -> Result<()> {
    // In the overlaid /dev: private to the namespace, gone with it.
    let dir = Path::new(PRIVATE_DIR);
    let ca = dir.join("kds-ca.pem");
    let kds = Arc::new(Kds::new(host.firmware().clone(), seed.as_deref()));
    let observer = sink.map(|log| {
        Arc::new(move |e: &KdsEvent| {
            log.record(Event {
                source: "kds".into(),
                op: "GET",
                path: e.target.clone(),
                caller: Caller {
                    pid: 0,
                    uid: 0,
                    gid: 0,
                },
                fields: vec![
                    ("method", FieldValue::Str(e.method.clone())),
                    ("local", FieldValue::Str(e.local.to_string())),
                    ("tls", FieldValue::U64(u64::from(e.tls))),
                    ("host", FieldValue::Str(e.host.clone().unwrap_or_default())),
                    ("bytes", FieldValue::U64(e.bytes as u64)),
                ],
                result: i64::from(e.status),
            })
        }) as KdsObserver
    });
    let addr = |s: &str| {
        s.parse::<std::net::SocketAddr>()
            .context("listener address")
    };
    let server = KdsServer::start(
        kds,
        KdsServerConfig {
            http: Some(addr("127.0.0.1:0")?),
            https: vec![addr("127.0.0.1:443")?, addr("127.0.0.1:444")?],
            ca_pem_path: Some(ca.clone()),
            seed,
            observer,
        },
    )
    .context("starting the KDS")?;
    // The system bundle plus the run's CA: tools keep trusting everything else
    // (frontends.md §4: this machine exports SSL_CERT_FILE globally).
    let system = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
    let mut bundle = std::fs::read(&system).unwrap_or_default();
    if !bundle.is_empty() && !bundle.ends_with(b"\n") {
        bundle.push(b'\n');
    }
    bundle.extend_from_slice(server.ca_pem().unwrap_or_default().as_bytes());
    let bundle_path = dir.join("ca-bundle.pem");
    std::fs::write(&bundle_path, bundle).context("writing the CA bundle")?;
    run.env
        .push(("SSL_CERT_FILE".into(), bundle_path.display().to_string()));
    run.env
        .push(("SOFTSEV_KDS_CA".into(), ca.display().to_string()));
    if let Some(b) = server.http_base() {
        run.env.push(("SOFTSEV_KDS_URL".into(), b.clone()));
        run.notes.push(format!(
            "KDS: https://kdsintf.amd.com and :444 (plain HTTP: {b})"
        ));
    }
    run.kds = Some(server);
    Ok(())
}

/// The device models' own decoded events (softsev_devices::guest's JSON sinks) as log
/// events with `op: "model"` beside the adapter's: each top-level JSON member becomes a
/// field (numbers stay numbers, everything else is text).
fn model_sink(log: Arc<dyn EventLog>, source: &'static str) -> EventSink {
    Arc::new(move |v: &serde_json::Value| {
        let mut fields = Vec::new();
        let mut pid = 0;
        let mut result = 0;
        if let Some(m) = v.as_object() {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("pid", x) => pid = x.as_u64().unwrap_or(0) as u32,
                    ("result", x) => result = x.as_i64().unwrap_or(0),
                    (_, serde_json::Value::Number(n)) if n.is_u64() => {
                        fields.push((model_key(k), FieldValue::U64(n.as_u64().unwrap_or(0))))
                    }
                    (_, serde_json::Value::Number(n)) => {
                        fields.push((model_key(k), FieldValue::I64(n.as_i64().unwrap_or(0))))
                    }
                    (_, serde_json::Value::String(t)) => {
                        fields.push((model_key(k), FieldValue::Str(t.clone())))
                    }
                    (_, other) => fields.push((model_key(k), FieldValue::Str(other.to_string()))),
                }
            }
        }
        log.record(Event {
            source: source.into(),
            op: "model",
            path: v["path"].as_str().unwrap_or_default().to_string(),
            caller: Caller {
                pid,
                uid: v["uid"].as_u64().unwrap_or(0) as u32,
                gid: 0,
            },
            fields,
            result,
        })
    })
}

/// Field names are `&'static str`; the models' keys are a small fixed set, interned here
/// once each (a key never seen before is leaked once, bounded by the models' key set).
fn model_key(k: &str) -> &'static str {
    static KEYS: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut keys = KEYS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = keys.iter().find(|s| **s == k) {
        return s;
    }
    let s: &'static str = Box::leak(k.to_string().into_boxed_str());
    keys.push(s);
    s
}

/// Addresses are logged as hex text: JSON readers such as jq hold numbers as doubles,
/// which cannot represent every 64-bit address.
fn addr(a: u64) -> FieldValue {
    FieldValue::Str(format!("{a:#x}"))
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    b.get(o..o + 4)
        .map(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]))
}

fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    b.get(o..o + 8)
        .and_then(|x| <[u8; 8]>::try_from(x).ok())
        .map(u64::from_le_bytes)
}

/// `/dev/sev-guest` ioctls for the log (frontends.md §5.1; linux
/// include/uapi/linux/sev-guest.h): the `snp_guest_request_ioctl` fields, the request
/// behind `req_data` (user_data, vmpl, and for SNP_GET_EXT_REPORT certs_address and
/// certs_len), and after the reply `fw_error`/`vmm_error` from the copied-back
/// `exitinfo2` and the `certs_len` the driver wrote back into the request.
fn decode_sev_guest(
    cmd: u32,
    input: &[u8],
    reply: Option<&[u8]>,
    mem: &dyn CallerMemory,
) -> Vec<(&'static str, FieldValue)> {
    let name = match cmd {
        0xC020_5300 => "SNP_GET_REPORT",
        0xC020_5301 => "SNP_GET_DERIVED_KEY",
        0xC020_5302 => "SNP_GET_EXT_REPORT",
        _ => return Vec::new(),
    };
    let req_data = u64_at(input, 8).unwrap_or(0);
    let mut f = Vec::new();
    match reply {
        None => {
            f.push(("ioctl", FieldValue::Str(name.into())));
            f.push((
                "msg_version",
                FieldValue::U64(u64::from(input.first().copied().unwrap_or(0))),
            ));
            f.push(("req_data", addr(req_data)));
            f.push(("resp_data", addr(u64_at(input, 16).unwrap_or(0))));
            if cmd == 0xC020_5301 {
                let mut req = [0u8; 32];
                if mem.read(req_data, &mut req).is_ok() {
                    f.push((
                        "root_key_select",
                        FieldValue::U64(u64::from(u32_at(&req, 0).unwrap_or(0))),
                    ));
                    f.push((
                        "guest_field_select",
                        FieldValue::U64(u64_at(&req, 8).unwrap_or(0)),
                    ));
                    f.push((
                        "vmpl",
                        FieldValue::U64(u64::from(u32_at(&req, 16).unwrap_or(0))),
                    ));
                    f.push((
                        "guest_svn",
                        FieldValue::U64(u64::from(u32_at(&req, 20).unwrap_or(0))),
                    ));
                    f.push((
                        "tcb_version",
                        FieldValue::U64(u64_at(&req, 24).unwrap_or(0)),
                    ));
                }
            } else {
                let mut req = [0u8; 112];
                let n = if cmd == 0xC020_5302 { 112 } else { 96 };
                if mem.read(req_data, &mut req[..n]).is_ok() {
                    f.push(("user_data", FieldValue::Hex(req[..64].to_vec())));
                    f.push((
                        "vmpl",
                        FieldValue::U64(u64::from(u32_at(&req, 64).unwrap_or(0))),
                    ));
                    if cmd == 0xC020_5302 {
                        f.push(("certs_address", addr(u64_at(&req, 96).unwrap_or(0))));
                        f.push((
                            "certs_len",
                            FieldValue::U64(u64::from(u32_at(&req, 104).unwrap_or(0))),
                        ));
                    }
                }
            }
        }
        Some(out) => {
            f.push(("copied_back", FieldValue::U64(out.len() as u64)));
            if out.len() == 32 {
                f.push((
                    "fw_error",
                    FieldValue::U64(u64::from(u32_at(out, 24).unwrap_or(0))),
                ));
                f.push((
                    "vmm_error",
                    FieldValue::U64(u64::from(u32_at(out, 28).unwrap_or(0))),
                ));
            }
            if cmd == 0xC020_5302 {
                let mut len = [0u8; 4];
                if mem.read(req_data.wrapping_add(104), &mut len).is_ok() {
                    f.push((
                        "certs_len_after",
                        FieldValue::U64(u64::from(u32::from_le_bytes(len))),
                    ));
                }
            }
        }
    }
    f
}

/// `/dev/sev` `SEV_ISSUE_CMD` for the log (frontends.md §5.3; linux
/// include/uapi/linux/psp-sev.h): the command (by its `sev_cmd_id` name), `data`, and the
/// firmware status in the copied-back `error`.
fn decode_sev(
    cmd: u32,
    input: &[u8],
    reply: Option<&[u8]>,
    _mem: &dyn CallerMemory,
) -> Vec<(&'static str, FieldValue)> {
    if cmd != 0xC010_5300 {
        return Vec::new();
    }
    const NAMES: [&str; 13] = [
        "SEV_FACTORY_RESET",
        "SEV_PLATFORM_STATUS",
        "SEV_PEK_GEN",
        "SEV_PEK_CSR",
        "SEV_PDH_GEN",
        "SEV_PDH_CERT_EXPORT",
        "SEV_PEK_CERT_IMPORT",
        "SEV_GET_ID",
        "SEV_GET_ID2",
        "SNP_PLATFORM_STATUS",
        "SNP_COMMIT",
        "SNP_SET_CONFIG",
        "SNP_VLEK_LOAD",
    ];
    match reply {
        None => {
            let c = u32_at(input, 0).unwrap_or(u32::MAX);
            vec![
                ("ioctl", FieldValue::Str("SEV_ISSUE_CMD".into())),
                ("sev_cmd", FieldValue::U64(u64::from(c))),
                (
                    "sev_cmd_name",
                    FieldValue::Str(NAMES.get(c as usize).copied().unwrap_or("?").into()),
                ),
                ("data", addr(u64_at(input, 4).unwrap_or(0))),
            ]
        }
        Some(out) => vec![(
            "error",
            FieldValue::U64(u64::from(u32_at(out, 12).unwrap_or(0))),
        )],
    }
}

/// What the namespace serves, for the messages.
fn served_list(r: &Running) -> String {
    r.served
        .iter()
        .map(|s| s.mountpoint().display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Run the command.
pub(crate) fn run(a: Args) -> Result<ExitCode> {
    let running = start(&a.fe)?;
    let program = &a.cmd[0];
    if a.fe.host
        && let Some(p) = softsev_os::elf::which(program)
        && matches!(
            softsev_os::elf::linkage(&p),
            Ok(softsev_os::elf::Linkage::Static)
        )
    {
        eprintln!(
            "softsev exec: warning: {} is statically linked: the AMD CPUID of --host does not reach it (frontends.md §7.3)",
            p.display()
        );
    }
    for n in &running.notes {
        tracing::info!("{n}");
    }
    let child = std::process::Command::new(program)
        .args(&a.cmd[1..])
        .envs(running.env.iter().map(|(k, v)| (k, v)))
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            if let Err(s) = running.stop() {
                tracing::warn!("tearing down: {s:#}");
            }
            return Err(anyhow::Error::new(e).context(format!("cannot run {program}")));
        }
    };
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    // Forward SIGINT/SIGTERM/SIGHUP to the command; its end ends us.
    std::thread::spawn(move || {
        let set = stop_signals();
        while let Ok(sig) = set.wait() {
            let _ = nix::sys::signal::kill(pid, sig);
        }
    });
    let status = child.wait().context("waiting for the command")?;
    running.stop()?;
    use std::os::unix::process::ExitStatusExt;
    let code = match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        (None, None) => 1,
    };
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// Serve until SIGINT / SIGTERM / SIGHUP.
pub(crate) fn serve_cmd(a: ServeArgs) -> Result<ExitCode> {
    let running = start(&a.fe)?;
    let pid = std::process::id();
    let net = if a.fe.kds {
        format!(" --net=/proc/{pid}/ns/net")
    } else {
        String::new()
    };
    let env: Vec<String> = running
        .env
        .iter()
        // Shell-quoted: the CPUID table holds ';' and '*'.
        .map(|(k, v)| format!("{k}='{}'", v.replace('\'', "'\\''")))
        .collect();
    let env = if env.is_empty() {
        String::new()
    } else {
        format!("env {} ", env.join(" "))
    };
    println!("softsev serve: pid {pid} serves {}", served_list(&running));
    for n in &running.notes {
        println!("softsev serve: {n}");
    }
    println!("enter with: nsenter --mount=/proc/{pid}/ns/mnt{net} -- {env}CMD [ARGS...]");
    println!("stop with: kill {pid} (or Ctrl-C)");
    use std::io::Write;
    std::io::stdout().flush().ok();
    let sig = stop_signals().wait().context("waiting for a signal")?;
    tracing::info!("softsev serve: {sig:?}, stopping");
    running.stop()?;
    Ok(ExitCode::SUCCESS)
}
