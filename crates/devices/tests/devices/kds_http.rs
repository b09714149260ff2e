//! The loopback KDS over HTTP and HTTPS (rustls client with the run's CA).

use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use softsev_abi::Product;
use softsev_devices::kds::{KDS_HOSTS, Kds, KdsEvent, KdsServer, KdsServerConfig};
use softsev_firmware::Firmware;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use zerocopy::FromBytes;

fn firmware(product: Product) -> Arc<Firmware> {
    Firmware::builder(product)
        .seed(b"fe-host kds")
        .soc_bytes(64 << 20)
        .build()
        .expect("firmware")
}

/// One HTTP/1.1 exchange on `s`: (status, body).
fn exchange<S: Read + Write>(s: S, method: &str, target: &str, host: &str) -> (u16, Vec<u8>) {
    exchange_body(s, method, target, host, b"")
}

fn exchange_body<S: Read + Write>(
    mut s: S,
    method: &str,
    target: &str,
    host: &str,
    body: &[u8],
) -> (u16, Vec<u8>) {
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    s.flush().unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = raw[split + 4..].to_vec();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    if method != "HEAD" {
        assert_eq!(body.len(), len, "Content-Length matches");
    }
    (status, body)
}

fn http_get(addr: SocketAddr, target: &str) -> (u16, Vec<u8>) {
    exchange(
        TcpStream::connect(addr).unwrap(),
        "GET",
        target,
        "kdsintf.amd.com",
    )
}

fn vcek_target(fw: &Firmware, tcb: &softsev_abi::TcbVersion) -> String {
    let chip = fw.chip();
    let fmc = if chip.product() == Product::Turin {
        format!("fmcSPL={}&", tcb.fmc)
    } else {
        String::new()
    };
    format!(
        "/vcek/v1/{}/{}?{fmc}blSPL={:02}&teeSPL={:02}&snpSPL={:02}&ucodeSPL={:02}",
        chip.product().name(),
        chip.kds_hwid(),
        tcb.bootloader,
        tcb.tee,
        tcb.snp,
        tcb.microcode
    )
}

