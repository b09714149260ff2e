//! `tsm-configfs-check`: the configfs-tsm path of a confidential-computing tool, on the
//! registry crate `configfs-tsm` 0.0.2 (the library cvmtool uses; frontends.md §2.2,
//! §7.3 "stand-ins", §7.4). Inside `softsev exec --guest --tsm` it
//!
//! 1. asks for a quote with `create_quote_with_providers(nonce, ["sev_guest"])` — mkdir
//!    under `/sys/kernel/config/tsm/report`, read `provider` and `generation`, write
//!    `inblob`, read `outblob`, read `generation` again;
//! 2. checks it is an SEV-SNP attestation report (0x4A0 bytes) carrying the nonce;
//! 3. takes the certificates from `--certs DIR` (snpguest's layout), or else from a
//!    second quote made through the crate's `OpenQuote` in an entry it names itself,
//!    whose `auxblob` (the GHCB certificate table) it reads and which it removes;
//! 4. verifies the report with softsev's verifier under the given ARK (`--root`), or the
//!    chain's own ARK (a consistency check: softsev cannot sign with AMD's keys).
//!
//! Exit status 0 when the report verifies, 1 when it does not, 2 on usage errors.

#![forbid(unsafe_code)]

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use configfs_tsm::{OpenQuote, create_quote_with_providers};
use softsev_abi::report::AttestationReport;
use softsev_attest::{CertSet, TrustStore, VerifyOptions, verify};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Where configfs-tsm keeps report entries (the path the crate uses).
const REPORT_DIR: &str = "/sys/kernel/config/tsm/report";
/// The size of an SEV-SNP attestation report.
const REPORT_SIZE: usize = 0x4A0;

/// Ask configfs-tsm for an SEV-SNP quote and check that it verifies.
#[derive(Debug, Parser)]
#[command(name = "tsm-configfs-check", version)]
struct Args {
    /// The 64-byte nonce (REPORT_DATA) in hex; default: 64 random bytes.
    #[arg(long)]
    nonce: Option<String>,
    /// Certificates as `snpguest certificates` writes them (ark, ask, vcek .pem/.der);
    /// default: the auxblob of a second quote.
    #[arg(long)]
    certs: Option<PathBuf>,
    /// The ARK to trust (PEM or DER); default: the ARK among the certificates.
    #[arg(long)]
    root: Option<PathBuf>,
    /// Write the quote here (refused if the file exists).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn nonce(a: &Args) -> Result<[u8; 64]> {
    match &a.nonce {
        Some(h) => {
            let b = hex::decode(h.trim()).context("--nonce is not hex")?;
            b.try_into().map_err(|b: Vec<u8>| {
                anyhow::anyhow!("--nonce has {} bytes, 64 are needed", b.len())
            })
        }
        None => Ok(softsev_crypto::rng::Rng::os().array::<64>()),
    }
}

/// Check the quote is an SNP report with `nonce` in REPORT_DATA.
fn check_quote(what: &str, quote: &[u8], nonce: &[u8; 64]) -> Result<AttestationReport> {
    ensure!(
        quote.len() == REPORT_SIZE,
        "{what}: {} bytes, an SEV-SNP report has {REPORT_SIZE}",
        quote.len()
    );
    let r = AttestationReport::parse(quote).with_context(|| format!("{what}: not a report"))?;
    ensure!(
        r.report_data == *nonce,
        "{what}: REPORT_DATA {} is not the nonce {}",
        hex::encode(r.report_data),
        hex::encode(nonce)
    );
    Ok(r)
}

/// A second quote in an entry of our own, for its auxblob; the entry is removed.
fn certs_from_auxblob(nonce: &[u8; 64]) -> Result<CertSet> {
    let name = format!("tsm-configfs-check-{}", hex::encode(&nonce[..8]));
    let dir = Path::new(REPORT_DIR).join(&name);
    let r = (|| -> Result<CertSet> {
        let mut q = OpenQuote::new(&name).map_err(|e| anyhow::anyhow!("{e}"))?;
        q.check_provider(vec!["sev_guest"])
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        q.write_input(*nonce).map_err(|e| anyhow::anyhow!("{e}"))?;
        let quote = q.read_output().map_err(|e| anyhow::anyhow!("{e}"))?;
        check_quote("the second quote", &quote, nonce)?;
        let aux = std::fs::read(dir.join("auxblob"))
            .with_context(|| format!("reading {}", dir.join("auxblob").display()))?;
        ensure!(
            !aux.is_empty(),
            "{}/auxblob is empty: the host supplied no certificates (use --certs)",
            dir.display()
        );
        CertSet::from_table(&aux).context("auxblob is no GHCB certificate table")
    })();
    // configfs removes an entry whatever it holds.
    if let Err(e) = std::fs::remove_dir(&dir) {
        eprintln!("warning: removing {}: {e}", dir.display());
    }
    r
}

fn write_new(path: &Path, data: &[u8]) -> Result<()> {
    ensure!(
        !path.exists(),
        "{} exists; not overwriting it",
        path.display()
    );
    let tmp = path.with_extension("tmp-tsm-configfs-check");
    std::fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

fn run(a: &Args) -> Result<bool> {
    let nonce = nonce(a)?;
    let quote = create_quote_with_providers(nonce, vec!["sev_guest"])
        .map_err(|e| anyhow::anyhow!("configfs-tsm: {e}"))?;
    let report = check_quote("the quote", &quote, &nonce)?;
    println!(
        "quote: {} bytes, version={}, vmpl={}, report_data={}",
        quote.len(),
        report.version,
        report.vmpl,
        hex::encode(report.report_data)
    );
    if let Some(out) = &a.out {
        write_new(out, &quote)?;
    }
    let certs = match &a.certs {
        Some(d) => {
            CertSet::from_dir(d).with_context(|| format!("certificates in {}", d.display()))?
        }
        None => certs_from_auxblob(&nonce)?,
    };
    let ark = match &a.root {
        Some(p) => {
            let b = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            softsev_attest::cert::certs_from_bytes(&p.display().to_string(), &b)?
        }
        None => match &certs.ark {
            Some(c) => {
                println!("trusting the chain's own ARK (--root names another)");
                vec![c.clone()]
            }
            None => bail!("no ARK among the certificates and no --root"),
        },
    };
    let trust = TrustStore::custom(ark, None).context("the ARK")?;
    let v = verify(&quote, &certs, &VerifyOptions::new().with_trust(&trust));
    for c in v.failures() {
        println!("FAIL {}: {}", c.id, c.detail);
    }
    if v.passed() {
        println!("the quote verifies ({} checks)", v.checks.len());
    }
    Ok(v.passed())
}

fn main() -> ExitCode {
    let a = Args::parse();
    match run(&a) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("tsm-configfs-check: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_must_be_64_hex_bytes() {
        let a = Args::parse_from(["t", "--nonce", &"ab".repeat(64)]);
        assert_eq!(nonce(&a).unwrap(), [0xab; 64]);
        let a = Args::parse_from(["t", "--nonce", "abcd"]);
        assert!(nonce(&a).unwrap_err().to_string().contains("2 bytes"));
        let a = Args::parse_from(["t", "--nonce", "xyz"]);
        assert!(nonce(&a).is_err());
        let a = Args::parse_from(["t"]);
        assert_ne!(nonce(&a).unwrap(), nonce(&a).unwrap());
    }

    #[test]
    fn quotes_are_checked() {
        assert!(check_quote("q", &[0; 10], &[0; 64]).is_err());
    }
}
