//! QMP's migration commands as QEMU answers them (`qapi/migration.json`,
//! `migration/migration.c`, `migration/options.c`, and the SEV live-migration series'
//! `sev-pdh` / `sev-plat-cert` / `sev-amd-cert` parameters): parameters set and shown,
//! the QAPI visitor's argument errors, `migrate` refusals (no address, an unknown
//! transport, an SNP guest's blocker), `migrate-incoming` without `-incoming defer`,
//! `query-migrate` before any migration, `-incoming` on the command line.

use super::qmp_protocol::launched;
use serde_json::{Value, json};
use softsev_vmm::migration::{Incoming, MigrationUri, SNP_MIGRATION_BLOCKER};
use softsev_vmm::qmp::{QmpError, QmpGuest, QmpVersion, Session, SevCapability, SevInfo, SevState};

fn send<G: QmpGuest>(s: &mut Session<G>, v: Value) -> Vec<Value> {
    s.feed(format!("{v}\n").as_bytes())
        .iter()
        .map(|l| serde_json::from_str(l.trim_end()).unwrap())
        .collect()
}

fn negotiated<G: QmpGuest>(g: G) -> Session<G> {
    let mut s = Session::new(g, false, QmpVersion::default());
    s.connect();
    send(&mut s, json!({"execute": "qmp_capabilities"}));
    s
}

#[test]
fn parameters_set_and_query() {
    let Some((_, vm)) = launched(0x1) else {
        return;
    };
    let mut s = negotiated(vm);
    let r = send(&mut s, json!({"execute": "query-migrate-parameters"}));
    assert_eq!(
        r[0]["return"],
        json!({"max-bandwidth": 134217728, "downtime-limit": 300,
               "sev-pdh": "", "sev-plat-cert": "", "sev-amd-cert": ""})
    );
    let r = send(
        &mut s,
        json!({"execute": "migrate-set-parameters", "arguments": {
            "sev-pdh": "UERI", "sev-plat-cert": "Q0VSVA==", "sev-amd-cert": null,
            "max-bandwidth": 1048576, "downtime-limit": 50}}),
    );
    assert_eq!(r[0], json!({"return": {}}));
    let r = send(&mut s, json!({"execute": "query-migrate-parameters"}));
    assert_eq!(r[0]["return"]["sev-pdh"], "UERI");
    assert_eq!(r[0]["return"]["sev-plat-cert"], "Q0VSVA==");
    assert_eq!(r[0]["return"]["sev-amd-cert"], "", "null is stored as \"\"");
    assert_eq!(r[0]["return"]["max-bandwidth"], 1048576);
    assert_eq!(r[0]["return"]["downtime-limit"], 50);
    for (args, desc) in [
        (
            json!({"downtime-limit": 2000001}),
            "Parameter 'downtime_limit' expects an integer in the range of 0 to 2000 seconds",
        ),
        (
            json!({"sev-pdh": 5}),
            "Invalid parameter type for 'sev-pdh', expected: StrOrNull",
        ),
        (
            json!({"max-bandwidth": "fast"}),
            "Parameter 'max-bandwidth' expects uint64",
        ),
        (
            json!({"sev-bogus": "x"}),
            "Parameter 'sev-bogus' is unexpected",
        ),
    ] {
        let r = send(
            &mut s,
            json!({"execute": "migrate-set-parameters", "arguments": args}),
        );
        assert_eq!(r[0]["error"]["desc"], desc, "{args}");
        assert_eq!(r[0]["error"]["class"], "GenericError");
    }
    // A refused set changes nothing.
    let r = send(&mut s, json!({"execute": "query-migrate-parameters"}));
    assert_eq!(r[0]["return"]["downtime-limit"], 50);
}

