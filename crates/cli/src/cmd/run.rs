//! `softsev run`: launch an SEV-SNP guest on the built-in software platform from QEMU
//! options (or a TOML file, or nothing: the default guest), boot it with the guest
//! model, obtain an attestation report and a derived key, verify the report, and write
//! the report, the certificate chain and the exact inputs to a directory.
//!
//! A `sev-guest` (SEV / SEV-ES) is launched through the host's SEV launcher up to
//! LAUNCH_MEASURE; with `-qmp unix:PATH,server=on,wait=off` the QMP monitor serves it
//! as QEMU does (with `-S` the guest waits for `cont`, which issues LAUNCH_FINISH; the
//! run ends at `quit`), without `-qmp` LAUNCH_FINISH follows at once. After
//! LAUNCH_FINISH the guest model boots (`softsev_guest::sev_boot` on vCPU 0,
//! `sev_ap_entry` on the APs). The measurement blob and a summary (with the guest's
//! SEV_STATUS, C-bit, secret-area outcome and AP reports) are written to the output
//! directory.

use anyhow::{Context, Result, bail};
use clap::{Args as ClapArgs, ValueEnum};
use serde::Serialize;
use softsev_abi::report::AttestationReport;
use softsev_crypto::hash::sha256;
use softsev_guest::AcceptMode;
use softsev_vmm::run::{RunOptions, run as run_plan};
use softsev_vmm::{Config, LaunchPlan};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Memory acceptance at boot.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum Accept {
    /// Accept all RAM at boot (OVMF without unaccepted-memory support).
    Full,
    /// Accept 64 MiB at boot, the rest on first use.
    Lazy,
}

/// Arguments of `softsev run`.
#[derive(ClapArgs, Debug)]
#[command(after_help = "\
Examples:
  softsev run                                   # built-in firmware, generated kernel, 4 vCPUs, 4 GiB
  softsev run --seed demo --out run1 --json
  softsev run -- -machine q35,confidential-guest-support=sev0 \\
      -object sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x30000 \\
      -smp 4 -m 4G -cpu EPYC-Milan -bios OVMF.fd
  softsev run --config guest.toml")]
pub(crate) struct Args {
    /// Guest configuration as a TOML file (instead of QEMU options).
    #[arg(long, value_name = "FILE", conflicts_with = "qemu")]
    config: Option<PathBuf>,
    /// Output directory (default: a new `softsev-run-N` under the current one).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Seed for every random choice: the same inputs and seed give byte-identical
    /// outputs. Without it the chip, keys and nonce are random.
    #[arg(long)]
    seed: Option<String>,
    /// REPORT_DATA for the attestation report, hex (up to 64 bytes, zero padded).
    /// Default: random, or derived from --seed.
    #[arg(long, value_name = "HEX")]
    nonce: Option<String>,
    /// Memory acceptance.
    #[arg(long, value_enum, default_value_t = Accept::Full)]
    accept: Accept,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Write the host's event log (every exit and decision) to DIR/events.jsonl and
    /// print it.
    #[arg(long)]
    trace: bool,
    /// Play a malicious host after boot: change the RMP entry of the guest page at this
    /// GPA (hex) and show that the guest notices (#VC 0x404) on its next access.
    #[arg(long, value_name = "GPA", value_parser = parse_gpa)]
    tamper_gpa: Option<u64>,
    /// SEV / SEV-ES: after the boot, write a snapshot of the running guest to FILE
    /// (never overwritten; written as FILE.tmp and renamed when complete) and stop.
    /// Restore it with `softsev run -- <the same QEMU options> -incoming file:FILE`;
    /// sealed to this chip, so restoring here in a later process needs the same
    /// --seed.
    #[arg(long, value_name = "FILE")]
    snapshot: Option<PathBuf>,
    /// The platform the snapshot is for: a directory holding its sev-chain.cert
    /// (PDH ‖ PEK ‖ OCA ‖ CEK) and ask-ark.cert, as `softsev run` writes them to
    /// OUT/certs. Default: this chip's own.
    #[arg(long, value_name = "DIR", requires = "snapshot")]
    snapshot_target: Option<PathBuf>,
    /// SEV / SEV-ES: the guest runs its memory workload (pages of a seeded pattern
    /// and a ledger of their hashes) for this many batches after booting, so that a
    /// snapshot or migration has something to carry and the restored guest can check
    /// itself.
    #[arg(long, value_name = "N", default_value_t = 4)]
    workload_batches: u64,
    /// The workload's page range (bytes of guest RAM from 32 MiB; a batch writes 16
    /// pages of it, round robin).
    #[arg(long, value_name = "SIZE", default_value = "16M")]
    workload_mem: String,
    /// QEMU options after `--` (as for qemu-system-x86_64).
    #[arg(last = true, value_name = "QEMU_ARGS")]
    qemu: Vec<String>,
}

