//! `softsev run --snapshot FILE` / `softsev run … -incoming file:FILE` and `softsev
//! migrate` (docs/migration.md): a booted SEV / SEV-ES guest with its workload is
//! snapshotted sealed to its own chip and restored by a later process with the same
//! --seed (twice: identical guests), or sealed to another chip's certificates
//! (--snapshot-target) and restored there; an existing FILE is never overwritten; a
//! NOSEND guest cannot be snapshotted; restoring on another chip fails with the
//! firmware's status and says why. `softsev migrate` moves a running guest live
//! between two chips (SEV, SEV-ES, across products without the policy's SEV bit) and
//! reports rounds, bytes, downtime and the moved guest's own check.

use std::path::Path;
use std::process::{Command, Output};

const OVMF: &str = "sev-legacy/sevctl/OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9";

fn guest_args(ovmf: &Path, policy: &str) -> Vec<String> {
    format!(
        "-machine q35,confidential-guest-support=sev0 \
         -object sev-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy={policy} \
         -smp 2 -m 256M -cpu EPYC-Milan -bios {}",
        ovmf.display()
    )
    .split_whitespace()
    .map(str::to_string)
    .collect()
}

fn softsev(args: &[&str], qemu: &[String], extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_softsev"))
        .args(args)
        .arg("--")
        .args(qemu)
        .args(extra)
        .output()
        .unwrap()
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn snapshot_restores_on_the_same_chip_with_its_seed_twice_identically() {
    let Some(fx) = softsev_testkit::fixtures() else {
        return;
    };
    for policy in ["0x1", "0x5"] {
        let q = guest_args(&fx.join(OVMF), policy);
        let d = tempfile::tempdir().unwrap();
        let snap = d.path().join("guest.mig");
        let snap_s = snap.to_str().unwrap();
        let a = d.path().join("a");
        let o = softsev(
            &[
                "run",
                "--json",
                "--seed",
                "s1",
                "--out",
                a.to_str().unwrap(),
                "--snapshot",
                snap_s,
            ],
            &q,
            &[],
        );
        assert!(o.status.success(), "{}", err(&o));
        assert!(snap.exists() && !d.path().join("guest.mig.tmp").exists());
        let s = summary(&a);
        assert_eq!(
            s["snapshot"]["bytes"],
            std::fs::metadata(&snap).unwrap().len()
        );
        assert!(s["snapshot"]["pages"].as_u64().unwrap() > 0);
        assert_eq!(s["snapshot"]["workload_batches"], 4);
        let incoming = format!("file:{snap_s}");
        let mut checks = Vec::new();
        for n in ["b", "c"] {
            let out = d.path().join(n);
            let o = softsev(
                &[
                    "run",
                    "--json",
                    "--seed",
                    "s1",
                    "--out",
                    out.to_str().unwrap(),
                ],
                &q,
                &["-incoming", &incoming],
            );
            assert!(o.status.success(), "{}", err(&o));
            let r = summary(&out);
            assert_eq!(r["outcome"], "completed", "{r}");
            assert_eq!(r["run_state"], "running", "{r}");
            assert_eq!(r["guest_state"], 3);
            assert_eq!(r["move_check"]["pages_bad"], 0, "{r}");
            assert_eq!(r["move_check"]["registers_ok"], true, "{r}");
            assert_eq!(r["move_check"]["batches_before_move"], 4, "{r}");
            if policy == "0x5" {
                assert_eq!(r["move_check"]["vmsa_continued"], true, "{r}");
            }
            checks.push(r["move_check"].clone());
        }
        assert_eq!(checks[0], checks[1], "one snapshot, two identical guests");
        // Another chip (no seed: a random one) cannot open it, and says why.
        let o = softsev(
            &["run", "--out", d.path().join("x").to_str().unwrap()],
            &q,
            &["-incoming", &incoming],
        );
        assert!(!o.status.success());
        let e = err(&o);
        assert!(e.contains("RECEIVE_START") && e.contains("--seed"), "{e}");
        assert_eq!(
            summary(&d.path().join("x"))["guest_state"],
            serde_json::Value::Null
        );
        // Never overwritten.
        let o = softsev(
            &[
                "run",
                "--seed",
                "s1",
                "--out",
                d.path().join("y").to_str().unwrap(),
                "--snapshot",
                snap_s,
            ],
            &q,
            &[],
        );
        assert!(!o.status.success());
        assert!(err(&o).contains("never overwrites"), "{}", err(&o));
    }
}

#[test]
fn snapshot_for_another_chip_and_nosend_refused() {
    let Some(fx) = softsev_testkit::fixtures() else {
        return;
    };
    let q = guest_args(&fx.join(OVMF), "0x1");
    let d = tempfile::tempdir().unwrap();
    // Chip B's certificates, as a guest owner collects them (certs/ of a run on B).
    let b = d.path().join("b");
    let o = softsev(
        &["run", "--seed", "chip B", "--out", b.to_str().unwrap()],
        &q,
        &[],
    );
    assert!(o.status.success(), "{}", err(&o));
    let snap = d.path().join("for-b.mig");
    let o = softsev(
        &[
            "run",
            "--seed",
            "chip A",
            "--out",
            d.path().join("a").to_str().unwrap(),
            "--snapshot",
            snap.to_str().unwrap(),
            "--snapshot-target",
            b.join("certs").to_str().unwrap(),
        ],
        &q,
        &[],
    );
    assert!(o.status.success(), "{}", err(&o));
    let incoming = format!("file:{}", snap.display());
    let r = d.path().join("r");
    let o = softsev(
        &[
            "run",
            "--json",
            "--seed",
            "chip B",
            "--out",
            r.to_str().unwrap(),
        ],
        &q,
        &["-incoming", &incoming],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(summary(&r)["move_check"]["pages_bad"], 0);
    // Not on chip A, the one that wrote it.
    let o = softsev(
        &[
            "run",
            "--seed",
            "chip A",
            "--out",
            d.path().join("r2").to_str().unwrap(),
        ],
        &q,
        &["-incoming", &incoming],
    );
    assert!(!o.status.success());
    // NOSEND (policy bit 3).
    let q = guest_args(&fx.join(OVMF), "0x9");
    let snap = d.path().join("nosend.mig");
    let o = softsev(
        &[
            "run",
            "--seed",
            "n",
            "--out",
            d.path().join("n").to_str().unwrap(),
            "--snapshot",
            snap.to_str().unwrap(),
        ],
        &q,
        &[],
    );
    assert!(!o.status.success());
    let e = err(&o);
    assert!(
        e.contains("cannot be snapshotted") && e.contains("NOSEND"),
        "{e}"
    );
    assert!(!snap.exists() && !d.path().join("nosend.mig.tmp").exists());
    // The default run is an SNP guest: QEMU's blocker.
    let o = Command::new(env!("CARGO_BIN_EXE_softsev"))
        .args(["run", "--out"])
        .arg(d.path().join("snp"))
        .arg("--snapshot")
        .arg(d.path().join("snp.mig"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        err(&o).contains("SEV-SNP: Migration is not implemented"),
        "{}",
        err(&o)
    );
}

fn migrate(extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_softsev"))
        .args([
            "migrate",
            "--json",
            "--memory",
            "128M",
            "--workload-mem",
            "4M",
        ])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn migrate_moves_a_running_guest_between_chips() {
    for extra in [
        &[
            "--mode",
            "sev",
            "--max-bandwidth",
            "256M",
            "--downtime-limit",
            "2",
        ][..],
        &[
            "--mode",
            "sev-es",
            "--max-bandwidth",
            "256M",
            "--downtime-limit",
            "2",
        ][..],
        &["--target-product", "Genoa"][..],
    ] {
        let o = migrate(extra);
        assert!(o.status.success(), "{extra:?}: {}", err(&o));
        let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(s["move_check"]["pages_bad"], 0, "{s}");
        assert_eq!(s["move_check"]["registers_ok"], true, "{s}");
        assert!(s["bytes"].as_u64().unwrap() > 0);
        assert!(s["downtime_ms"].as_f64().unwrap() >= 0.0);
        assert!(s["pages_sent"].as_u64().unwrap() < s["total_pages"].as_u64().unwrap());
        if extra.contains(&"2") {
            assert!(s["rounds"].as_u64().unwrap() >= 2, "{s}");
        }
        if extra.contains(&"sev-es") {
            assert_eq!(s["mode"], "SEV-ES");
            assert_eq!(s["move_check"]["vmsa_continued"], true);
        }
    }
    // The policy's SEV bit pins the source's own AMD root: another product's chain
    // is refused at SEND_START and the source keeps its guest.
    let o = migrate(&["--target-product", "Genoa", "--policy", "0x21"]);
    assert!(!o.status.success());
    let e = err(&o);
    assert!(
        e.contains("SEND_START") && e.contains("keeps running"),
        "{e}"
    );
}

/// Two `softsev run` processes, the target with `-incoming defer`, migrated through
/// QEMU's `qemu.qmp` client (tests/qmp/migrate_cli.py). Skipped with a message when
/// the module is missing, unless SOFTSEV_REQUIRE_INTEROP=1.
#[test]
fn qemu_qmp_live_migration_between_two_processes() {
    let Some(fx) = softsev_testkit::fixtures() else {
        return;
    };
    let have = Command::new("python3")
        .args(["-c", "import qemu.qmp"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        if softsev_testkit::interop_required() {
            panic!("python3 qemu.qmp not installed and SOFTSEV_REQUIRE_INTEROP=1");
        }
        println!(
            "SKIP: python3 module qemu.qmp not installed (run scripts/install-interop-tools.sh)"
        );
        return;
    }
    let q = guest_args(&fx.join(OVMF), "0x1");
    let d = tempfile::tempdir().unwrap();
    let (s_sock, t_sock, m_sock) = (
        d.path().join("src.sock"),
        d.path().join("dst.sock"),
        d.path().join("mig.sock"),
    );
    let spawn = |seed: &str, out: &str, sock: &Path, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_softsev"))
            .args(["run", "--json", "--seed", seed, "--out"])
            .arg(d.path().join(out))
            .arg("--")
            .args(&q)
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", sock.display()))
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut src = spawn("qmp chip A", "src", &s_sock, &[]);
    let mut dst = spawn("qmp chip B", "dst", &t_sock, &["-incoming", "defer"]);
    // The source writes its certificates before it serves the monitor.
    let ask_ark = d.path().join("src/certs/ask-ark.cert");
    for _ in 0..400 {
        if ask_ark.exists() && s_sock.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/qmp/migrate_cli.py");
    let o = Command::new("python3")
        .arg(script)
        .args([&s_sock, &t_sock, &m_sock, &ask_ark])
        .output()
        .unwrap();
    if !o.status.success() {
        // The runs end at quit, which a failed script did not send.
        let _ = src.kill();
        let _ = dst.kill();
    }
    let so = src.wait_with_output().unwrap();
    let to = dst.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "migrate_cli.py: {said}\n{}\nsource: {}\ntarget: {}",
        err(&o),
        err(&so),
        err(&to)
    );
    let v: serde_json::Value = serde_json::from_str(said.trim()).unwrap();
    assert_eq!(v["target_status_before"], "inmigrate");
    assert_eq!(v["params_ok"], true);
    assert_eq!(v["source_migration"], "completed", "{v}");
    assert_eq!(v["source_status"], "postmigrate");
    assert_eq!(v["target_status"], "running");
    assert_eq!(v["target_sev"], "running");
    assert!(v["transferred"].as_u64().unwrap() > 0);
    assert!(to.status.success(), "target: {}", err(&to));
    let r = summary(&d.path().join("dst"));
    assert_eq!(r["outcome"], "completed", "{r}");
    assert_eq!(r["run_state"], "shutdown", "after quit: {r}");
    assert_eq!(r["guest_state"], 3);
    assert_eq!(r["stream_bytes"], v["transferred"]);
}
