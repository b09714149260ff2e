//! `softsev measure`: SEV, SEV-ES and SEV-SNP launch digests with the flags and default
//! output of sev-snp-measure (so scripts can switch tools), plus `--json` and `--trace`.

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use softsev_abi::product::cpuid_signature;
use softsev_measure::launch::{
    self, SnpParams, launch_vmsas, sev_launch_digest, seves_launch_digest_with, seves_launch_vmsas,
    snp_launch_digest, snp_launch_into,
};
use softsev_measure::qemu::vcpu_type_sig;
use softsev_measure::vmsa::page_bytes;
use softsev_measure::{EsVmsaInit, KernelHashes, Ovmf, SnpDigest, VmmType};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Guest mode.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mode {
    /// SEV.
    Sev,
    /// SEV-ES.
    SevEs,
    /// SEV-SNP.
    Snp,
    /// SEV-SNP, OVMF pages only.
    SnpOvmfHash,
    /// SEV-SNP with COCONUT-SVSM.
    SnpSvsm,
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    match s.to_ascii_lowercase().as_str() {
        "sev" => Ok(Mode::Sev),
        "seves" | "sev-es" => Ok(Mode::SevEs),
        "snp" | "sev-snp" => Ok(Mode::Snp),
        "snp:ovmf-hash" => Ok(Mode::SnpOvmfHash),
        "snp:svsm" | "sev-snp:svsm" => Ok(Mode::SnpSvsm),
        _ => Err(format!(
            "unknown mode '{s}' (sev, seves, snp, snp:ovmf-hash, snp:svsm)"
        )),
    }
}

/// Integers as Python's `int(x, 0)` reads them: 0x.., 0o.., 0b.. or decimal.
fn parse_int(s: &str) -> Result<u64, String> {
    let t = s.trim().replace('_', "");
    let (digits, radix) = match t.get(..2).map(str::to_ascii_lowercase).as_deref() {
        Some("0x") => (&t[2..], 16),
        Some("0o") => (&t[2..], 8),
        Some("0b") => (&t[2..], 2),
        _ => (t.as_str(), 10),
    };
    u64::from_str_radix(digits, radix).map_err(|e| format!("invalid integer '{s}': {e}"))
}

fn parse_u32(s: &str) -> Result<u32, String> {
    let v = parse_int(s)?;
    u32::try_from(v).map_err(|_| format!("value {s} does not fit in 32 bits"))
}

fn parse_vmm(s: &str) -> Result<VmmType, String> {
    VmmType::parse(s).ok_or_else(|| format!("unknown VMM type '{s}' (QEMU, ec2, gce, krun)"))
}

fn parse_vcpu_type(s: &str) -> Result<String, String> {
    match vcpu_type_sig(s) {
        Some(_) => Ok(s.to_owned()),
        None => Err(format!(
            "unknown vCPU type '{s}' (EPYC, EPYC-v1..v4, EPYC-IBPB, EPYC-Rome[-vN], EPYC-Milan[-vN], EPYC-Genoa[-vN], EPYC-Turin[-vN])"
        )),
    }
}

/// QEMU's `sev-guest` property `legacy-vm-type` (shared/spec/sev-legacy.md §8.1).
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub(crate) enum LegacyVmType {
    /// KVM_SEV_ES_INIT on a default VM: the SEV-ES VMSAs leave MXCSR and x87 FCW 0.
    On,
    /// KVM_SEV_INIT2 on a KVM_X86_SEV_ES_VM: MXCSR 0x1F80, x87 FCW 0x37F (as
    /// sev-snp-measure models SEV-ES).
    Off,
    /// QEMU's default; resolves to `on` for `sev-guest`.
    Auto,
}

impl LegacyVmType {
    fn name(self) -> &'static str {
        match self {
            LegacyVmType::On => "on",
            LegacyVmType::Off => "off",
            LegacyVmType::Auto => "auto",
        }
    }

    fn es_vmsa_init(self) -> EsVmsaInit {
        // The same words QEMU takes; auto is on for sev-guest (§8.1).
        EsVmsaInit::from_legacy_vm_type(self.name()).unwrap_or_default()
    }
}

/// Output encoding of the digest.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub(crate) enum OutputFormat {
    /// Lower-case hex.
    Hex,
    /// Standard base64.
    Base64,
}