#[test]
fn migrate_refusals_and_query_before_any_migration() {
    let Some((_, vm)) = launched(0x1) else {
        return;
    };
    let mut s = negotiated(vm);
    let r = send(&mut s, json!({"execute": "query-migrate"}));
    assert_eq!(r[0], json!({"return": {"status": "none"}}));
    for (args, desc) in [
        (json!({}), "need either 'uri' or 'channels' argument"),
        (
            json!({"uri": "tcp:0:4444"}),
            "unknown migration protocol: tcp:0:4444",
        ),
        (
            json!({"uri": "nonsense"}),
            "unknown migration protocol: nonsense",
        ),
        (
            json!({"uri": "file:/x", "detach": "yes"}),
            "Invalid parameter type for 'detach', expected: boolean",
        ),
    ] {
        let r = send(&mut s, json!({"execute": "migrate", "arguments": args}));
        let d = r[0]["error"]["desc"].as_str().unwrap_or_default();
        assert!(d.starts_with(desc), "{args}: {r:?}");
    }
    let r = send(
        &mut s,
        json!({"execute": "migrate-incoming", "arguments": {"uri": "file:/x"}}),
    );
    assert_eq!(
        r[0]["error"]["desc"],
        "'-incoming' was not specified on the command line"
    );
    let r = send(&mut s, json!({"execute": "migrate_cancel"}));
    assert_eq!(r[0], json!({"return": {}}), "nothing to cancel: success");
    let r = send(&mut s, json!({"execute": "query-commands"}));
    let names: Vec<&str> = r[0]["return"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for c in [
        "migrate",
        "migrate-incoming",
        "migrate-set-parameters",
        "query-migrate",
        "query-migrate-parameters",
        "migrate_cancel",
    ] {
        assert!(names.contains(&c), "{c}");
    }
}

/// What the monitor of an SEV-SNP guest answers: QEMU's blocker text, before any
/// stream is opened.
#[derive(Debug)]
struct SnpGuest;

impl QmpGuest for SnpGuest {
    fn sev_info(&self) -> SevInfo {
        SevInfo {
            enabled: true,
            api_major: 1,
            api_minor: 55,
            build_id: 0,
            state: SevState::Running,
            policy: 0x30000,
            handle: 1,
        }
    }
    fn capabilities(&mut self) -> Result<SevCapability, QmpError> {
        Err(QmpError::generic(
            "SEV-SNP guests have no legacy capabilities",
        ))
    }
    fn launch_measure(&self) -> Option<Vec<u8>> {
        None
    }
    fn secret_area(&self) -> Option<(u32, u32)> {
        None
    }
    fn inject_secret(&mut self, _: &[u8], _: &[u8], _: u64) -> Result<(), QmpError> {
        Err(QmpError::generic(
            "SEV-SNP: secret injection is not supported",
        ))
    }
    fn attestation_report(&mut self, _: &[u8; 16]) -> Result<Vec<u8>, QmpError> {
        Err(QmpError::generic("SEV-SNP: use the guest's report request"))
    }
    fn read_phys(&mut self, _: u64, _: &mut [u8]) -> bool {
        false
    }
    fn translate(&mut self, _: u32, _: u64) -> Option<u64> {
        None
    }
    fn start(&mut self) -> Result<(), QmpError> {
        Ok(())
    }
    fn stop(&mut self) {}
    fn quit(&mut self) {}
    fn migration_blocker(&self) -> Option<String> {
        Some(SNP_MIGRATION_BLOCKER.to_string())
    }
}

#[test]
fn snp_guest_migrate_fails_with_qemus_blocker() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snp.mig");
    let mut s = negotiated(SnpGuest);
    let r = send(
        &mut s,
        json!({"execute": "migrate", "arguments": {"uri": format!("file:{}", path.display())}}),
    );
    assert_eq!(
        r[0]["error"],
        json!({"class": "GenericError", "desc": "SEV-SNP: Migration is not implemented"})
    );
    assert!(!path.exists(), "no stream opened");
    let r = send(&mut s, json!({"execute": "query-migrate"}));
    assert_eq!(r[0]["return"]["status"], "none");
}

#[test]
fn incoming_on_the_command_line() {
    let base = "-machine q35,confidential-guest-support=sev0 \
                -object sev-guest,id=sev0,cbitpos=51,reduced-phys-bits=1 -cpu EPYC-Milan";
    let parse = |extra: &str| {
        softsev_vmm::parse_args(
            format!("{base} {extra}")
                .split_whitespace()
                .map(str::to_string),
        )
    };
    let c = parse("-incoming defer").unwrap();
    assert_eq!(c.incoming, Some(Incoming::Defer));
    let c = parse("-incoming file:/tmp/a.mig").unwrap();
    assert_eq!(
        c.incoming,
        Some(Incoming::Uri(MigrationUri::File {
            path: "/tmp/a.mig".into(),
            offset: 0
        }))
    );
    assert_eq!(softsev_vmm::parse_args(c.to_args()).unwrap(), c);
    assert_eq!(softsev_vmm::from_toml(&c.to_toml()).unwrap(), c);
    let c = parse("-incoming unix:/tmp/m.sock").unwrap();
    assert_eq!(
        c.incoming,
        Some(Incoming::Uri(MigrationUri::Unix("/tmp/m.sock".into())))
    );
    let e = parse("-incoming tcp:0:4444").unwrap_err().to_string();
    assert!(e.contains("unknown migration protocol"), "{e}");
    let e = softsev_vmm::parse_args(
        "-machine q35,confidential-guest-support=sev0 \
         -object sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1 -incoming defer"
            .split_whitespace()
            .map(str::to_string),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("SEV-SNP: Migration is not implemented"), "{e}");
}

