//! `softsev verify --sev-chain …` and `softsev sev session|measurement|secret` through
//! the binary: exit codes, table and JSON verdicts, sevctl-compatible files (the
//! vectors of shared/fixtures/sev-legacy/VECTORS.md §3), --force and atomic outputs.

use base64::Engine;
use softsev_abi::sev_buf::SevSession;
use softsev_abi::sev_cert::SevCert;
use softsev_attest::sev::issue::TestPlatform;
use softsev_attest::sev::owner::open_session;
use softsev_crypto::rng::Rng;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;
use zerocopy::{FromBytes, IntoBytes};

use softsev_testkit::fixture_dir;

fn softsev(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_softsev"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn failed_ids(o: &Output) -> Vec<String> {
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["outcome"] == "fail")
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

fn platform() -> &'static TestPlatform {
    static P: OnceLock<TestPlatform> = OnceLock::new();
    P.get_or_init(|| {
        TestPlatform::generate(
            &mut Rng::seeded(b"cli sev tests", "platform"),
            2048,
            (0, 24),
        )
        .unwrap()
    })
}

/// Writes the genuine Naples chain and the Naples and Rome CA files into `d`.
fn naples_files(fx: &Path, d: &Path) {
    let n = fx.join("virtee-sev-tests/naples");
    let chain: Vec<u8> = ["pdh", "pek", "oca", "cek"]
        .iter()
        .flat_map(|c| std::fs::read(n.join(format!("{c}.cert"))).unwrap())
        .collect();
    std::fs::write(d.join("naples-sev-chain.cert"), chain).unwrap();
    for g in ["naples", "rome"] {
        let c = fx.join("builtin-ca").join(g);
        let mut v = std::fs::read(c.join("ask.cert")).unwrap();
        v.extend(std::fs::read(c.join("ark.cert")).unwrap());
        std::fs::write(d.join(format!("{g}-ca.cert")), v).unwrap();
    }
}