/// Arguments of `softsev measure`.
#[derive(clap::Args, Debug)]
#[command(about = "Compute SEV / SEV-ES / SEV-SNP launch digests (sev-snp-measure compatible)")]
pub(crate) struct Args {
    /// Guest mode: sev, seves, snp, snp:ovmf-hash, snp:svsm.
    #[arg(long, value_parser = parse_mode, default_value = "snp")]
    mode: Mode,
    /// Number of guest vCPUs.
    #[arg(long, value_name = "N")]
    vcpus: Option<u32>,
    /// Type of guest vCPU (EPYC, EPYC-v1..v4, EPYC-IBPB, EPYC-Rome, EPYC-Milan, EPYC-Genoa, EPYC-Turin, with -vN).
    #[arg(long, value_name = "CPUTYPE", value_parser = parse_vcpu_type)]
    vcpu_type: Option<String>,
    /// Guest vCPU signature value (CPUID Fn1 EAX).
    #[arg(long, value_name = "VALUE", value_parser = parse_u32)]
    vcpu_sig: Option<u32>,
    /// Guest vCPU family.
    #[arg(long, value_name = "FAMILY", value_parser = parse_u32)]
    vcpu_family: Option<u32>,
    /// Guest vCPU model.
    #[arg(long, value_name = "MODEL", value_parser = parse_u32)]
    vcpu_model: Option<u32>,
    /// Guest vCPU stepping.
    #[arg(long, value_name = "STEPPING", value_parser = parse_u32)]
    vcpu_stepping: Option<u32>,
    /// Type of guest VMM (QEMU, ec2, gce, krun; case-insensitive).
    #[arg(long, value_name = "VMMTYPE", value_parser = parse_vmm, default_value = "QEMU")]
    vmm_type: VmmType,
    /// OVMF file to measure (default: the built-in firmware image).
    #[arg(long, value_name = "PATH")]
    ovmf: Option<PathBuf>,
    /// Kernel file (enables the kernel-hashes table).
    #[arg(long, value_name = "PATH")]
    kernel: Option<PathBuf>,
    /// Initrd file (use with --kernel).
    #[arg(long, value_name = "PATH")]
    initrd: Option<PathBuf>,
    /// Kernel command line (use with --kernel).
    #[arg(long, value_name = "CMDLINE", allow_hyphen_values = true)]
    append: Option<String>,
    /// How QEMU's sev-guest set up KVM (its `legacy-vm-type` property; seves only):
    /// on/auto (QEMU's default) = KVM_SEV_ES_INIT, VMSAs with MXCSR and x87 FCW 0, as
    /// sevctl models; off = KVM_SEV_INIT2, MXCSR 0x1F80 and FCW 0x37F, as
    /// sev-snp-measure models.
    #[arg(long, value_enum, value_name = "on|off|auto")]
    legacy_vm_type: Option<LegacyVmType>,
    /// Guest SEV_FEATURES (default 0x1).
    #[arg(long, value_name = "VALUE", value_parser = parse_int, default_value = "0x1")]
    guest_features: u64,
    /// Measurement output format.
    #[arg(long, value_enum, default_value = "hex")]
    output_format: OutputFormat,
    /// Precalculated OVMF hash (hex), from `--mode snp:ovmf-hash`.
    #[arg(long, value_name = "HASH")]
    snp_ovmf_hash: Option<String>,
    /// Write the measured VMSAs to vmsa<N>.bin (seves, snp, snp:svsm).
    #[arg(long)]
    dump_vmsa: bool,
    /// SVSM binary (snp:svsm).
    #[arg(long, value_name = "PATH")]
    svsm: Option<PathBuf>,
    /// Size of the OVMF_VARS file in bytes (snp:svsm).
    #[arg(long, value_name = "SIZE", value_parser = parse_int, conflicts_with = "vars_file")]
    vars_size: Option<u64>,
    /// OVMF_VARS file (snp:svsm).
    #[arg(long, value_name = "PATH")]
    vars_file: Option<PathBuf>,
    /// Print "Calculated <MODE> guest measurement: <digest>".
    #[arg(short, long)]
    verbose: bool,
    /// Print a JSON object instead of the bare digest.
    #[arg(long)]
    json: bool,
    /// Write the built-in firmware image to PATH and exit (to feed other tools).
    #[arg(long, value_name = "PATH")]
    write_builtin_ovmf: Option<PathBuf>,
    /// List every measured page (index, GPA, page type, contents hash, digest after).
    #[arg(long)]
    trace: bool,
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Sev => "SEV",
        Mode::SevEs => "SEV_ES",
        Mode::Snp | Mode::SnpOvmfHash => "SEV_SNP",
        Mode::SnpSvsm => "SEV_SNP_SVSM",
    }
}

