//! `softsev report show REPORT`: print every field of an SNP attestation report
//! (versions 2, 3, 5), TCBs decoded in the product's layout, with `--json`.

use anyhow::{Context, Result};
use softsev_abi::Product;
use softsev_abi::report::AttestationReport;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `softsev report`.
#[derive(clap::Args, Debug)]
#[command(about = "Inspect SNP attestation reports")]
pub(crate) struct Args {
    #[command(subcommand)]
    cmd: Sub,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Print every field of a report.
    Show(ShowArgs),
}

#[derive(clap::Args, Debug)]
struct ShowArgs {
    /// The report file (0x4A0 bytes; trailing bytes, e.g. a certificate table, are
    /// ignored).
    report: PathBuf,
    /// Product whose TCB layout to use (default: from the report's CPUID, or Turin for
    /// an 8-byte CHIP_ID, else the Milan/Genoa layout).
    #[arg(long, value_name = "NAME", value_parser = parse_product)]
    product: Option<Product>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn parse_product(s: &str) -> Result<Product, String> {
    match s.to_ascii_lowercase().as_str() {
        "bergamo" | "siena" => Ok(Product::Genoa),
        _ => Product::from_name(s)
            .ok_or_else(|| format!("unknown product '{s}' (milan, genoa, turin)")),
    }
}

/// Run `softsev report`.
pub(crate) fn run(a: Args) -> Result<ExitCode> {
    match a.cmd {
        Sub::Show(s) => {
            let bytes = softsev_attest::input::read_bounded(
                &s.report,
                softsev_attest::input::MAX_REPORT_FILE,
                "an attestation report file",
            )
            .with_context(|| format!("reading {}", s.report.display()))?;
            let (r, _) = AttestationReport::parse_prefix(&bytes)
                .with_context(|| format!("parsing {}", s.report.display()))?;
            let product = softsev_attest::show::product_for_show(&r, s.product);
            // Non-zero reserved bytes: a warning on stderr in both forms, and in the
            // JSON as `warnings` (probe P13: the JSON used to drop it).
            let warnings: Vec<String> = r
                .check_reserved()
                .err()
                .map(|e| e.to_string())
                .into_iter()
                .collect();
            if s.json {
                let mut v = softsev_attest::show::report_json(&r, product);
                if let Some(o) = v.as_object_mut() {
                    o.insert("warnings".into(), serde_json::json!(warnings));
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", softsev_attest::show::report_text(&r, product));
            }
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
