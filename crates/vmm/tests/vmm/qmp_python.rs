//! The wire format is what the real client expects: `qemu.qmp` (PyPI, QEMU's own
//! Python QMP library) runs the guest owner's flow (tests/qmp/owner_flow.py) against
//! softsev's QMP socket served over a real guest (`SevVm` on the software platform). Skipped with a message when the
//! module is not installed (scripts/install-interop-tools.sh installs it), unless
//! SOFTSEV_REQUIRE_INTEROP=1.

use super::qmp_protocol::{SECRET_BASE, expected_measure, launched, owner_packet};
use base64::Engine;
use softsev_vmm::qmp::server::{QmpServer, ServerThread};
use softsev_vmm::qmp::{QmpGuest, QmpVersion, Session};
use std::process::Command;
use std::sync::{Arc, Mutex};

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn have_qemu_qmp() -> bool {
    Command::new("python3")
        .args(["-c", "import qemu.qmp"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn qemu_qmp_client_runs_the_owner_flow() {
    if !have_qemu_qmp() {
        if std::env::var("SOFTSEV_REQUIRE_INTEROP").as_deref() == Ok("1") {
            panic!("python3 qemu.qmp not installed and SOFTSEV_REQUIRE_INTEROP=1");
        }
        println!(
            "SKIP: python3 module qemu.qmp not installed (pip install qemu.qmp, or run \
             scripts/install-interop-tools.sh)"
        );
        return;
    }
    let policy = 0x0; // debugging allowed, so the owner's xp shows the secret
    let Some((plan, guest)) = launched(policy) else {
        return;
    };
    let blob = guest.launch_measure().unwrap();
    let want = expected_measure(&guest.sev_info(), &plan.expected_digest, &blob[32..]);
    let secret: Vec<u8> = (0xA0..0xB0u8).collect();
    let (hdr, ct) = owner_packet(&blob, &secret);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmp.sock");
    let server = QmpServer::bind(&path).unwrap();
    let session = Arc::new(Mutex::new(Session::new(guest, true, QmpVersion::default())));
    let t = ServerThread::spawn(server, session.clone(), None);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/qmp/owner_flow.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&path)
        .arg(b64(&want))
        .arg(b64(&hdr))
        .arg(b64(&ct))
        .arg(hex::encode(&secret))
        .arg(format!("{SECRET_BASE:#x}"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "owner_flow.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(seen["ok"], true);
    assert_eq!(
        seen["greeting"]["QMP"]["capabilities"],
        serde_json::json!(["oob"])
    );
    t.stop().unwrap();
    let mut s = session.lock().unwrap();
    assert!(s.guest().has_quit());
    assert!(s.guest().finished(), "cont issued LAUNCH_FINISH");
    assert_eq!(s.guest().guest_state(), Some(3));
    // The firmware put the secret at the OVMF secret area (DBG_DECRYPT, debug policy).
    let mut seen_by_guest = vec![0u8; 16];
    assert!(
        s.guest_mut()
            .read_phys(u64::from(SECRET_BASE), &mut seen_by_guest)
    );
    assert_eq!(seen_by_guest, secret);
    assert_eq!(s.guest().sev_info().state.as_str(), "running");
}