fn mode_arg(m: Mode) -> &'static str {
    match m {
        Mode::Sev => "sev",
        Mode::SevEs => "seves",
        Mode::Snp => "snp",
        Mode::SnpOvmfHash => "snp:ovmf-hash",
        Mode::SnpSvsm => "snp:svsm",
    }
}

fn load_ovmf(path: Option<&Path>) -> Result<Ovmf> {
    match path {
        Some(p) => Ok(Ovmf::read(p)?),
        None => Ok(Ovmf::parse(softsev_measure::builtin::image())?),
    }
}

fn vcpu_signature(a: &Args) -> Result<u32> {
    if matches!(a.mode, Mode::Sev | Mode::SnpOvmfHash) {
        return Ok(0);
    }
    if let Some(f) = a.vcpu_family {
        // Family 0 is no CPU family (CPUID's family field starts at 1; SEV parts are
        // family 17h and later). sev-snp-measure takes 0 as "not given" and falls back to
        // the other options, which turns a typo into a different digest; refuse instead.
        if f == 0 {
            bail!(
                "--vcpu-family 0 is not a CPU family (EPYC parts are 23 and later); give the guest's family, or --vcpu-type or --vcpu-sig"
            );
        }
        let (Some(m), Some(s)) = (a.vcpu_model, a.vcpu_stepping) else {
            bail!("--vcpu-family needs --vcpu-model and --vcpu-stepping");
        };
        return Ok(cpuid_signature(f, m, s));
    }
    if let Some(s) = a.vcpu_sig.filter(|&s| s != 0) {
        return Ok(s);
    }
    if let Some(t) = &a.vcpu_type {
        return vcpu_type_sig(t).ok_or_else(|| anyhow!("unknown vCPU type '{t}'"));
    }
    if a.vmm_type == VmmType::Qemu && a.vcpu_sig.is_none() {
        bail!(
            "missing --vcpu-type or --vcpu-sig or --vcpu-family in guest mode '{}'",
            mode_arg(a.mode)
        );
    }
    Ok(0)
}

fn parse_seed(s: &str) -> Result<[u8; 48]> {
    let b = hex::decode(s.trim()).map_err(|e| anyhow!("--snp-ovmf-hash '{s}' is not hex: {e}"))?;
    b.try_into()
        .map_err(|b: Vec<u8>| anyhow!("--snp-ovmf-hash is {} bytes; an SNP digest is 48", b.len()))
}

fn validate(a: &Args) -> Result<()> {
    if a.initrd.is_some() && a.kernel.is_none() {
        bail!("--kernel required when using --initrd");
    }
    if a.append.as_deref().is_some_and(|s| !s.is_empty()) && a.kernel.is_none() {
        bail!("--kernel required when using --append");
    }
    if a.snp_ovmf_hash.is_some() && a.mode != Mode::Snp {
        bail!("--snp-ovmf-hash only works with --mode snp");
    }
    if a.dump_vmsa && matches!(a.mode, Mode::Sev | Mode::SnpOvmfHash) {
        bail!(
            "--dump-vmsa is not available in mode '{}'",
            mode_arg(a.mode)
        );
    }
    if a.legacy_vm_type.is_some() && !matches!(a.mode, Mode::Sev | Mode::SevEs) {
        bail!(
            "--legacy-vm-type is a property of QEMU's sev-guest (modes sev, seves); an SNP guest always uses KVM_SEV_INIT2"
        );
    }
    if a.trace && matches!(a.mode, Mode::Sev | Mode::SevEs) {
        bail!(
            "--trace lists SNP PAGE_INFO updates; mode '{}' has none",
            mode_arg(a.mode)
        );
    }
    if !matches!(a.mode, Mode::Sev | Mode::SnpOvmfHash) {
        match a.vcpus {
            None => bail!("missing --vcpus N in guest mode '{}'", mode_arg(a.mode)),
            Some(0) => bail!("--vcpus must be at least 1"),
            Some(_) => {}
        }
    }
    if a.mode == Mode::SnpSvsm {
        if a.vmm_type != VmmType::Qemu {
            bail!(
                "snp:svsm mode is only implemented for QEMU (got --vmm-type {})",
                a.vmm_type.name()
            );
        }
        if a.svsm.is_none() {
            bail!("snp:svsm mode requires --svsm");
        }
        if a.vars_size.is_none() && a.vars_file.is_none() {
            bail!("snp:svsm mode requires --vars-size or --vars-file");
        }
        if a.kernel.is_some() {
            bail!("snp:svsm mode does not measure a kernel");
        }
    }
    Ok(())
}

