//! `softsev sev`: the legacy SEV guest owner's tools, in the spirit of sevctl and
//! byte-compatible with its files (spec sev-legacy.md §3.2–§3.5, §9.2;
//! host-interfaces.md §4.11):
//!
//! * `sev session [--name N] [--dir DIR] [--seed S] [--force] PDH POLICY` writes
//!   `N_tik.bin`, `N_tek.bin` (16 raw bytes), `N_godh.b64`, `N_session.b64` (base64);
//! * `sev measurement build|check` computes or checks measure ‖ mnonce;
//! * `sev secret build|open` makes or opens a LAUNCH_SECRET header and payload with
//!   sevctl's secret table.
//!
//! Outputs are written to a temporary file beside the target and then moved into place
//! (all of a command's outputs, or none); an existing output is replaced only with
//! `--force`.

use anyhow::{Context, Result, anyhow, bail};
use softsev_abi::sev_buf::{SEV_PACKET_HEADER_LEN, SevPacketHeader};
use softsev_abi::sev_cert::SevCert;
use softsev_attest::sev::owner::{
    MeasureInputs, OwnerSession, SecretEntry, b64_decode, b64_encode, check_measurement,
    launch_measure_blob, open_secret, parse_guid, parse_secret_table, seal_secret, secret_table,
};
use softsev_crypto::rng::Rng;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use zerocopy::FromBytes;
use zeroize::Zeroizing;

/// Arguments of `softsev sev`.
#[derive(clap::Args, Debug)]
#[command(
    about = "Legacy SEV guest-owner tools: launch session, measurement, secret (sevctl-compatible files)"
)]
pub(crate) struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand, Debug)]
enum Cmd {
    /// Start a launch session from the platform's PDH: writes N_godh.b64,
    /// N_session.b64, N_tik.bin, N_tek.bin (as `sevctl session`).
    Session(SessionArgs),
    /// Build or check a LAUNCH_MEASURE blob (measure ‖ mnonce).
    #[command(subcommand)]
    Measurement(MeasurementCmd),
    /// Build or open a LAUNCH_SECRET packet (header and payload files).
    #[command(subcommand)]
    Secret(SecretCmd),
}

/// An integer in decimal or 0x-hex (sevctl's "int or hex").
fn parse_u32(s: &str) -> Result<u32, String> {
    let t = s.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => t.parse(),
    }
    .map_err(|e| format!("'{s}' is not a 32-bit integer (decimal or 0x-hex): {e}"))
}

fn parse_u8(s: &str) -> Result<u8, String> {
    let v = parse_u32(s)?;
    u8::try_from(v).map_err(|_| format!("'{s}' does not fit in a byte"))
}

#[derive(clap::Args, Debug)]
struct SessionArgs {
    /// Prefix of the output files (sevctl's default "vm").
    #[arg(long, default_value = "vm")]
    name: String,
    /// Directory for the outputs (default: the current directory).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Make the session reproducible from this seed (tests, demos). Without it the
    /// keys come from the operating system.
    #[arg(long, value_name = "TEXT")]
    seed: Option<String>,
    /// Replace existing output files.
    #[arg(long)]
    force: bool,
    /// The platform's PDH certificate (the first 0x824 bytes of the file are used, as
    /// sevctl does; a PDH ‖ PEK ‖ OCA ‖ CEK chain works). Verify the chain first with
    /// `softsev verify --sev-chain`.
    pdh: PathBuf,
    /// The guest policy (decimal or 0x-hex). MACed exactly as given.
    #[arg(value_parser = parse_u32)]
    policy: u32,
}

#[derive(clap::Subcommand, Debug)]
enum MeasurementCmd {
    /// Compute measure ‖ mnonce and print it in base64 (or write --outfile), as
    /// `sevctl measurement build`.
    Build(MeasureBuildArgs),
    /// Check a LAUNCH_MEASURE blob against the expected launch; exit 0 only if it
    /// matches.
    Check(MeasureCheckArgs),
}

