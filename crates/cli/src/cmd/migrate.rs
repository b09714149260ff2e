//! `softsev migrate`: a running SEV or SEV-ES guest moved live from one chip to
//! another in one process (shared/spec/sev-legacy.md §5; docs/migration.md). The
//! source guest boots on chip A and runs its memory workload; the target VM waits on
//! chip B (another seed, optionally another product); the source pre-copies over a
//! pipe while the guest keeps writing, paced by a virtual clock (`--max-bandwidth`,
//! `--dirty-rate`), stops the guest at a batch boundary, sends the last dirty pages
//! and the vCPU state; the target checks the stream, RECEIVE_FINISH, and the moved
//! guest checks its own memory, registers and launch secret. Rounds, bytes, downtime
//! and the guest's check are printed (`--json`: as JSON).

use anyhow::{Context, Result, bail};
use clap::{Args as ClapArgs, ValueEnum};
use serde::Serialize;
use softsev_vmm::migration::sev::{
    MigrationError, SendOptions, SendReport, default_workload, own_target_certs, receive, resume,
    send,
};
use softsev_vmm::qmp::QmpGuest;
use softsev_vmm::sev_plan::SevLaunchPlan;
use softsev_vmm::sev_run::SevVm;
use std::process::ExitCode;
use std::time::Instant;

/// The guest's SEV mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mode {
    /// Plain SEV: registers go in the clear, as QEMU sends CPU state.
    Sev,
    /// SEV-ES: the VMSAs go as firmware packets (softsev's KVM extension).
    SevEs,
}

/// Arguments of `softsev migrate`.
#[derive(ClapArgs, Debug)]
#[command(after_help = "\
Examples:
  softsev migrate --seed a --target-seed b
  softsev migrate --mode sev-es --memory 4G --workload-mem 256M --dirty-rate 64M --json
  softsev migrate --target-product Genoa        # across products (policy without the SEV bit)")]
