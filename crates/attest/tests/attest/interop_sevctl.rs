//! Differential tests against sevctl 0.6.2 (virtee, crates.io; spec sev-legacy.md §9):
//! sevctl as the guest owner on a PDH we made, its measurement and secret files against
//! ours, `sevctl validate` on our PEK-signed reports and `sevctl verify` on our chains
//! and on AMD's genuine Naples chain. Skipped when sevctl is absent (unless
//! SOFTSEV_REQUIRE_INTEROP=1).
//!
//! sevctl's `session` MACs a mangled policy whenever bits 6–31 are set (§9.3:
//! `Policy::from(u32)` keeps only the six flag bits and moves bits 16–31 elsewhere), so
//! every policy given to sevctl here keeps bits 6–31 zero.

use base64::Engine;
use softsev_abi::sev_buf::{SevPacketHeader, SevSession};
use softsev_abi::sev_cert::SevCert;
use softsev_attest::sev::owner::{
    MeasureInputs, launch_measure_blob, open_secret, open_session, parse_guid, parse_secret_table,
    seal_secret, sevctl_macs_policy,
};
use softsev_attest::sev::{
    CaChoice, SevChainOptions, SevReportExpect, verify_report_with_pek, verify_sev_chain,
};
use softsev_crypto::rng::Rng;
use std::path::Path;
use std::process::{Command, Output};
use zerocopy::{FromBytes, IntoBytes};

use super::sev_chain::{ca_file, naples_chain, platform};
use softsev_testkit::{fixture_dir, tool};

