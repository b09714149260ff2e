//! QMP as QEMU speaks it, against the in-memory SEV model (`softsev_vmm::qmp::model`):
//! the greeting, capability negotiation, request and argument checking, every
//! command's success and error shapes, the run-state events (`-S` → prelaunch, `cont`
//! → RESUME, `stop` → STOP, `quit` → SHUTDOWN and the socket closed), the debug read
//! with and without NODBG, malformed input; then the same over the Unix socket.

use base64::Engine;
use serde_json::{Value, json};
use softsev_crypto::hash::{hmac_sha256, sha256};
use softsev_vmm::qmp::model::{ModelConfig, SevModel};
use softsev_vmm::qmp::server::{QmpServer, ServerThread};
use softsev_vmm::qmp::{QmpVersion, Session};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

pub(crate) const TEK: [u8; 16] = [0x11; 16];
pub(crate) const TIK: [u8; 16] = [0x22; 16];
pub(crate) const SECRET_BASE: u32 = 0x8000;
pub(crate) const FIRMWARE: &[u8] = &[0x5A; 0x1000];

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

/// A launched model: the firmware at 0x10000 measured, in launch-secret.
pub(crate) fn launched(policy: u32) -> SevModel {
    let mut m = SevModel::new(ModelConfig {
        policy,
        handle: 1,
        api: (1, 55, 25),
        ram_size: 1 << 20,
        secret_area: Some((SECRET_BASE, 0xC00)),
        session: Some((TEK, TIK)),
        seed: b"qmp test".to_vec(),
        certs: Some((vec![0xAA; 0x824], vec![0xBB; 3 * 0x824], vec![0xCC; 64])),
        cbitpos: 51,
    });
    m.launch_update_data(0x10000, FIRMWARE).unwrap();
    m.launch_measure().unwrap();
    m
}

/// The guest owner's secret packet for the measurement in `blob` (measure ‖ mnonce).
pub(crate) fn owner_packet(blob: &[u8], secret: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let m: [u8; 32] = blob[..32].try_into().unwrap();
    SevModel::seal_secret(&TEK, &TIK, &m, [0x33; 16], secret)
}

/// The measurement the owner expects for `policy`.
pub(crate) fn expected_measure(policy: u32, mnonce: &[u8]) -> [u8; 32] {
    hmac_sha256(
        &TIK,
        &[
            &[0x04, 1, 55, 25],
            &policy.to_le_bytes(),
            &sha256(FIRMWARE),
            mnonce,
        ],
    )
}

struct Mon {
    s: Session<SevModel>,
}