#[test]
fn verify_sev_chain_builtin_and_wrong_generation() {
    let Some(fx) = fixture_dir("sev-legacy") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    naples_files(&fx, d);
    let o = softsev(d, &["verify", "--sev-chain", "naples-sev-chain.cert"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    for id in [
        "sev.pdh.signed_by_pek",
        "sev.pek.signed_by_cek",
        "sev.cek.signed_by_ask",
        "sev.ark.self_signed",
    ] {
        assert!(out.contains(&format!("PASS  {id}")), "{out}");
    }
    assert!(out.contains("SEV chain under the Naples CA"), "{out}");
    let o = softsev(
        d,
        &[
            "verify",
            "--sev-chain",
            "naples-sev-chain.cert",
            "--sev-ca",
            "naples-ca.cert",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (
            j["passed"].clone(),
            j["kind"].clone(),
            j["generation"].clone()
        ),
        (true.into(), "sev".into(), "Naples".into())
    );
    // Rome's CA: only the ASK → CEK link fails (sevctl: "ASK ⬑̸", exit 1).
    for args in [
        vec!["--sev-ca", "rome-ca.cert"],
        vec!["--sev-generation", "rome"],
    ] {
        let mut a = vec!["verify", "--sev-chain", "naples-sev-chain.cert", "--json"];
        a.extend(args);
        let o = softsev(d, &a);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert_eq!(failed_ids(&o), vec!["sev.cek.signed_by_ask"]);
    }
    // Usage errors.
    let o = softsev(
        d,
        &[
            "verify",
            "report.bin",
            "--sev-chain",
            "naples-sev-chain.cert",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = softsev(
        d,
        &[
            "verify",
            "--sev-chain",
            "naples-sev-chain.cert",
            "--sev-generation",
            "bergamo",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("unknown SEV generation"), "{}", text(&o));
    let o = softsev(d, &["verify", "--sev-chain", "nope.cert"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("nope.cert"), "{}", text(&o));
    let o = softsev(
        d,
        &[
            "verify",
            "--sev-chain",
            "naples-sev-chain.cert",
            "--sev-ca",
            "naples-sev-chain.cert",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("CA file"), "{}", text(&o));
}

#[test]
fn verify_sev_report_through_the_cli() {
    let p = platform();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("chain.cert"), p.chain_bytes()).unwrap();
    std::fs::write(d.join("ca.cert"), p.ca.to_ask_ark()).unwrap();
    let mut rng = Rng::seeded(b"cli report", "t");
    let report = p.sign_report([0xAB; 16], [0xCD; 32], 0x5, &mut rng);
    std::fs::write(d.join("report.bin"), report).unwrap();
    let base = [
        "verify",
        "--sev-chain",
        "chain.cert",
        "--sev-ca",
        "ca.cert",
        "--sev-report",
        "report.bin",
    ];
    let mut a = base.to_vec();
    a.extend([
        "--sev-mnonce",
        "abababababababababababababababab",
        "--sev-launch-digest",
        "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
        "--sev-policy",
        "0x5",
        "--sev-policy-required",
        "1",
    ]);
    let o = softsev(d, &a);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("PASS  sev.report.signature"),
        "{}",
        text(&o)
    );
    let mut a = base.to_vec();
    a.extend(["--sev-policy", "0x1", "--json"]);
    let o = softsev(d, &a);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(failed_ids(&o), vec!["sev.report.policy"]);
    // Without the CA the chain fails (no built-in CA signs our CEK).
    let o = softsev(
        d,
        &[
            "verify",
            "--sev-chain",
            "chain.cert",
            "--sev-report",
            "report.bin",
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(failed_ids(&o), vec!["sev.ca"]);
    // SNP options are refused, not ignored.
    let o = softsev(
        d,
        &[
            "verify",
            "--sev-chain",
            "chain.cert",
            "--sev-ca",
            "ca.cert",
            "--no-debug",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("do not apply to --sev-chain"),
        "{}",
        text(&o)
    );
    // --sev-mnonce needs --sev-report.
    let o = softsev(
        d,
        &["verify", "--sev-chain", "chain.cert", "--sev-mnonce", "00"],
    );
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn sev_session_writes_sevctl_files_reproducibly_and_never_clobbers() {
    let p = platform();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("pdh.cert"), p.pdh.as_bytes()).unwrap();
    let o = softsev(
        d,
        &[
            "sev", "session", "--name", "g", "--seed", "x", "pdh.cert", "0x3",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let rd = |n: &str| std::fs::read(d.join(n)).unwrap();
    let b64 = |n: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(String::from_utf8(rd(n)).unwrap())
            .unwrap()
    };
    let godh = SevCert::read_from_bytes(&b64("g_godh.b64")).unwrap();
    let session = SevSession::read_from_bytes(&b64("g_session.b64")).unwrap();
    let (tek, tik) = open_session(&p.pdh_key, &godh, &session, 3).unwrap();
    assert_eq!(&tek[..], &rd("g_tek.bin")[..]);
    assert_eq!(&tik[..], &rd("g_tik.bin")[..]);
    let before = rd("g_session.b64");
    // Existing outputs: refused without --force, nothing changed, no temporary files.
    let o = softsev(d, &["sev", "session", "--name", "g", "pdh.cert", "3"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("--force"), "{}", text(&o));
    assert_eq!(rd("g_session.b64"), before);
    // The same seed gives the same files; --force replaces.
    let o = softsev(
        d,
        &[
            "sev", "session", "--name", "g", "--seed", "x", "--force", "pdh.cert", "3",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(rd("g_session.b64"), before);
    let o = softsev(
        d,
        &[
            "sev", "session", "--name", "g", "--seed", "y", "--force", "pdh.cert", "3",
        ],
    );
    assert!(o.status.success());
    assert_ne!(rd("g_session.b64"), before);
    // Into --dir, default name "vm"; a whole chain file works (first certificate).
    std::fs::create_dir(d.join("out")).unwrap();
    std::fs::write(d.join("chain.cert"), p.chain_bytes()).unwrap();
    let o = softsev(d, &["sev", "session", "--dir", "out", "chain.cert", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    for f in ["vm_tik.bin", "vm_tek.bin", "vm_godh.b64", "vm_session.b64"] {
        assert!(d.join("out").join(f).is_file(), "{f}");
    }
    let names: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.contains("softsev-tmp")),
        "{names:?}"
    );
    // A PEK is not a PDH.
    std::fs::write(d.join("pek.cert"), p.pek.as_bytes()).unwrap();
    let o = softsev(d, &["sev", "session", "--name", "h", "pek.cert", "1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("PDH"), "{}", text(&o));
    assert!(!d.join("h_tik.bin").exists());
    // Reserved policy bits: written, with a warning (the firmware will refuse them).
    let o = softsev(d, &["sev", "session", "--name", "r", "pdh.cert", "0x41"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("POLICY_FAILURE"),
        "{}",
        text(&o)
    );
    // API version bits (16–31) are not reserved: no warning.
    let o = softsev(d, &["sev", "session", "--name", "q", "pdh.cert", "0x10001"]);
    assert!(o.status.success());
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("warning"),
        "{}",
        text(&o)
    );
    // A bad policy is a usage error.
    let o = softsev(d, &["sev", "session", "pdh.cert", "0xZZ"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn sev_measurement_build_and_check_sevctl_vector() {
    let Some(fx) = fixture_dir("sev-legacy") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tik = fx.join("sevctl/measurement/tik1.bin");
    let common = [
        "--api-major",
        "1",
        "--api-minor",
        "40",
        "--build-id",
        "40",
        "--policy",
        "0x03",
        "--tik",
        s(&tik),
    ];
    let ld = [
        "--launch-digest",
        "xkvRAfyaSizgonxAjZIAkR8TmolUabBKQKb6KJCDDSM=",
    ];
    let want = "lswbxWxI9gckya16JQvdFtpYmNO4b+3inAPpqsgoBI7DE/q1EcIWsVBbGy6pkDxA";
    let mut a = vec!["sev", "measurement", "build"];
    a.extend(common);
    a.extend(ld);
    a.extend(["--nonce", "wxP6tRHCFrFQWxsuqZA8QA=="]);
    let o = softsev(d, &a);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), want);
    // --firmware (the trimmed OVMF; the launch digest is its SHA-256, VECTORS.md §3).
    let fw = fx.join("sevctl/OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9");
    let mut a = vec!["sev", "measurement", "build"];
    a.extend(common);
    a.extend(["--firmware", s(&fw), "--nonce", "wxP6tRHCFrFQWxsuqZA8QA=="]);
    let o = softsev(d, &a);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "oMDewIouJSpbpNRHj7Mk3p08H2dPZQdsZMU14qIymBnDE/q1EcIWsVBbGy6pkDxA"
    );
    // With the kernel hashes table.
    let m = fx.join("sevctl/measurement");
    let mut a = vec!["sev", "measurement", "build"];
    a.extend(common);
    let (k, i) = (m.join("vmlinuz-fake"), m.join("initrd-fake"));
    a.extend([
        "--firmware",
        s(&fw),
        "--kernel",
        s(&k),
        "--initrd",
        s(&i),
        "--cmdline",
        "foo bar baz fake kernel=cmdline",
        "--nonce",
        "wxP6tRHCFrFQWxsuqZA8QA==",
    ]);
    let o = softsev(d, &a);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "h3auYbWQnVW7EGLWN4Hf9SN0oEYMPU2sK4bLnefWPwvDE/q1EcIWsVBbGy6pkDxA"
    );
    // --outfile, then check it (base64 or file), and a mismatch.
    let mut a = vec!["sev", "measurement", "build"];
    a.extend(common);
    a.extend(ld);
    a.extend([
        "--nonce",
        "wxP6tRHCFrFQWxsuqZA8QA==",
        "--outfile",
        "meas.bin",
    ]);
    assert!(softsev(d, &a).status.success());
    assert_eq!(std::fs::read(d.join("meas.bin")).unwrap().len(), 48);
    assert_eq!(softsev(d, &a).status.code(), Some(1), "no --force");
    for blob in ["meas.bin", want] {
        let mut a = vec!["sev", "measurement", "check"];
        a.extend(common);
        a.extend(ld);
        a.extend(["--launch-measure-blob", blob]);
        let o = softsev(d, &a);
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("OK: measurement matches"));
    }
    let mut a = vec![
        "sev",
        "measurement",
        "check",
        "--api-major",
        "1",
        "--api-minor",
        "40",
        "--build-id",
        "41",
        "--policy",
        "3",
        "--tik",
        s(&tik),
    ];
    a.extend(ld);
    a.extend(["--launch-measure-blob", want]);
    let o = softsev(d, &a);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("FAILED"));
    // SEV-ES policy without VMSAs: a clear error.
    let mut a = vec![
        "sev",
        "measurement",
        "build",
        "--api-major",
        "1",
        "--api-minor",
        "49",
        "--build-id",
        "6",
        "--policy",
        "5",
        "--tik",
        s(&tik),
    ];
    a.extend(["--firmware", s(&fw), "--nonce", "wxP6tRHCFrFQWxsuqZA8QA=="]);
    let o = softsev(d, &a);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("SEV-ES"), "{}", text(&o));
}

#[test]
fn sev_secret_build_and_open_sevctl_vector() {
    let Some(fx) = fixture_dir("sev-legacy") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sd = fx.join("sevctl/secret");
    let (tik, tek, s1) = (
        sd.join("tik1.bin"),
        sd.join("tek1.bin"),
        sd.join("secret1.txt"),
    );
    let blob = "TLeA7607lZQntLjRY1/i+sbtdSZ+75zxpz4Px9hzpBLwItF5Q2o4prA++3ZZv9ZS";
    let secret = format!("736869e5-84f0-4973-92ec-06879ce3da0b:{}", s(&s1));
    let keys = [
        "--tik",
        s(&tik),
        "--tek",
        s(&tek),
        "--launch-measure-blob",
        blob,
    ];
    let mut a = vec!["sev", "secret", "build"];
    a.extend(keys);
    a.extend([
        "--iv",
        "rFR07U3TLH2YnsUj2SVZ7A==",
        "--secret",
        &secret,
        "hdr.bin",
        "payload.bin",
    ]);
    let o = softsev(d, &a);
    assert!(o.status.success(), "{}", text(&o));
    let enc = |n: &str| {
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(d.join(n)).unwrap())
    };
    assert_eq!(
        enc("hdr.bin"),
        "AAAAAKxUdO1N0yx9mJ7FI9klWey8FSzeYQ4X8K71VzNKLU/KQsIsQxLjtbhaPUewqshX5Q=="
    );
    assert_eq!(
        enc("payload.bin"),
        "0U3e5PcXv0UW+H4tSBFKOdCYfKE1+j38Bc2fuO16mYiyI+sWx7INfn+lgYj56GL12yyinDa+lVfCCwD/2w5cPA=="
    );
    assert_eq!(softsev(d, &a).status.code(), Some(1), "no --force");
    let mut o_args = vec!["sev", "secret", "open"];
    o_args.extend(keys);
    o_args.extend(["hdr.bin", "payload.bin", "--json"]);
    let o = softsev(d, &o_args);
    assert!(o.status.success(), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        j["secrets"][0]["guid"],
        "736869e5-84f0-4973-92ec-06879ce3da0b"
    );
    assert_eq!(j["secrets"][0]["len"], 18);
    // A flipped payload byte: BAD_MEASUREMENT, exit 1.
    let mut p = std::fs::read(d.join("payload.bin")).unwrap();
    p[0] ^= 1;
    std::fs::write(d.join("payload.bin"), p).unwrap();
    let o = softsev(d, &o_args);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("BAD_MEASUREMENT"), "{}", text(&o));
    // Bad GUID: an error naming it, no outputs.
    let mut a = vec!["sev", "secret", "build"];
    a.extend(keys);
    let bad = format!("not-a-guid:{}", s(&s1));
    a.extend(["--secret", &bad, "h2.bin", "p2.bin"]);
    let o = softsev(d, &a);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("not-a-guid"), "{}", text(&o));
    assert!(!d.join("h2.bin").exists() && !d.join("p2.bin").exists());
}
