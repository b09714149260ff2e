//! `softsev verify` and `softsev report show` through the binary, on the genuine AMD
//! fixtures: exit codes, the table and JSON verdicts, policy options, --at, --root,
//! certificate tables and CRLs.

use std::path::Path;
use std::process::{Command, Output};

fn softsev(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_softsev"))
        .args(args)
        .output()
        .unwrap()
}

use softsev_testkit::fixtures;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A snpguest-style directory for the go-sev-guest Milan set: ark.pem, ask.pem split
/// from the KDS bundle, vcek.der.
fn milan_dir(fx: &Path) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let bundle =
        std::fs::read_to_string(fx.join("snp/milan-go-sev-guest/milan_ask_ark.pem")).unwrap();
    let blocks: Vec<&str> = bundle
        .split_inclusive("-----END CERTIFICATE-----")
        .filter(|b| b.contains("BEGIN"))
        .collect();
    std::fs::write(d.path().join("ask.pem"), blocks[0].trim_start()).unwrap();
    std::fs::write(d.path().join("ark.pem"), blocks[1].trim_start()).unwrap();
    std::fs::copy(
        fx.join("snp/milan-go-sev-guest/vcek.der"),
        d.path().join("vcek.der"),
    )
    .unwrap();
    d
}

const AT: &str = "2026-01-01T00:00:00Z";