#[derive(clap::Args, Debug)]
struct MeasureCommon {
    /// Firmware API major (PLATFORM_STATUS).
    #[arg(long, value_name = "N", value_parser = parse_u8)]
    api_major: u8,
    /// Firmware API minor.
    #[arg(long, value_name = "N", value_parser = parse_u8)]
    api_minor: u8,
    /// Firmware build id.
    #[arg(long, value_name = "N", value_parser = parse_u8)]
    build_id: u8,
    /// Guest policy (decimal or 0x-hex).
    #[arg(long, value_name = "POLICY", value_parser = parse_u32)]
    policy: u32,
    /// The TIK: a file of 16 bytes, or base64.
    #[arg(long, value_name = "PATH|B64")]
    tik: String,
    /// The launch digest: base64 (sevctl) or 64 hex digits.
    #[arg(long, value_name = "B64|HEX", conflicts_with = "firmware")]
    launch_digest: Option<String>,
    /// Compute the launch digest from this firmware image instead: SHA-256(firmware ‖
    /// kernel hashes table ‖ SEV-ES VMSAs), as sevctl.
    #[arg(long, value_name = "FILE")]
    firmware: Option<PathBuf>,
    /// Kernel (with --initrd and --cmdline: the kernel hashes table is measured).
    #[arg(long, value_name = "FILE", requires_all = ["firmware", "initrd", "cmdline"])]
    kernel: Option<PathBuf>,
    /// Initrd.
    #[arg(long, value_name = "FILE", requires = "kernel")]
    initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long, value_name = "TEXT", requires = "kernel")]
    cmdline: Option<String>,
    /// SEV-ES: number of vCPUs (VMSA of cpu0 once, then cpu1's for the others).
    #[arg(long, value_name = "N", requires_all = ["firmware", "vmsa_cpu0", "vmsa_cpu1"])]
    num_cpus: Option<u32>,
    /// SEV-ES: the boot CPU's VMSA (4096 bytes, e.g. `sevctl vmsa build`).
    #[arg(long, value_name = "FILE", requires = "num_cpus")]
    vmsa_cpu0: Option<PathBuf>,
    /// SEV-ES: the other CPUs' VMSA.
    #[arg(long, value_name = "FILE", requires = "num_cpus")]
    vmsa_cpu1: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct MeasureBuildArgs {
    #[command(flatten)]
    m: MeasureCommon,
    /// The mnonce: a file of 16 bytes, or base64.
    #[arg(
        long,
        value_name = "PATH|B64",
        required_unless_present = "launch_measure_blob"
    )]
    nonce: Option<String>,
    /// Take the mnonce from this LAUNCH_MEASURE blob (bytes 32..48): a file or base64.
    #[arg(long, value_name = "PATH|B64", conflicts_with = "nonce")]
    launch_measure_blob: Option<String>,
    /// Write the 48 bytes to this file instead of printing base64.
    #[arg(long, value_name = "FILE")]
    outfile: Option<PathBuf>,
    /// Replace an existing --outfile.
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args, Debug)]
struct MeasureCheckArgs {
    #[command(flatten)]
    m: MeasureCommon,
    /// The LAUNCH_MEASURE blob to check (48 bytes): a file or base64 (QEMU's
    /// `query-sev-launch-measure`).
    #[arg(long, value_name = "PATH|B64")]
    launch_measure_blob: String,
}

#[derive(clap::Subcommand, Debug)]
enum SecretCmd {
    /// Build a LAUNCH_SECRET header (52 bytes) and payload from secrets, as `sevctl
    /// secret build`.
    Build(SecretBuildArgs),
    /// Check and decrypt a header and payload as the firmware would; list the secrets.
    Open(SecretOpenArgs),
}

#[derive(clap::Args, Debug)]
struct SecretKeys {
    /// The TIK: a file of 16 bytes, or base64.
    #[arg(long, value_name = "PATH|B64")]
    tik: String,
    /// The TEK: a file of 16 bytes, or base64.
    #[arg(long, value_name = "PATH|B64")]
    tek: String,
    /// The LAUNCH_MEASURE blob (its first 32 bytes are MACed): a file or base64.
    #[arg(long, value_name = "PATH|B64")]
    launch_measure_blob: String,
}

#[derive(clap::Args, Debug)]
struct SecretBuildArgs {
    #[command(flatten)]
    k: SecretKeys,
    /// A secret as GUID:FILE; repeat for more.
    #[arg(long = "secret", value_name = "GUID:FILE", required = true)]
    secrets: Vec<String>,
    /// The IV (16 bytes, base64); default random.
    #[arg(long, value_name = "B64")]
    iv: Option<String>,
    /// Replace existing output files.
    #[arg(long)]
    force: bool,
    /// Output: the 52-byte packet header.
    header_file: PathBuf,
    /// Output: the encrypted payload.
    payload_file: PathBuf,
}

