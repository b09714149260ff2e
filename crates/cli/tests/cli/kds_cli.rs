//! `softsev kds`: the loopback KDS on its own serves the chip `softsev run` with the
//! same seed boots (its VCEK byte for byte), over HTTP, and HTTPS with the CA it
//! writes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

/// Ends the server (started by this test, by its own handle) when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(base: &str, target: &str) -> (u16, Vec<u8>) {
    let addr = base.strip_prefix("http://").expect("http base");
    let mut s = TcpStream::connect(addr).expect("connect to the KDS");
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: kdsintf.amd.com\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = String::from_utf8_lossy(&raw[..split])
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    (status, raw[split + 4..].to_vec())
}

#[test]
fn kds_serves_the_vcek_of_the_run_with_the_same_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_softsev"))
        .args(["run", "--seed", "kds-cli", "--out", "run"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let vcek_pem = std::fs::read_to_string(tmp.path().join("run/certs/vcek.pem")).unwrap();
    let vcek = softsev_firmware::identity::cert::from_pem("CERTIFICATE", &vcek_pem).unwrap();

    let child = Command::new(env!("CARGO_BIN_EXE_softsev"))
        .args(["kds", "--seed", "kds-cli", "--tls-dir", "tls"])
        .current_dir(tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut srv = Server(child);
    let mut out = BufReader::new(srv.0.stdout.take().unwrap());
    let mut http = String::new();
    out.read_line(&mut http).unwrap();
    let mut https = String::new();
    out.read_line(&mut https).unwrap();
    let http = http.trim().to_string();
    assert!(http.starts_with("http://127.0.0.1:"), "{http}");
    assert!(https.trim().starts_with("https://127.0.0.1:"), "{https}");
    let ca = std::fs::read_to_string(tmp.path().join("tls/ca.pem")).unwrap();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));

    // The same identity as the run's chip: its VCEK at its reported TCB.
    let fw = softsev_firmware::Firmware::builder(softsev_abi::Product::Milan)
        .seed(b"kds-cli")
        .soc_bytes(64 << 20)
        .build()
        .unwrap();
    let t = fw.reported_tcb();
    let target = format!(
        "/vcek/v1/Milan/{}?blSPL={:02}&teeSPL={:02}&snpSPL={:02}&ucodeSPL={:02}",
        fw.chip().kds_hwid(),
        t.bootloader,
        t.tee,
        t.snp,
        t.microcode
    );
    assert_eq!(get(&http, &target), (200, vcek));
    let (st, chain) = get(&http, "/vcek/v1/Milan/cert_chain");
    assert_eq!(st, 200);
    let ark = std::fs::read_to_string(tmp.path().join("run/certs/ark.pem")).unwrap();
    let ark = softsev_firmware::identity::cert::from_pem("CERTIFICATE", &ark).unwrap();
    let chain = String::from_utf8(chain).unwrap();
    assert!(
        chain.contains(
            softsev_firmware::identity::cert::to_pem("CERTIFICATE", &ark)
                .unwrap()
                .trim()
        ),
        "cert_chain ends with the run's ARK"
    );
    assert_eq!(get(&http, "/vcek/v1/Milan/nothing-here").0, 404);

    // A second server refuses to overwrite the CA.
    let again = Command::new(env!("CARGO_BIN_EXE_softsev"))
        .args(["kds", "--seed", "kds-cli", "--tls-dir", "tls"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not overwritten"));
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("tls/ca.pem")).unwrap(),
        ca
    );
}
