//! `softsev run` end to end: the default guest launched, booted and attested; outputs
//! in snpguest's layout; byte-identical outputs for the same seed; the measurement in
//! the report equals `softsev measure` (and sev-snp-measure, when installed) on the
//! written inputs; snpguest (when installed) accepts the report and chain; the derived
//! key follows the measurement; bad configuration fails before any launch step.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn softsev(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_softsev"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run softsev")
}

use softsev_testkit::tool;

fn summary(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("summary.json")).expect("summary.json");
    serde_json::from_str(&text).expect("summary is JSON")
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "softsev failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn default_run_writes_a_verifiable_report_and_its_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let o = softsev(&["run", "--seed", "t1", "--json"], tmp.path());
    ok(&o);
    let dir = tmp.path().join("softsev-run-1");
    for f in [
        "report.bin",
        "certs/ark.pem",
        "certs/ask.pem",
        "certs/vcek.pem",
        "summary.json",
        "firmware.fd",
        "vmlinuz",
        "initrd.img",
        "cmdline.txt",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let s = summary(&dir);
    let printed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(printed["measurement"], s["measurement"]);
    assert_eq!(s["measurement"], s["expected_measurement"]);
    assert_eq!(s["report_verified"], true);
    assert_eq!(s["kernel_hashes_verified"], true);
    assert_eq!(s["vcpus"], 4);
    assert_eq!(s["aps_started"], 3);
    assert_eq!(s["memory_bytes"], 4u64 << 30);
    // All RAM validated (the launch image, pre-validated, counts too).
    assert!(s["validated_bytes"].as_u64().unwrap() >= 4u64 << 30);
    let report = std::fs::read(dir.join("report.bin")).unwrap();
    assert_eq!(report.len(), 0x4A0);
    // MEASUREMENT at 0x90; REPORT_DATA at 0x50.
    assert_eq!(
        hex::encode(&report[0x90..0xC0]),
        s["measurement"].as_str().unwrap()
    );
    assert_eq!(
        hex::encode(&report[0x50..0x90]),
        s["report_data"].as_str().unwrap()
    );

    // `softsev measure` on the written inputs gives the same digest.
    let d = dir.to_string_lossy().to_string();
    let m = softsev(
        &[
            "measure",
            "--mode",
            "snp",
            "--vcpus",
            "4",
            "--vcpu-type",
            "EPYC-Milan",
            "--ovmf",
            &format!("{d}/firmware.fd"),
            "--kernel",
            &format!("{d}/vmlinuz"),
            "--initrd",
            &format!("{d}/initrd.img"),
            "--append",
            &std::fs::read_to_string(dir.join("cmdline.txt")).unwrap(),
        ],
        tmp.path(),
    );
    ok(&m);
    assert_eq!(
        String::from_utf8_lossy(&m.stdout).trim(),
        s["measurement"].as_str().unwrap()
    );

    // The report verifies with `softsev verify` and the chip's root as custom root.
    let v = softsev(
        &[
            "verify",
            &format!("{d}/report.bin"),
            "--certs",
            &format!("{d}/certs"),
            "--root",
            &format!("{d}/certs"),
        ],
        tmp.path(),
    );
    ok(&v);
    // ...and not against AMD's genuine roots.
    let v = softsev(
        &[
            "verify",
            &format!("{d}/report.bin"),
            "--certs",
            &format!("{d}/certs"),
        ],
        tmp.path(),
    );
    assert!(!v.status.success());

    if let Some(ssm) = tool("sev-snp-measure") {
        let o = Command::new(ssm)
            .args([
                "--mode",
                "snp",
                "--vcpus",
                "4",
                "--vcpu-type",
                "EPYC-Milan",
                "--ovmf",
                &format!("{d}/firmware.fd"),
                "--kernel",
                &format!("{d}/vmlinuz"),
                "--initrd",
                &format!("{d}/initrd.img"),
                "--append",
                &std::fs::read_to_string(dir.join("cmdline.txt")).unwrap(),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            s["measurement"].as_str().unwrap()
        );
    }
    if let Some(sg) = tool("snpguest") {
        let o = Command::new(&sg)
            .args(["verify", "certs", &format!("{d}/certs")])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let o = Command::new(&sg)
            .args([
                "verify",
                "attestation",
                &format!("{d}/certs"),
                &format!("{d}/report.bin"),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        // A flipped bit in the report fails.
        let mut bad = report.clone();
        bad[0x90] ^= 1;
        std::fs::write(dir.join("bad.bin"), &bad).unwrap();
        let o = Command::new(&sg)
            .args([
                "verify",
                "attestation",
                &format!("{d}/certs"),
                &format!("{d}/bad.bin"),
            ])
            .output()
            .unwrap();
        assert!(!o.status.success());
    }
}

#[test]
fn same_seed_same_bytes_and_the_key_follows_the_measurement() {
    let tmp = tempfile::tempdir().unwrap();
    let kernel = tmp.path().join("a/vmlinuz").to_string_lossy().to_string();
    let run = |out: &str, append: Option<&str>| {
        let mut args = vec!["run", "--seed", "same", "--out", out, "--json"];
        let qemu;
        if let Some(a) = append {
            qemu = [
                "--",
                "-machine",
                "q35,confidential-guest-support=sev0",
                "-object",
                "sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,kernel-hashes=on",
                "-smp",
                "2",
                "-m",
                "1G",
                "-cpu",
                "EPYC-Milan",
                "-kernel",
                kernel.as_str(),
                "-append",
                a,
            ];
            args.extend(qemu);
        }
        let o = softsev(&args, tmp.path());
        ok(&o);
        let dir = tmp.path().join(out);
        (
            summary(&dir),
            std::fs::read(dir.join("report.bin")).unwrap(),
            dir,
        )
    };
    let (a, ra, da) = run("a", None);
    let (b, rb, db) = run("b", None);
    assert_eq!(ra, rb, "same seed, same report bytes");
    for f in [
        "certs/ark.pem",
        "certs/ask.pem",
        "certs/vcek.pem",
        "firmware.fd",
        "vmlinuz",
    ] {
        assert_eq!(
            std::fs::read(da.join(f)).unwrap(),
            std::fs::read(db.join(f)).unwrap(),
            "{f}"
        );
    }
    assert_eq!(a["derived_key_sha256"], b["derived_key_sha256"]);
    let (c, _, _) = run("c", Some("console=ttyS0 one"));
    let (d, _, _) = run("d", Some("console=ttyS0 two"));
    let (e, _, _) = run("e", Some("console=ttyS0 one"));
    assert_ne!(c["measurement"], d["measurement"]);
    assert_ne!(c["derived_key_sha256"], d["derived_key_sha256"]);
    assert_eq!(c["measurement"], e["measurement"]);
    assert_eq!(c["derived_key_sha256"], e["derived_key_sha256"]);
}

#[test]
fn bad_configuration_fails_before_launch() {
    let tmp = tempfile::tempdir().unwrap();
    let machine = ["-machine", "q35,confidential-guest-support=sev0"];
    let good = "sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "-object",
                "sev-snp-guest,id=sev0,cbitpos=47,reduced-phys-bits=1",
            ],
            "cbitpos",
        ),
        (
            vec![
                "-object",
                "sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,frobnicate=1",
            ],
            "frobnicate",
        ),
        (vec!["-object", good, "-smp", "8,maxcpus=4"], "maxcpus"),
        (vec!["-object", good, "-cpu", "Pentium"], "Pentium"),
        (
            vec!["-object", good, "-bios", "/nonexistent/OVMF.fd"],
            "OVMF.fd",
        ),
        (vec![], "sev0"),
    ];
    for (args, needle) in cases {
        let mut a = vec!["run", "--out", "never", "--"];
        a.extend(machine);
        a.extend(args.iter().copied());
        let o = softsev(&a, tmp.path());
        assert!(!o.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("softsev: error:"), "{err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(
            !tmp.path().join("never").exists(),
            "{args:?} created outputs"
        );
    }
}

