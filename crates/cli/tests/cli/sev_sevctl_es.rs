//! `sevctl measurement build` against the LAUNCH_MEASURE of real `softsev run` launches
//! of SEV-ES guests, in both KVM flavours (sev-legacy.md §8.1, §9.4): sevctl computes
//! the launch digest itself from the OVMF image and the VMSAs, and the HMAC with the
//! TIK (all zero: no owner session) and our mnonce, so its base64 must equal our
//! 48-byte blob. The VMSAs come from independent tools: `sevctl vmsa build` models
//! KVM_SEV_ES_INIT (QEMU's default, `legacy-vm-type=on|auto`), sev-snp-measure
//! `--dump-vmsa` models KVM_SEV_INIT2 (`legacy-vm-type=off`). The policy is 0x4 (ES
//! only): sevctl MACs a mangled policy when bits 6–31 are set (§9.3).

use base64::Engine;
use std::path::{Path, PathBuf};
use std::process::Command;

const OVMF: &str = "sev-legacy/sevctl/OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9";

fn tool_or_skip(name: &str) -> Option<PathBuf> {
    let t = softsev_testkit::on_path(name);
    if t.is_none() {
        if std::env::var("SOFTSEV_REQUIRE_INTEROP").as_deref() == Ok("1") {
            panic!("{name} not installed and SOFTSEV_REQUIRE_INTEROP=1");
        }
        println!("SKIP: {name} not installed (run scripts/install-interop-tools.sh)");
    }
    t
}