fn run(sevctl: &Path, dir: &Path, args: &[&str]) -> Output {
    Command::new(sevctl)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn b64d(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .unwrap()
}

fn b64e(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn sevctl_session_on_our_pdh_opens_with_our_platform_side() {
    let Some(sevctl) = tool("sevctl") else { return };
    let p = platform();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pdh.cert"), p.pdh.as_bytes()).unwrap();
    // Policies with bits 6–31 zero (§9.3): NODBG, NOKS, ES, NOSEND, DOMAIN, SEV mixes.
    for policy in [0u32, 0x1, 0x3, 0x5, 0x3F] {
        let name = format!("s{policy}");
        let o = run(
            &sevctl,
            dir.path(),
            &["session", "--name", &name, "pdh.cert", &policy.to_string()],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let rd = |suffix: &str| std::fs::read(dir.path().join(format!("{name}_{suffix}"))).unwrap();
        let godh =
            SevCert::read_from_bytes(&b64d(&String::from_utf8(rd("godh.b64")).unwrap())).unwrap();
        let session =
            SevSession::read_from_bytes(&b64d(&String::from_utf8(rd("session.b64")).unwrap()))
                .unwrap();
        let (tek, tik) = open_session(&p.pdh_key, &godh, &session, policy).unwrap();
        assert_eq!(&tek[..], &rd("tek.bin")[..], "policy {policy:#x}");
        assert_eq!(&tik[..], &rd("tik.bin")[..], "policy {policy:#x}");
        // The GODH sevctl makes has the shape ours has (§2.1 table).
        assert_eq!(
            (
                godh.pubkey_usage,
                godh.pubkey_algo,
                godh.api_major,
                godh.api_minor
            ),
            (0x1003, 3, 0, 0)
        );
        // The policy is bound: another policy fails as the firmware would.
        assert!(open_session(&p.pdh_key, &godh, &session, policy ^ 0x2).is_err());
    }
}

#[test]
fn sevctl_session_macs_a_mangled_policy_when_bits_6_to_31_are_set() {
    // §9.3, reproduced: the typed policy does not open sevctl's session, the value
    // `sevctl_macs_policy` predicts does. (Our own sessions MAC the typed policy.)
    let Some(sevctl) = tool("sevctl") else { return };
    let p = platform();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pdh.cert"), p.pdh.as_bytes()).unwrap();
    for policy in [0x1003u32, 0x0137_0005, 0x0001_0005] {
        let o = run(
            &sevctl,
            dir.path(),
            &["session", "--name", "m", "pdh.cert", &policy.to_string()],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let rd = |suffix: &str| std::fs::read(dir.path().join(format!("m_{suffix}"))).unwrap();
        let godh =
            SevCert::read_from_bytes(&b64d(&String::from_utf8(rd("godh.b64")).unwrap())).unwrap();
        let session =
            SevSession::read_from_bytes(&b64d(&String::from_utf8(rd("session.b64")).unwrap()))
                .unwrap();
        assert!(
            open_session(&p.pdh_key, &godh, &session, policy).is_err(),
            "{policy:#x}"
        );
        let (_, tik) =
            open_session(&p.pdh_key, &godh, &session, sevctl_macs_policy(policy)).unwrap();
        assert_eq!(&tik[..], &rd("tik.bin")[..]);
    }
}

#[test]
fn sevctl_measurement_build_equals_ours() {
    let Some(sevctl) = tool("sevctl") else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::seeded(b"measurement interop", "t");
    for i in 0..4u8 {
        let tik: [u8; 16] = rng.array();
        let mnonce: [u8; 16] = rng.array();
        let m = MeasureInputs {
            api_major: i % 2,
            api_minor: 17 + i * 9,
            build: 3 + i,
            policy: [0x1, 0x3, 0x5, 0x3F][i as usize],
            launch_digest: rng.array(),
        };
        std::fs::write(dir.path().join("tik.bin"), tik).unwrap();
        let o = run(
            &sevctl,
            dir.path(),
            &[
                "measurement",
                "build",
                "--api-major",
                &m.api_major.to_string(),
                "--api-minor",
                &m.api_minor.to_string(),
                "--build-id",
                &m.build.to_string(),
                "--policy",
                &format!("{:#x}", m.policy),
                "--tik",
                "tik.bin",
                "--nonce",
                &b64e(&mnonce),
                "--launch-digest",
                &b64e(&m.launch_digest),
            ],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let theirs = b64d(&String::from_utf8(o.stdout).unwrap());
        assert_eq!(
            theirs,
            launch_measure_blob(&tik, &m, &mnonce).to_vec(),
            "case {i}"
        );
    }
}

#[test]
fn sevctl_secret_build_opens_with_ours_and_ours_equals_it() {
    let Some(sevctl) = tool("sevctl") else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut rng = Rng::seeded(b"secret interop", "t");
    let tik: [u8; 16] = rng.array();
    let tek: [u8; 16] = rng.array();
    let iv: [u8; 16] = rng.array();
    let blob: [u8; 48] = {
        let mut b = [0u8; 48];
        rng.fill(&mut b);
        b
    };
    std::fs::write(d.join("tik.bin"), tik).unwrap();
    std::fs::write(d.join("tek.bin"), tek).unwrap();
    std::fs::write(d.join("meas.bin"), blob).unwrap();
    std::fs::write(d.join("s1.txt"), b"disk passphrase").unwrap();
    std::fs::write(d.join("s2.bin"), [0xA5u8; 100]).unwrap();
    let g1 = "736869e5-84f0-4973-92ec-06879ce3da0b";
    let g2 = "0e8e5e5b-1f63-4cbd-9aa5-2a6c6c6b4e21";
    let o = run(
        &sevctl,
        d,
        &[
            "secret",
            "build",
            "--tik",
            "tik.bin",
            "--tek",
            "tek.bin",
            "--launch-measure-blob",
            "meas.bin",
            "--iv",
            &b64e(&iv),
            "--secret",
            &format!("{g1}:s1.txt"),
            "--secret",
            &format!("{g2}:s2.bin"),
            "hdr.bin",
            "payload.bin",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let hdr = std::fs::read(d.join("hdr.bin")).unwrap();
    let payload = std::fs::read(d.join("payload.bin")).unwrap();
    assert_eq!(hdr.len(), 52);
    let header = SevPacketHeader::read_from_bytes(&hdr).unwrap();
    let measure: [u8; 32] = blob[..32].try_into().unwrap();
    // Theirs verifies and decrypts by the firmware's rules (§3.5).
    let pt = open_secret(&tek, &tik, &measure, &header, &payload).unwrap();
    let entries = parse_secret_table(&pt).unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].guid, parse_guid(g1).unwrap());
    assert_eq!(&*entries[0].data, b"disk passphrase");
    assert_eq!(&*entries[1].data, &[0xA5u8; 100][..]);
    // Ours, over the same table and IV, is byte-identical.
    let ours = seal_secret(&tek, &tik, &measure, &iv, &pt).unwrap();
    assert_eq!(ours.header.as_bytes(), &hdr[..]);
    assert_eq!(ours.ciphertext, payload);
    // A tampered header is refused.
    let mut bad = header;
    bad.mac[0] ^= 1;
    assert!(open_secret(&tek, &tik, &measure, &bad, &payload).is_err());
}

#[test]
fn sevctl_validate_accepts_our_reports_exactly_when_we_do() {
    let Some(sevctl) = tool("sevctl") else { return };
    let p = platform();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("chain.cert"), p.chain_bytes()).unwrap();
    let mut rng = Rng::seeded(b"validate", "t");
    let report = p.sign_report(rng.array(), rng.array(), 0x1, &mut rng);
    let mut cases = vec![("genuine", report.to_vec())];
    // 0x72: a byte of r above its 48 significant bytes.
    for off in [0x00usize, 0x10, 0x30, 0x40, 0x72, 0x90] {
        let mut b = report.to_vec();
        b[off] ^= 1;
        cases.push(("flipped", b));
    }
    cases.push(("short", report[..0xC0].to_vec()));
    for (i, (what, bytes)) in cases.iter().enumerate() {
        std::fs::write(d.join("report.bin"), bytes).unwrap();
        let theirs = run(&sevctl, d, &["validate", "chain.cert", "report.bin"])
            .status
            .success();
        let ours = verify_report_with_pek(&p.pek, bytes, &SevReportExpect::default()).passed();
        assert_eq!(
            ours, theirs,
            "case {i} ({what}): softsev {ours}, sevctl {theirs}"
        );
        assert_eq!(ours, *what == "genuine", "case {i}");
    }
}

fn sevctl_verify(sevctl: &Path, d: &Path, chain: &[u8], ca: Option<&[u8]>) -> bool {
    std::fs::write(d.join("sev.cert"), chain).unwrap();
    let mut args = vec!["verify", "--sev", "sev.cert"];
    if let Some(ca) = ca {
        std::fs::write(d.join("ca.cert"), ca).unwrap();
        args.extend(["--ca", "ca.cert"]);
    }
    run(sevctl, d, &args).status.success()
}

#[test]
fn sevctl_verify_agrees_on_our_chains_and_amds() {
    let Some(sevctl) = tool("sevctl") else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Our chain under our CA: five green links; flipped bytes in each certificate and
    // in the CA break it for both.
    let p = platform();
    let chain = p.chain_bytes();
    let ca = p.ca.to_ask_ark();
    let ours = |chain: &[u8], ca: &[u8]| {
        verify_sev_chain(
            chain,
            &SevChainOptions {
                ca: CaChoice::Custom(Box::new(
                    softsev_attest::sev::SevCa::from_ask_ark(ca).unwrap(),
                )),
                oca: None,
            },
        )
        .passed()
    };
    assert!(sevctl_verify(&sevctl, d, &chain, Some(&ca)));
    assert!(ours(&chain, &ca));
    for i in 0..4 {
        // api_minor, a low byte of sig1 (r), a high byte of r beyond the 48 significant.
        for off in [5usize, 0x41C + 3, 0x41C + 50] {
            let mut c = chain.clone();
            c[i * 0x824 + off] ^= 1;
            let theirs = sevctl_verify(&sevctl, d, &c, Some(&ca));
            assert_eq!(ours(&c, &ca), theirs, "cert {i} offset {off:#x}");
            assert!(!theirs, "cert {i} offset {off:#x}");
        }
    }
    let ask_len = ca.len() / 2;
    for at in [0x28, ask_len + 0x28, ask_len - 5, ca.len() - 5] {
        let mut c = ca.clone();
        c[at] ^= 1;
        let theirs = sevctl_verify(&sevctl, d, &chain, Some(&c));
        assert_eq!(ours(&chain, &c), theirs, "CA byte {at}");
        assert!(!theirs);
    }
    // Our chain without a CA: sevctl cannot deduce the generation; neither can we.
    assert!(!sevctl_verify(&sevctl, d, &chain, None));
    assert!(!verify_sev_chain(&chain, &SevChainOptions::default()).passed());
    // AMD's Naples chain: built-in CA and the Naples CA file pass, the Rome CA fails.
    let Some(fx) = fixture_dir("sev-legacy") else {
        return;
    };
    let naples = naples_chain(&fx);
    assert!(sevctl_verify(&sevctl, d, &naples, None));
    assert!(verify_sev_chain(&naples, &SevChainOptions::default()).passed());
    assert!(sevctl_verify(
        &sevctl,
        d,
        &naples,
        Some(&ca_file(&fx, "naples"))
    ));
    assert!(!sevctl_verify(
        &sevctl,
        d,
        &naples,
        Some(&ca_file(&fx, "rome"))
    ));
    assert!(!ours(&naples, &ca_file(&fx, "rome")));
}