pub(crate) struct Args {
    /// Seed of the source chip and of the guest's workload.
    #[arg(long, default_value = "softsev migrate source")]
    seed: String,
    /// Seed of the target chip (another chip of the product unless equal to --seed).
    #[arg(long, default_value = "softsev migrate target")]
    target_seed: String,
    /// The target's product (Milan, Genoa, Turin); default the source's.
    #[arg(long, value_name = "P")]
    target_product: Option<String>,
    /// The source's product.
    #[arg(long, value_name = "P", default_value = "Milan")]
    product: String,
    /// SEV or SEV-ES.
    #[arg(long, value_enum, default_value_t = Mode::Sev)]
    mode: Mode,
    /// Guest RAM (QEMU -m syntax).
    #[arg(long, value_name = "SIZE", default_value = "256M")]
    memory: String,
    /// Bytes of memory the guest's workload writes (the touched memory).
    #[arg(long, value_name = "SIZE", default_value = "32M")]
    workload_mem: String,
    /// Bytes per second the guest writes while the migration runs (virtual clock).
    #[arg(long, value_name = "RATE", default_value = "64M")]
    dirty_rate: String,
    /// QMP `max-bandwidth`: bytes per second of the channel (virtual clock).
    #[arg(long, value_name = "RATE", default_value = "1G")]
    max_bandwidth: String,
    /// QMP `downtime-limit`, milliseconds (of the virtual clock).
    #[arg(long, value_name = "MS", default_value_t = softsev_vmm::migration::DEFAULT_DOWNTIME_LIMIT_MS)]
    downtime_limit: u64,
    /// Workload batches the guest runs before the migration starts.
    #[arg(long, value_name = "N", default_value_t = 8)]
    warmup_batches: u64,
    /// vCPUs.
    #[arg(long, default_value_t = 1)]
    vcpus: u32,
    /// Guest policy (hex; ES is added for --mode sev-es). Default 0x1 (NODBG).
    #[arg(long, value_name = "HEX", default_value = "0x1")]
    policy: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Summary {
    mode: &'static str,
    policy: String,
    source: String,
    target: String,
    memory_bytes: u64,
    workload_bytes: u64,
    rounds: u32,
    round_pages: Vec<u64>,
    pages_sent: u64,
    resident_pages: u64,
    total_pages: u64,
    bytes: u64,
    precopy_bytes: u64,
    downtime_bytes: u64,
    /// From the source's stop to the target's RECEIVE_FINISH (wall clock).
    downtime_ms: f64,
    /// The source's view: from the stop to the end of the stream.
    source_downtime_ms: f64,
    virtual_seconds: f64,
    batches_before: u64,
    batches_during: u64,
    total_ms: f64,
    stream_sha256: String,
    /// The moved guest's own check.
    move_check: serde_json::Value,
}

fn size(what: &str, s: &str) -> Result<u64> {
    softsev_vmm::keyval::parse_size(what, "value", s, 1).with_context(|| format!("--{what} {s}"))
}

fn plan_for(a: &Args, product: softsev_abi::Product) -> Result<SevLaunchPlan> {
    let mut policy = u32::from_str_radix(a.policy.trim_start_matches("0x"), 16)
        .with_context(|| format!("--policy {} is not hex", a.policy))?;
    if a.mode == Mode::SevEs {
        policy |= softsev_abi::SevPolicy::ES;
    }
    let args = format!(
        "-machine q35,confidential-guest-support=sev0 \
         -object sev-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy={policy:#x} \
         -cpu EPYC-{} -m {} -smp {}",
        product.name(),
        a.memory,
        a.vcpus
    );
    let cfg = softsev_vmm::parse_args(args.split_whitespace())?;
    Ok(SevLaunchPlan::build(&cfg)?)
}

/// Run the command.
pub(crate) fn run(a: Args) -> Result<ExitCode> {
    let t0 = Instant::now();
    let product = softsev_abi::Product::from_name(&a.product)
        .with_context(|| format!("--product {}: Milan, Genoa or Turin", a.product))?;
    let target_product = match &a.target_product {
        Some(p) => softsev_abi::Product::from_name(p)
            .with_context(|| format!("--target-product {p}: Milan, Genoa or Turin"))?,
        None => product,
    };
    let workload_bytes = size("workload-mem", &a.workload_mem)?;
    let dirty_rate = size("dirty-rate", &a.dirty_rate)?;
    let bw = size("max-bandwidth", &a.max_bandwidth)?;
    let plan = plan_for(&a, product)?;
    let tplan = plan_for(&a, target_product)?;

    // The source: launched, booted, its workload running.
    let mut src = SevVm::launch(&plan, Some(a.seed.as_bytes()))?;
    let w = default_workload(&src, a.seed.as_bytes(), workload_bytes)?;
    src.set_workload(w, dirty_rate);
    src.start()
        .map_err(|e| anyhow::anyhow!("starting the source guest: {e}"))?;
    if let Some(Err(e)) = src.boot_outcome() {
        bail!("the source guest did not boot: {e}");
    }
    softsev_vmm::migration::sev::run_workload(&mut src, a.warmup_batches.saturating_sub(1))?;
    let batches_before = src.workload().map_or(0, |w| w.batches);

    // The target: an incoming VM on the other chip, its certificates for SEND_START.
    let mut dst = SevVm::incoming(&tplan, Some(a.target_seed.as_bytes()))?;
    let certs = own_target_certs(&mut dst)?;
    let (mut reader, mut writer) = std::io::pipe().context("a pipe for the stream")?;
    let rx = std::thread::spawn(move || {
        let r = receive(&mut dst, &mut reader, &mut |_| {});
        (dst, r)
    });
    let opts = SendOptions {
        target: Some(certs),
        max_bandwidth: bw,
        downtime_limit_ms: a.downtime_limit,
        live: true,
    };
    let sent: Result<SendReport, MigrationError> = send(&mut src, &mut writer, &opts, &mut |_| {});
    drop(writer);
    let (mut dst, got) = rx
        .join()
        .map_err(|_| anyhow::anyhow!("the target's thread panicked"))?;
    let rep = match (sent, got) {
        (Ok(r), Ok(_)) => r,
        (Err(e), _) => bail!(
            "the migration failed at the source (its guest keeps running, state {:?}): {}",
            src.guest_state(),
            softsev_vmm::migration::sev::qemu_desc(&e)
        ),
        (Ok(_), Err(e)) => bail!(
            "the target refused the stream (no guest runs there): {}",
            softsev_vmm::migration::sev::qemu_desc(&e)
        ),
    };
    let finished = dst
        .migration_state()
        .received
        .as_ref()
        .and_then(|r| r.finished_at);
    let downtime = softsev_vmm::migration::sev::ms_between(rep.stopped_at, finished)
        .unwrap_or(rep.downtime_ms);
    resume(&mut dst).map_err(|e| anyhow::anyhow!("the moved guest: {e}"))?;
    let move_check = dst
        .migration_state()
        .moved
        .clone()
        .and_then(|m| m.ok())
        .unwrap_or(serde_json::Value::Null);
    let s = Summary {
        mode: if plan.es { "SEV-ES" } else { "SEV" },
        policy: format!("{:#x}", dst.sev_info().policy),
        source: format!("{} (seed {:?})", product.name(), a.seed),
        target: format!("{} (seed {:?})", target_product.name(), a.target_seed),
        memory_bytes: plan.memory.ram_size,
        workload_bytes,
        rounds: rep.rounds,
        round_pages: rep.round_pages.clone(),
        pages_sent: rep.pages_sent,
        resident_pages: rep.resident_pages,
        total_pages: rep.total_pages,
        bytes: rep.bytes,
        precopy_bytes: rep.precopy_bytes,
        downtime_bytes: rep.downtime_bytes,
        downtime_ms: downtime,
        source_downtime_ms: rep.downtime_ms,
        virtual_seconds: rep.virtual_seconds,
        batches_before,
        batches_during: rep.batches_during,
        total_ms: t0.elapsed().as_secs_f64() * 1e3,
        stream_sha256: rep.stream_sha256.clone(),
        move_check,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        let mib = |b: u64| b as f64 / f64::from(1 << 20);
        println!(
            "{} guest moved live from {} to {}",
            s.mode, s.source, s.target
        );
        println!(
            "  memory          {:.0} MiB, a {:.0} MiB workload range, {} of {} pages resident",
            mib(s.memory_bytes),
            mib(s.workload_bytes),
            s.resident_pages,
            s.total_pages
        );
        println!(
            "  rounds          {} (pages per round {:?})",
            s.rounds, s.round_pages
        );
        println!(
            "  bytes           {} ({:.1} MiB; {:.1} MiB while the guest ran, {:.2} MiB stopped)",
            s.bytes,
            mib(s.bytes),
            mib(s.precopy_bytes),
            mib(s.downtime_bytes)
        );
        println!(
            "  downtime        {:.1} ms (stop → target RECEIVE_FINISH)",
            s.downtime_ms
        );
        println!(
            "  guest           {} batches before, {} during the migration",
            s.batches_before, s.batches_during
        );
        println!("  guest check     {}", s.move_check);
        println!("  total           {:.0} ms", s.total_ms);
    }
    let m = &s.move_check;
    if m["pages_bad"] != 0 || m["registers_ok"] != true || m["vmsa_continued"] == false {
        bail!("the moved guest found itself damaged: {m}");
    }
    Ok(ExitCode::SUCCESS)
}