fn ok(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// `softsev run` of a 2-vCPU EPYC-Milan SEV-ES guest; returns (summary, blob).
fn launch(dir: &Path, ovmf: &Path, legacy_vm_type: &str) -> (serde_json::Value, Vec<u8>) {
    let out = dir.join(format!("run-{legacy_vm_type}"));
    let obj = format!(
        "sev-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x4,legacy-vm-type={legacy_vm_type}"
    );
    ok(Command::new(env!("CARGO_BIN_EXE_softsev"))
        .args(["run", "--seed", "sevctl-es", "--out"])
        .arg(&out)
        .args([
            "--",
            "-machine",
            "q35,confidential-guest-support=sev0",
            "-object",
        ])
        .arg(obj)
        .args(["-smp", "2", "-m", "512M", "-cpu", "EPYC-Milan", "-bios"])
        .arg(ovmf));
    let s = serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    (s, std::fs::read(out.join("measurement.bin")).unwrap())
}

/// sevctl's measurement over the image and the two VMSA files, with a zero TIK and
/// our mnonce, as base64.
fn sevctl_measure(
    sevctl: &Path,
    dir: &Path,
    s: &serde_json::Value,
    blob: &[u8],
    ovmf: &Path,
    v0: &Path,
    v1: &Path,
) -> String {
    let tik = dir.join("zero_tik.bin");
    std::fs::write(&tik, [0u8; 16]).unwrap();
    let blob_file = dir.join("blob.bin");
    std::fs::write(&blob_file, blob).unwrap();
    let out = ok(Command::new(sevctl)
        .current_dir(dir)
        .args(["measurement", "build"])
        .args(["--api-major", &s["api_major"].to_string()])
        .args(["--api-minor", &s["api_minor"].to_string()])
        .args(["--build-id", &s["build_id"].to_string()])
        .args(["--policy", "4", "--tik"])
        .arg(&tik)
        .arg("--launch-measure-blob")
        .arg(&blob_file)
        .arg("--firmware")
        .arg(ovmf)
        .args(["--num-cpus", "2", "--vmsa-cpu0"])
        .arg(v0)
        .arg("--vmsa-cpu1")
        .arg(v1));
    out.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn sevctl_measurement_build_equals_our_launch_measure_for_es_init_and_init2() {
    let Some(fx) = softsev_testkit::fixtures() else {
        return;
    };
    let (Some(sevctl), Some(ssm)) = (tool_or_skip("sevctl"), tool_or_skip("sev-snp-measure"))
    else {
        return;
    };
    let ovmf = fx.join(OVMF);
    let dir = tempfile::tempdir().unwrap();
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);

    // KVM_SEV_ES_INIT (legacy-vm-type=on): VMSAs from `sevctl vmsa build`.
    let es = dir.path().join("es");
    std::fs::create_dir_all(&es).unwrap();
    for cpu in ["0", "1"] {
        ok(Command::new(&sevctl)
            .current_dir(&es)
            .args(["vmsa", "build"])
            .arg(format!("vmsa{cpu}.bin"))
            .args([
                "--userspace",
                "qemu",
                "--family",
                "25",
                "--model",
                "1",
                "--stepping",
                "1",
            ])
            .arg("--firmware")
            .arg(&ovmf)
            .args(["--cpu", cpu]));
    }
    let (s, blob) = launch(dir.path(), &ovmf, "on");
    assert_eq!(s["kvm_init"], "KVM_SEV_ES_INIT", "{s}");
    let theirs = sevctl_measure(
        &sevctl,
        &es,
        &s,
        &blob,
        &ovmf,
        &es.join("vmsa0.bin"),
        &es.join("vmsa1.bin"),
    );
    assert_eq!(
        theirs,
        b64(&blob),
        "ES_INIT: sevctl's measurement differs from ours"
    );

    // KVM_SEV_INIT2 (legacy-vm-type=off): VMSAs from sev-snp-measure --dump-vmsa.
    let i2 = dir.path().join("init2");
    std::fs::create_dir_all(&i2).unwrap();
    ok(Command::new(&ssm)
        .current_dir(&i2)
        .args([
            "--mode",
            "seves",
            "--vcpus",
            "2",
            "--vcpu-family",
            "25",
            "--vcpu-model",
            "1",
        ])
        .args(["--vcpu-stepping", "1", "--dump-vmsa", "--ovmf"])
        .arg(&ovmf));
    let (s2, blob2) = launch(dir.path(), &ovmf, "off");
    assert_eq!(s2["kvm_init"], "KVM_SEV_INIT2", "{s2}");
    let theirs2 = sevctl_measure(
        &sevctl,
        &i2,
        &s2,
        &blob2,
        &ovmf,
        &i2.join("vmsa0.bin"),
        &i2.join("vmsa1.bin"),
    );
    assert_eq!(
        theirs2,
        b64(&blob2),
        "INIT2: sevctl's measurement differs from ours"
    );
    // The two flavours measure differently (MXCSR / x87 FCW in every VMSA).
    assert_ne!(s["expected_launch_digest"], s2["expected_launch_digest"]);
}

/// The certificates `softsev run` writes for the guest owner verify: with `softsev
/// verify` always, with `sevctl verify --sev … --ca …` when sevctl is installed; a
/// flipped byte in the PEK fails both.
#[test]
fn run_certificates_verify_with_softsev_and_sevctl() {
    let Some(fx) = softsev_testkit::fixtures() else {
        return;
    };
    let ovmf = fx.join(OVMF);
    let dir = tempfile::tempdir().unwrap();
    let _ = launch(dir.path(), &ovmf, "on");
    let certs = dir.path().join("run-on/certs");
    let chain = certs.join("sev-chain.cert");
    let ca = certs.join("ask-ark.cert");
    let softsev_verify = |chain: &Path| {
        Command::new(env!("CARGO_BIN_EXE_softsev"))
            .args(["verify", "--sev-chain"])
            .arg(chain)
            .arg("--sev-ca")
            .arg(&ca)
            .output()
            .unwrap()
    };
    let o = softsev_verify(&chain);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let mut bad = std::fs::read(&chain).unwrap();
    bad[0x824 + 0x20] ^= 1; // inside the PEK's public key
    let bad_chain = dir.path().join("bad-chain.cert");
    std::fs::write(&bad_chain, &bad).unwrap();
    assert!(!softsev_verify(&bad_chain).status.success());
    let Some(sevctl) = tool_or_skip("sevctl") else {
        return;
    };
    let sevctl_verify = |chain: &Path| {
        Command::new(&sevctl)
            .args(["verify", "--sev"])
            .arg(chain)
            .arg("--ca")
            .arg(&ca)
            .output()
            .unwrap()
    };
    let o = sevctl_verify(&chain);
    assert!(
        o.status.success(),
        "sevctl verify: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!sevctl_verify(&bad_chain).status.success());
}
