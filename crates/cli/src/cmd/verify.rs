//! `softsev verify REPORT --certs DIR`: verify an SNP attestation report as a relying
//! party — AMD chain against pinned built-in roots (or `--root DIR`), CRLs, validity at
//! `--at`, report-to-certificate binding, signature, and policy options in the breadth
//! of go-sev-guest's `validate`. Exit code 0 only when every check passes.
//!
//! `softsev verify --sev-chain CHAIN [--sev-ca ASK_ARK | --sev-generation GEN] [--oca
//! OCA] [--sev-report REPORT ...]`: the legacy SEV chain (PDH ‖ PEK ‖ OCA ‖ CEK) under
//! AMD's built-in CA of the generation whose ASK signs the CEK, or the given CA (ASK ‖
//! ARK, sevctl's `--ca`), and optionally a legacy attestation report (0xD0 bytes)
//! signed by the PEK (spec sev-legacy.md §2.4, §4; `softsev_attest::sev`).

use anyhow::{Context, Result, bail};
use softsev_abi::report::{AttestationReport, SigningKey};
use softsev_abi::{GuestPolicy, Product};
use softsev_attest::input::{MAX_CERT_FILE, MAX_CERT_TABLE, MAX_REPORT_FILE, read_bounded};
use softsev_attest::kds::{CacheDir, Kds};
use softsev_attest::policy::{TcbSpec, parse_tcb};
use softsev_attest::sev::{
    CaChoice, SevCa, SevChainOptions, SevGeneration, SevReportExpect, verify_sev_chain,
};
use softsev_attest::{CertSet, Policy, TrustStore, VerifyOptions, cert::crl_from_bytes, verify};
use std::path::PathBuf;
use std::process::ExitCode;

/// Hex with at most one `0x` prefix: `0x0x00` is not hex (probe P12).
fn hex_bytes(s: &str) -> Result<Vec<u8>, String> {
    let t = s.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    if t.is_empty() {
        return Err(format!("'{s}' is empty: give the bytes in hex"));
    }
    hex::decode(t).map_err(|e| format!("'{s}' is not hex: {e}"))
}

fn parse_hex<const N: usize>(s: &str) -> Result<[u8; N], String> {
    let v = hex_bytes(s)?;
    <[u8; N]>::try_from(v.as_slice()).map_err(|_| {
        format!(
            "'{s}' is {} bytes, expected {N} ({} hex digits)",
            v.len(),
            2 * N
        )
    })
}

/// REPORT_DATA: up to 64 bytes of hex, zero-padded on the right (as guests pass it).
fn parse_report_data(s: &str) -> Result<[u8; 64], String> {
    let v = hex_bytes(s)?;
    if v.len() > 64 {
        return Err(format!("report data is {} bytes, at most 64", v.len()));
    }
    let mut out = [0u8; 64];
    out[..v.len()].copy_from_slice(&v);
    Ok(out)
}

fn parse_u64(s: &str) -> Result<u64, String> {
    let t = s.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse(),
    }
    .map_err(|e| format!("invalid integer '{s}': {e}"))
}

fn parse_u32(s: &str) -> Result<u32, String> {
    let v = parse_u64(s)?;
    u32::try_from(v).map_err(|_| format!("'{s}' does not fit in 32 bits"))
}

fn parse_generation(s: &str) -> Result<SevGeneration, String> {
    SevGeneration::from_name(s)
        .ok_or_else(|| format!("unknown SEV generation '{s}' (naples, rome, milan, genoa, turin)"))
}

fn parse_product(s: &str) -> Result<Product, String> {
    // Bergamo and Siena use Genoa's roots and layout (KDS path "Genoa").
    match s.to_ascii_lowercase().as_str() {
        "bergamo" | "siena" => Ok(Product::Genoa),
        _ => Product::from_name(s)
            .ok_or_else(|| format!("unknown product '{s}' (milan, genoa, turin)")),
    }
}

fn parse_version(s: &str) -> Result<(u8, u8), String> {
    let (a, b) = s
        .split_once('.')
        .ok_or_else(|| format!("'{s}': expected MAJOR.MINOR, e.g. 1.55"))?;
    Ok((
        a.parse().map_err(|e| format!("'{s}': {e}"))?,
        b.parse().map_err(|e| format!("'{s}': {e}"))?,
    ))
}

