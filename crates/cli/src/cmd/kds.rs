//! `softsev kds`: the loopback AMD Key Distribution Service on its own (frontends.md
//! §4, §7.1 item 4): AMD's URL scheme answered from the chip a `softsev run` with the
//! same `--seed` and `--product` has (VCEK by hwid and TCB, cert_chain, CRL, VLEK,
//! hash sticks, CEK by GET_ID), over plain HTTP and, with `--tls-dir`, HTTPS with a
//! per-run CA whose certificate is written to `DIR/ca.pem`.

use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use softsev_abi::Product;
use softsev_devices::kds::{KDS_HOSTS, Kds, KdsServer, KdsServerConfig};
use softsev_firmware::Firmware;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(ClapArgs)]
#[command(after_help = "\
Examples:
  softsev kds --seed demo                       # prints http://127.0.0.1:PORT
  softsev kds --seed demo --listen 127.0.0.1:8080 --tls-dir kds-tls \\
      --tls-listen 127.0.0.1:8443
  curl http://127.0.0.1:8080/vcek/v1/Milan/cert_chain

The chip is the one `softsev run --seed S` (same product) boots, so the VCEK of its
reports is served at the URL snpguest and snphost compute. Runs until interrupted.")]
pub(crate) struct Args {
    /// Seed of the chip identity (as `softsev run --seed`); without it the chip is random.
    #[arg(long)]
    seed: Option<String>,
    /// Product: milan, genoa or turin.
    #[arg(long, default_value = "milan", value_parser = parse_product)]
    product: Product,
    /// Plain-HTTP listener (port 0: a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Serve HTTPS too and write the CA certificate to DIR/ca.pem (DIR is created;
    /// an existing ca.pem is not overwritten).
    #[arg(long, value_name = "DIR")]
    tls_dir: Option<PathBuf>,
    /// HTTPS listeners (repeatable; default 127.0.0.1:0 when --tls-dir is given).
    #[arg(long, value_name = "ADDR", requires = "tls_dir")]
    tls_listen: Vec<SocketAddr>,
}

fn parse_product(s: &str) -> Result<Product, String> {
    Product::from_name(s).ok_or_else(|| format!("unknown product {s:?} (milan, genoa, turin)"))
}

pub(crate) fn run(a: Args) -> Result<ExitCode> {
    let mut b = Firmware::builder(a.product).soc_bytes(64 << 20);
    if let Some(s) = &a.seed {
        b = b.seed(s.as_bytes());
    }
    let fw = b.build().context("building the chip identity")?;
    let hwid = fw.chip().kds_hwid();
    let seed = a.seed.as_ref().map(|s| s.as_bytes().to_vec());
    let kds = Arc::new(Kds::new(fw, seed.as_deref()));
    let mut cfg = KdsServerConfig {
        http: Some(a.listen),
        seed,
        ..Default::default()
    };
    let mut ca_path = None;
    if let Some(dir) = &a.tls_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let p = dir.join("ca.pem");
        if p.exists() {
            bail!("{} exists (not overwritten)", p.display());
        }
        cfg.ca_pem_path = Some(p.clone());
        cfg.https = if a.tls_listen.is_empty() {
            vec![SocketAddr::from(([127, 0, 0, 1], 0))]
        } else {
            a.tls_listen.clone()
        };
        ca_path = Some(p);
    }
    let srv = KdsServer::start(kds, cfg)?;
    if let Some(base) = srv.http_base() {
        println!("{base}");
    }
    for addr in srv.https_addrs() {
        println!("https://{addr}");
    }
    if let Some(p) = &ca_path {
        eprintln!(
            "softsev kds: HTTPS certificate for {} (and localhost, 127.0.0.1), CA {}",
            KDS_HOSTS.join(", "),
            p.display()
        );
    }
    eprintln!(
        "softsev kds: {} chip, hwid {hwid}; serving until interrupted",
        a.product
    );
    // Serve until the process is interrupted (the default SIGINT/SIGTERM action ends
    // it; nothing needs cleaning up: the CA file is an output).
    loop {
        std::thread::park();
    }
}
