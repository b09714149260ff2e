//! QMP as QEMU speaks it, against a real guest: a `sev-guest` launched on the software
//! platform through the host's SevLauncher (`softsev_vmm::sev_run::SevVm`) from the
//! 4 KiB trimmed OVMF of the sevctl fixtures, paused in launch-secret. The greeting,
//! capability negotiation, request and argument checking, every command's success and
//! error shapes, the run-state events (`-S` → prelaunch, `cont` → RESUME and
//! LAUNCH_FINISH, `stop` → STOP, `quit` → SHUTDOWN and the socket closed), the debug
//! read with and without NODBG, malformed input; then the same over the Unix socket.
//! Values come from the firmware: the measurement is the owner's recomputation (no
//! session: TIK = 0, sev-legacy.md §0.2-4) over the plan's launch digest.

use base64::Engine;
use serde_json::{Value, json};
use softsev_abi::sev_cert::{SevCert, SevUsage};
use softsev_attest::sev::{SevReportExpect, verify_report_with_pek};
use softsev_crypto::sev::{aes128_ctr, launch_measure, secret_packet_mac};
use softsev_measure::Ovmf;
use softsev_vmm::config::LaunchBlobs;
use softsev_vmm::parse_args;
use softsev_vmm::qmp::server::{QmpServer, ServerThread};
use softsev_vmm::qmp::{QmpGuest, QmpVersion, Session, SevInfo};
use softsev_vmm::sev_plan::SevLaunchPlan;
use softsev_vmm::sev_run::SevVm;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

const OVMF: &str = "OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9";
/// The OVMF secret area of that image (footer GUID 4c2eb361-…, §8.3).
pub(crate) const SECRET_BASE: u32 = 0x0080_C000;

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

/// A launched guest with `policy` (one vCPU, 64 MiB), in launch-secret; `None` (the
/// test skips) when the fixtures are absent.
pub(crate) fn launched(policy: u32) -> Option<(SevLaunchPlan, SevVm)> {
    let dir = softsev_testkit::fixture_dir("sev-legacy/sevctl")?;
    let ovmf = Ovmf::read(&dir.join(OVMF)).unwrap();
    let a: Vec<String> = format!(
        "-machine q35,confidential-guest-support=sev0 \
         -object sev-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy={policy:#x} \
         -cpu EPYC-Milan -m 64M -smp 1 -S"
    )
    .split_whitespace()
    .map(str::to_string)
    .collect();
    let c = parse_args(a).unwrap();
    let plan = SevLaunchPlan::from_parts(&c, &ovmf, None, LaunchBlobs::default()).unwrap();
    assert_eq!(plan.secret_area, Some((SECRET_BASE, 0xC00)));
    let vm = SevVm::launch(&plan, Some(b"qmp protocol test")).unwrap();
    assert_eq!(vm.firmware_launch_digest(), Some(plan.expected_digest));
    Some((plan, vm))
}

/// The guest owner's secret packet (52-byte header, ciphertext) for the measurement in
/// `blob` (measure ‖ mnonce), with no session: TEK = TIK = 0 (§0.2-4, §3.5).
pub(crate) fn owner_packet(blob: &[u8], secret: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let iv = [0x33u8; 16];
    let mut ct = secret.to_vec();
    aes128_ctr(&[0; 16], &iv, &mut ct);
    let m: [u8; 32] = blob[..32].try_into().unwrap();
    let len = ct.len() as u32;
    let mac = secret_packet_mac(&[0; 16], 0, &iv, len, len, &ct, &m);
    let mut hdr = 0u32.to_le_bytes().to_vec();
    hdr.extend_from_slice(&iv);
    hdr.extend_from_slice(&mac);
    (hdr, ct)
}