impl Mon {
    fn new(policy: u32, paused: bool) -> (Mon, String) {
        let mut s = Session::new(launched(policy), paused, QmpVersion::default());
        let g = s.connect();
        (Mon { s }, g)
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

    fn negotiated(policy: u32, paused: bool) -> Mon {
        let (mut m, _) = Mon::new(policy, paused);
        assert_eq!(m.ok("qmp_capabilities", json!({})), json!({}));
        m
    }
}

fn generic(desc: &str) -> (String, String) {
    ("GenericError".into(), desc.into())
}

#[test]
fn greeting_and_negotiation() {
    let (mut m, greeting) = Mon::new(1, true);
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
    let mut m = Mon::negotiated(1, true);
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
    let (mut o, _) = Mon::new(1, true);
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
    let (mut c, _) = Mon::new(1, true);
    assert_eq!(
        c.err(json!({"execute": "qmp_capabilities", "arguments": {"enable": ["x"]}})),
        generic("Parameter 'null' does not accept value 'x'")
    );
}

#[test]
fn argument_errors_are_the_qapi_visitors() {
    let mut m = Mon::negotiated(1, true);
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
    let mut m = Mon::negotiated(0x3, true);
    assert_eq!(
        m.ok("query-status", json!({})),
        json!({"running": false, "status": "prelaunch"})
    );
    assert_eq!(
        m.ok("query-sev", json!({})),
        json!({"enabled": true, "api-major": 1, "api-minor": 55, "build-id": 25,
               "state": "launch-secret", "sev-type": "sev", "policy": 3, "handle": 1})
    );
    let c = m.ok("query-sev-capabilities", json!({}));
    assert_eq!(unb64(c["pdh"].as_str().unwrap()), vec![0xAA; 0x824]);
    assert_eq!(unb64(c["cert-chain"].as_str().unwrap()).len(), 3 * 0x824);
    assert_eq!(unb64(c["cpu0-id"].as_str().unwrap()), vec![0xCC; 64]);
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
    let mut m = Mon::negotiated(policy, true);
    // Measurement: the owner recomputes it from LD, policy and the API version.
    let blob = unb64(
        m.ok("query-sev-launch-measure", json!({}))["data"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(blob.len(), 48);
    assert_eq!(blob[..32], expected_measure(policy, &blob[32..]));

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
    assert_eq!((&r[..16], &r[16..48]), (&mnonce[..], &sha256(FIRMWARE)[..]));
    assert_eq!(r[0x30..0x34], policy.to_le_bytes());

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
    let mut seen = vec![0u8; 64];
    assert!(m.s.guest().guest_read(u64::from(SECRET_BASE), &mut seen));
    assert_eq!(seen, secret);

    // Debug read: QEMU's memory_dump format, plaintext because policy allows DBG.
    let out = m.ok(
        "human-monitor-command",
        json!({"command-line": "xp /16xb 0x8000"}),
    );
    assert_eq!(
        out,
        json!(
            "0000000000008000: 0x00 0x01 0x02 0x03 0x04 0x05 0x06 0x07\r\n\
               0000000000008008: 0x08 0x09 0x0a 0x0b 0x0c 0x0d 0x0e 0x0f\r\n"
        )
    );
    let out = m.ok(
        "human-monitor-command",
        json!({"command-line": "xp /2xg 0x8000"}),
    );
    assert_eq!(
        out,
        json!("0000000000008000: 0x0706050403020100 0x0f0e0d0c0b0a0908\r\n")
    );
    let out = m.ok(
        "human-monitor-command",
        json!({"command-line": "xp /3cb 0x8030"}),
    );
    assert_eq!(out, json!("0000000000008030: '0' '1' '2'\r\n"));
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
    assert!(m.s.guest().running());
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
    let mut m = Mon::negotiated(0x1, true);
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
        json!({"command-line": "xp /16xb 0x8000"}),
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
    let mut plain = [0u8; 16];
    assert!(m.s.guest().guest_read(0x8000, &mut plain));
    assert_eq!(plain, secret, "the guest itself reads its secret");
}

#[test]
fn states_refuse_out_of_order_commands() {
    // A guest not yet measured: no measurement, no secret, no report.
    let mut s = Session::new(
        SevModel::new(ModelConfig {
            policy: 1,
            handle: 1,
            api: (1, 55, 25),
            ram_size: 1 << 16,
            secret_area: None,
            session: None,
            seed: b"x".to_vec(),
            certs: None,
            cbitpos: 51,
        }),
        true,
        QmpVersion::default(),
    );
    s.connect();
    let mut send = |v: Value| -> Value {
        serde_json::from_str(s.feed(v.to_string().as_bytes())[0].trim_end()).unwrap()
    };
    send(json!({"execute": "qmp_capabilities"}));
    let desc = |v: Value| v["error"]["desc"].as_str().unwrap().to_string();
    assert_eq!(
        desc(send(json!({"execute": "query-sev-launch-measure"}))),
        "SEV launch measurement is not available"
    );
    assert_eq!(
        desc(send(json!({"execute": "sev-inject-launch-secret",
                         "arguments": {"packet-header": "AA==", "secret": "AA=="}}))),
        "SEV: no secret area found in OVMF, gpa must be specified."
    );
    assert_eq!(
        desc(send(json!({"execute": "sev-inject-launch-secret",
                         "arguments": {"packet-header": "AA==", "secret": "AA==", "gpa": 0}}))),
        "SEV: Not in correct state. (LSECRET) 1"
    );
    assert_eq!(
        desc(send(json!({"execute": "query-sev-attestation-report",
                         "arguments": {"mnonce": b64(&[0; 16])}}))),
        "SEV: Failed to query the attestation report length ret=-5 fw_err=2 (Guest state is invalid)"
    );
    assert_eq!(
        desc(send(json!({"execute": "query-sev-capabilities"}))),
        "SEV: Failed to export PDH cert ret=-1 fw_err=1 (Platform state is invalid)"
    );
    assert!(desc(send(json!({"execute": "cont"}))).contains("LAUNCH_FINISH"));
}

#[test]
fn malformed_input_never_panics_or_hangs() {
    let mut m = Mon::negotiated(1, true);
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
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmp.sock");
    std::fs::write(&path, b"stale").unwrap();
    let server = QmpServer::bind(&path).unwrap();
    let session = Arc::new(Mutex::new(Session::new(
        launched(1),
        true,
        QmpVersion::default(),
    )));
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
    let session = Arc::new(Mutex::new(Session::new(
        launched(1),
        true,
        QmpVersion::default(),
    )));
    let t = ServerThread::spawn(server, session, first);
    assert!(client.join().unwrap().starts_with("{\"QMP\": {\"version\""));
    t.stop().unwrap();
}