fn write_vmsa(i: u32, bytes: &[u8]) -> Result<()> {
    let p = format!("vmsa{i}.bin");
    std::fs::write(&p, bytes).with_context(|| format!("cannot write {p}"))
}

/// Result of one measurement.
struct Outcome {
    digest: Vec<u8>,
    trace: Vec<softsev_measure::TraceEntry>,
}

fn compute(a: &Args) -> Result<Outcome> {
    let sig = vcpu_signature(a)?;
    let vcpus = a.vcpus.unwrap_or(1);
    let seed = a.snp_ovmf_hash.as_deref().map(parse_seed).transpose()?;
    let kernel = a.kernel.as_deref();
    let (initrd, append) = (a.initrd.as_deref(), a.append.as_deref());

    // Kernel and initrd are hashed on their own threads while the OVMF is read,
    // parsed and (for SNP without a trace) measured on this one.
    let (ovmf, ovmf_hash, hashes) = std::thread::scope(|s| {
        let kh = kernel.map(|k| s.spawn(move || KernelHashes::from_files(k, initrd, append)));
        let ovmf = load_ovmf(a.ovmf.as_deref());
        let ovmf_hash = match (&ovmf, a.mode, seed, a.trace) {
            (Ok(o), Mode::Snp | Mode::SnpOvmfHash, None, false) => Some(launch::snp_ovmf_hash(o)),
            _ => None,
        };
        let hashes = kh.map(|h| {
            h.join()
                .map_err(|_| anyhow!("kernel hashing thread panicked"))
        });
        (ovmf, ovmf_hash, hashes)
    });
    let ovmf = ovmf?;
    let ovmf_hash = ovmf_hash.transpose()?;
    let hashes = match hashes {
        Some(h) => Some(h??),
        None => None,
    };

    let mut trace = Vec::new();
    let digest = match a.mode {
        Mode::SnpOvmfHash => {
            if a.trace {
                let mut d = SnpDigest::new().with_trace();
                launch::snp_measure_ovmf(&mut d, &ovmf)?;
                trace = d.take_trace();
                d.digest().to_vec()
            } else {
                ovmf_hash
                    .map(|h| h.to_vec())
                    .ok_or_else(|| anyhow!("OVMF hash missing"))?
            }
        }
        Mode::Snp => {
            let p = SnpParams {
                vcpus,
                vcpu_sig: sig,
                guest_features: a.guest_features,
                vmm: a.vmm_type,
                kernel_hashes: hashes,
            };
            if a.dump_vmsa {
                let v = launch_vmsas(&ovmf, vcpus, a.guest_features, sig, a.vmm_type)?;
                for i in 0..vcpus {
                    if let Some(page) = v.get(i) {
                        write_vmsa(i, page_bytes(page))?;
                    }
                }
            }
            if a.trace {
                let mut d = match seed {
                    Some(s) => SnpDigest::from_seed(s),
                    None => SnpDigest::new(),
                }
                .with_trace();
                snp_launch_into(&mut d, &ovmf, seed.is_some(), &p)?;
                trace = d.take_trace();
                d.digest().to_vec()
            } else {
                snp_launch_digest(&ovmf, seed.or(ovmf_hash), &p)?.to_vec()
            }
        }
        Mode::SnpSvsm => {
            let svsm_path = a
                .svsm
                .as_deref()
                .ok_or_else(|| anyhow!("snp:svsm mode requires --svsm"))?;
            let svsm = Ovmf::read(svsm_path)?;
            let vars_size = match (&a.vars_file, a.vars_size) {
                (Some(f), _) => std::fs::metadata(f)
                    .with_context(|| format!("cannot read OVMF_VARS '{}'", f.display()))?
                    .len(),
                (None, Some(s)) => s,
                (None, None) => bail!("snp:svsm mode requires --vars-size or --vars-file"),
            };
            if a.dump_vmsa {
                let v = launch::svsm_launch_vmsa(&ovmf, &svsm, vars_size, sig)?;
                for i in 0..vcpus {
                    write_vmsa(i, page_bytes(&v))?;
                }
            }
            let mut d = if a.trace {
                SnpDigest::new().with_trace()
            } else {
                SnpDigest::new()
            };
            launch::svsm_launch_into(&mut d, &ovmf, &svsm, vars_size, vcpus, sig)?;
            trace = d.take_trace();
            d.digest().to_vec()
        }
        Mode::SevEs => {
            let init = legacy_vm_type(a).es_vmsa_init();
            if a.dump_vmsa {
                let v = seves_launch_vmsas(&ovmf, vcpus, sig, a.vmm_type, init)?;
                for i in 0..vcpus {
                    if let Some(page) = v.get(i) {
                        write_vmsa(i, page_bytes(page))?;
                    }
                }
            }
            seves_launch_digest_with(&ovmf, hashes.as_ref(), vcpus, sig, a.vmm_type, init)?.to_vec()
        }
        Mode::Sev => sev_launch_digest(&ovmf, hashes.as_ref())?.to_vec(),
    };
    Ok(Outcome { digest, trace })
}