/// The measurement the owner expects (§3.4): HMAC-SHA256(TIK = 0, 0x04 ‖ API ‖ build ‖
/// policy ‖ the plan's launch digest ‖ mnonce).
pub(crate) fn expected_measure(info: &SevInfo, digest: &[u8; 32], mnonce: &[u8]) -> [u8; 32] {
    launch_measure(
        &[0; 16],
        info.api_major,
        info.api_minor,
        info.build_id,
        info.policy,
        digest,
        mnonce.try_into().unwrap(),
    )
}

struct Mon {
    s: Session<SevVm>,
    plan: SevLaunchPlan,
}

impl Mon {
    fn new(policy: u32, paused: bool) -> Option<(Mon, String)> {
        let (plan, vm) = launched(policy)?;
        let mut s = Session::new(vm, paused, QmpVersion::default());
        let g = s.connect();
        Some((Mon { s, plan }, g))
    }

    fn raw(&mut self, text: &str) -> Vec<Value> {
        self.s
            .feed(text.as_bytes())
            .iter()
            .map(|l| {
                assert!(l.ends_with("\r\n"), "{l:?}");
                serde_json::from_str(l.trim_end()).unwrap()
            })
            .collect()
    }

    fn one(&mut self, v: Value) -> Value {
        // A top-level scalar ends at the next delimiter, as in QEMU's lexer.
        let mut r = self.raw(&format!("{v}\n"));
        assert_eq!(r.len(), 1, "{r:?}");
        r.remove(0)
    }

    fn ok(&mut self, cmd: &str, args: Value) -> Value {
        let r = self.one(json!({"execute": cmd, "arguments": args}));
        r.get("return")
            .cloned()
            .unwrap_or_else(|| panic!("{cmd}: {r}"))
    }

    fn err(&mut self, v: Value) -> (String, String) {
        let r = self.one(v);
        let e = &r["error"];
        (
            e["class"].as_str().unwrap().to_string(),
            e["desc"].as_str().unwrap().to_string(),
        )
    }

    fn negotiated(policy: u32, paused: bool) -> Option<Mon> {
        let (mut m, _) = Mon::new(policy, paused)?;
        assert_eq!(m.ok("qmp_capabilities", json!({})), json!({}));
        Some(m)
    }
}

fn generic(desc: &str) -> (String, String) {
    ("GenericError".into(), desc.into())
}