use softsev_testkit::fixtures;

/// The issue's QEMU command lines, unchanged apart from file paths: with ID block, ID
/// auth, author key, host data, kernel hashes and a certificate file (on the
/// sev-snp-measure AmdSev OVMF, which has a kernel-hashes area), and without them (on
/// Debian's OVMF). The report carries what the command line put in.
#[test]
fn the_issue_command_lines_run_unchanged() {
    use base64::Engine as _;
    use softsev_crypto::ecdsa::P384SigningKey;
    use softsev_measure::id_block::{IdBlockParams, SignMode, sign_id_auth};
    let Some(f) = fixtures() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let p = |x: PathBuf| x.to_string_lossy().to_string();
    let ovmf = p(f.join("measurement/sev-snp-measure/ovmf_AmdSev_suffix.bin"));
    let kernel = p(f.join("measure-inputs/fake-kernel.bin"));
    let initrd = p(f.join("measure-inputs/fake-initrd.bin"));
    let cmdline = std::fs::read_to_string(f.join("measure-inputs/cmdline.txt")).unwrap();
    // A first run of the same chip (same seed) gives the certificate file.
    ok(&softsev(
        &["run", "--seed", "issue", "--out", "first"],
        tmp.path(),
    ));
    let certs = p(tmp.path().join("first/certs.bin"));
    let host_data = [0x44u8; 32];
    let base = |obj: String| -> Vec<String> {
        [
            "-machine",
            "q35,confidential-guest-support=sev0,memory-backend=ram1",
            "-object",
            "memory-backend-memfd,id=ram1,size=4G,share=true,reserve=false",
            "-object",
            &obj,
            "-smp",
            "32,maxcpus=255",
            "-cpu",
            "EPYC-Milan-v2",
            "-bios",
            &ovmf,
            "-kernel",
            &kernel,
            "-initrd",
            &initrd,
            "-append",
            cmdline.trim_end_matches('\n'),
        ]
        .map(String::from)
        .to_vec()
    };
    // The expected measurement, to sign the ID block for it.
    let plain = format!(
        "sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x30000,kernel-hashes=on,host-data={},certs-path={certs}",
        b64(&host_data)
    );
    let cfg = softsev_vmm::parse_args(base(plain)).unwrap();
    let ld = softsev_vmm::LaunchPlan::build(&cfg)
        .unwrap()
        .expected_digest;
    let idk = P384SigningKey::from_seed_material(&[7; 64]);
    let ak = P384SigningKey::from_seed_material(&[8; 64]);
    let block = IdBlockParams {
        ld,
        family_id: [0xF1; 16],
        image_id: [0x1D; 16],
        ..Default::default()
    }
    .to_id_block();
    let auth = sign_id_auth(&block, &idk, Some(&ak), SignMode::Deterministic).unwrap();
    use zerocopy::IntoBytes;
    let full = format!(
        "sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x30000,id-block={},id-auth={},author-key-enabled=on,host-data={},kernel-hashes=on,certs-path={certs}",
        b64(block.as_bytes()),
        b64(auth.as_bytes()),
        b64(&host_data)
    );
    let mut args: Vec<String> = ["run", "--seed", "issue", "--out", "full", "--json", "--"]
        .map(String::from)
        .to_vec();
    args.extend(base(full));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = softsev(&argv, tmp.path());
    ok(&o);
    let s = summary(&tmp.path().join("full"));
    assert_eq!(s["measurement"].as_str().unwrap(), hex::encode(ld));
    assert_eq!(s["kernel_hashes_verified"], true);
    let r = std::fs::read(tmp.path().join("full/report.bin")).unwrap();
    assert_eq!(&r[0x10..0x20], &[0xF1; 16], "FAMILY_ID");
    assert_eq!(&r[0x20..0x30], &[0x1D; 16], "IMAGE_ID");
    assert_eq!(&r[0xC0..0xE0], &host_data, "HOST_DATA");
    assert_eq!(
        &r[0xE0..0x110],
        &softsev_measure::id_block::key_digest(&softsev_measure::id_block::wire_public_key(
            idk.public()
        ))[..],
        "ID_KEY_DIGEST"
    );
    assert_eq!(
        &r[0x110..0x140],
        &softsev_measure::id_block::key_digest(&softsev_measure::id_block::wire_public_key(
            ak.public()
        ))[..],
        "AUTHOR_KEY_DIGEST"
    );
    // Without ID block, kernel hashes and certificates, on Debian's OVMF.
    let debian = p(f.join("ovmf/debian-trixie-2025.02-8+deb13u1/OVMF_CODE_4M.fd"));
    let mut args: Vec<String> = ["run", "--seed", "issue", "--out", "plain", "--json", "--"]
        .map(String::from)
        .to_vec();
    let mut b = base("sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x30000".into());
    if let Some(i) = b.iter().position(|a| a == &ovmf) {
        b[i] = debian.clone();
    }
    args.extend(b);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = softsev(&argv, tmp.path());
    ok(&o);
    let s = summary(&tmp.path().join("plain"));
    assert_eq!(s["measurement"], s["expected_measurement"]);
    assert_eq!(s["kernel_hashes_verified"], false);
    if let Some(ssm) = tool("sev-snp-measure") {
        let o = Command::new(ssm)
            .args([
                "--mode",
                "snp",
                "--vcpus",
                "32",
                "--vcpu-type",
                "EPYC-Milan-v2",
                "--ovmf",
                &debian,
            ])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            s["measurement"].as_str().unwrap()
        );
    }
}

#[test]
fn tampering_is_noticed_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let o = softsev(
        &[
            "run",
            "--seed",
            "t",
            "--tamper-gpa",
            "0x100000",
            "--out",
            "t",
        ],
        tmp.path(),
    );
    ok(&o);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("guest noticed"), "{out}");
    assert!(out.contains("#VC 0x404"), "{out}");
    let s = summary(&tmp.path().join("t"));
    assert_eq!(s["tamper"]["gpa"], 0x100000);
}