#[test]
fn verify_genuine_report_table_and_json() {
    let Some(fx) = fixtures() else { return };
    let dir = milan_dir(&fx);
    let report = fx.join("snp/milan-go-sev-guest/attestation.bin");
    let o = softsev(&["verify", s(&report), "--certs", s(dir.path()), "--at", AT]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("PASS  report.signature"), "{out}");
    assert!(out.contains("OK: "), "{out}");
    let o = softsev(&[
        "verify",
        s(&report),
        "--certs",
        s(dir.path()),
        "--at",
        AT,
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["passed"], true);
    assert_eq!(j["product"], "Milan");
    assert_eq!(j["signer"], "VCEK");
    assert!(j["checks"].as_array().unwrap().len() > 15);
}

/// A 64-byte CHIP_ID no report has.
const ZERO_CHIP_ID: &str = "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000";

#[test]
fn verify_failures_exit_nonzero_and_name_the_check() {
    let Some(fx) = fixtures() else { return };
    let dir = milan_dir(&fx);
    let report = fx.join("snp/milan-go-sev-guest/attestation.bin");
    let run = |extra: &[&str]| {
        let mut args = vec!["verify", s(&report), "--certs", s(dir.path()), "--json"];
        args.extend_from_slice(extra);
        let o = softsev(&args);
        let j: serde_json::Value =
            serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{extra:?}: {}", text(&o)));
        (o.status.success(), j)
    };
    let failed = |j: &serde_json::Value| -> Vec<String> {
        j["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["outcome"] == "fail")
            .map(|c| {
                format!(
                    "{}:{}",
                    c["id"].as_str().unwrap(),
                    c["fault"].as_str().unwrap()
                )
            })
            .collect()
    };
    // Policy failures (go-sev-guest's expectations for this report).
    let cases: &[(&[&str], &str)] = &[
        (&["--min-version", "1.50"], "policy.min_version:policy"),
        (&["--min-build", "90"], "policy.min_build:policy"),
        (
            &["--min-tcb", "0x4405000000000003"],
            "policy.min_tcb:policy",
        ),
        (&["--stepping", "12"], "policy.stepping:policy"),
        (&["--no-debug"], "policy.guest_policy:policy"),
        (&["--vmpl", "2"], "policy.vmpl:policy"),
        (
            &["--report-data", "0102030406"],
            "policy.report_data:policy",
        ),
        (&["--chip-id", ZERO_CHIP_ID], "policy.chip_id:policy"),
        (&["--product", "genoa"], "chain.ark_pinned:cryptography"),
        (
            &["--at", "2035-01-01T00:00:00Z"],
            "chain.validity:cryptography",
        ),
        (&["--require-crl"], "crl:cryptography"),
    ];
    for (extra, want) in cases {
        let mut args = if extra.contains(&"--at") {
            vec![]
        } else {
            vec!["--at", AT]
        };
        args.extend_from_slice(extra);
        let (ok, j) = run(&args);
        assert!(!ok, "{extra:?} passed");
        assert!(
            failed(&j).iter().any(|f| f == want),
            "{extra:?}: {:?}",
            failed(&j)
        );
    }
    // Passing policy options.
    let (ok, j) = run(&[
        "--at",
        AT,
        "--min-version",
        "1.49",
        "--min-tcb",
        "bl=2,tee=0,snp=5,ucode=68",
        "--min-launch-tcb",
        "4901323769462652930",
        "--stepping",
        "0",
        "--max-policy",
        "0xb0000",
        "--report-data",
        "0102030405",
        "--measurement",
        "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01",
        "--report-id",
        "8edc638e1857c555d21f6b11bda3c8b1b5a09dba4852b4c8ee7aa2f16f22cc0a",
        "--vmpl",
        "0",
        "--product",
        "milan",
        "--platform-info-required",
        "0x1",
    ]);
    assert!(ok, "{:?}", failed(&j));
    // Tampered report: the signature check fails.
    let bytes = std::fs::read(&report).unwrap();
    let mut b = bytes.clone();
    b[0x90] ^= 1;
    let t = tempfile::tempdir().unwrap();
    let bad = t.path().join("bad.bin");
    std::fs::write(&bad, &b).unwrap();
    let o = softsev(&["verify", s(&bad), "--certs", s(dir.path()), "--at", AT]);
    assert!(!o.status.success());
    assert!(text(&o).contains("FAIL  report.signature"), "{}", text(&o));
    // Several reports at once (verified in parallel): one line each.
    let good = t.path().join("good.bin");
    std::fs::write(&good, &bytes).unwrap();
    let o = softsev(&[
        "verify",
        s(&good),
        s(&good),
        s(&bad),
        "--certs",
        s(dir.path()),
        "--at",
        AT,
    ]);
    assert!(!o.status.success());
    let out = text(&o);
    assert!(out.contains("2 of 3 reports verified"), "{out}");
    assert!(out.contains("bad.bin: report.signature"), "{out}");
    let o = softsev(&[
        "verify",
        s(&good),
        s(&good),
        "--certs",
        s(dir.path()),
        "--at",
        AT,
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["reports"].as_array().unwrap().len(), 2);
    // Truncated.
    std::fs::write(&bad, &bytes[..793]).unwrap();
    let o = softsev(&["verify", s(&bad), "--certs", s(dir.path()), "--at", AT]);
    assert!(!o.status.success());
    assert!(text(&o).contains("FAIL  report.size"), "{}", text(&o));
}

#[test]
fn verify_with_crl_cert_table_and_custom_root() {
    let Some(fx) = fixtures() else { return };
    let dir = milan_dir(&fx);
    let report = fx.join("snp/milan-go-sev-guest/attestation.bin");
    let crl = fx.join("amd-roots/crl-cyntrisec/milan_crl.der");
    let o = softsev(&[
        "verify",
        s(&report),
        "--certs",
        s(dir.path()),
        "--at",
        AT,
        "--crl",
        s(&crl),
        "--require-crl",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("PASS  crl.revocation"));
    // Custom roots: the Milan ARK as the only root works; the Genoa one does not.
    let o = softsev(&[
        "verify",
        s(&report),
        "--certs",
        s(dir.path()),
        "--root",
        s(dir.path()),
        "--at",
        AT,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let genoa_root = tempfile::tempdir().unwrap();
    std::fs::copy(
        fx.join("amd-roots/virtee-sev-snp-builtin/genoa/ark.pem"),
        genoa_root.path().join("ark.pem"),
    )
    .unwrap();
    let o = softsev(&[
        "verify",
        s(&report),
        "--certs",
        s(dir.path()),
        "--root",
        s(genoa_root.path()),
        "--at",
        AT,
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("FAIL  chain.root"), "{}", text(&o));
    // The Turin report with only its certificate bundle and VCEK files.
    let turin = fx.join("snp/turin-v5-yaxi");
    let o = softsev(&[
        "verify",
        s(&turin.join("report.bin")),
        "--cert",
        s(&turin.join("vcek-chain-turin.pem")),
        "--at",
        AT,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    // Report followed by a GHCB certificate table in one file.
    let mut set = softsev_attest::CertSet::default();
    set.add_file(&turin.join("vcek-chain-turin.pem")).unwrap();
    let mut blob = std::fs::read(turin.join("report.bin")).unwrap();
    blob.extend_from_slice(&set.to_table());
    let t = tempfile::tempdir().unwrap();
    let ext = t.path().join("ext.bin");
    std::fs::write(&ext, &blob).unwrap();
    let o = softsev(&["verify", s(&ext), "--cert-table", "-", "--at", AT]);
    assert!(o.status.success(), "{}", text(&o));
    // Missing VCEK found in an offline KDS cache by URL.
    let cache = tempfile::tempdir().unwrap();
    let r = softsev_abi::report::AttestationReport::parse(
        &std::fs::read(turin.join("report.bin")).unwrap(),
    )
    .unwrap();
    let tcb = r.tcbs(softsev_abi::Product::Turin).unwrap().reported;
    let url = softsev_attest::kds::vcek_url(softsev_abi::Product::Turin, &r.chip_id, &tcb);
    softsev_attest::kds::CacheDir::new(cache.path())
        .store(&url, &std::fs::read(turin.join("vcek.der")).unwrap())
        .unwrap();
    let o = softsev(&[
        "verify",
        s(&turin.join("report.bin")),
        "--kds-cache",
        s(cache.path()),
        "--at",
        AT,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = softsev(&["verify", s(&turin.join("report.bin")), "--at", AT]);
    assert!(!o.status.success());
    assert!(text(&o).contains("FAIL  chain.vek_present"), "{}", text(&o));
}

#[test]
fn report_show_prints_every_field() {
    let Some(fx) = fixtures() else { return };
    let r = fx.join("snp/turin-v5-yaxi/report.bin");
    let o = softsev(&["report", "show", s(&r)]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    for f in [
        "version",
        "guest_svn",
        "policy.raw",
        "family_id",
        "image_id",
        "vmpl",
        "signature_algo",
        "current_tcb.fmc",
        "platform_info.flags",
        "key_info.signing_key",
        "report_data",
        "measurement",
        "host_data",
        "id_key_digest",
        "author_key_digest",
        "report_id",
        "report_id_ma",
        "reported_tcb.snp",
        "cpuid_fam_id",
        "chip_id",
        "committed_tcb",
        "current_version",
        "committed_version",
        "launch_tcb",
        "launch_mit_vector",
        "current_mit_vector",
        "signature.r",
    ] {
        assert!(out.contains(f), "{f} missing:\n{out}");
    }
    assert!(out.contains("1.55.61"));
    let o = softsev(&["report", "show", "--json", s(&r)]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["product"], "Turin");
    assert_eq!(j["reported_tcb"]["microcode"], 71);
    assert_eq!(j["chip_id"].as_str().unwrap()[..16], *"3b42092f69c656d3");
    // A v2 report decodes with the Milan/Genoa layout; --product labels it.
    let v2 = fx.join("snp/genoa-v2-yaxi-noverify/report.bin");
    let o = softsev(&["report", "show", "--json", "--product", "genoa", s(&v2)]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["product"], "Genoa");
    assert_eq!(j["current_tcb"]["snp"], 14);
    // Unknown version and short files are errors.
    let t = tempfile::tempdir().unwrap();
    let mut b = std::fs::read(&r).unwrap();
    b[0] = 4;
    std::fs::write(t.path().join("v4.bin"), &b).unwrap();
    let o = softsev(&["report", "show", s(&t.path().join("v4.bin"))]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("version 4 is not supported"),
        "{}",
        text(&o)
    );
    std::fs::write(t.path().join("short.bin"), &b[..100]).unwrap();
    let o = softsev(&["report", "show", s(&t.path().join("short.bin"))]);
    assert!(!o.status.success());
    assert!(text(&o).contains("100 bytes"), "{}", text(&o));
}

/// Regression (probe P6): a corrupt CRL (or VCEK) in `--kds-cache` is an error naming
/// the file, as the same bytes given with `--crl` are, never silently treated as absent.
#[test]
fn regression_p6_corrupt_kds_cache_entries_are_errors() {
    let Some(fx) = fixtures() else { return };
    let turin = fx.join("snp/turin-v5-yaxi");
    let report = turin.join("report.bin");
    let r =
        softsev_abi::report::AttestationReport::parse(&std::fs::read(&report).unwrap()).unwrap();
    let tcb = r.tcbs(softsev_abi::Product::Turin).unwrap().reported;
    let vcek_url = softsev_attest::kds::vcek_url(softsev_abi::Product::Turin, &r.chip_id, &tcb);
    let crl_url = softsev_attest::kds::crl_url(
        softsev_abi::Product::Turin,
        softsev_abi::report::SigningKey::VCEK,
    );
    let cache = tempfile::tempdir().unwrap();
    let kc = softsev_attest::kds::CacheDir::new(cache.path());
    kc.store(&vcek_url, &std::fs::read(turin.join("vcek.der")).unwrap())
        .unwrap();
    kc.store(&crl_url, b"junk\n").unwrap();
    let args = [
        "verify",
        s(&report),
        "--kds-cache",
        s(cache.path()),
        "--at",
        AT,
    ];
    let o = softsev(&args);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("KDS cache"), "{}", text(&o));
    assert!(text(&o).contains("crl"), "{}", text(&o));
    // A corrupt VCEK likewise.
    std::fs::remove_file(kc.path(&crl_url)).unwrap();
    kc.store(&vcek_url, b"not a certificate").unwrap();
    let o = softsev(&args);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("KDS cache"), "{}", text(&o));
}

/// Regression (probe P7, P8): device and FIFO inputs are refused at once; impossible
/// `--at` dates are refused instead of being normalized into another day.
#[test]
fn regression_p7_p8_bounded_inputs_and_strict_dates() {
    let o = softsev(&["report", "show", "/dev/zero"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("character device"), "{}", text(&o));
    let o = softsev(&["verify", "/dev/zero"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("character device"), "{}", text(&o));
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let o = softsev(&["report", "show", s(&fifo)]);
    assert!(text(&o).contains("a FIFO"), "{}", text(&o));
    let Some(fx) = fixtures() else { return };
    let r = fx.join("snp/milan-virtee-sev/report_milan.bin");
    let certs = fx.join("snp/milan-virtee-sev");
    for at in [
        "2026-02-30T00:00:00Z",
        "2027-02-29T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2026-01-01T12:00:00+99:99",
        "2026-01-01T12:00:00+24:00",
        "2026-1-1T1:2:3Z",
        "2026-01-01T00:00:60Z",
    ] {
        let o = softsev(&["verify", s(&r), "--certs", s(&certs), "--at", at]);
        assert!(!o.status.success(), "--at {at} accepted: {}", text(&o));
        assert!(text(&o).contains(at), "{at}: {}", text(&o));
    }
}

/// Probe P12: hex options take one `0x` prefix and no empty value; a --chip-id must be
/// a CHIP_ID's length; a --min-tcb must give every component once.
#[test]
fn regression_p12_strict_hex_chip_id_and_tcb_options() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("r.bin");
    std::fs::write(&r, [0u8; 0x4A0]).unwrap();
    for (args, want) in [
        (&["--report-data", "0x0x00"][..], "'0x0x00' is not hex"),
        (&["--report-data", ""][..], "is empty"),
        (&["--report-data", "0x"][..], "'0x' is empty"),
        (&["--measurement", ""][..], "is empty"),
        (
            &["--chip-id", "00"][..],
            "--chip-id '00' is 1 bytes: a CHIP_ID is 64 bytes",
        ),
        (&["--chip-id", "0x0x00"][..], "not hex"),
        (&["--min-tcb", "bl=3,tee=0,snp=20"][..], "lacks ucode"),
        (
            &["--min-tcb", "bl=3,bl=4,tee=0,snp=20,ucode=1"][..],
            "bl given twice",
        ),
    ] {
        let mut a = vec!["verify", s(&r)];
        a.extend_from_slice(args);
        let o = softsev(&a);
        assert!(!o.status.success(), "{args:?} accepted");
        assert!(text(&o).contains(want), "{args:?}: {}", text(&o));
        assert!(!text(&o).contains("panicked"), "{args:?}: {}", text(&o));
    }
}

/// Probe P13: `report show --json` keeps the reserved-bytes warning the text form
/// prints (as `warnings`, and on stderr in both forms).
#[test]
fn regression_p13_report_show_json_keeps_the_reserved_warning() {
    let Some(fx) = fixtures() else { return };
    let mut r = std::fs::read(fx.join("snp/milan-virtee-sev/report_milan.bin")).unwrap();
    let d = tempfile::tempdir().unwrap();
    let clean = d.path().join("clean.bin");
    std::fs::write(&clean, &r).unwrap();
    r[0x48] |= 0x20; // KEY_INFO bit 5: reserved, must be zero
    let dirty = d.path().join("dirty.bin");
    std::fs::write(&dirty, &r).unwrap();
    let json = |p: &Path| {
        let o = softsev(&["report", "show", "--json", s(p)]);
        assert!(o.status.success(), "{}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (v, String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let (v, err) = json(&clean);
    assert_eq!(v["warnings"], serde_json::json!([]), "{v}");
    assert!(!err.contains("warning"), "{err}");
    let (v, err) = json(&dirty);
    let w = v["warnings"].as_array().unwrap();
    assert_eq!(w.len(), 1, "{v}");
    assert!(w[0].as_str().unwrap().contains("KEY_INFO"), "{v}");
    assert!(
        err.contains("warning:") && err.contains("KEY_INFO"),
        "{err}"
    );
    let o = softsev(&["report", "show", s(&dirty)]);
    assert!(text(&o).contains("warning:"), "{}", text(&o));
}