#[derive(clap::Args, Debug)]
struct SecretOpenArgs {
    #[command(flatten)]
    k: SecretKeys,
    /// The 52-byte packet header.
    header_file: PathBuf,
    /// The encrypted payload.
    payload_file: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Run `softsev sev`.
pub(crate) fn run(a: Args) -> Result<ExitCode> {
    match a.cmd {
        Cmd::Session(s) => session(s),
        Cmd::Measurement(MeasurementCmd::Build(b)) => measurement_build(b),
        Cmd::Measurement(MeasurementCmd::Check(c)) => measurement_check(c),
        Cmd::Secret(SecretCmd::Build(b)) => secret_build(b),
        Cmd::Secret(SecretCmd::Open(o)) => secret_open(o),
    }
}

const MAX_INPUT: u64 = 64 << 20;

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    softsev_attest::input::read_bounded(path, MAX_INPUT, what)
        .with_context(|| format!("reading {what} {}", path.display()))
}

/// sevctl's "path or base64": an existing file's bytes, else the text as base64.
fn path_or_b64(arg: &str, what: &str) -> Result<Zeroizing<Vec<u8>>> {
    let p = Path::new(arg);
    if p.is_file() {
        return Ok(Zeroizing::new(read(p, what)?));
    }
    b64_decode(arg)
        .map(Zeroizing::new)
        .map_err(|e| anyhow!("{what} '{arg}' is neither a file nor base64 ({e})"))
}

fn fixed<const N: usize>(v: &[u8], what: &str) -> Result<[u8; N]> {
    <[u8; N]>::try_from(v).map_err(|_| anyhow!("{what} is {} bytes, expected {N}", v.len()))
}

fn key16(arg: &str, what: &str) -> Result<Zeroizing<[u8; 16]>> {
    let v = path_or_b64(arg, what)?;
    Ok(Zeroizing::new(fixed::<16>(&v, what)?))
}

/// Write every output atomically: temporary files beside the targets first, then each
/// moved into place; without `force` an existing target is an error before anything is
/// written, and a target that appears meanwhile is not replaced (hard link, not
/// rename). On failure the outputs already placed by this call are removed.
fn write_outputs(outs: &[(PathBuf, &[u8])], force: bool) -> Result<()> {
    if !force {
        for (p, _) in outs {
            if p.exists() {
                bail!("{} exists (use --force to replace it)", p.display());
            }
        }
    }
    let mut tmps: Vec<PathBuf> = Vec::new();
    let cleanup = |tmps: &[PathBuf]| {
        for t in tmps {
            let _ = std::fs::remove_file(t);
        }
    };
    for (p, bytes) in outs {
        let dir = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = p
            .file_name()
            .ok_or_else(|| anyhow!("{} is not a file path", p.display()))?;
        let tmp = dir.join(format!(
            ".{}.softsev-tmp-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        if let Err(e) = std::fs::write(&tmp, bytes) {
            cleanup(&tmps);
            let _ = std::fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("writing {}", p.display()));
        }
        tmps.push(tmp);
    }
    let mut placed: Vec<&Path> = Vec::new();
    for ((p, _), tmp) in outs.iter().zip(&tmps) {
        let r = if force {
            std::fs::rename(tmp, p)
        } else {
            std::fs::hard_link(tmp, p).and_then(|()| std::fs::remove_file(tmp))
        };
        if let Err(e) = r {
            cleanup(&tmps);
            for q in &placed {
                let _ = std::fs::remove_file(q);
            }
            return Err(e).with_context(|| format!("creating {}", p.display()));
        }
        placed.push(p);
    }
    Ok(())
}