/// `migrate` to a file with the target's certificates set as the SEV series names
/// them, then `migrate-incoming` of that file on a target started with
/// `-incoming defer`: the events, `query-migrate` and the run states on both sides.
#[test]
fn migrate_to_a_file_and_migrate_incoming_it_on_another_chip() {
    use base64::Engine;
    use softsev_vmm::migration::sev::{default_workload, run_workload};
    use softsev_vmm::sev_run::SevVm;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let Some((plan, _)) = super::migration_e2e::plan(0x1, 1) else {
        return;
    };
    let mut src = SevVm::launch(&plan, Some(b"qmp chip A")).unwrap();
    let w = default_workload(&src, b"w", 1 << 20).unwrap();
    src.set_workload(w, 32 << 20);
    src.start().unwrap();
    run_workload(&mut src, 2).unwrap();
    let mut dst = SevVm::incoming(&plan, Some(b"qmp chip B")).unwrap();
    let certs = dst.owner_certificates().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("g.mig");
    let uri = format!("file:{}", file.display());

    let mut s = negotiated(src);
    let r = send(
        &mut s,
        json!({"execute": "migrate-set-parameters", "arguments": {
            "sev-pdh": b64(&certs.sev_chain[..0x824]),
            "sev-plat-cert": b64(&certs.sev_chain[0x824..]),
            "sev-amd-cert": b64(&certs.ca),
            "max-bandwidth": 64 << 20}}),
    );
    assert_eq!(r[0], json!({"return": {}}));
    let r = send(
        &mut s,
        json!({"execute": "migrate", "arguments": {"uri": uri}, "id": 7}),
    );
    let evs: Vec<&str> = r
        .iter()
        .filter_map(|v| v["data"]["status"].as_str())
        .collect();
    assert_eq!(r[0]["event"], "MIGRATION");
    assert_eq!(r[0]["data"]["status"], "setup", "before the reply");
    assert_eq!(r[1], json!({"return": {}, "id": 7}));
    assert_eq!(evs, ["setup", "active", "device", "completed"], "{r:?}");
    assert!(r.iter().any(|v| v["event"] == "STOP"));
    let r = send(&mut s, json!({"execute": "query-migrate"}));
    let info = &r[0]["return"];
    assert_eq!(info["status"], "completed");
    assert_eq!(
        info["ram"]["transferred"],
        std::fs::metadata(&file).unwrap().len()
    );
    assert!(info["ram"]["normal"].as_u64().unwrap() > 0);
    assert_eq!(info["ram"]["page-size"], 4096);
    assert!(info["downtime"].is_u64() && info["total-time"].is_u64());
    let r = send(&mut s, json!({"execute": "query-status"}));
    assert_eq!(r[0]["return"]["status"], "postmigrate");
    let r = send(&mut s, json!({"execute": "cont"}));
    assert!(r[0]["error"]["desc"].as_str().unwrap().contains("SENT"));
    let r = send(
        &mut s,
        json!({"execute": "migrate", "arguments": {"uri": uri}}),
    );
    assert!(
        r.iter().any(|v| v["return"] == json!({})),
        "accepted, then failed: {r:?}"
    );
    assert_eq!(r.last().unwrap()["data"]["status"], "failed");
    let r = send(&mut s, json!({"execute": "query-migrate"}));
    assert_eq!(r[0]["return"]["status"], "failed");
    assert!(
        r[0]["return"]["error-desc"]
            .as_str()
            .unwrap()
            .contains("never overwrites"),
        "{r:?}"
    );

    let mut t = Session::new_incoming(dst, false, true, QmpVersion::default());
    t.connect();
    send(&mut t, json!({"execute": "qmp_capabilities"}));
    let r = send(&mut t, json!({"execute": "query-status"}));
    assert_eq!(r[0]["return"]["status"], "inmigrate");
    let r = send(
        &mut t,
        json!({"execute": "migrate", "arguments": {"uri": "file:/nonexistent"}}),
    );
    assert_eq!(
        r[0]["error"]["desc"],
        "Guest is waiting for an incoming migration"
    );
    let r = send(
        &mut t,
        json!({"execute": "migrate-incoming", "arguments": {"uri": uri}}),
    );
    assert_eq!(r[0], json!({"return": {}}));
    let evs: Vec<&str> = r
        .iter()
        .filter_map(|v| v["data"]["status"].as_str())
        .collect();
    assert_eq!(evs, ["setup", "active", "completed"], "{r:?}");
    assert_eq!(r.last().unwrap()["event"], "RESUME");
    let r = send(&mut t, json!({"execute": "query-status"}));
    assert_eq!(r[0]["return"]["status"], "running");
    let r = send(&mut t, json!({"execute": "query-sev"}));
    assert_eq!(r[0]["return"]["state"], "running");
    let r = send(
        &mut t,
        json!({"execute": "migrate-incoming", "arguments": {"uri": uri}}),
    );
    assert_eq!(
        r[0]["error"]["desc"],
        "The incoming migration has already been started"
    );
    let m = t.guest().migration_state().moved.clone().unwrap().unwrap();
    assert_eq!(m["pages_bad"], 0, "{m}");
    assert!(
        m["batches_before_move"].as_u64().unwrap() > 3,
        "the guest kept writing during the pre-copy: {m}"
    );
}