#[test]
fn greeting_and_negotiation() {
    let Some((mut m, greeting)) = Mon::new(1, true) else {
        return;
    };
    assert_eq!(
        greeting,
        "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 9}, \
         \"package\": \"\"}, \"capabilities\": [\"oob\"]}}\r\n"
    );
    let neg = (
        "CommandNotFound".to_string(),
        "Expecting capabilities negotiation with 'qmp_capabilities'".to_string(),
    );
    assert_eq!(m.err(json!({"execute": "query-status"})), neg);
    assert_eq!(m.err(json!({"execute": "no-such-command"})), neg);
    // The id is echoed, in QEMU's member order.
    let line = m.s.feed(br#"{"execute": "query-status", "id": "a1"}"#);
    assert_eq!(
        line,
        vec![
            "{\"id\": \"a1\", \"error\": {\"class\": \"CommandNotFound\", \"desc\": \
             \"Expecting capabilities negotiation with 'qmp_capabilities'\"}}\r\n"
        ]
    );
    let line = m.s.feed(br#"{"execute": "qmp_capabilities", "id": 7}"#);
    assert_eq!(line, vec!["{\"return\": {}, \"id\": 7}\r\n"]);
    assert_eq!(
        m.err(json!({"execute": "qmp_capabilities"})),
        (
            "CommandNotFound".into(),
            "Capabilities negotiation is already complete, command ignored".into()
        )
    );
    assert_eq!(
        m.err(json!({"execute": "frobnicate"})),
        (
            "CommandNotFound".into(),
            "The command frobnicate has not been found".into()
        )
    );
    // A new client negotiates again.
    m.s.connect();
    assert_eq!(m.err(json!({"execute": "query-sev"})), neg);
}

#[test]
fn request_shape_errors() {
    let Some(mut m) = Mon::negotiated(1, true) else {
        return;
    };
    for (req, want) in [
        (json!([1, 2]), "QMP input must be a JSON object"),
        (json!(42), "QMP input must be a JSON object"),
        (json!({}), "QMP input lacks member 'execute'"),
        (
            json!({"execute": 1}),
            "QMP input member 'execute' must be a string",
        ),
        (
            json!({"execute": "cont", "arguments": []}),
            "QMP input member 'arguments' must be an object",
        ),
        (
            json!({"execute": "cont", "bogus": 1}),
            "QMP input member 'bogus' is unexpected",
        ),
        (
            json!({"exec-oob": "cont"}),
            "QMP input member 'exec-oob' is unexpected",
        ),
    ] {
        assert_eq!(m.err(req.clone()), generic(want), "{req}");
    }
    // With OOB negotiated, exec-oob is accepted and the command refuses it.
    let (mut o, _) = Mon::new(1, true).unwrap();
    assert_eq!(
        o.ok("qmp_capabilities", json!({"enable": ["oob"]})),
        json!({})
    );
    assert_eq!(
        o.err(json!({"exec-oob": "query-status"})),
        generic("The command query-status does not support OOB")
    );
    assert_eq!(
        o.err(json!({"exec-oob": "cont", "execute": "cont"})).1,
        "QMP input member 'execute' clashes with 'exec-oob'"
    );
    let (mut c, _) = Mon::new(1, true).unwrap();
    assert_eq!(
        c.err(json!({"execute": "qmp_capabilities", "arguments": {"enable": ["x"]}})),
        generic("Parameter 'null' does not accept value 'x'")
    );
}

#[test]
fn argument_errors_are_the_qapi_visitors() {
    let Some(mut m) = Mon::negotiated(1, true) else {
        return;
    };
    let exec = |c: &str, a: Value| json!({"execute": c, "arguments": a});
    for (req, want) in [
        (
            exec("sev-inject-launch-secret", json!({"secret": "AA=="})),
            "Parameter 'packet-header' is missing",
        ),
        (
            exec(
                "sev-inject-launch-secret",
                json!({"packet-header": 1, "secret": "x"}),
            ),
            "Invalid parameter type for 'packet-header', expected: string",
        ),
        (
            exec(
                "sev-inject-launch-secret",
                json!({"packet-header": "a", "secret": "b", "gpa": "0x1000"}),
            ),
            "Parameter 'gpa' expects uint64",
        ),
        (
            exec("query-sev-attestation-report", json!({})),
            "Parameter 'mnonce' is missing",
        ),
        (
            exec(
                "query-sev-attestation-report",
                json!({"mnonce": "AA==", "x": 1}),
            ),
            "Parameter 'x' is unexpected",
        ),
        (
            exec("cont", json!({"now": true})),
            "Parameter 'now' is unexpected",
        ),
        (
            exec(
                "human-monitor-command",
                json!({"command-line": "info status", "cpu-index": "0"}),
            ),
            "Invalid parameter type for 'cpu-index', expected: integer",
        ),
    ] {
        assert_eq!(m.err(req.clone()), generic(want), "{req}");
    }
}

#[test]
fn query_sev_and_capabilities() {
    let Some(mut m) = Mon::negotiated(0x3, true) else {
        return;
    };
    assert_eq!(
        m.ok("query-status", json!({})),
        json!({"running": false, "status": "prelaunch"})
    );
    // The firmware's PLATFORM_STATUS API version (the product's image) and the handle
    // LAUNCH_START assigned.
    let v = softsev_firmware::FirmwareConfig::for_product(m.plan.product)
        .image
        .version;
    let handle = m.s.guest().sev_info().handle;
    assert_ne!(handle, 0, "LAUNCH_START assigns a handle");
    assert_eq!(
        m.ok("query-sev", json!({})),
        json!({"enabled": true, "api-major": v.major, "api-minor": v.minor,
               "build-id": v.build, "state": "launch-secret", "sev-type": "sev",
               "policy": 3, "handle": handle})
    );
    // query-sev-capabilities: the PDH, PEK ‖ OCA ‖ CEK, chip id and C-bit from the
    // platform (SEV_PDH_CERT_EXPORT, SEV_GET_ID2, CPUID), as QEMU returns them.
    let c = m.ok("query-sev-capabilities", json!({}));
    let pdh = SevCert::decode(&unb64(c["pdh"].as_str().unwrap())).expect("PDH decodes");
    assert_eq!(pdh.usage(), SevUsage::PDH);
    let chain = unb64(c["cert-chain"].as_str().unwrap());
    assert_eq!(chain.len(), 3 * 0x824);
    let usages: Vec<SevUsage> = chain
        .chunks(0x824)
        .map(|b| SevCert::decode(b).expect("chain cert decodes").usage())
        .collect();
    assert_eq!(usages, [SevUsage::PEK, SevUsage::OCA, SevUsage::CEK]);
    assert_eq!(unb64(c["cpu0-id"].as_str().unwrap()).len(), 64);
    assert_eq!(
        (c["cbitpos"].as_u64(), c["reduced-phys-bits"].as_u64()),
        (Some(51), Some(1))
    );
    assert_eq!(
        m.ok("query-version", json!({})),
        json!({"qemu": {"major": 9, "minor": 2, "micro": 0}, "package": ""})
    );
    let cmds = m.ok("query-commands", json!({}));
    assert!(
        cmds.as_array()
            .unwrap()
            .contains(&json!({"name": "sev-inject-launch-secret"}))
    );
}

#[test]
fn the_guest_owner_flow_and_run_state_events() {
    let policy = 0x0; // debugging allowed: the debug read decrypts
    let Some(mut m) = Mon::negotiated(policy, true) else {
        return;
    };
    // Measurement: the owner recomputes it from the plan's LD, policy and the API
    // version.
    let blob = unb64(
        m.ok("query-sev-launch-measure", json!({}))["data"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(blob.len(), 48);
    let info = m.s.guest().sev_info();
    assert_eq!(info.policy, policy);
    assert_eq!(
        blob[..32],
        expected_measure(&info, &m.plan.expected_digest, &blob[32..])
    );

    // Attestation report (§4 layout).
    assert_eq!(
        m.err(json!({"execute": "query-sev-attestation-report", "arguments": {"mnonce": "AAA="}})),
        generic("SEV: mnonce must be 16 bytes (got 2)")
    );
    let mnonce = [0x44u8; 16];
    let r = m.ok(
        "query-sev-attestation-report",
        json!({"mnonce": b64(&mnonce)}),
    );
    let r = unb64(r["data"].as_str().unwrap());
    assert_eq!(r.len(), 0xD0);
    assert_eq!(
        (&r[..16], &r[16..48]),
        (&mnonce[..], &m.plan.expected_digest[..])
    );
    assert_eq!(r[0x30..0x34], policy.to_le_bytes());
    // Signed by the PEK (usage 0x1002) with ECDSA P-384 SHA-256 (algo 0x2); §4.
    assert_eq!(r[0x34..0x38], 0x1002u32.to_le_bytes());
    assert_eq!(r[0x38..0x3C], 2u32.to_le_bytes());
    // The signature verifies with the PEK query-sev-capabilities exports (sevctl
    // `validate`'s check) and a flipped signed byte breaks it.
    let caps = m.ok("query-sev-capabilities", json!({}));
    let chain = unb64(caps["cert-chain"].as_str().unwrap());
    let pek = SevCert::decode(&chain[..0x824]).expect("PEK decodes");
    let expect = SevReportExpect {
        mnonce: Some(mnonce),
        launch_digest: Some(m.plan.expected_digest),
        policy: Some(policy),
        policy_required: None,
    };
    let v = verify_report_with_pek(&pek, &r, &expect);
    assert!(v.passed(), "{v:?}");
    let mut flipped = r.clone();
    flipped[0x20] ^= 1;
    assert!(!verify_report_with_pek(&pek, &flipped, &SevReportExpect::default()).passed());

    // The secret: a tampered packet is refused with the firmware's status, a good
    // one lands at the OVMF secret area (no gpa given).
    let secret: Vec<u8> = (0..64u8).collect();
    let (hdr, ct) = owner_packet(&blob, &secret);
    let mut bad = hdr.clone();
    bad[30] ^= 1;
    assert_eq!(
        m.err(json!({"execute": "sev-inject-launch-secret",
                     "arguments": {"packet-header": b64(&bad), "secret": b64(&ct)}})),
        generic("SEV: failed to inject secret ret=-5 fw_error=11 'Bad measurement'")
    );
    assert_eq!(
        m.err(json!({"execute": "sev-inject-launch-secret",
                     "arguments": {"packet-header": "", "secret": b64(&ct)}})),
        generic("SEV: Failed to decode sequence header")
    );
    assert_eq!(
        m.err(json!({"execute": "sev-inject-launch-secret",
                     "arguments": {"packet-header": b64(&hdr), "secret": b64(&ct), "gpa": 0x4000_0000u64}})),
        generic("SEV: Failed to calculate guest address: No memory is mapped at address 0x40000000")
    );
    assert_eq!(
        m.ok(
            "sev-inject-launch-secret",
            json!({"packet-header": b64(&hdr), "secret": b64(&ct)})
        ),
        json!({})
    );
    // The firmware decrypted the payload into guest memory (DBG_DECRYPT shows it).
    let mut seen = vec![0u8; 64];
    assert!(m.s.guest_mut().read_phys(u64::from(SECRET_BASE), &mut seen));
    assert_eq!(seen, secret);

    // Debug read: QEMU's memory_dump format, plaintext because policy allows DBG.
    let out = m.ok(
        "human-monitor-command",
        json!({"command-line": "xp /16xb 0x80c000"}),
    );
    assert_eq!(
        out,
        json!(
            "000000000080c000: 0x00 0x01 0x02 0x03 0x04 0x05 0x06 0x07\r\n\
               000000000080c008: 0x08 0x09 0x0a 0x0b 0x0c 0x0d 0x0e 0x0f\r\n"
        )
    );
    let out = m.ok(
        "human-monitor-command",
        json!({"command-line": "xp /2xg 0x80c000"}),
    );
    assert_eq!(
        out,
        json!("000000000080c000: 0x0706050403020100 0x0f0e0d0c0b0a0908\r\n")
    );
    let out = m.ok(
        "human-monitor-command",
        json!({"command-line": "xp /3cb 0x80c030"}),
    );
    assert_eq!(out, json!("000000000080c030: '0' '1' '2'\r\n"));
    let out = m.ok(
        "human-monitor-command",
        json!({"command-line": "xp /4xb 0x7fffffff"}),
    );
    assert_eq!(out, json!("000000007fffffff: Cannot access memory\r\n"));
    let out = m.ok(
        "human-monitor-command",
        json!({"command-line": "x /4xb 0x1000"}),
    );
    assert_eq!(out, json!("0000000000001000: Cannot access memory\r\n"));
    let out = m.ok("human-monitor-command", json!({"command-line": "xp /4z 0"}));
    assert_eq!(out, json!("invalid char in format: 'z'\r\n"));
    let out = m.ok("human-monitor-command", json!({"command-line": "frob"}));
    assert_eq!(out, json!("unknown command: 'frob'\r\n"));
    let out = m.ok(
        "human-monitor-command",
        json!({"command-line": "info status"}),
    );
    assert_eq!(out, json!("VM status: paused (prelaunch)\r\n"));
    let out = m.ok("human-monitor-command", json!({"command-line": "info sev"}));
    assert!(
        out.as_str()
            .unwrap()
            .contains("state: launch-secret\r\ndebug: on")
            || out.as_str().unwrap().contains("debug: on\r\n"),
        "{out}"
    );

    // cont: RESUME before the reply, LAUNCH_FINISH, running.
    let r = m.raw(r#"{"execute": "cont", "id": 1}"#);
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[0]["event"], "RESUME");
    assert!(r[0]["timestamp"]["seconds"].as_u64().unwrap() > 1_600_000_000);
    assert!(r[0]["timestamp"]["microseconds"].as_u64().unwrap() < 1_000_000);
    assert_eq!(r[1], json!({"return": {}, "id": 1}));
    assert_eq!(
        m.ok("query-status", json!({})),
        json!({"running": true, "status": "running"})
    );
    assert_eq!(m.ok("query-sev", json!({}))["state"], "running");
    assert!(m.s.guest().finished(), "LAUNCH_FINISH issued");
    assert_eq!(m.s.guest().guest_state(), Some(3), "the firmware's RUNNING");
    // A second cont while running changes nothing and emits nothing.
    assert_eq!(m.raw(r#"{"execute": "cont"}"#), vec![json!({"return": {}})]);
    // After LAUNCH_FINISH no secret can be injected (QEMU prints the state number).
    assert_eq!(
        m.err(json!({"execute": "sev-inject-launch-secret",
                     "arguments": {"packet-header": b64(&hdr), "secret": b64(&ct)}})),
        generic("SEV: Not in correct state. (LSECRET) 3")
    );
    // stop → STOP, paused; cont → RESUME.
    let r = m.raw(r#"{"execute": "stop"}"#);
    assert_eq!(
        (r[0]["event"].as_str(), &r[1]),
        (Some("STOP"), &json!({"return": {}}))
    );
    assert_eq!(
        m.ok("query-status", json!({})),
        json!({"running": false, "status": "paused"})
    );
    let r = m.raw(r#"{"execute": "cont"}"#);
    assert_eq!(r[0]["event"], "RESUME");
    // quit: the reply, then SHUTDOWN, then nothing more is read.
    let r = m.raw(r#"{"execute": "quit"} {"execute": "query-status"}"#);
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[0], json!({"return": {}}));
    assert_eq!(r[1]["event"], "SHUTDOWN");
    assert_eq!(
        r[1]["data"],
        json!({"guest": false, "reason": "host-qmp-quit"})
    );
    assert!(m.s.closed() && m.s.guest().has_quit());
}

#[test]
fn nodbg_debug_read_shows_ciphertext() {
    let Some(mut m) = Mon::negotiated(0x1, true) else {
        return;
    };
    let blob = unb64(
        m.ok("query-sev-launch-measure", json!({}))["data"]
            .as_str()
            .unwrap(),
    );
    let secret = [0u8; 16];
    let (hdr, ct) = owner_packet(&blob, &secret);
    m.ok(
        "sev-inject-launch-secret",
        json!({"packet-header": b64(&hdr), "secret": b64(&ct)}),
    );
    let out = m.ok(
        "human-monitor-command",
        json!({"command-line": "xp /16xb 0x80c000"}),
    );
    let text = out.as_str().unwrap();
    let bytes: Vec<u8> = text
        .split_whitespace()
        .filter_map(|t| t.strip_prefix("0x"))
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    assert_eq!(bytes.len(), 16, "{text}");
    assert_ne!(
        bytes, secret,
        "NODBG: the host sees ciphertext, not the secret"
    );
    assert_ne!(
        bytes, ct,
        "the firmware re-encrypted the payload with the guest's key"
    );
    // NODBG: the owner's xp of a fresh private page shows ciphertext too, not zeros.
    let out = m.ok(
        "human-monitor-command",
        json!({"command-line": "xp /2xg 0x0"}),
    );
    assert!(
        out.as_str().unwrap().starts_with("0000000000000000: 0x"),
        "{out}"
    );
}

#[test]
fn states_and_firmware_refusals() {
    let Some(mut m) = Mon::negotiated(1, true) else {
        return;
    };
    // KVM / firmware refusals, with QEMU's words and the firmware's status (§3.5):
    // a header that is not 52 bytes is INVALID_LENGTH.
    assert_eq!(
        m.err(json!({"execute": "sev-inject-launch-secret",
                     "arguments": {"packet-header": "AA==", "secret": "AA==", "gpa": SECRET_BASE}})),
        generic("SEV: failed to inject secret ret=-5 fw_error=4 'Buffer too small'")
    );
    // The firmware's own checks, in its order (§3.5): guest_paddr alignment, length,
    // the packet MAC, then COMPRESSED (after the MAC).
    let blob = unb64(
        m.ok("query-sev-launch-measure", json!({}))["data"]
            .as_str()
            .unwrap(),
    );
    let inject = |m: &mut Mon, hdr: &[u8], ct: &[u8], gpa: u32| {
        m.err(json!({"execute": "sev-inject-launch-secret",
                     "arguments": {"packet-header": b64(hdr), "secret": b64(ct), "gpa": gpa}}))
    };
    let (hdr, ct) = owner_packet(&blob, &[0xAB; 16]);
    assert_eq!(
        inject(&mut m, &hdr, &ct, SECRET_BASE + 8),
        generic("SEV: failed to inject secret ret=-5 fw_error=9 'Invalid address'")
    );
    // The address check comes before the header length's.
    assert_eq!(
        inject(&mut m, &hdr[..51], &ct, SECRET_BASE + 8),
        generic("SEV: failed to inject secret ret=-5 fw_error=9 'Invalid address'")
    );
    let (hdr15, ct15) = owner_packet(&blob, &[0xAB; 15]);
    assert_eq!(
        inject(&mut m, &hdr15, &ct15, SECRET_BASE),
        generic("SEV: failed to inject secret ret=-5 fw_error=4 'Buffer too small'")
    );
    let mut compressed = hdr.clone();
    compressed[0] = 1;
    let iv: [u8; 16] = hdr[4..20].try_into().unwrap();
    let measure: [u8; 32] = blob[..32].try_into().unwrap();
    let mac = secret_packet_mac(&[0; 16], 1, &iv, 16, 16, &ct, &measure);
    assert_eq!(
        inject(&mut m, &compressed, &ct, SECRET_BASE),
        generic("SEV: failed to inject secret ret=-5 fw_error=11 'Bad measurement'"),
        "flags are under the MAC"
    );
    compressed[20..52].copy_from_slice(&mac);
    assert_eq!(
        inject(&mut m, &compressed, &ct, SECRET_BASE),
        generic("SEV: failed to inject secret ret=-5 fw_error=21 'Feature not supported'")
    );
    // LAUNCH_FINISH at the first cont; the measurement stays readable, the report is
    // still given in RUNNING (§4), a secret is refused (QEMU checks the state first).
    m.raw(r#"{"execute": "cont"}"#);
    assert_eq!(m.s.guest().guest_state(), Some(3));
    assert_eq!(
        m.ok("query-sev-launch-measure", json!({}))["data"],
        b64(&blob)
    );
    let r = m.ok(
        "query-sev-attestation-report",
        json!({"mnonce": b64(&[7; 16])}),
    );
    let r = unb64(r["data"].as_str().unwrap());
    assert_eq!(
        (&r[..16], &r[16..48]),
        (&[7u8; 16][..], &m.plan.expected_digest[..])
    );
    assert_eq!(
        m.err(json!({"execute": "sev-inject-launch-secret",
                     "arguments": {"packet-header": "AA==", "secret": "AA==", "gpa": 0}})),
        generic("SEV: Not in correct state. (LSECRET) 3")
    );
    assert_eq!(m.ok("query-sev", json!({}))["state"], "running");
}

#[test]
fn malformed_input_never_panics_or_hangs() {
    let Some(mut m) = Mon::negotiated(1, true) else {
        return;
    };
    let r = m.raw("{\"execute\": }\n");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["error"]["class"], "GenericError");
    assert!(
        r[0]["error"]["desc"]
            .as_str()
            .unwrap()
            .starts_with("JSON parse error, "),
        "{r:?}"
    );
    assert!(r[0].get("id").is_none());
    // One value split over several writes, two values in one.
    assert!(m.s.feed(b"{\"execute\":").is_empty());
    let r = m.raw("\"query-status\"}{\"execute\": \"query-status\"}");
    assert_eq!(r.len(), 2);
    let r = m.raw(&format!("{}\n", "[".repeat(2000)));
    assert_eq!(r[0]["error"]["desc"], "JSON nesting depth limit exceeded");
    // QEMU's single-quoted strings.
    let r = m.raw("{'execute': 'query-status'}");
    assert_eq!(r[0]["return"]["status"], "prelaunch");
    // Garbage of every byte value, then the monitor still answers.
    let junk: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let _ = m.s.feed(&junk);
    let _ = m.s.feed(b"\n}\n]\n\"\n\n");
    let r = m.raw("{\"execute\": \"query-status\"}\n");
    assert!(
        r.iter().any(|v| v["return"]["status"] == "prelaunch"),
        "{r:?}"
    );
}

#[test]
fn over_the_unix_socket() {
    let Some((_, vm)) = launched(1) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmp.sock");
    std::fs::write(&path, b"stale").unwrap();
    let server = QmpServer::bind(&path).unwrap();
    let session = Arc::new(Mutex::new(Session::new(vm, true, QmpVersion::default())));
    let t = ServerThread::spawn(server, session.clone(), None);
    let conn = UnixStream::connect(&path).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    let mut next = |r: &mut BufReader<UnixStream>| -> Value {
        line.clear();
        r.read_line(&mut line).unwrap();
        assert!(line.ends_with("\r\n"), "{line:?}");
        serde_json::from_str(line.trim_end()).unwrap()
    };
    assert_eq!(next(&mut r)["QMP"]["capabilities"], json!(["oob"]));
    w.write_all(b"{\"execute\": \"qmp_capabilities\"}\n{\"execute\": \"cont\"}\n")
        .unwrap();
    assert_eq!(next(&mut r), json!({"return": {}}));
    assert_eq!(next(&mut r)["event"], "RESUME");
    assert_eq!(next(&mut r), json!({"return": {}}));
    w.write_all(b"{\"execute\": \"quit\"}").unwrap();
    assert_eq!(next(&mut r), json!({"return": {}}));
    assert_eq!(next(&mut r)["event"], "SHUTDOWN");
    let mut rest = String::new();
    assert_eq!(
        r.read_line(&mut rest).unwrap(),
        0,
        "the socket is closed after quit"
    );
    for _ in 0..500 {
        if t.finished() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(t.finished());
    t.stop().unwrap();
    assert!(
        !path.exists(),
        "the socket file is removed when the monitor quits"
    );
    assert!(session.lock().unwrap().guest().has_quit());
}

#[test]
fn wait_on_accepts_the_first_client_before_serving() {
    use std::sync::atomic::AtomicBool;
    let Some((_, vm)) = launched(1) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.sock");
    let server = QmpServer::bind(&path).unwrap();
    // Nobody connects: accept returns when asked to stop.
    assert!(server.accept(&AtomicBool::new(true)).unwrap().is_none());
    let p = path.clone();
    let client = std::thread::spawn(move || {
        let c = UnixStream::connect(&p).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut r = BufReader::new(c);
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        l
    });
    let first = server.accept(&AtomicBool::new(false)).unwrap();
    assert!(first.is_some(), "wait=on: the launch waits for this client");
    let session = Arc::new(Mutex::new(Session::new(vm, true, QmpVersion::default())));
    let t = ServerThread::spawn(server, session, first);
    assert!(client.join().unwrap().starts_with("{\"QMP\": {\"version\""));
    t.stop().unwrap();
}