fn parse_at(s: &str) -> Result<u64, String> {
    softsev_attest::time::parse_rfc3339(s)
}

/// Arguments of `softsev verify`.
#[derive(clap::Args, Debug)]
#[command(
    about = "Verify an SNP attestation report (AMD chain, CRL, binding, signature, policy), or a legacy SEV chain and report (--sev-chain)"
)]
pub(crate) struct Args {
    /// The SNP report (0x4A0 bytes; with `--cert-table -`, a report followed by a
    /// certificate table). Not with --sev-chain.
    #[arg(required_unless_present = "sev_chain")]
    report: Option<PathBuf>,
    /// More reports signed under the same chain: all are verified in parallel on every
    /// core, one verdict each.
    more_reports: Vec<PathBuf>,

    /// Legacy SEV: verify this platform chain, PDH ‖ PEK ‖ OCA ‖ CEK (8336 bytes,
    /// sevctl's `--sev` file), instead of an SNP report.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["report", "certs", "cert_files", "cert_table", "root", "kds_cache"])]
    sev_chain: Option<PathBuf>,
    /// Legacy SEV: trust this AMD CA, ASK ‖ ARK (sevctl's `--ca` file), instead of the
    /// built-in CA of the generation whose ASK signs the CEK.
    #[arg(long, value_name = "FILE", requires = "sev_chain")]
    sev_ca: Option<PathBuf>,
    /// Legacy SEV: use AMD's built-in CA of this generation (naples, rome, milan,
    /// genoa, turin) instead of detecting it.
    #[arg(long, value_name = "GEN", requires = "sev_chain", conflicts_with = "sev_ca", value_parser = parse_generation)]
    sev_generation: Option<SevGeneration>,
    /// Legacy SEV: use this OCA certificate instead of the chain's (sevctl `--oca`).
    #[arg(long, value_name = "FILE", requires = "sev_chain")]
    oca: Option<PathBuf>,
    /// Legacy SEV: also verify this attestation report (0xD0 bytes) against the PEK.
    #[arg(long, value_name = "FILE", requires = "sev_chain")]
    sev_report: Option<PathBuf>,
    /// Legacy SEV report: required mnonce (32 hex digits).
    #[arg(long, value_name = "HEX", requires = "sev_report", value_parser = parse_hex::<16>)]
    sev_mnonce: Option<[u8; 16]>,
    /// Legacy SEV report: required launch digest (64 hex digits).
    #[arg(long, value_name = "HEX", requires = "sev_report", value_parser = parse_hex::<32>)]
    sev_launch_digest: Option<[u8; 32]>,
    /// Legacy SEV report: required policy (exact; decimal or 0x-hex).
    #[arg(long, value_name = "POLICY", requires = "sev_report", value_parser = parse_u32)]
    sev_policy: Option<u32>,
    /// Legacy SEV report: policy bits that must be set (e.g. 0x1 NODBG, 0x8 NOSEND).
    #[arg(long, value_name = "BITS", requires = "sev_report", value_parser = parse_u32)]
    sev_policy_required: Option<u32>,
    /// Directory with ark, ask or asvk, vcek or vlek (.pem or .der, snpguest names) and
    /// optionally crl.der / crl.pem.
    #[arg(long, value_name = "DIR")]
    certs: Option<PathBuf>,
    /// Extra certificate or CRL files (PEM bundles such as KDS cert_chain work).
    #[arg(long = "cert", value_name = "FILE")]
    cert_files: Vec<PathBuf>,
    /// A GHCB certificate table blob (extended report); `-` = the bytes after the
    /// report in REPORT.
    #[arg(long, value_name = "FILE")]
    cert_table: Option<PathBuf>,
    /// Trust these roots instead of AMD's built-in ones: a directory with ark (and ask /
    /// asvk) certificates, e.g. softsev's own simulated AMD root.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Judge validity at this time (RFC 3339, e.g. 2026-01-01T00:00:00Z); default now.
    #[arg(long, value_name = "TIME", value_parser = parse_at)]
    at: Option<u64>,
    /// Product line (milan, genoa, turin; bergamo/siena = genoa): needed only for v2
    /// reports whose chain does not name it; also required to match.
    #[arg(long, value_name = "NAME", value_parser = parse_product)]
    product: Option<Product>,
    /// CRL file(s) (DER or PEM) to check the intermediate against.
    #[arg(long, value_name = "FILE")]
    crl: Vec<PathBuf>,
    /// Fail when no CRL is available.
    #[arg(long)]
    require_crl: bool,
    /// Offline KDS cache directory: missing VCEK, chain or CRL are looked up there by
    /// URL (see docs/attest.md); nothing is fetched from the network.
    #[arg(long, value_name = "DIR")]
    kds_cache: Option<PathBuf>,
    /// Print the verdict as JSON.
    #[arg(long)]
    json: bool,