#[test]
fn http_serves_amds_url_scheme_from_the_chip() {
    let fw = firmware(Product::Milan);
    let events: Arc<Mutex<Vec<KdsEvent>>> = Arc::default();
    let ev = events.clone();
    let srv = KdsServer::start(
        Arc::new(Kds::new(fw.clone(), Some(b"kds test"))),
        KdsServerConfig {
            http: Some("127.0.0.1:0".parse().unwrap()),
            observer: Some(Arc::new(move |e: &KdsEvent| {
                ev.lock().unwrap().push(e.clone())
            })),
            ..Default::default()
        },
    )
    .unwrap();
    let a = srv.http_addr().unwrap();
    assert_eq!(srv.http_base().unwrap(), format!("http://{a}"));
    let root = fw.chip().root().clone();

    let (st, body) = http_get(a, "/vcek/v1/Milan/cert_chain");
    assert_eq!(st, 200);
    assert_eq!(
        String::from_utf8(body).unwrap(),
        root.kds_cert_chain_pem().unwrap()
    );
    let (st, body) = http_get(a, "/vlek/v1/Milan/cert_chain");
    assert_eq!(
        (st, body),
        (200, root.kds_vlek_cert_chain_pem().unwrap().into_bytes())
    );
    let (st, body) = http_get(a, "/vcek/v1/Milan/crl");
    assert_eq!((st, body), (200, root.vcek_crl_der().to_vec()));

    // VCEK at the reported TCB: the chip's certificate; the hwid in upper case too.
    let tcb = fw.reported_tcb();
    let want = fw.chip().vcek_cert_der(&tcb).unwrap();
    let t = vcek_target(&fw, &tcb);
    assert_eq!(http_get(a, &t), (200, want.clone()));
    let upper = t.replace(&fw.chip().kds_hwid(), &fw.chip().kds_hwid().to_uppercase());
    assert_eq!(http_get(a, &upper).0, 200);
    // A lower TCB is a released level too; a higher one or another hwid is 404.
    let mut lower = tcb;
    lower.snp = lower.snp.saturating_sub(1);
    assert_ne!(lower, tcb, "the model's reported SNP SVN is above 0");
    assert_eq!(http_get(a, &vcek_target(&fw, &lower)).0, 200);
    let mut higher = tcb;
    higher.snp = higher.snp.wrapping_add(1);
    assert_eq!(http_get(a, &vcek_target(&fw, &higher)).0, 404);
    let wrong = t.replace(&fw.chip().kds_hwid()[..2], "zz");
    assert_eq!(http_get(a, &wrong).0, 404);
    // Missing or malformed TCB parameters: 400; fmcSPL on Milan: 400.
    let path = t.split('?').next().unwrap().to_string();
    assert_eq!(http_get(a, &path).0, 400);
    assert_eq!(
        http_get(a, &format!("{path}?blSPL=3&teeSPL=0&snpSPL=x&ucodeSPL=1")).0,
        400
    );
    assert_eq!(
        http_get(a, &format!("{path}?blSPL=3&teeSPL=0&snpSPL=1")).0,
        400
    );
    assert_eq!(
        http_get(
            a,
            &format!("{path}?fmcSPL=1&blSPL=3&teeSPL=0&snpSPL=1&ucodeSPL=1")
        )
        .0,
        400
    );
    // Another product, unknown paths: 404.
    assert_eq!(http_get(a, "/vcek/v1/Genoa/cert_chain").0, 404);
    assert_eq!(http_get(a, "/vcek/v2/Milan/cert_chain").0, 404);
    assert_eq!(http_get(a, "/").0, 404);

    // CEK by GET_ID (sevctl sends upper-case hex).
    let id = hex::encode_upper(fw.chip().sev_get_id());
    let (st, cek) = http_get(a, &format!("/cek/id/{id}"));
    assert_eq!(st, 200);
    assert_eq!(cek.len(), 0x824);
    assert_eq!(http_get(a, &format!("/cek/id/{}", "00".repeat(64))).0, 404);

    // The GET_ID value names the chip too (snphost's VCEK URL).
    let by_id = t.replace(&fw.chip().kds_hwid(), &hex::encode(fw.chip().sev_get_id()));
    assert_eq!(http_get(a, &by_id), (200, want.clone()));

    // Hash sticks (POST, snphost's JSON): a wrapped VLEK this chip loads.
    let q = t.split('?').nth(1).unwrap();
    let hs = format!("/vlek/v1/Milan/hash_sticks?{q}");
    let id = hex::encode_upper(fw.chip().sev_get_id());
    let req = format!(r#"{{"hwids":["{id}","{}"]}}"#, "AB".repeat(64));
    let s = TcpStream::connect(a).unwrap();
    let (st, body) = exchange_body(s, "POST", &hs, "kdsintf.amd.com:444", req.as_bytes());
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let blob = hex::decode(v["results"][0][&id].as_str().unwrap()).unwrap();
    assert_eq!(blob.len(), 432);
    assert_eq!(v["results"][0]["AB".repeat(64)], "not found");
    let blob = softsev_abi::fw_buf::VlekWrapped::read_from_bytes(&blob).unwrap();
    fw.chip()
        .load_vlek_blob(&blob, &tcb)
        .expect("the chip accepts the hash stick");
    // Now the VLEK certificate is served at its TCB.
    let (st, vlek) = http_get(a, &format!("/vlek/v1/Milan/cert?{q}"));
    assert_eq!(
        (st, vlek.as_slice()),
        (200, fw.chip().vlek().unwrap().cert_der())
    );
    assert_eq!(http_get(a, &hs).0, 405, "hash_sticks is POST");
    let s = TcpStream::connect(a).unwrap();
    assert_eq!(exchange_body(s, "POST", &hs, "x", b"not json").0, 400);

    // The VLEK certificate at another TCB: 404.
    let lq = vcek_target(&fw, &lower);
    let lq = lq.split('?').nth(1).unwrap();
    assert_eq!(http_get(a, &format!("/vlek/v1/Milan/cert?{lq}")).0, 404);

    // Methods other than GET/HEAD: 405; HEAD has no body; garbage is 400.
    let s = TcpStream::connect(a).unwrap();
    assert_eq!(exchange(s, "POST", "/vcek/v1/Milan/crl", "x").0, 405);
    let s = TcpStream::connect(a).unwrap();
    assert_eq!(
        exchange(s, "HEAD", "/vcek/v1/Milan/crl", "x"),
        (200, Vec::new())
    );
    let mut s = TcpStream::connect(a).unwrap();
    s.write_all(b"nonsense\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    assert!(
        raw.starts_with(b"HTTP/1.1 400 "),
        "{}",
        String::from_utf8_lossy(&raw)
    );

    let log = events.lock().unwrap().clone();
    assert!(log.iter().any(|e| e.target == "/vcek/v1/Milan/cert_chain"
        && e.status == 200
        && e.host.as_deref() == Some("kdsintf.amd.com")
        && !e.tls));
    srv.shutdown();
    assert!(TcpStream::connect(a).is_err(), "listener closed");
}

#[test]
fn turin_vcek_urls_take_fmc_and_an_8_byte_hwid() {
    let fw = firmware(Product::Turin);
    let srv = KdsServer::start(
        Arc::new(Kds::new(fw.clone(), None)),
        KdsServerConfig {
            http: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        },
    )
    .unwrap();
    let a = srv.http_addr().unwrap();
    let tcb = fw.reported_tcb();
    assert_eq!(fw.chip().kds_hwid().len(), 16);
    let t = vcek_target(&fw, &tcb);
    assert_eq!(
        http_get(a, &t),
        (200, fw.chip().vcek_cert_der(&tcb).unwrap())
    );
    let no_fmc = t.replace(&format!("fmcSPL={}&", tcb.fmc), "");
    assert_eq!(http_get(a, &no_fmc).0, 400);
}

fn tls_client(ca: &[CertificateDer<'static>]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in ca {
        roots.add(c.clone()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

fn https_get(
    cfg: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    host: &str,
    target: &str,
) -> std::io::Result<(u16, Vec<u8>)> {
    let name = ServerName::try_from(host.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(cfg.clone(), name).unwrap();
    let mut s = rustls::StreamOwned::new(conn, TcpStream::connect(addr)?);
    // Drive the handshake first so a certificate failure surfaces as an error.
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(exchange(s, "GET", target, host))
}

#[test]
fn https_with_a_per_run_ca_for_amds_host_names() {
    let fw = firmware(Product::Genoa);
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("kds-ca.pem");
    let srv = KdsServer::start(
        Arc::new(Kds::new(fw.clone(), Some(b"kds tls test"))),
        KdsServerConfig {
            http: Some("127.0.0.1:0".parse().unwrap()),
            https: vec![
                "127.0.0.1:0".parse().unwrap(),
                "127.0.0.1:0".parse().unwrap(),
            ],
            ca_pem_path: Some(ca_path.clone()),
            seed: Some(b"tls seed".to_vec()),
            observer: None,
        },
    )
    .unwrap();
    let pem = std::fs::read_to_string(&ca_path).unwrap();
    assert_eq!(Some(pem.as_str()), srv.ca_pem());
    let ca: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(ca.len(), 1);
    let client = tls_client(&ca);
    let want = fw.chip().root().kds_cert_chain_pem().unwrap().into_bytes();
    for (i, addr) in srv.https_addrs().iter().enumerate() {
        for host in KDS_HOSTS {
            let (st, body) = https_get(&client, *addr, host, "/vcek/v1/Genoa/cert_chain").unwrap();
            assert_eq!((st, &body), (200, &want), "listener {i}, {host}");
        }
    }
    // A name the certificate does not cover, and a client without the CA: refused.
    let addr = srv.https_addrs()[0];
    assert!(https_get(&client, addr, "example.com", "/").is_err());
    let other = tls_client(&[]);
    assert!(https_get(&other, addr, "kdsintf.amd.com", "/").is_err());
    // The CA file is not overwritten by a second server.
    let again = KdsServer::start(
        Arc::new(Kds::new(fw.clone(), None)),
        KdsServerConfig {
            https: vec!["127.0.0.1:0".parse().unwrap()],
            ca_pem_path: Some(ca_path.clone()),
            ..Default::default()
        },
    );
    assert!(again.is_err());
    assert_eq!(std::fs::read_to_string(&ca_path).unwrap(), pem);
    // Equal seeds give equal CAs.
    let dir2 = tempfile::tempdir().unwrap();
    let p2 = dir2.path().join("ca.pem");
    let srv2 = KdsServer::start(
        Arc::new(Kds::new(fw, None)),
        KdsServerConfig {
            https: vec!["127.0.0.1:0".parse().unwrap()],
            ca_pem_path: Some(p2.clone()),
            seed: Some(b"tls seed".to_vec()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(std::fs::read_to_string(&p2).unwrap(), pem);
    srv2.shutdown();
    srv.shutdown();
}

/// curl (libcurl + OpenSSL, what snphost links) fetches over HTTPS under AMD's name
/// with the run's CA, and fails certificate verification without it.
#[test]
fn curl_fetches_over_https_with_the_run_ca() {
    let Some(curl) = softsev_testkit::tool("curl") else {
        return;
    };
    let fw = firmware(Product::Milan);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let srv = KdsServer::start(
        Arc::new(Kds::new(fw.clone(), None)),
        KdsServerConfig {
            https: vec!["127.0.0.1:0".parse().unwrap()],
            ca_pem_path: Some(ca.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let port = srv.https_addrs()[0].port();
    let url = format!("https://kdsintf.amd.com:{port}/vcek/v1/Milan/crl");
    let resolve = format!("kdsintf.amd.com:{port}:127.0.0.1");
    let out = dir.path().join("crl.der");
    let o = std::process::Command::new(&curl)
        .args(["-sS", "--fail", "--resolve", &resolve, "--cacert"])
        .arg(&ca)
        .arg("-o")
        .arg(&out)
        .arg(&url)
        .env_remove("SSL_CERT_FILE")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(&out).unwrap(),
        fw.chip().root().vcek_crl_der()
    );
    // Without the CA: certificate verification fails (curl exit 60).
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, b"").unwrap();
    let o = std::process::Command::new(&curl)
        .args([
            "-sS",
            "--resolve",
            &resolve,
            "--capath",
            "/nonexistent",
            "--cacert",
        ])
        .arg(&empty)
        .arg(&url)
        .env_remove("SSL_CERT_FILE")
        .output()
        .unwrap();
    assert!(!o.status.success());
    srv.shutdown();
}
