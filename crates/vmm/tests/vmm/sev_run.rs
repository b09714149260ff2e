//! A `sev-guest` launched on the software platform through the host's SevLauncher
//! (`softsev_vmm::sev_run::SevVm`) and driven over QMP as a guest owner drives QEMU:
//! paused in launch-secret, the measurement checked, the secret injected at the OVMF
//! secret area, the debug read (plaintext only without NODBG), `cont` →
//! LAUNCH_FINISH, `quit`.

use base64::Engine;
use serde_json::{Value, json};
use softsev_crypto::sev::{aes128_ctr, launch_measure, secret_packet_mac};
use softsev_measure::Ovmf;
use softsev_vmm::config::LaunchBlobs;
use softsev_vmm::parse_args;
use softsev_vmm::qmp::{QmpGuest, QmpVersion, Session};
use softsev_vmm::sev_plan::SevLaunchPlan;
use softsev_vmm::sev_run::SevVm;

const OVMF: &str = "OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn launch(policy: u32, vcpus: u32) -> Option<(SevLaunchPlan, SevVm)> {
    let dir = softsev_testkit::fixture_dir("sev-legacy/sevctl")?;
    let ovmf = Ovmf::read(&dir.join(OVMF)).unwrap();
    let a: Vec<String> = format!(
        "-machine q35,confidential-guest-support=sev0 \
         -object sev-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy={policy:#x} \
         -cpu EPYC-Milan -m 256M -smp {vcpus} -S"
    )
    .split_whitespace()
    .map(str::to_string)
    .collect();
    let c = parse_args(a).unwrap();
    let plan = SevLaunchPlan::from_parts(&c, &ovmf, None, LaunchBlobs::default()).unwrap();
    let vm = SevVm::launch(&plan, Some(b"sev run test")).unwrap();
    Some((plan, vm))
}

fn send(s: &mut Session<SevVm>, v: Value) -> Vec<Value> {
    s.feed(format!("{v}\n").as_bytes())
        .iter()
        .map(|l| serde_json::from_str(l.trim_end()).unwrap())
        .collect()
}

/// The owner's packet for `secret` with no session (TEK = TIK = 0, §0.2-4).
fn packet(measure: &[u8], secret: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let iv = [0x5Au8; 16];
    let mut ct = secret.to_vec();
    aes128_ctr(&[0; 16], &iv, &mut ct);
    let m: [u8; 32] = measure[..32].try_into().unwrap();
    let len = ct.len() as u32;
    let mac = secret_packet_mac(&[0; 16], 0, &iv, len, len, &ct, &m);
    let mut hdr = 0u32.to_le_bytes().to_vec();
    hdr.extend_from_slice(&iv);
    hdr.extend_from_slice(&mac);
    (hdr, ct)
}

#[test]
fn sev_es_launch_over_qmp_with_debug_allowed() {
    let Some((plan, vm)) = launch(0x4, 2) else {
        return;
    };
    assert_eq!(vm.firmware_launch_digest(), Some(plan.expected_digest));
    let info = vm.sev_info();
    let blob = vm.measurement();
    let mnonce: [u8; 16] = blob[32..].try_into().unwrap();
    assert_eq!(
        blob[..32],
        launch_measure(
            &[0; 16],
            info.api_major,
            info.api_minor,
            info.build_id,
            0x4,
            &plan.expected_digest,
            &mnonce
        ),
        "the owner's check of the measurement (no session: TIK = 0)"
    );
    assert_eq!(vm.guest_state(), Some(2), "LSECRET");
    let mut s = Session::new(vm, true, QmpVersion::default());
    s.connect();
    send(&mut s, json!({"execute": "qmp_capabilities"}));
    let r = send(&mut s, json!({"execute": "query-sev"}));
    assert_eq!(r[0]["return"]["state"], "launch-secret");
    assert_eq!(r[0]["return"]["policy"], 4);
    let r = send(&mut s, json!({"execute": "query-sev-launch-measure"}));
    assert_eq!(r[0]["return"]["data"], b64(&blob));

    let secret: Vec<u8> = (0..32u8).map(|i| i ^ 0xC3).collect();
    let (mut hdr, ct) = packet(&blob, &secret);
    hdr[40] ^= 1;
    let r = send(
        &mut s,
        json!({"execute": "sev-inject-launch-secret",
        "arguments": {"packet-header": b64(&hdr), "secret": b64(&ct)}}),
    );
    assert_eq!(
        r[0]["error"]["desc"],
        "SEV: failed to inject secret ret=-5 fw_error=11 'Bad measurement'"
    );
    hdr[40] ^= 1;
    let r = send(
        &mut s,
        json!({"execute": "sev-inject-launch-secret",
        "arguments": {"packet-header": b64(&hdr), "secret": b64(&ct)}}),
    );
    assert_eq!(
        r[0],
        json!({"return": {}}),
        "at the footer secret area 0x80C000"
    );

    // Debug allowed: the monitor's xp goes through DBG_DECRYPT and shows the secret.
    let r = send(
        &mut s,
        json!({"execute": "human-monitor-command",
        "arguments": {"command-line": "xp /16xb 0x80c000"}}),
    );
    let text = r[0]["return"].as_str().unwrap();
    let shown: Vec<u8> = text
        .split_whitespace()
        .filter_map(|t| t.strip_prefix("0x"))
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    assert_eq!(shown, secret[..16], "{text}");
    assert!(text.starts_with("000000000080c000: "), "{text}");

    let r = send(
        &mut s,
        json!({"execute": "query-sev-attestation-report",
        "arguments": {"mnonce": b64(&[9; 16])}}),
    );
    let report = base64::engine::general_purpose::STANDARD
        .decode(r[0]["return"]["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(report.len(), 0xD0);
    assert_eq!(&report[0x10..0x30], &plan.expected_digest);

    let r = send(&mut s, json!({"execute": "cont"}));
    assert_eq!(r[0]["event"], "RESUME");
    assert_eq!(r[1], json!({"return": {}}));
    assert!(s.guest().finished());
    assert_eq!(
        s.guest().guest_state(),
        Some(3),
        "RUNNING after LAUNCH_FINISH"
    );
    let r = send(&mut s, json!({"execute": "query-sev"}));
    assert_eq!(r[0]["return"]["state"], "running");
    let r = send(&mut s, json!({"execute": "quit"}));
    assert_eq!(r[1]["event"], "SHUTDOWN");
    assert!(s.guest().has_quit());
}

#[test]
fn nodbg_guest_shows_ciphertext_to_the_monitor() {
    let Some((plan, mut vm)) = launch(0x1, 1) else {
        return;
    };
    assert!(!plan.es && plan.vmsas.is_empty());
    assert_eq!(vm.firmware_launch_digest(), Some(plan.expected_digest));
    let blob = vm.measurement();
    let secret = [0u8; 16];
    let (hdr, ct) = packet(&blob, &secret);
    vm.inject_secret(&hdr, &ct, 0x80C000).unwrap();
    let mut raw = [0u8; 16];
    assert!(vm.read_phys(0x80C000, &mut raw));
    assert_ne!(raw, secret, "NODBG: the host reads ciphertext");
    vm.finish().unwrap();
    assert_eq!(vm.guest_state(), Some(3));
}