#[derive(Serialize)]
struct Summary {
    measurement: String,
    expected_measurement: String,
    product: String,
    policy: String,
    reported_tcb: String,
    vcpus: u32,
    aps_started: usize,
    memory_bytes: u64,
    validated_bytes: u64,
    shared_bytes: u64,
    kernel_hashes_verified: bool,
    report_data: String,
    chip_id: String,
    derived_key_sha256: Option<String>,
    report_verified: bool,
    verification: Vec<String>,
    phases_ms: Vec<(String, f64)>,
    total_ms: f64,
    out_dir: String,
    files: Vec<String>,
    snpguest: String,
    remeasure: String,
    tamper: Option<softsev_vmm::run::TamperResult>,
}

fn parse_gpa(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim_start_matches("0x");
    u64::from_str_radix(t, 16).map_err(|e| format!("GPA {s:?} is not hex: {e}"))
}

fn parse_nonce(s: &str) -> Result<[u8; 64]> {
    let bytes = hex::decode(s.trim_start_matches("0x")).context("--nonce is not hex")?;
    if bytes.len() > 64 {
        bail!("--nonce is {} bytes; REPORT_DATA holds 64", bytes.len());
    }
    let mut n = [0u8; 64];
    n[..bytes.len()].copy_from_slice(&bytes);
    Ok(n)
}

fn new_out_dir() -> Result<PathBuf> {
    for i in 1..10_000 {
        let p = PathBuf::from(format!("softsev-run-{i}"));
        if !p.exists() {
            return Ok(p);
        }
    }
    bail!("no free softsev-run-N directory name under the current directory")
}