/// `--legacy-vm-type`, QEMU's default (`auto`) when not given.
fn legacy_vm_type(a: &Args) -> LegacyVmType {
    a.legacy_vm_type.unwrap_or(LegacyVmType::Auto)
}

fn encode(f: OutputFormat, b: &[u8]) -> String {
    match f {
        OutputFormat::Hex => hex::encode(b),
        OutputFormat::Base64 => base64::engine::general_purpose::STANDARD.encode(b),
    }
}

/// Run `softsev measure`.
pub(crate) fn run(a: Args) -> Result<ExitCode> {
    if let Some(p) = &a.write_builtin_ovmf {
        std::fs::write(p, softsev_measure::builtin::image())
            .with_context(|| format!("cannot write the built-in image to '{}'", p.display()))?;
        return Ok(ExitCode::SUCCESS);
    }
    validate(&a)?;
    let out = compute(&a)?;
    let m = encode(a.output_format, &out.digest);
    if a.json {
        let mut obj = serde_json::json!({
            "mode": mode_arg(a.mode),
            "measurement": m,
            "format": match a.output_format { OutputFormat::Hex => "hex", OutputFormat::Base64 => "base64" },
            "ovmf": a.ovmf.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "builtin".into()),
            "vcpus": a.vcpus,
            "vmm_type": a.vmm_type.name(),
            "guest_features": format!("{:#x}", a.guest_features),
        });
        if a.mode == Mode::SevEs {
            obj["legacy_vm_type"] = legacy_vm_type(&a).name().into();
        }
        if a.trace {
            obj["pages"] = out
                .trace
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "index": t.index,
                        "gpa": format!("{:#x}", t.gpa.raw()),
                        "page_type": format!("{:?}", t.page_type),
                        "contents": hex::encode(t.contents),
                        "digest": hex::encode(t.digest),
                    })
                })
                .collect();
        }
        println!("{}", serde_json::to_string_pretty(&obj)?);
    } else {
        if a.trace {
            use std::io::Write;
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::new(stdout.lock());
            writeln!(w, "# index gpa page_type contents_sha384 digest_after")?;
            for t in &out.trace {
                writeln!(
                    w,
                    "{} {:#014x} {:?} {} {}",
                    t.index,
                    t.gpa.raw(),
                    t.page_type,
                    hex::encode(t.contents),
                    hex::encode(t.digest)
                )?;
            }
            w.flush()?;
        }
        if a.verbose {
            println!("Calculated {} guest measurement: {m}", mode_name(a.mode));
        } else {
            println!("{m}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