    /// Required MEASUREMENT (96 hex digits).
    #[arg(long, value_name = "HEX", value_parser = parse_hex::<48>)]
    measurement: Option<[u8; 48]>,
    /// Required REPORT_DATA (hex, up to 64 bytes, zero-padded).
    #[arg(long, value_name = "HEX", value_parser = parse_report_data)]
    report_data: Option<[u8; 64]>,
    /// Required HOST_DATA (64 hex digits).
    #[arg(long, value_name = "HEX", value_parser = parse_hex::<32>)]
    host_data: Option<[u8; 32]>,
    /// Required ID_KEY_DIGEST (96 hex digits).
    #[arg(long, value_name = "HEX", value_parser = parse_hex::<48>)]
    id_key_digest: Option<[u8; 48]>,
    /// Required AUTHOR_KEY_DIGEST (96 hex digits).
    #[arg(long, value_name = "HEX", value_parser = parse_hex::<48>)]
    author_key_digest: Option<[u8; 48]>,
    /// Required FAMILY_ID (32 hex digits).
    #[arg(long, value_name = "HEX", value_parser = parse_hex::<16>)]
    family_id: Option<[u8; 16]>,
    /// Required IMAGE_ID (32 hex digits).
    #[arg(long, value_name = "HEX", value_parser = parse_hex::<16>)]
    image_id: Option<[u8; 16]>,
    /// Required REPORT_ID (64 hex digits).
    #[arg(long, value_name = "HEX", value_parser = parse_hex::<32>)]
    report_id: Option<[u8; 32]>,
    /// Required REPORT_ID_MA (64 hex digits).
    #[arg(long, value_name = "HEX", value_parser = parse_hex::<32>)]
    report_id_ma: Option<[u8; 32]>,
    /// Minimum GUEST_SVN.
    #[arg(long, value_name = "N")]
    min_guest_svn: Option<u32>,
    /// Minimum TCB for REPORTED/CURRENT/COMMITTED: raw u64 (0x.. or decimal, product
    /// layout) or bl=N,tee=N,snp=N,ucode=N[,fmc=N].
    #[arg(long, value_name = "TCB")]
    min_tcb: Option<String>,
    /// Minimum LAUNCH_TCB (same forms as --min-tcb).
    #[arg(long, value_name = "TCB")]
    min_launch_tcb: Option<String>,
    /// Minimum firmware build (current and committed).
    #[arg(long, value_name = "N")]
    min_build: Option<u8>,
    /// Minimum firmware version MAJOR.MINOR (current and committed).
    #[arg(long, value_name = "X.Y", value_parser = parse_version)]
    min_version: Option<(u8, u8)>,
    /// Maximum permitted guest policy (go-sev-guest semantics): e.g. 0x30000 refuses
    /// debug and migration agents but allows SMT.
    #[arg(long, value_name = "POLICY", value_parser = parse_u64)]
    max_policy: Option<u64>,
    /// Refuse debug-enabled guests (shorthand for a --max-policy without DEBUG).
    #[arg(long)]
    no_debug: bool,
    /// Refuse guests that allow a migration agent.
    #[arg(long)]
    no_migrate_ma: bool,
    /// Refuse guests that allow SMT.
    #[arg(long)]
    no_smt: bool,
    /// Require the single-socket policy bit.
    #[arg(long)]
    require_single_socket: bool,
    /// Required VMPL.
    #[arg(long, value_name = "N")]
    vmpl: Option<u32>,
    /// PLATFORM_INFO bits that must be set (e.g. 0x2 = TSME).
    #[arg(long, value_name = "BITS", value_parser = parse_u64)]
    platform_info_required: Option<u64>,
    /// PLATFORM_INFO bits that must be clear (e.g. 0x1 = no SMT).
    #[arg(long, value_name = "BITS", value_parser = parse_u64)]
    platform_info_forbidden: Option<u64>,
    /// Allowed CHIP_ID (hex, 64 bytes, or 8 on Turin); repeat for a list.
    #[arg(long = "chip-id", value_name = "HEX")]
    chip_ids: Vec<String>,
    /// Required CPUID stepping (v3+; v2 from the VCEK's productName).
    #[arg(long, value_name = "N")]
    stepping: Option<u8>,
    /// Refuse provisional (uncommitted) firmware.
    #[arg(long)]
    require_committed: bool,
    /// Require an author key.
    #[arg(long)]
    require_author_key: bool,
    /// Require an ID block.
    #[arg(long)]
    require_id_block: bool,
    /// Required mitigation-vector bits (v5).
    #[arg(long, value_name = "BITS", value_parser = parse_u64)]
    mit_vector: Option<u64>,
}