fn session(a: SessionArgs) -> Result<ExitCode> {
    let bytes = read(&a.pdh, "PDH certificate")?;
    let first = bytes
        .get(..softsev_abi::sev_buf::SEV_CERT_LEN)
        .ok_or_else(|| {
            anyhow!(
                "{}: {} bytes, shorter than one SEV certificate (0x824)",
                a.pdh.display(),
                bytes.len()
            )
        })?;
    let pdh = SevCert::read_from_bytes(first).map_err(|_| anyhow!("PDH does not decode"))?;
    // Bits 6–15 are reserved: the firmware refuses them at LAUNCH_START with a session
    // (POLICY_FAILURE, sev-legacy.md §3.8).
    if a.policy & 0xFFC0 != 0 {
        eprintln!(
            "softsev: warning: policy {:#x} sets reserved bits 6–15 ({:#x}); LAUNCH_START will fail with POLICY_FAILURE",
            a.policy,
            a.policy & 0xFFC0
        );
    }
    let mut rng = match &a.seed {
        Some(s) => Rng::seeded(s.as_bytes(), "softsev sev session"),
        None => Rng::os(),
    };
    let s = OwnerSession::start(&pdh, a.policy, &mut rng)
        .with_context(|| format!("starting a session from {}", a.pdh.display()))?;
    let dir = a.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let godh = s.godh_b64();
    let sess = s.session_b64();
    let outs: Vec<(PathBuf, &[u8])> = vec![
        (dir.join(format!("{}_tik.bin", a.name)), &s.tik()[..]),
        (dir.join(format!("{}_tek.bin", a.name)), &s.tek()[..]),
        (dir.join(format!("{}_godh.b64", a.name)), godh.as_bytes()),
        (dir.join(format!("{}_session.b64", a.name)), sess.as_bytes()),
    ];
    write_outputs(&outs, a.force)?;
    for (p, _) in &outs {
        println!("Wrote {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn launch_digest(m: &MeasureCommon) -> Result<[u8; 32]> {
    if let Some(ld) = &m.launch_digest {
        let t = ld.trim();
        let v = if t.len() == 64 && t.chars().all(|c| c.is_ascii_hexdigit()) {
            hex::decode(t)?
        } else {
            b64_decode(t).with_context(|| format!("--launch-digest '{ld}'"))?
        };
        return fixed::<32>(&v, "--launch-digest");
    }
    let Some(fw) = &m.firmware else {
        bail!("one of --launch-digest or --firmware is required");
    };
    let mut d = softsev_measure::SevDigest::new();
    d.update(&read(fw, "firmware")?);
    if let (Some(k), Some(i), Some(c)) = (&m.kernel, &m.initrd, &m.cmdline) {
        let h = softsev_measure::KernelHashes::from_files(k, Some(i), Some(c))
            .context("hashing kernel, initrd and cmdline")?;
        d.update(&h.table_bytes());
    }
    if m.policy & 0x4 != 0 {
        let (Some(n), Some(v0), Some(v1)) = (m.num_cpus, &m.vmsa_cpu0, &m.vmsa_cpu1) else {
            bail!(
                "the policy sets SEV-ES (0x4): --num-cpus, --vmsa-cpu0 and --vmsa-cpu1 are required"
            );
        };
        let v0 = read(v0, "VMSA")?;
        let v1 = read(v1, "VMSA")?;
        for i in 0..n {
            d.update(if i == 0 { &v0 } else { &v1 });
        }
    }
    Ok(d.finish())
}

fn inputs(m: &MeasureCommon) -> Result<MeasureInputs> {
    Ok(MeasureInputs {
        api_major: m.api_major,
        api_minor: m.api_minor,
        build: m.build_id,
        policy: m.policy,
        launch_digest: launch_digest(m)?,
    })
}

fn measurement_build(a: MeasureBuildArgs) -> Result<ExitCode> {
    let tik = key16(&a.m.tik, "--tik")?;
    let mnonce: [u8; 16] = match (&a.nonce, &a.launch_measure_blob) {
        (Some(n), _) => fixed(&path_or_b64(n, "--nonce")?, "--nonce")?,
        (None, Some(b)) => {
            let blob = path_or_b64(b, "--launch-measure-blob")?;
            let blob: [u8; 48] = fixed(&blob, "--launch-measure-blob")?;
            fixed(&blob[32..], "mnonce")?
        }
        (None, None) => bail!("one of --nonce or --launch-measure-blob is required"),
    };
    let blob = launch_measure_blob(&tik, &inputs(&a.m)?, &mnonce);
    match &a.outfile {
        Some(p) => {
            write_outputs(&[(p.clone(), &blob[..])], a.force)?;
            println!("Wrote outfile: {}", p.display());
        }
        None => println!("{}", b64_encode(&blob)),
    }
    Ok(ExitCode::SUCCESS)
}

fn measurement_check(a: MeasureCheckArgs) -> Result<ExitCode> {
    let tik = key16(&a.m.tik, "--tik")?;
    let blob = path_or_b64(&a.launch_measure_blob, "--launch-measure-blob")?;
    let blob: [u8; 48] = fixed(&blob, "--launch-measure-blob")?;
    let m = inputs(&a.m)?;
    match check_measurement(&tik, &m, &blob) {
        Ok(()) => {
            println!(
                "OK: measurement matches (launch digest {}, policy {:#x}, API {}.{} build {})",
                hex::encode(m.launch_digest),
                m.policy,
                m.api_major,
                m.api_minor,
                m.build
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(_) => {
            println!(
                "FAILED: measurement does not match HMAC(TIK, 0x04 ‖ API ‖ build ‖ policy ‖ launch digest ‖ mnonce)"
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

fn measure_of(k: &SecretKeys) -> Result<[u8; 32]> {
    let blob = path_or_b64(&k.launch_measure_blob, "--launch-measure-blob")?;
    let blob: [u8; 48] = fixed(&blob, "--launch-measure-blob")?;
    fixed(&blob[..32], "measure")
}

fn secret_build(a: SecretBuildArgs) -> Result<ExitCode> {
    let tik = key16(&a.k.tik, "--tik")?;
    let tek = key16(&a.k.tek, "--tek")?;
    let measure = measure_of(&a.k)?;
    let mut entries = Vec::new();
    for s in &a.secrets {
        let (g, f) = s
            .split_once(':')
            .ok_or_else(|| anyhow!("--secret '{s}': expected GUID:FILE"))?;
        let guid = parse_guid(g).with_context(|| format!("--secret '{s}'"))?;
        let data = Zeroizing::new(read(Path::new(f), "secret")?);
        entries.push(SecretEntry { guid, data });
    }
    let table = secret_table(&entries)?;
    let iv: [u8; 16] = match &a.iv {
        Some(b) => fixed(&b64_decode(b).context("--iv")?, "--iv")?,
        None => Rng::os().array(),
    };
    let p = seal_secret(&tek, &tik, &measure, &iv, &table)?;
    let header = zerocopy::IntoBytes::as_bytes(&p.header).to_vec();
    write_outputs(
        &[
            (a.header_file.clone(), &header[..]),
            (a.payload_file.clone(), &p.ciphertext[..]),
        ],
        a.force,
    )?;
    println!("Wrote header to: {}", a.header_file.display());
    println!("Wrote payload to: {}", a.payload_file.display());
    Ok(ExitCode::SUCCESS)
}

fn secret_open(a: SecretOpenArgs) -> Result<ExitCode> {
    let tik = key16(&a.k.tik, "--tik")?;
    let tek = key16(&a.k.tek, "--tek")?;
    let measure = measure_of(&a.k)?;
    let hdr = read(&a.header_file, "secret header")?;
    if hdr.len() != SEV_PACKET_HEADER_LEN {
        bail!(
            "{}: {} bytes, a packet header is {SEV_PACKET_HEADER_LEN}",
            a.header_file.display(),
            hdr.len()
        );
    }
    let header =
        SevPacketHeader::read_from_bytes(&hdr).map_err(|_| anyhow!("header does not decode"))?;
    let payload = read(&a.payload_file, "secret payload")?;
    let pt = match open_secret(&tek, &tik, &measure, &header, &payload) {
        Ok(pt) => pt,
        Err(e) => {
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "error": e.to_string()})
                );
            } else {
                println!("FAILED: {e}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let entries = parse_secret_table(&pt)?;
    if a.json {
        let items: Vec<_> = entries
            .iter()
            .map(|e| serde_json::json!({"guid": e.guid.to_string(), "len": e.data.len()}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"ok": true, "len": pt.len(), "secrets": items})
            )?
        );
    } else {
        println!(
            "OK: MAC verifies; {} bytes decrypt to a secret table of {} entr{}",
            pt.len(),
            entries.len(),
            if entries.len() == 1 { "y" } else { "ies" }
        );
        for e in &entries {
            println!("  {}  {} bytes", e.guid, e.data.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}
