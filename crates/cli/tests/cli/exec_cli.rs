//! `softsev exec` / `softsev serve` (frontends.md §7; issue 14). The namespace is built by
//! the softsev process itself (each run is its own child process, so nothing a test
//! mounts is visible outside and the machine is left as found — checked). Tests that
//! mount need root and `/dev/fuse`; tests running a tool need it on `PATH`. Either
//! missing: `SKIP:`, or a failure under `SOFTSEV_REQUIRE_INTEROP=1`.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn softsev() -> Command {
    Command::new(env!("CARGO_BIN_EXE_softsev"))
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Root and a usable /dev/fuse, else SKIP (or panic when interop is required).
fn can_mount(test: &str) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let fuse = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .is_ok();
    if root && fuse {
        return true;
    }
    if softsev_testkit::interop_required() {
        panic!("{test}: needs root and /dev/fuse, and SOFTSEV_REQUIRE_INTEROP=1");
    }
    println!("SKIP: {test}: needs root and /dev/fuse");
    false
}

/// What the rest of the machine sees of /dev, /sys, /etc/hosts and the mount table.
fn outside() -> String {
    let mut s = String::new();
    for d in [
        "/dev",
        "/sys/kernel",
        "/sys/devices/platform",
        "/sys/module",
    ] {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .map(|r| {
                r.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        s += &format!("{d}: {v:?}\n");
    }
    s += &String::from_utf8_lossy(&std::fs::read("/etc/hosts").unwrap_or_default());
    let mut m: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .collect();
    m.sort();
    s + &m.join("\n")
}

#[test]
fn exec_without_anything_to_serve_or_a_command_is_refused() {
    let o = softsev().args(["exec", "--", "true"]).output().unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nothing to serve"),
        "{}",
        text(&o)
    );
    let o = softsev().args(["exec", "--guest"]).output().unwrap();
    assert!(!o.status.success(), "{}", text(&o));
}

#[test]
fn exec_as_non_root_says_it_needs_root() {
    // As root, drop to nobody with setpriv (util-linux); as non-root, run directly.
    let mut c = if Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false)
    {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        c.arg(env!("CARGO_BIN_EXE_softsev"));
        c
    } else {
        softsev()
    };
    let o = match c.args(["exec", "--guest", "--", "true"]).output() {
        Ok(o) => o,
        Err(e) => {
            println!("SKIP: setpriv not runnable: {e}");
            return;
        }
    };
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(
            "softsev exec needs root: it mounts FUSE (/dev/fuse is 0600) in a private mount namespace"
        ),
        "{}",
        text(&o)
    );
}

#[test]
fn exec_serves_inside_only_returns_the_exit_code_and_leaves_the_outside_unchanged() {
    if !can_mount("exec namespace test") {
        return;
    }
    let before = outside();
    let o = softsev()
        .args([
            "exec", "--guest", "--tsm", "--host", "--seed", "t", "--", "sh", "-c",
        ])
        .arg(
            "test -f /dev/sev-guest && test -f /dev/sev && test -f /dev/cpu/0/msr && \
             test -d /sys/kernel/config/tsm/report && test -d /sys/devices/platform/sev-guest && \
             test \"$(cat /sys/module/kvm_amd/parameters/sev_snp)\" = Y && \
             test -n \"$SOFTSEV_CPUID\" && echo x > /dev/null && exit 7",
        )
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    assert_eq!(before, outside(), "the outside changed");
    assert!(!Path::new("/dev/sev-guest").exists());
}

#[test]
fn snpguest_report_verifies_with_its_nonce_and_the_log_shows_the_ioctls() {
    if !can_mount("snpguest through softsev exec") {
        return;
    }
    let Some(_) = softsev_testkit::tool("snpguest") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str]| {
        let o = softsev().current_dir(d).args(args).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        o
    };
    run(&[
        "exec", "--guest", "--seed", "t", "--", "snpguest", "report", "att.bin", "req.bin",
        "--random",
    ]);
    run(&[
        "exec",
        "--guest",
        "--seed",
        "t",
        "--events",
        "ev.jsonl",
        "--",
        "snpguest",
        "certificates",
        "pem",
        "certs",
    ]);
    let nonce = hex::encode(std::fs::read(d.join("req.bin")).unwrap());
    let o = Command::new("snpguest")
        .current_dir(d)
        .args(["verify", "attestation", "certs", "att.bin", "-r"])
        .arg(format!("0x{nonce}"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("VEK signed the Attestation Report"),
        "{}",
        text(&o)
    );
    // snpguest certificates: SNP_GET_EXT_REPORT with certs_len 0 → -EIO, vmm_error
    // INVALID_LEN and the needed length written back; then again with that length.
    let log = std::fs::read_to_string(d.join("ev.jsonl")).unwrap();
    let ext: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["op"] == "ioctl" && v["fields"]["ioctl"] == "SNP_GET_EXT_REPORT")
        .collect();
    assert_eq!(ext.len(), 2, "{log}");
    assert_eq!(ext[0]["fields"]["certs_len"], 0, "{log}");
    assert_eq!(ext[0]["result"], -5, "{log}");
    assert_eq!(ext[0]["fields"]["vmm_error"], 1, "{log}");
    let asked = ext[0]["fields"]["certs_len_after"].as_u64().unwrap();
    assert!(asked > 0 && asked.is_multiple_of(4096), "{log}");
    assert_eq!(ext[1]["fields"]["certs_len"], asked, "{log}");
    assert_eq!(ext[1]["result"], 0, "{log}");
    // The device model's own view of the same two requests.
    let model = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["op"] == "model" && v["fields"]["name"] == "SNP_GET_EXT_REPORT")
        .count();
    assert_eq!(model, 2, "{log}");
}

#[test]
fn snphost_show_tcb_reaches_the_firmware_with_the_amd_cpuid() {
    if !can_mount("snphost through softsev exec") {
        return;
    }
    let Some(_) = softsev_testkit::tool("snphost") else {
        return;
    };
    let o = softsev()
        .args([
            "exec", "--host", "--seed", "t", "--", "snphost", "show", "tcb",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Reported TCB"),
        "{}",
        text(&o)
    );
}

#[test]
fn serve_tells_how_to_enter_and_stops_on_sigterm() {
    if !can_mount("softsev serve") {
        return;
    }
    let before = outside();
    let mut child = softsev()
        .args(["serve", "--guest", "--seed", "t"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let enter = loop {
        match lines.next() {
            Some(Ok(l)) if l.starts_with("enter with: ") => break l,
            Some(Ok(_)) => continue,
            other => panic!("serve ended early: {other:?}"),
        }
    };
    let pid = child.id();
    assert!(
        enter.contains(&format!("nsenter --mount=/proc/{pid}/ns/mnt")),
        "{enter}"
    );
    let o = Command::new("nsenter")
        .arg(format!("--mount=/proc/{pid}/ns/mnt"))
        .args(["--", "test", "-f", "/dev/sev-guest"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(!Path::new("/dev/sev-guest").exists(), "visible outside");
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "serve after SIGTERM: {status:?}");
    assert_eq!(before, outside(), "the outside changed");
}