fn resolve(
    spec: &Option<String>,
    product: Option<Product>,
) -> Result<Option<softsev_abi::TcbVersion>> {
    let Some(s) = spec else { return Ok(None) };
    match parse_tcb(s, product).map_err(anyhow::Error::msg)? {
        TcbSpec::Components(t) => Ok(Some(t)),
        TcbSpec::Raw(_) => bail!("--min-tcb {s}: a raw TCB needs the product (give --product)"),
    }
}

fn policy(a: &Args, product: Option<Product>) -> Result<Policy> {
    let mut max_policy = a.max_policy.map(GuestPolicy);
    if a.no_debug || a.no_migrate_ma || a.no_smt || a.require_single_socket {
        let mut p = max_policy.unwrap_or(GuestPolicy(
            GuestPolicy::SMT
                | GuestPolicy::RESERVED_MBO
                | GuestPolicy::MIGRATE_MA
                | GuestPolicy::DEBUG
                | GuestPolicy::CXL_ALLOW,
        ));
        for (flag, bit) in [
            (a.no_debug, GuestPolicy::DEBUG),
            (a.no_migrate_ma, GuestPolicy::MIGRATE_MA),
            (a.no_smt, GuestPolicy::SMT),
        ] {
            if flag {
                p.0 &= !bit;
            }
        }
        if a.require_single_socket {
            p.0 |= GuestPolicy::SINGLE_SOCKET;
        }
        max_policy = Some(p);
    }
    let chip_ids = a
        .chip_ids
        .iter()
        .map(|s| {
            // CHIP_ID is 64 bytes; Turin's KDS hwid uses its first 8 (the rest is zero).
            let v = hex_bytes(s).map_err(|e| anyhow::anyhow!("--chip-id {e}"))?;
            if v.len() != 64 && v.len() != 8 {
                bail!(
                    "--chip-id '{s}' is {} bytes: a CHIP_ID is 64 bytes (8 for Turin's hwid)",
                    v.len()
                );
            }
            Ok(v)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Policy {
        measurement: a.measurement,
        report_data: a.report_data,
        host_data: a.host_data,
        id_key_digest: a.id_key_digest,
        author_key_digest: a.author_key_digest,
        family_id: a.family_id,
        image_id: a.image_id,
        report_id: a.report_id,
        report_id_ma: a.report_id_ma,
        min_guest_svn: a.min_guest_svn,
        min_tcb: resolve(&a.min_tcb, product)?,
        min_launch_tcb: resolve(&a.min_launch_tcb, product)?,
        min_build: a.min_build,
        min_version: a.min_version,
        max_guest_policy: max_policy,
        vmpl: a.vmpl,
        platform_info_required: a.platform_info_required,
        platform_info_forbidden: a.platform_info_forbidden,
        chip_ids,
        product: a.product,
        stepping: a.stepping,
        require_committed: a.require_committed,
        require_author_key: a.require_author_key,
        require_id_block: a.require_id_block,
        required_mit_vector: a.mit_vector,
    })
}

/// Run `softsev verify`.
pub(crate) fn run(a: Box<Args>) -> Result<ExitCode> {
    if let Some(chain) = &a.sev_chain {
        return run_sev(&a, chain);
    }
    let Some(report) = &a.report else {
        bail!("give an SNP REPORT, or --sev-chain for legacy SEV");
    };
    let raw = read_input(report, MAX_REPORT_FILE, "an attestation report file")?;
    let mut certs = CertSet::default();
    let mut report_bytes = raw.as_slice();
    if let Some(t) = &a.cert_table {
        let table = if t.as_os_str() == "-" {
            let (_, rest) = raw.split_at(raw.len().min(softsev_abi::report::REPORT_SIZE));
            report_bytes = raw.get(..softsev_abi::report::REPORT_SIZE).unwrap_or(&raw);
            rest.to_vec()
        } else {
            read_input(t, MAX_CERT_TABLE, "a certificate table")?
        };
        certs.merge(CertSet::from_table(&table).context("certificate table")?)?;
    }
    if let Some(d) = &a.certs {
        certs.merge(
            CertSet::from_dir(d).with_context(|| format!("certificates in {}", d.display()))?,
        )?;
    }
    for f in &a.cert_files {
        certs
            .add_file(f)
            .with_context(|| format!("certificate file {}", f.display()))?;
    }
    let mut crls = Vec::new();
    for f in &a.crl {
        let b = read_input(f, MAX_CERT_FILE, "a CRL")?;
        crls.push(crl_from_bytes(&f.display().to_string(), &b)?);
    }
    // What the report says about its product, for raw TCB options and the KDS cache.
    let parsed = AttestationReport::parse(report_bytes).ok();
    let product_hint = a
        .product
        .or_else(|| parsed.as_ref().and_then(|r| r.product()))
        .or_else(|| {
            certs
                .vcek
                .as_ref()
                .or(certs.vlek.as_ref())
                .and_then(|c| c.extensions().product())
        });
    if let (Some(dir), Some(r), Some(p)) = (&a.kds_cache, &parsed, product_hint) {
        let kds = Kds::new(CacheDir::new(dir));
        let signer = r.key_info.signing_key();
        if signer == SigningKey::VCEK
            && certs.vcek.is_none()
            && let Ok(t) = r.tcbs(p)
            && let Some(c) = cached(kds.vcek(p, &r.chip_id, &t.reported))?
        {
            certs.vcek = Some(c);
        }
        let inter_missing = if signer == SigningKey::VLEK {
            certs.asvk.is_none()
        } else {
            certs.ask.is_none()
        };
        if inter_missing && let Some(chain) = cached(kds.cert_chain(p, signer))? {
            for c in chain {
                let _ = certs.insert(c, None);
            }
        }
        if let Some(crl) = cached(kds.crl(p, signer))? {
            crls.push(crl);
        }
    }
    let trust_store;
    let trust = match &a.root {
        Some(d) => {
            trust_store = TrustStore::from_dir(d, a.product)
                .with_context(|| format!("custom roots in {}", d.display()))?;
            &trust_store
        }
        None => TrustStore::builtin(),
    };
    let mut opts = VerifyOptions::new().with_trust(trust);
    if let Some(t) = a.at {
        opts.at = t;
    }
    opts.product = a.product;
    opts.policy = policy(&a, product_hint)?;
    opts.crls = crls;
    opts.require_crl = a.require_crl;
    if !a.more_reports.is_empty() {
        return run_batch(&a, report_bytes, &certs, &opts);
    }
    let verdict = verify(report_bytes, &certs, &opts);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&verdict.to_json())?);
    } else {
        print!("{}", verdict.to_table());
    }
    Ok(if verdict.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Several reports under one certificate set: the chain is verified once per signer
/// kind and the reports in parallel (`softsev_attest::verify_batch`).
fn run_batch(
    a: &Args,
    first: &[u8],
    certs: &CertSet,
    opts: &VerifyOptions<'_>,
) -> Result<ExitCode> {
    let mut reports = vec![first.to_vec()];
    let mut names = vec![
        a.report
            .as_ref()
            .map(|r| r.display().to_string())
            .unwrap_or_default(),
    ];
    for p in &a.more_reports {
        reports.push(read_input(
            p,
            MAX_REPORT_FILE,
            "an attestation report file",
        )?);
        names.push(p.display().to_string());
    }
    let verdicts = softsev_attest::verify_batch(&reports, certs, opts);
    let all = verdicts.iter().all(|v| v.passed());
    if a.json {
        let items: Vec<_> = names
            .iter()
            .zip(&verdicts)
            .map(|(n, v)| serde_json::json!({ "report": n, "verdict": v.to_json() }))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "passed": all, "reports": items }))?
        );
    } else {
        for (n, v) in names.iter().zip(&verdicts) {
            match v.first_failure() {
                None => println!("OK      {n}"),
                Some(c) => println!("FAILED  {n}: {} ({}) [{}]", c.id, c.detail, c.fault),
            }
        }
        println!(
            "{} of {} reports verified",
            verdicts.iter().filter(|v| v.passed()).count(),
            verdicts.len()
        );
    }
    Ok(if all {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Largest legacy SEV input file read (a chain is 8336 bytes, a CA 3200).
const MAX_SEV_FILE: u64 = 1 << 20;

/// `softsev verify --sev-chain`: the legacy chain and optionally a report.
fn run_sev(a: &Args, chain_path: &std::path::Path) -> Result<ExitCode> {
    // The SNP options judge fields a legacy report does not have: refuse them rather
    // than ignore them.
    if !policy(a, None)?.is_empty()
        || a.at.is_some()
        || a.product.is_some()
        || !a.crl.is_empty()
        || a.require_crl
        || !a.more_reports.is_empty()
    {
        bail!(
            "SNP report options (policy flags, --at, --product, --crl, more reports) do not apply to \
             --sev-chain; the legacy report takes --sev-mnonce, --sev-launch-digest, --sev-policy, \
             --sev-policy-required"
        );
    }
    let chain = read_input(chain_path, MAX_SEV_FILE, "a SEV certificate chain")?;
    let ca = match (&a.sev_ca, a.sev_generation) {
        (Some(p), _) => CaChoice::Custom(Box::new(
            SevCa::from_ask_ark(&read_input(p, MAX_SEV_FILE, "a SEV CA file (ASK ‖ ARK)")?)
                .with_context(|| format!("CA file {}", p.display()))?,
        )),
        (None, Some(g)) => CaChoice::Generation(g),
        (None, None) => CaChoice::Builtin,
    };
    let oca = match &a.oca {
        Some(p) => {
            let b = read_input(p, MAX_SEV_FILE, "an OCA certificate")?;
            let first = b.get(..softsev_abi::sev_buf::SEV_CERT_LEN).ok_or_else(|| {
                anyhow::anyhow!(
                    "OCA file {}: {} bytes, a SEV certificate is 0x824",
                    p.display(),
                    b.len()
                )
            })?;
            Some(
                <softsev_abi::sev_cert::SevCert as zerocopy::FromBytes>::read_from_bytes(first)
                    .map_err(|_| anyhow::anyhow!("OCA file {} does not decode", p.display()))?,
            )
        }
        None => None,
    };
    let mut verdict = verify_sev_chain(&chain, &SevChainOptions { ca, oca });
    if let Some(r) = &a.sev_report {
        let bytes = read_input(r, MAX_SEV_FILE, "a legacy attestation report")?;
        let expect = SevReportExpect {
            mnonce: a.sev_mnonce,
            launch_digest: a.sev_launch_digest,
            policy: a.sev_policy,
            policy_required: a.sev_policy_required,
        };
        verdict = verdict.with_report(&bytes, &expect);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&verdict.to_json())?);
    } else {
        print!("{}", verdict.to_table());
    }
    Ok(if verdict.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A KDS-cache lookup: absent is `None` (the check it feeds then says what is missing);
/// present but unreadable or unparseable is an error, as the same bytes given with
/// `--crl`, `--cert` or `--certs` are (never silently treated as absent).
fn cached<T>(r: Result<T, softsev_attest::kds::FetchError>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(softsev_attest::kds::FetchError::Unavailable { .. }) => Ok(None),
        Err(e) => Err(anyhow::anyhow!("KDS cache: {e}")),
    }
}

/// A bounded read of a command-line input, the path in the error.
fn read_input(path: &std::path::Path, max: u64, what: &str) -> Result<Vec<u8>> {
    read_bounded(path, max, what).with_context(|| format!("reading {}", path.display()))
}