/// Run the command.
pub(crate) fn run(a: Args) -> Result<ExitCode> {
    let t0 = Instant::now();
    let cfg: Config = if let Some(path) = &a.config {
        softsev_vmm::from_toml_file(path).with_context(|| format!("{}", path.display()))?
    } else if a.qemu.is_empty() {
        Config::default_run()
    } else {
        softsev_vmm::parse_args(&a.qemu)?
    };
    if matches!(
        cfg.confidential_guest,
        softsev_vmm::config::ConfidentialGuest::Sev(_)
            | softsev_vmm::config::ConfidentialGuest::SevEs(_)
    ) {
        return run_sev(&a, &cfg, t0);
    }
    if a.snapshot.is_some() {
        // QEMU's migration blocker for SNP guests (target/i386/sev.c).
        bail!(
            "--snapshot: {} (an SNP guest needs a migration agent)",
            softsev_vmm::migration::SNP_MIGRATION_BLOCKER
        );
    }
    let plan = LaunchPlan::build(&cfg)?;
    let nonce = match (&a.nonce, &a.seed) {
        (Some(n), _) => parse_nonce(n)?,
        (None, Some(s)) => {
            let mut n = [0u8; 64];
            n[..32].copy_from_slice(&sha256(format!("softsev run nonce {s}").as_bytes()));
            n
        }
        (None, None) => softsev_crypto::rng::Rng::os().array::<64>(),
    };
    let out = match &a.out {
        Some(d) => d.clone(),
        None => new_out_dir()?,
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let opts = RunOptions {
        seed: a.seed.as_ref().map(|s| s.as_bytes().to_vec()),
        nonce,
        accept: match a.accept {
            Accept::Full => AcceptMode::Full,
            Accept::Lazy => AcceptMode::Lazy {
                eager_bytes: 64 << 20,
            },
        },
        start_aps: true,
        tamper_gpa: a.tamper_gpa,
    };
    let bar = (!a.json && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.enable_steady_tick(std::time::Duration::from_millis(80));
        b
    });
    let outcome = run_plan(&plan, &opts, &mut |phase| {
        if let Some(b) = &bar {
            b.set_message(format!("{phase}…"));
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let outcome = outcome?;

    // Outputs: the layout snpguest reads, plus the inputs for re-measuring.
    let mut files = Vec::new();
    let report_path = out.join("report.bin");
    std::fs::write(&report_path, &outcome.boot.report)?;
    files.push("report.bin".to_string());
    let certs = out.join("certs");
    outcome
        .chain
        .write_dir(&certs, true)
        .with_context(|| format!("writing {}", certs.display()))?;
    files.extend(["certs/ark.pem", "certs/ask.pem", "certs/vcek.pem"].map(String::from));
    std::fs::write(out.join("certs.bin"), &outcome.boot.certs)?;
    files.push("certs.bin".into());
    let inputs = plan.write_inputs(&out)?;
    for p in [
        Some(&inputs.firmware),
        inputs.kernel.as_ref(),
        inputs.initrd.as_ref(),
        inputs.cmdline.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        if let Some(name) = p.file_name() {
            files.push(name.to_string_lossy().into_owned());
        }
    }
    if a.trace {
        std::fs::write(out.join("events.jsonl"), &outcome.events)?;
        files.push("events.jsonl".into());
        eprint!("{}", outcome.events);
    }

    // Verify as a relying party would, with the chip's own ARK as the custom root.
    let trust = softsev_attest::TrustStore::from_dir(&certs, Some(plan.product))?;
    let certset = softsev_attest::CertSet::from_dir(&certs)?;
    let verdict = softsev_attest::verify(
        &outcome.boot.report,
        &certset,
        &softsev_attest::VerifyOptions::new().with_trust(&trust),
    );
    let report = AttestationReport::parse(&outcome.boot.report)?;
    let measure_args = plan.measure_args(&inputs);
    let phases: Vec<(String, f64)> = outcome
        .phases
        .iter()
        .map(|(n, d)| (n.to_string(), d.as_secs_f64() * 1e3))
        .chain(
            outcome
                .boot
                .phases
                .iter()
                .map(|(p, d)| (format!("guest {p:?}"), d.as_secs_f64() * 1e3)),
        )
        .collect();
    let summary = Summary {
        measurement: hex::encode(outcome.measurement),
        expected_measurement: hex::encode(plan.expected_digest),
        product: plan.product.name().to_string(),
        policy: format!("{:#x}", plan.start.policy.0),
        reported_tcb: outcome.reported_tcb.to_string(),
        vcpus: plan.vcpus,
        aps_started: outcome.boot.aps_started.len(),
        memory_bytes: plan.memory.ram_size,
        validated_bytes: outcome.boot.accepted_bytes + outcome.boot.prevalidated_bytes,
        shared_bytes: outcome.boot.shared_bytes,
        kernel_hashes_verified: outcome.boot.hashes_verified,
        report_data: hex::encode(report.report_data),
        chip_id: hex::encode(&report.chip_id[..plan.product.chip_id_len()]),
        derived_key_sha256: outcome
            .boot
            .derived_key
            .as_ref()
            .map(|k| hex::encode(sha256(&k[..]))),
        report_verified: verdict.passed(),
        verification: verdict.failures().map(|c| format!("{c:?}")).collect(),
        phases_ms: phases,
        total_ms: t0.elapsed().as_secs_f64() * 1e3,
        out_dir: out.display().to_string(),
        files,
        snpguest: format!(
            "snpguest verify certs {0}/certs && snpguest verify attestation {0}/certs {0}/report.bin",
            out.display()
        ),
        remeasure: format!("softsev measure {}", measure_args.join(" ")),
        tamper: outcome.tamper.clone(),
    };
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_string_pretty(&summary)? + "\n",
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_human(&summary, &out);
    }
    if summary.measurement != summary.expected_measurement {
        bail!(
            "the firmware's measurement {} differs from the planned {}",
            summary.measurement,
            summary.expected_measurement
        );
    }
    if let Some(t) = &summary.tamper
        && !t.detected()
    {
        bail!(
            "the guest did not notice that the host changed GPA {:#x} ({})",
            t.gpa,
            t.host_action
        );
    }
    if !summary.report_verified {
        bail!(
            "the report did not verify: {}",
            summary.verification.join("; ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_human(s: &Summary, out: &Path) {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!("SNP guest launched, booted and attested on the software platform");
    println!("  measurement     {}", s.measurement);
    println!(
        "  product         {} (reported TCB {})",
        s.product, s.reported_tcb
    );
    println!("  policy          {}", s.policy);
    println!(
        "  vCPUs           {} ({} APs started by AP creation)",
        s.vcpus, s.aps_started
    );
    println!(
        "  memory          {:.0} MiB, {:.0} MiB validated, {:.1} MiB shared",
        mib(s.memory_bytes),
        mib(s.validated_bytes),
        mib(s.shared_bytes)
    );
    println!(
        "  kernel hashes   {}",
        if s.kernel_hashes_verified {
            "verified"
        } else {
            "not used"
        }
    );
    println!("  report data     {}", s.report_data);
    println!(
        "  report          {} (VCEK chain of the chip, its ARK as root)",
        if s.report_verified {
            "verified"
        } else {
            "FAILED verification"
        }
    );
    if let Some(k) = &s.derived_key_sha256 {
        println!("  derived key     sha256 {k}");
    }
    let phases: Vec<String> = s
        .phases_ms
        .iter()
        .filter(|(n, _)| !n.starts_with("guest"))
        .map(|(n, ms)| format!("{n} {ms:.1} ms"))
        .collect();
    println!(
        "  time            {} (total {:.0} ms)",
        phases.join(", "),
        s.total_ms
    );
    if let Some(t) = &s.tamper {
        println!("  tamper          host: {}", t.host_action);
        match &t.guest_saw {
            Some(e) => println!("                  guest noticed: {e}"),
            None => println!("                  guest did NOT notice"),
        }
    }
    println!("  written to      {}", out.display());
    println!("  check with      {}", s.snpguest);
}

#[derive(Serialize)]
struct SevSummary {
    guest: &'static str,
    policy: String,
    kvm_init: &'static str,
    vm_type: u32,
    vcpus: u32,
    /// Firmware API version and build (PLATFORM_STATUS), the inputs of the measurement.
    api_major: u8,
    api_minor: u8,
    build_id: u8,
    /// LAUNCH_MEASURE output: measure ‖ mnonce, hex (also measurement.bin).
    measurement: String,
    expected_launch_digest: String,
    firmware_launch_digest: Option<String>,
    /// Without a session TIK is zero, so the measurement can be checked here.
    measurement_verified: Option<bool>,
    secret_area: Option<(String, String)>,
    launch_finished: bool,
    qmp: Option<String>,
    /// "booted", "failed: …", or "not run" (the run ended before `cont`).
    guest_boot: String,
    /// The booted guest's view (absent when it did not boot).
    booted_guest: Option<SevGuestSummary>,
    /// `--snapshot`: what was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot: Option<SnapshotSummary>,
    total_ms: f64,
    out_dir: String,
    files: Vec<String>,
}

#[derive(Serialize)]
struct SevGuestSummary {
    mode: &'static str,
    /// SEV_STATUS MSR as the BSP read it, `0x…`.
    sev_status: String,
    cbit_pos: u8,
    reduced_phys_bits: u8,
    ghcb_version: u16,
    kernel_hashes_verified: bool,
    /// `SecretStatus::kind()`: not-configured, absent, no-table, found, invalid.
    secret_kind: &'static str,
    /// SHA-256 of the injected packet as the guest read it (when a table was found).
    secret_sha256: Option<String>,
    shared_bytes: u64,
    ap_jump_table: Option<String>,
    aps: Vec<SevApSummary>,
}

#[derive(Serialize)]
struct SevApSummary {
    vcpu: u32,
    sev_status: String,
    ghcb_version: u16,
    jump_table: Option<String>,
    start: Option<String>,
}

fn sev_guest_summary(o: &softsev_vmm::sev_run::SevBootOutcome) -> SevGuestSummary {
    let r = &o.bsp;
    SevGuestSummary {
        mode: r.mode.name(),
        sev_status: format!("{:#x}", r.sev_status),
        cbit_pos: r.cbit_pos,
        reduced_phys_bits: r.reduced_phys_bits,
        ghcb_version: r.ghcb_version,
        kernel_hashes_verified: r.hashes_verified,
        secret_kind: r.secret.kind(),
        secret_sha256: r.secret.sha256_hex().map(str::to_string),
        shared_bytes: r.shared_bytes,
        ap_jump_table: r.ap_jump_table.map(|g| format!("{:#x}", g.0)),
        aps: o
            .aps
            .iter()
            .map(|(id, a)| SevApSummary {
                vcpu: *id,
                sev_status: format!("{:#x}", a.sev_status),
                ghcb_version: a.ghcb_version,
                jump_table: a.jump_table.map(|g| format!("{:#x}", g.0)),
                start: a.start.map(|s| format!("{s:#x}")),
            })
            .collect(),
    }
}

/// `softsev run` of a `sev-guest`.
fn run_sev(a: &Args, cfg: &Config, t0: Instant) -> Result<ExitCode> {
    use softsev_vmm::qmp::server::{QmpServer, ServerThread};
    use softsev_vmm::qmp::{QmpGuest, QmpVersion, Session};
    use softsev_vmm::sev_plan::SevLaunchPlan;
    use softsev_vmm::sev_run::SevVm;
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, Mutex};

    if cfg.incoming.is_some() {
        return run_incoming(a, cfg, t0);
    }
    if cfg.start_paused && cfg.qmp.is_none() {
        bail!(
            "-S without -qmp: nothing could continue the guest (give -qmp unix:PATH,server=on,wait=off)"
        );
    }
    if let Some(f) = &a.snapshot {
        if f.exists() {
            bail!(
                "--snapshot {}: the file exists; softsev never overwrites a snapshot",
                f.display()
            );
        }
        if cfg.qmp.is_some() {
            bail!("--snapshot runs without -qmp (with a monitor, use QMP migrate to file:PATH)");
        }
    }
    let plan = SevLaunchPlan::build(cfg)?;
    let out = match &a.out {
        Some(d) => d.clone(),
        None => new_out_dir()?,
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut vm = SevVm::launch(&plan, a.seed.as_deref().map(str::as_bytes))?;
    let blobs = softsev_vmm::plan::BootBlobs::load(cfg)?;
    vm.set_boot_config(softsev_vmm::sev_run::boot_config(&plan, blobs.as_ref())?);
    let blob = vm.measurement();
    let info = vm.sev_info();
    let firmware_digest = vm.firmware_launch_digest();
    let mut files = vec!["measurement.bin".to_string()];
    std::fs::write(out.join("measurement.bin"), blob)?;
    // What the guest owner verifies the platform with: `sevctl verify --sev
    // certs/sev-chain.cert --ca certs/ask-ark.cert`, `softsev verify --sev-chain … --sev-ca …`.
    let certs = vm
        .owner_certificates()
        .map_err(|e| anyhow::anyhow!("exporting the platform's SEV certificates: {e}"))?;
    std::fs::create_dir_all(out.join("certs"))?;
    std::fs::write(out.join("certs/sev-chain.cert"), &certs.sev_chain)?;
    std::fs::write(out.join("certs/ask-ark.cert"), &certs.ca)?;
    files.extend(["certs/sev-chain.cert", "certs/ask-ark.cert"].map(String::from));
    let verified = plan.owner.session.is_none().then(|| {
        let mnonce: [u8; 16] = blob[32..].try_into().unwrap_or([0; 16]);
        softsev_crypto::sev::launch_measure(
            &[0; 16],
            info.api_major,
            info.api_minor,
            info.build_id,
            plan.policy,
            &plan.expected_digest,
            &mnonce,
        ) == blob[..32]
    });
    let mut snapshot = None;
    let (finished, booted, qmp) = match &cfg.qmp {
        None => {
            let mut vm = vm;
            if a.snapshot.is_some() && a.workload_batches > 0 {
                let seed = a.seed.as_deref().unwrap_or("unseeded").as_bytes().to_vec();
                let bytes =
                    softsev_vmm::keyval::parse_size("--workload-mem", "size", &a.workload_mem, 1)?;
                let w = softsev_vmm::migration::sev::default_workload(&vm, &seed, bytes)?;
                vm.set_workload(w, 0);
            }
            vm.finish()?;
            let _ = vm.boot();
            if let Some(file) = &a.snapshot {
                if vm.boot_outcome().is_some_and(|b| b.is_ok()) {
                    softsev_vmm::migration::sev::run_workload(
                        &mut vm,
                        a.workload_batches.saturating_sub(1),
                    )?;
                }
                snapshot = Some(write_snapshot(&mut vm, file, a)?);
                files.push(file.display().to_string());
            }
            (vm.finished(), vm.boot_outcome().cloned(), None)
        }
        Some(q) => {
            let server = QmpServer::bind(&q.path)
                .with_context(|| format!("-qmp: binding {}", q.path.display()))?;
            let first = if q.wait {
                eprintln!(
                    "softsev: waiting for connection on: disconnected:unix:{},server=on",
                    q.path.display()
                );
                server.accept(&AtomicBool::new(false))?
            } else {
                None
            };
            let mut vm = vm;
            if !cfg.start_paused {
                vm.finish()?;
                let _ = vm.boot();
            }
            let session = Arc::new(Mutex::new(Session::new(
                vm,
                cfg.start_paused,
                QmpVersion::default(),
            )));
            eprintln!(
                "softsev: QMP on {} ({}); the run ends at quit",
                q.path.display(),
                if cfg.start_paused {
                    "paused in launch-secret until cont"
                } else {
                    "running"
                }
            );
            let t = ServerThread::spawn(server, session.clone(), first);
            while !t.finished() {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            t.stop()?;
            let s = session
                .lock()
                .map_err(|_| anyhow::anyhow!("QMP session poisoned"))?;
            (
                s.guest().finished(),
                s.guest().boot_outcome().cloned(),
                Some(q.path.display().to_string()),
            )
        }
    };
    let summary = SevSummary {
        guest: if plan.es { "SEV-ES" } else { "SEV" },
        policy: format!("{:#x}", plan.policy),
        kvm_init: plan.kvm_init.command(),
        vm_type: plan.kvm_init.vm_type().0,
        vcpus: plan.vcpus,
        api_major: info.api_major,
        api_minor: info.api_minor,
        build_id: info.build_id,
        measurement: hex::encode(blob),
        expected_launch_digest: hex::encode(plan.expected_digest),
        firmware_launch_digest: firmware_digest.map(hex::encode),
        measurement_verified: verified,
        secret_area: plan
            .secret_area
            .map(|(b, l)| (format!("{b:#x}"), format!("{l:#x}"))),
        launch_finished: finished,
        qmp,
        guest_boot: match &booted {
            None => "not run (the run ended before cont)".to_string(),
            Some(Ok(_)) => "booted".to_string(),
            Some(Err(e)) => format!("failed: {e}"),
        },
        booted_guest: booted
            .as_ref()
            .and_then(|b| b.as_ref().ok())
            .map(sev_guest_summary),
        snapshot,
        total_ms: t0.elapsed().as_secs_f64() * 1e3,
        out_dir: out.display().to_string(),
        files: {
            files.push("summary.json".into());
            files
        },
    };
    let text = serde_json::to_string_pretty(&summary)? + "\n";
    std::fs::write(out.join("summary.json"), &text)?;
    if a.json {
        print!("{text}");
    } else {
        println!("{} guest launched on the software platform", summary.guest);
        println!("  measurement     {}", summary.measurement);
        println!("  launch digest   {}", summary.expected_launch_digest);
        println!(
            "  policy          {} ({})",
            summary.policy, summary.kvm_init
        );
        match &summary.booted_guest {
            Some(g) => println!(
                "  guest           booted: SEV_STATUS {}, C-bit {}, {} AP(s), secret {}",
                g.sev_status,
                g.cbit_pos,
                g.aps.len(),
                g.secret_kind
            ),
            None => println!("  guest           {}", summary.guest_boot),
        }
        if let Some(sn) = &summary.snapshot {
            println!(
                "  snapshot        {} ({} pages, {} bytes, {:.1} ms), sealed to {}",
                sn.file, sn.pages, sn.bytes, sn.ms, sn.sealed_to
            );
            println!(
                "  restore with    softsev run {}-- <the same QEMU options> -incoming file:{}",
                if sn.needs_seed {
                    "--seed <the same seed> "
                } else {
                    ""
                },
                sn.file
            );
        }
        println!("  written to      {}", out.display());
    }
    if let Some(Err(e)) = &booted {
        bail!("the {} guest did not boot: {e}", summary.guest);
    }
    if firmware_digest != Some(plan.expected_digest) {
        bail!(
            "the firmware's launch digest {:?} differs from the planned {}",
            summary.firmware_launch_digest,
            summary.expected_launch_digest
        );
    }
    if verified == Some(false) {
        bail!("the LAUNCH_MEASURE measurement does not verify against the planned digest");
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct SnapshotSummary {
    file: String,
    bytes: u64,
    pages: u64,
    resident_pages: u64,
    total_pages: u64,
    workload_batches: u64,
    stream_sha256: String,
    sealed_to: String,
    /// Sealed to this chip without --seed: no later process can restore it.
    needs_seed: bool,
    ms: f64,
}

/// A progress bar on stderr when it is a terminal (and not --json).
fn transfer_bar(a: &Args, what: &str) -> Option<indicatif::ProgressBar> {
    (!a.json && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_message(what.to_string());
        b
    })
}

/// The target platform of `--snapshot-target DIR`: DIR/sev-chain.cert and
/// DIR/ask-ark.cert (or DIR/certs/…, a whole `softsev run` output directory).
fn snapshot_target(dir: &Path) -> Result<softsev_vmm::migration::sev::TargetCerts> {
    let base = if dir.join("sev-chain.cert").exists() {
        dir.to_path_buf()
    } else {
        dir.join("certs")
    };
    let chain = std::fs::read(base.join("sev-chain.cert"))
        .with_context(|| format!("--snapshot-target: {}/sev-chain.cert", base.display()))?;
    let ca = std::fs::read(base.join("ask-ark.cert"))
        .with_context(|| format!("--snapshot-target: {}/ask-ark.cert", base.display()))?;
    Ok(softsev_vmm::migration::sev::target_certs(&chain, &ca)?)
}

/// `--snapshot FILE`: SEND_START to this chip (or `--snapshot-target`), every resident
/// page, the vCPU state, SEND_FINISH; FILE.tmp renamed to FILE when complete.
fn write_snapshot(
    vm: &mut softsev_vmm::sev_run::SevVm,
    file: &Path,
    a: &Args,
) -> Result<SnapshotSummary> {
    use softsev_vmm::migration::MigrationUri;
    use softsev_vmm::migration::sev::{SendOptions, SendProgress, send};
    let target = match &a.snapshot_target {
        Some(d) => Some(snapshot_target(d)?),
        None => None,
    };
    let sealed_to = match &a.snapshot_target {
        Some(d) => format!("the platform of {}", d.display()),
        None => match &a.seed {
            Some(s) => format!("this chip (--seed {s})"),
            None => "this chip (unseeded: only this process could restore it)".into(),
        },
    };
    let uri = MigrationUri::File {
        path: file.to_path_buf(),
        offset: 0,
    };
    let mut out = uri
        .open_outgoing()
        .with_context(|| format!("--snapshot {}", file.display()))?;
    let bar = transfer_bar(a, "snapshot");
    let t = std::time::Instant::now();
    let opts = SendOptions {
        target,
        max_bandwidth: 0,
        downtime_limit_ms: 0,
        live: false,
    };
    let r = send(vm, &mut out, &opts, &mut |p| {
        if let (Some(b), SendProgress::Bytes { sent, expected }) = (&bar, p) {
            b.set_length(expected);
            b.set_position(sent);
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let rep = match r {
        Ok(rep) => rep,
        Err(e) => {
            out.abort();
            if e.fw_status() == Some(softsev_abi::FwStatus::POLICY_FAILURE) {
                bail!(
                    "the guest cannot be snapshotted: SEND_START refused by the firmware \
                     (POLICY_FAILURE: the policy forbids sending it{})",
                    if vm_policy_nosend(vm) {
                        ", NOSEND (bit 3)"
                    } else {
                        " to that platform"
                    }
                );
            }
            return Err(anyhow::anyhow!("--snapshot: {e}"));
        }
    };
    out.commit()
        .with_context(|| format!("--snapshot {}", file.display()))?;
    Ok(SnapshotSummary {
        file: file.display().to_string(),
        bytes: rep.bytes,
        pages: rep.pages_sent,
        resident_pages: rep.resident_pages,
        total_pages: rep.total_pages,
        workload_batches: rep.batches_at_stop,
        stream_sha256: rep.stream_sha256,
        sealed_to,
        needs_seed: a.snapshot_target.is_none(),
        ms: t.elapsed().as_secs_f64() * 1e3,
    })
}

fn vm_policy_nosend(vm: &softsev_vmm::sev_run::SevVm) -> bool {
    use softsev_vmm::qmp::QmpGuest;
    vm.sev_info().policy & softsev_abi::SevPolicy::NOSEND != 0
}

#[derive(Serialize)]
struct RestoreSummary {
    guest: &'static str,
    policy: String,
    incoming: String,
    /// "completed", or why it failed.
    outcome: String,
    /// QEMU's run state when the run ended (`running`, `paused`, `shutdown` after a
    /// QMP `quit`, `inmigrate` if nothing arrived).
    run_state: &'static str,
    stream_bytes: u64,
    pages: u64,
    rounds: u32,
    vcpus: u32,
    source_product: String,
    receive_ms: f64,
    /// The firmware's guest state afterwards (3 RUNNING; absent: no guest).
    guest_state: Option<u32>,
    /// The moved guest's own check of its memory, registers and secret.
    move_check: Option<serde_json::Value>,
    qmp: Option<String>,
    total_ms: f64,
    out_dir: String,
}

/// `softsev run -- <QEMU options> -incoming URI|defer`: the guest arrives by migration
/// (a snapshot file, a socket, a command) instead of a launch.
fn run_incoming(a: &Args, cfg: &Config, t0: Instant) -> Result<ExitCode> {
    use softsev_vmm::migration::Incoming;
    use softsev_vmm::qmp::server::{QmpServer, ServerThread};
    use softsev_vmm::qmp::{QmpGuest, QmpVersion, Session};
    use softsev_vmm::sev_plan::SevLaunchPlan;
    use softsev_vmm::sev_run::SevVm;
    use std::sync::{Arc, Mutex};

    let Some(inc) = &cfg.incoming else {
        bail!("no -incoming");
    };
    if a.snapshot.is_some() {
        bail!("--snapshot and -incoming: restore first, snapshot in another run");
    }
    if *inc == Incoming::Defer && cfg.qmp.is_none() {
        bail!("-incoming defer without -qmp: nothing could start the incoming migration");
    }
    let plan = SevLaunchPlan::build(cfg)?;
    let out = match &a.out {
        Some(d) => d.clone(),
        None => new_out_dir()?,
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut vm = SevVm::incoming(&plan, a.seed.as_deref().map(str::as_bytes))?;
    let blobs = softsev_vmm::plan::BootBlobs::load(cfg)?;
    vm.set_boot_config(softsev_vmm::sev_run::boot_config(&plan, blobs.as_ref())?);
    let mut session = Session::new_incoming(
        vm,
        cfg.start_paused,
        *inc == Incoming::Defer,
        QmpVersion::default(),
    );
    // The stream's length is known only at its end: a spinner.
    let bar = (!a.json && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_message(format!("receiving {}…", inc.to_arg()));
        b.enable_steady_tick(std::time::Duration::from_millis(80));
        b
    });
    let received = match inc {
        Incoming::Uri(u) => Some(session.incoming(u).map(|_| ())),
        Incoming::Defer => None,
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let mut qmp = None;
    if let Some(q) = &cfg.qmp {
        let server = QmpServer::bind(&q.path)
            .with_context(|| format!("-qmp: binding {}", q.path.display()))?;
        let shared = Arc::new(Mutex::new(session));
        eprintln!(
            "softsev: QMP on {} (incoming migration); the run ends at quit",
            q.path.display()
        );
        let t = ServerThread::spawn(server, shared.clone(), None);
        while !t.finished() {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        t.stop()?;
        session = Arc::try_unwrap(shared)
            .map_err(|_| anyhow::anyhow!("QMP session still shared"))?
            .into_inner()
            .map_err(|_| anyhow::anyhow!("QMP session poisoned"))?;
        qmp = Some(q.path.display().to_string());
    }
    let vm = session.guest();
    let ms = vm.migration_state();
    let rec = ms.received.clone().unwrap_or_default();
    let move_check = ms.moved.clone().and_then(|m| m.ok());
    let outcome = match (&received, &ms.received) {
        (Some(Err(e)), _) => format!("failed: {e}"),
        (_, None) => "failed: no stream was received".to_string(),
        (_, Some(_)) => "completed".to_string(),
    };
    let summary = RestoreSummary {
        guest: if plan.es { "SEV-ES" } else { "SEV" },
        policy: format!("{:#x}", vm.sev_info().policy),
        incoming: inc.to_arg(),
        outcome,
        run_state: session.run_state().as_str(),
        stream_bytes: rec.bytes,
        pages: rec.pages,
        rounds: rec.rounds,
        vcpus: rec.vcpus,
        source_product: rec.source_product.clone(),
        receive_ms: rec.total_ms,
        guest_state: vm.guest_state(),
        move_check: move_check.clone(),
        qmp,
        total_ms: t0.elapsed().as_secs_f64() * 1e3,
        out_dir: out.display().to_string(),
    };
    let text = serde_json::to_string_pretty(&summary)? + "\n";
    std::fs::write(out.join("summary.json"), &text)?;
    if a.json {
        print!("{text}");
    } else {
        println!("{} guest restored from {}", summary.guest, summary.incoming);
        println!(
            "  stream          {} bytes, {} pages, {} round(s), {} vCPU(s), {:.1} ms",
            summary.stream_bytes, summary.pages, summary.rounds, summary.vcpus, summary.receive_ms
        );
        println!(
            "  outcome         {} (run state {})",
            summary.outcome, summary.run_state
        );
        if let Some(m) = &summary.move_check {
            println!("  guest check     {m}");
        }
        println!("  written to      {}", out.display());
    }
    if let Some(Err(e)) = received {
        let hint = if a.seed.is_none() && inc_is_file(inc) {
            " (a snapshot sealed to \"this chip\" restores only on the same chip: give the --seed \
             of the run that wrote it)"
        } else {
            ""
        };
        bail!("the incoming migration failed: {e}{hint}");
    }
    // `null`: a guest without a workload has nothing to check.
    if let Some(m) = move_check.as_ref().filter(|m| !m.is_null())
        && (m["pages_bad"] != 0 || m["registers_ok"] != true || m["vmsa_continued"] == false)
    {
        bail!("the restored guest found itself damaged: {m}");
    }
    Ok(ExitCode::SUCCESS)
}

fn inc_is_file(i: &softsev_vmm::migration::Incoming) -> bool {
    matches!(
        i,
        softsev_vmm::migration::Incoming::Uri(softsev_vmm::migration::MigrationUri::File { .. })
    )
}
