//! `softsev`: AMD SEV / SEV-SNP in software. A thin binary: parse, validate into a
//! config, call the libraries, render typed errors.

#![forbid(unsafe_code)]
// clap takes `--help` text from the doc comments verbatim; `<N>` there is meant literally.
#![allow(rustdoc::invalid_html_tags)]

mod cmd;
mod error_chain;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "softsev",
    version,
    about = "AMD SEV / SEV-ES / SEV-SNP, end to end, in software"
)]
struct Cli {
    /// Log filter for diagnostics on stderr (e.g. `info`, `softsev_measure=debug`).
    #[arg(long, global = true, env = "SOFTSEV_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    // Each subcommand lives in src/cmd/<name>.rs with an `Args` struct and a
    // `run(Args) -> anyhow::Result<ExitCode>` function.
    /// Compute SEV / SEV-ES / SEV-SNP launch digests (sev-snp-measure compatible).
    Measure(cmd::measure::Args),
    /// Build an SNP ID block and ID auth structure (snp-create-id-block compatible).
    IdBlock(cmd::id_block::Args),
    /// Verify an SNP attestation report (AMD chain, CRL, binding, signature, policy), or a
    /// legacy SEV chain and report (`--sev-chain`).
    Verify(Box<cmd::verify::Args>),
    /// Inspect SNP attestation reports (`report show`).
    Report(cmd::report::Args),
    /// Launch, boot and attest an SNP guest on the built-in software platform.
    Run(Box<cmd::run::Args>),
    /// Move a running SEV / SEV-ES guest live from one chip to another (one process).
    Migrate(Box<cmd::migrate::Args>),
    /// Legacy SEV guest-owner tools: session, measurement, secret (sevctl-compatible).
    Sev(cmd::sev::Args),
    /// Run an unmodified tool (snpguest, snphost, sevctl, …) against softsev: serves
    /// /dev/sev-guest, configfs-tsm, /dev/sev and AMD's KDS in a private namespace (root).
    Exec(Box<cmd::exec::Args>),
    /// Serve the same front ends until interrupted; tools enter with nsenter (root).
    Serve(Box<cmd::exec::ServeArgs>),
    /// Serve AMD's KDS (VCEK, cert_chain, CRL, VLEK, CEK) for a seeded chip on loopback.
    Kds(cmd::kds::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    let result: anyhow::Result<ExitCode> = match cli.command {
        Command::Measure(a) => cmd::measure::run(a),
        Command::IdBlock(a) => cmd::id_block::run(a),
        Command::Verify(a) => cmd::verify::run(a),
        Command::Report(a) => cmd::report::run(a),
        Command::Run(a) => cmd::run::run(*a),
        Command::Migrate(a) => cmd::migrate::run(*a),
        Command::Sev(a) => cmd::sev::run(a),
        Command::Exec(a) => cmd::exec::run(*a),
        Command::Serve(a) => cmd::exec::serve_cmd(*a),
        Command::Kds(a) => cmd::kds::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("softsev: error: {}", error_chain::render(&e));
            ExitCode::FAILURE
        }
    }
}
