//! Genuine AMD reports (shared/fixtures/snp): each verifiable one passes against the
//! built-in AMD roots at a time inside every certificate's validity; parse-only ones
//! parse with the values EXPECTED.md / EXPECTED-parsed.json give; bad-signature,
//! truncated and per-field tampered variants fail naming the right check; go-sev-guest's
//! policy expectations hold.

use softsev_abi::Product;
use softsev_abi::report::AttestationReport;
use softsev_attest::kds;
use softsev_attest::policy::{TcbSpec, parse_tcb};
use softsev_attest::{
    CertSet, Fault, Policy, TrustStore, VerifyOptions, cert::crl_from_bytes, time::parse_rfc3339,
    verify, verify_batch,
};

use softsev_testkit::fixtures;

/// (name, report, VEK, chain bundle, product).
const SETS: [(&str, &str, &str, &str, Product); 4] = [
    (
        "milan-virtee-sev",
        "snp/milan-virtee-sev/report_milan.bin",
        "snp/milan-virtee-sev/vcek_milan.der",
        "snp/milan-virtee-sev/cert_chain_milan.pem",
        Product::Milan,
    ),
    (
        "milan-go-sev-guest",
        "snp/milan-go-sev-guest/attestation.bin",
        "snp/milan-go-sev-guest/vcek.der",
        "snp/milan-go-sev-guest/milan_ask_ark.pem",
        Product::Milan,
    ),
    (
        "genoa-v3-yaxi",
        "snp/genoa-v3-yaxi/report.bin",
        "snp/genoa-v3-yaxi/vcek.der",
        "snp/genoa-v3-yaxi/vcek-chain-genoa.pem",
        Product::Genoa,
    ),
    (
        "turin-v5-yaxi",
        "snp/turin-v5-yaxi/report.bin",
        "snp/turin-v5-yaxi/vcek.der",
        "snp/turin-v5-yaxi/vcek-chain-turin.pem",
        Product::Turin,
    ),
];

/// Inside every certificate's and CRL's validity.
fn at() -> u64 {
    parse_rfc3339("2026-01-01T00:00:00Z").unwrap()
}

fn opts() -> VerifyOptions<'static> {
    VerifyOptions {
        at: at(),
        ..VerifyOptions::new()
    }
}

fn load(fx: &std::path::Path, vek: &str, chain: &str) -> CertSet {
    let mut c = CertSet::default();
    c.add_file(&fx.join(chain)).unwrap();
    c.add_file(&fx.join(vek)).unwrap();
    c
}

#[test]
fn genuine_reports_verify_against_builtin_roots() {
    let Some(fx) = fixtures() else { return };
    for (name, report, vek, chain, product) in SETS {
        let bytes = std::fs::read(fx.join(report)).unwrap();
        let certs = load(&fx, vek, chain);
        let v = verify(&bytes, &certs, &opts());
        assert!(v.passed(), "{name}:\n{}", v.to_table());
        assert_eq!(v.product, Some(product), "{name}");
        assert_eq!(v.signer, Some("VCEK"));
        for id in [
            "report.signature",
            "chain.vek",
            "chain.intermediate",
            "binding.tcb",
            "binding.hwid",
            "chain.validity",
        ] {
            assert_eq!(
                v.check(id).map(|c| c.outcome),
                Some(softsev_attest::Outcome::Pass),
                "{name} {id}"
            );
        }
        // Only the VEK given: ARK/ASK come from the trust store.
        let mut only_vek = CertSet::default();
        only_vek.add_file(&fx.join(vek)).unwrap();
        let v = verify(&bytes, &only_vek, &opts());
        assert!(v.passed(), "{name} VEK only:\n{}", v.to_table());
        // Through a GHCB certificate table.
        let table = certs.to_table();
        let from_table = CertSet::from_table(&table).unwrap();
        assert!(
            verify(&bytes, &from_table, &opts()).passed(),
            "{name} table"
        );
        // Through a snpguest-style directory with mixed PEM/DER.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("vcek.der"),
            certs.vcek.as_ref().unwrap().der(),
        )
        .unwrap();
        let pem = |d: &[u8]| {
            use base64::Engine;
            let b = base64::engine::general_purpose::STANDARD.encode(d);
            let mut s = String::from("-----BEGIN CERTIFICATE-----\n");
            for line in b.as_bytes().chunks(64) {
                s.push_str(std::str::from_utf8(line).unwrap());
                s.push('\n');
            }
            s + "-----END CERTIFICATE-----\n"
        };
        std::fs::write(
            dir.path().join("ask.pem"),
            pem(certs.ask.as_ref().unwrap().der()),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("ark.pem"),
            pem(certs.ark.as_ref().unwrap().der()),
        )
        .unwrap();
        let from_dir = CertSet::from_dir(dir.path()).unwrap();
        assert!(verify(&bytes, &from_dir, &opts()).passed(), "{name} dir");
        // With AMD's CRL, required.
        let crl_file = fx.join(format!(
            "amd-roots/crl-cyntrisec/{}_crl.der",
            product.name().to_lowercase()
        ));
        let crl = crl_from_bytes("crl", &std::fs::read(crl_file).unwrap()).unwrap();
        let o = VerifyOptions {
            crls: vec![crl],
            require_crl: true,
            ..opts()
        };
        let v = verify(&bytes, &certs, &o);
        assert!(v.passed(), "{name} with CRL:\n{}", v.to_table());
        assert_eq!(
            v.check("crl.revocation").map(|c| c.outcome),
            Some(softsev_attest::Outcome::Pass)
        );
        // Without a CRL but required: fails.
        let o = VerifyOptions {
            require_crl: true,
            ..opts()
        };
        assert!(verify(&bytes, &certs, &o).failed("crl"), "{name}");
    }
}

fn hexstr(v: &serde_json::Value) -> String {
    v.as_str().unwrap().trim_start_matches("0x").to_string()
}

#[test]
fn every_report_parses_with_expected_values() {
    let Some(fx) = fixtures() else { return };
    let text = std::fs::read_to_string(fx.join("snp/EXPECTED-parsed.json")).unwrap();
    let exp: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut n = 0;
    for (file, e) in exp.as_object().unwrap() {
        let bytes = std::fs::read(fx.join(file)).unwrap();
        let r = AttestationReport::parse(&bytes).unwrap();
        r.check_reserved().unwrap();
        let p = &e["parsed"];
        let product = softsev_attest::show::product_for_show(&r, None);
        let j = softsev_attest::show::report_json(&r, product);
        assert_eq!(j["version"], p["version"], "{file}");
        assert_eq!(j["guest_svn"], p["guest_svn"], "{file}");
        assert_eq!(hexstr(&j["policy"]["raw"]), hexstr(&p["policy"]), "{file}");
        assert_eq!(j["vmpl"], p["vmpl"], "{file}");
        assert_eq!(j["signature_algo"], p["sig_algo"], "{file}");
        assert_eq!(
            hexstr(&j["platform_info"]["raw"]),
            hexstr(&p["platform_info"]),
            "{file}"
        );
        for f in [
            "family_id",
            "image_id",
            "report_data",
            "measurement",
            "host_data",
            "id_key_digest",
            "author_key_digest",
            "report_id",
            "report_id_ma",
            "chip_id",
            "current_version",
            "committed_version",
        ] {
            assert_eq!(j[f], p[f], "{file} {f}");
        }
        for f in ["current_tcb", "reported_tcb", "committed_tcb", "launch_tcb"] {
            assert_eq!(j[f]["raw"], p[f]["raw"], "{file} {f}");
            for c in ["bootloader", "tee", "snp", "microcode"] {
                assert_eq!(j[f][c], p[f][c], "{file} {f}.{c}");
            }
            if product == Some(Product::Turin) {
                assert_eq!(j[f]["fmc"], p[f]["fmc"], "{file} {f}.fmc");
            }
        }
        assert_eq!(
            j["cpuid_fam_id"].as_u64().unwrap(),
            u64::from_str_radix(&hexstr(&p["cpuid_fam_id"]), 16).unwrap()
        );
        assert_eq!(
            j["cpuid_mod_id"].as_u64().unwrap(),
            u64::from_str_radix(&hexstr(&p["cpuid_mod_id"]), 16).unwrap()
        );
        assert_eq!(
            j["key_info"]["signing_key"],
            if p["signing_key"] == 0 {
                "VCEK"
            } else {
                "VLEK"
            }
        );
        assert_eq!(j["signature"]["r"], p["sig_r"], "{file}");
        assert_eq!(j["signature"]["s"], p["sig_s"], "{file}");
        if let Some(m) = p.get("launch_mit_vector") {
            assert_eq!(j["launch_mit_vector"], *m);
            assert_eq!(j["current_mit_vector"], p["current_mit_vector"]);
        }
        // The text form names every field.
        let t = softsev_attest::show::report_text(&r, product);
        assert!(
            t.contains("measurement") && t.contains("reported_tcb.raw"),
            "{t}"
        );
        n += 1;
    }
    assert_eq!(n, 6);
    // EXPECTED.md values for the parse-only Milan (LIT) report: current snp 6,
    // reported/committed/launch snp 5, current 1.51.3, committed 1.49.6.
    let r = AttestationReport::parse(
        &std::fs::read(fx.join("snp/milan-lit-noverify/guest_report.bin")).unwrap(),
    )
    .unwrap();
    let t = r.tcbs(Product::Milan).unwrap();
    assert_eq!((t.current.snp, t.reported.snp, t.launch.snp), (6, 5, 5));
    assert_eq!(r.current_version().to_string(), "1.51.3");
    assert_eq!(r.committed_version().to_string(), "1.49.6");
    assert_eq!(
        hex::encode(softsev_crypto::hash::sha384(r.signed_bytes())),
        "8ac02cb042d3909a0e67ecc8a89a4869d6838f0c243a5e4d417757d6c06d10ae15d84d2b728fe80a355792f671afd6b4"
    );
}

#[test]
fn bad_signature_and_truncated_reports_fail() {
    let Some(fx) = fixtures() else { return };
    let lit = fx.join("snp/milan-lit-noverify");
    for f in ["guest_report_corrupt.bin", "guest_report_bad_sig.bin"] {
        let b = std::fs::read(lit.join(f)).unwrap();
        let v = verify(&b, &CertSet::default(), &opts());
        assert!(v.failed("report.size"), "{f}: {}", v.to_table());
        assert_eq!(v.first_failure().unwrap().fault, Fault::Malformed);
    }
    for (name, report, vek, chain, _) in SETS {
        let bytes = std::fs::read(fx.join(report)).unwrap();
        let certs = load(&fx, vek, chain);
        for len in [0, 1, 0x2A0, 0x49F] {
            let v = verify(&bytes[..len], &certs, &opts());
            assert!(v.failed("report.size"), "{name} len {len}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(verify(&long, &certs, &opts()).failed("report.size"));
        // Every byte of R and S (the low 48 of each), one at a time.
        for off in (0x2A0..0x2A0 + 48).chain(0x2E8..0x2E8 + 48).step_by(7) {
            let mut b = bytes.clone();
            b[off] ^= 0x01;
            let v = verify(&b, &certs, &opts());
            let fails: Vec<_> = v.failures().map(|c| c.id).collect();
            assert_eq!(fails, ["report.signature"], "{name} sig byte {off:#x}");
            assert_eq!(v.first_failure().unwrap().fault, Fault::Cryptography);
        }
        // The yaxi test: the whole signature replaced by 'W'.
        let mut b = bytes.clone();
        b[0x2A0..].fill(b'W');
        let v = verify(&b, &certs, &opts());
        assert!(
            v.failed("report.signature") && v.failed("report.reserved"),
            "{name}"
        );
    }
}

/// (field, offset, xor mask) of every report field; the expected failing checks depend
/// on the field and the report version.
fn expected_failures(field: &str, version: u32) -> Vec<&'static str> {
    let sig = "report.signature";
    match field {
        "version" => vec!["report.version"],
        "policy_bit17" => vec!["report.policy", sig],
        "signature_algo" => vec!["report.signature_algo", sig],
        "reserved_04c" | "reserved_18b" | "reserved_1eb" | "reserved_1ef" | "reserved_208" => {
            vec!["report.reserved", sig]
        }
        "signature_reserved" => vec!["report.reserved"],
        "mit_vector" if version < 5 => vec!["report.reserved", sig],
        "cpuid_fam_id" if version < 3 => vec!["report.reserved", sig],
        "cpuid_fam_id" => vec!["report.product"],
        "key_info_signing_key" => vec!["chain.vek_present", sig],
        "key_info_reserved" => vec!["report.reserved", sig],
        "reported_tcb" => vec!["binding.tcb", sig],
        "current_tcb_reserved" => vec!["report.tcb", sig],
        // On Turin bytes 8..64 must stay zero; elsewhere they are part of the hwID.
        "chip_id" | "chip_id_tail" => vec!["binding.hwid", sig],
        "signature_r" => vec![sig],
        _ => vec![sig],
    }
}

#[test]
fn every_tampered_field_fails_naming_the_right_check() {
    let Some(fx) = fixtures() else { return };
    let fields: &[(&str, usize, u8)] = &[
        ("version", 0x000, 0x80),
        ("guest_svn", 0x004, 0x01),
        ("policy_debug", 0x00A, 0x08),
        ("policy_bit17", 0x00A, 0x02),
        ("family_id", 0x010, 0x01),
        ("image_id", 0x020, 0x01),
        ("vmpl", 0x030, 0x01),
        ("signature_algo", 0x034, 0x02),
        ("current_tcb", 0x038, 0x01),
        ("current_tcb_reserved", 0x03C, 0x01),
        ("platform_info", 0x040, 0x08),
        ("key_info_signing_key", 0x048, 0x04),
        ("key_info_reserved", 0x049, 0x01),
        ("reserved_04c", 0x04C, 0x01),
        ("report_data", 0x050, 0x01),
        ("measurement", 0x090, 0x01),
        ("host_data", 0x0C0, 0x01),
        ("id_key_digest", 0x0E0, 0x01),
        ("author_key_digest", 0x110, 0x01),
        ("report_id", 0x140, 0x01),
        ("report_id_ma", 0x160, 0x01),
        ("reported_tcb", 0x180, 0x01),
        ("cpuid_fam_id", 0x188, 0x80),
        ("reserved_18b", 0x18B, 0x01),
        ("chip_id", 0x1A0, 0x01),
        ("chip_id_tail", 0x1A8 + 3, 0x01),
        ("committed_tcb", 0x1E0, 0x01),
        ("current_build", 0x1E8, 0x01),
        ("reserved_1eb", 0x1EB, 0x01),
        ("committed_build", 0x1EC, 0x01),
        ("reserved_1ef", 0x1EF, 0x01),
        ("launch_tcb", 0x1F0, 0x01),
        ("mit_vector", 0x1F8, 0x01),
        ("reserved_208", 0x208, 0x01),
        ("signature_r", 0x2A0, 0x01),
        ("signature_reserved", 0x400, 0x01),
    ];
    for (name, report, vek, chain, product) in SETS {
        let bytes = std::fs::read(fx.join(report)).unwrap();
        let version = u32::from_le_bytes(bytes[0..4].try_into().unwrap());
        let certs = load(&fx, vek, chain);
        for &(field, off, mask) in fields {
            // Turin's TCB reserved bytes are 4..7; Milan/Genoa's 2..6 (0x3C is byte 4
            // of CURRENT_TCB: reserved in both layouts).
            let mut b = bytes.clone();
            b[off] ^= mask;
            let v = verify(&b, &certs, &opts());
            assert!(!v.passed(), "{name}: tampered {field} passed");
            let got: Vec<&str> = v.failures().map(|c| c.id).collect();
            let mut want = expected_failures(field, version);
            // A TCB flip can also put REPORTED_TCB above CURRENT_TCB (checked right after
            // the TCB fields decode, before chain, binding and signature checks).
            if let Ok(r) = AttestationReport::parse(&b)
                && let Ok(t) = r.tcbs(product)
                && !t.current.dominates(&t.reported)
            {
                let at = want
                    .iter()
                    .position(|id| {
                        id.starts_with("chain.")
                            || id.starts_with("binding.")
                            || *id == "report.signature"
                    })
                    .unwrap_or(want.len());
                want.insert(at, "report.tcb_order");
            }
            assert_eq!(got, want, "{name} {field} @{off:#x}:\n{}", v.to_table());
        }
    }
}

#[test]
fn reported_tcb_above_current_is_named() {
    let Some(fx) = fixtures() else { return };
    let (_, report, vek, chain, _) = SETS[3];
    let mut b = std::fs::read(fx.join(report)).unwrap();
    b[0x183] += 1; // Turin REPORTED_TCB.snp 2 -> 3 > CURRENT_TCB.snp 2
    let v = verify(&b, &load(&fx, vek, chain), &opts());
    let fails: Vec<_> = v.failures().map(|c| c.id).collect();
    assert_eq!(
        fails,
        ["report.tcb_order", "binding.tcb", "report.signature"],
        "{}",
        v.to_table()
    );
}

#[test]
fn product_inference_clock_and_pinning() {
    let Some(fx) = fixtures() else { return };
    let (_, report, vek, chain, _) = SETS[0];
    let bytes = std::fs::read(fx.join(report)).unwrap();
    let certs = load(&fx, vek, chain);
    // v2: product from the VCEK's productName.
    let v = verify(&bytes, &certs, &opts());
    assert!(
        v.check("report.product")
            .unwrap()
            .detail
            .contains("VEK productName"),
        "{}",
        v.to_table()
    );
    // A wrong --product for a v2 report: the Milan VCEK does not chain to Genoa.
    let o = VerifyOptions {
        product: Some(Product::Genoa),
        ..opts()
    };
    let v = verify(&bytes, &certs, &o);
    assert!(
        v.failed("chain.ark_pinned") && v.failed("chain.intermediate"),
        "{}",
        v.to_table()
    );
    // Outside validity.
    for t in ["2019-01-01T00:00:00Z", "2031-01-01T00:00:00Z"] {
        let o = VerifyOptions {
            at: parse_rfc3339(t).unwrap(),
            ..opts()
        };
        let v = verify(&bytes, &certs, &o);
        let fails: Vec<_> = v.failures().map(|c| c.id).collect();
        assert_eq!(fails, ["chain.validity"], "{t}");
    }
    // An ARK that is not the pinned one.
    let turin = load(&fx, SETS[3].2, SETS[3].3);
    let mut mixed = certs.clone();
    mixed.ark = turin.ark.clone();
    assert!(verify(&bytes, &mixed, &opts()).failed("chain.ark_pinned"));
    // An ASK from another product.
    let mut mixed = certs.clone();
    mixed.ask = turin.ask.clone();
    let v = verify(&bytes, &mixed, &opts());
    assert!(
        v.failed("chain.intermediate") && v.failed("chain.vek"),
        "{}",
        v.to_table()
    );
    // A VCEK of another chip: binding and signature fail.
    let mut other = certs.clone();
    other.vcek = load(&fx, SETS[1].2, SETS[1].3).vcek;
    let v = verify(&bytes, &other, &opts());
    for id in ["binding.tcb", "binding.hwid", "report.signature"] {
        assert!(v.failed(id), "{id}: {}", v.to_table());
    }
    // Custom roots that lack Milan.
    let genoa_only = TrustStore::custom(
        vec![
            TrustStore::builtin()
                .get(Product::Genoa)
                .unwrap()
                .ark
                .clone(),
        ],
        None,
    )
    .unwrap();
    let o = VerifyOptions {
        trust: &genoa_only,
        ..opts()
    };
    assert!(verify(&bytes, &certs, &o).failed("chain.root"));
    // A Turin VCEK (virtee) parses with its 8-byte hwID and Turin TCB.
    let t = load(
        &fx,
        "snp/turin-virtee-sev/vcek_turin.der",
        "snp/turin-virtee-sev/cert_chain_turin.pem",
    );
    let e = t.vcek.as_ref().unwrap().extensions();
    assert_eq!(
        e.hw_id.as_deref(),
        Some(&hex::decode("1e550a8ee5cf9f4d").unwrap()[..])
    );
    assert_eq!(e.struct_version, Some(1));
    assert_eq!(e.product(), Some(Product::Turin));
    assert_eq!(e.tcb(Product::Turin).map(|t| t.microcode), Some(9));
    t.vcek
        .as_ref()
        .unwrap()
        .verify_signed_by(t.ask.as_ref().unwrap())
        .unwrap();
}

#[test]
fn go_sev_guest_policy_expectations() {
    let Some(fx) = fixtures() else { return };
    let (_, report, vek, chain, _) = SETS[1];
    let bytes = std::fs::read(fx.join(report)).unwrap();
    let certs = load(&fx, vek, chain);
    let run = |p: Policy| {
        let o = VerifyOptions {
            policy: p,
            ..opts()
        };
        verify(&bytes, &certs, &o)
    };
    let tcb = |s: &str| match parse_tcb(s, Some(Product::Milan)).unwrap() {
        TcbSpec::Components(t) => t,
        TcbSpec::Raw(_) => unreachable!(),
    };
    let ok = |p: Policy| {
        let v = run(p);
        assert!(v.passed(), "{}", v.to_table());
    };
    let bad = |p: Policy, id: &str, msg: &str| {
        let v = run(p);
        let c = v.failures().next().unwrap_or_else(|| panic!("{id} passed"));
        assert_eq!(c.id, id);
        assert_eq!(c.fault, Fault::Policy);
        assert!(c.detail.contains(msg), "{id}: {}", c.detail);
    };
    ok(Policy {
        min_tcb: Some(tcb("4901323769462652930")),
        min_launch_tcb: Some(tcb("4901323769462652930")),
        ..Policy::default()
    });
    bad(
        Policy {
            min_tcb: Some(tcb("4901323769462652931")),
            ..Policy::default()
        },
        "policy.min_tcb",
        "below the minimum",
    );
    bad(
        Policy {
            min_launch_tcb: Some(tcb("4901323769462652931")),
            ..Policy::default()
        },
        "policy.min_launch_tcb",
        "below",
    );
    ok(Policy {
        min_version: Some((1, 49)),
        min_build: Some(0),
        ..Policy::default()
    });
    bad(
        Policy {
            min_version: Some((1, 50)),
            ..Policy::default()
        },
        "policy.min_version",
        "expected firmware >= 1.50",
    );
    bad(
        Policy {
            min_build: Some(90),
            ..Policy::default()
        },
        "policy.min_build",
        "build >= 90",
    );
    ok(Policy {
        product: Some(Product::Milan),
        stepping: Some(0),
        vmpl: Some(0),
        platform_info_required: Some(1),
        max_guest_policy: Some(softsev_abi::GuestPolicy(0xb0000)),
        ..Policy::default()
    });
    bad(
        Policy {
            stepping: Some(12),
            ..Policy::default()
        },
        "policy.stepping",
        "expected product stepping 12, got 0",
    );
    bad(
        Policy {
            max_guest_policy: Some(softsev_abi::GuestPolicy(0x30000)),
            ..Policy::default()
        },
        "policy.guest_policy",
        "allows DEBUG",
    );
    let mut rd = [0u8; 64];
    rd[..5].copy_from_slice(&[1, 2, 3, 4, 5]);
    let meas: [u8; 48] = hex::decode("b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01").unwrap().try_into().unwrap();
    let rid: [u8; 32] =
        hex::decode("8edc638e1857c555d21f6b11bda3c8b1b5a09dba4852b4c8ee7aa2f16f22cc0a")
            .unwrap()
            .try_into()
            .unwrap();
    let chip = hex::decode("3ac3fe21e13fb0990eb28a802e3fb6a29483a6b0753590c951bdd3b8e53786184ca39e359669a2b76a1936776b564ea464cdce40c05f63c9b610c5068b006b5d").unwrap();
    ok(Policy {
        report_data: Some(rd),
        measurement: Some(meas),
        report_id: Some(rid),
        report_id_ma: Some([0xFF; 32]),
        host_data: Some([0; 32]),
        family_id: Some([0; 16]),
        image_id: Some([0; 16]),
        id_key_digest: Some([0; 48]),
        author_key_digest: Some([0; 48]),
        chip_ids: vec![vec![0; 64], chip.clone()],
        require_committed: true,
        platform_info_forbidden: Some(0x2),
        min_guest_svn: Some(0),
        ..Policy::default()
    });
    let mut m2 = meas;
    m2[0] ^= 1;
    bad(
        Policy {
            measurement: Some(m2),
            ..Policy::default()
        },
        "policy.measurement",
        "expected",
    );
    let mut rd2 = rd;
    rd2[63] = 1;
    bad(
        Policy {
            report_data: Some(rd2),
            ..Policy::default()
        },
        "policy.report_data",
        "expected",
    );
    bad(
        Policy {
            chip_ids: vec![vec![0; 64]],
            ..Policy::default()
        },
        "policy.chip_id",
        "not in the allow-list",
    );
    bad(
        Policy {
            vmpl: Some(1),
            ..Policy::default()
        },
        "policy.vmpl",
        "expected VMPL 1, got 0",
    );
    bad(
        Policy {
            product: Some(Product::Genoa),
            ..Policy::default()
        },
        "policy.product",
        "expected product Genoa",
    );
    bad(
        Policy {
            platform_info_required: Some(0x2),
            ..Policy::default()
        },
        "policy.platform_info_required",
        "TSME_EN",
    );
    bad(
        Policy {
            require_author_key: true,
            ..Policy::default()
        },
        "policy.author_key",
        "no author key",
    );
    bad(
        Policy {
            require_id_block: true,
            ..Policy::default()
        },
        "policy.id_block",
        "no ID block",
    );
    bad(
        Policy {
            required_mit_vector: Some(1),
            ..Policy::default()
        },
        "policy.mit_vector",
        "report v2",
    );
    // yaxi: the three non-Genoa-v5 reports are below 1.55.49 / .35 / .65 committed.
    let (_, report, vek, chain, _) = SETS[2];
    let b = std::fs::read(fx.join(report)).unwrap();
    let o = VerifyOptions {
        policy: Policy {
            min_version: Some((1, 55)),
            min_build: Some(49),
            ..Policy::default()
        },
        ..opts()
    };
    let v = verify(&b, &load(&fx, vek, chain), &o);
    assert!(v.failed("policy.min_build"), "{}", v.to_table());
    assert!(
        v.check("policy.min_build")
            .unwrap()
            .detail
            .contains("1.55.39")
    );
}

#[test]
fn batch_verification_matches_single() {
    let Some(fx) = fixtures() else { return };
    let (_, report, vek, chain, _) = SETS[3];
    let bytes = std::fs::read(fx.join(report)).unwrap();
    let certs = load(&fx, vek, chain);
    let mut reports = vec![bytes.clone(); 64];
    reports[7][0x90] ^= 1;
    reports[30].truncate(100);
    let verdicts = verify_batch(&reports, &certs, &opts());
    for (i, v) in verdicts.iter().enumerate() {
        assert_eq!(v.passed(), i != 7 && i != 30, "{i}");
        let single = verify(&reports[i], &certs, &opts());
        let ids = |v: &softsev_attest::Verdict| {
            v.checks
                .iter()
                .map(|c| (c.id, c.outcome))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(v), ids(&single), "{i}");
    }
    let json = verdicts[7].to_json();
    assert_eq!(json["passed"], false);
    assert!(
        json["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == "report.signature" && c["fault"] == "cryptography")
    );
    // The KDS URL of this report's VCEK.
    let r = AttestationReport::parse(&bytes).unwrap();
    let t = r.tcbs(Product::Turin).unwrap();
    assert_eq!(
        kds::vcek_url(Product::Turin, &r.chip_id, &t.reported),
        "https://kdsintf.amd.com/vcek/v1/Turin/3b42092f69c656d3?fmcSPL=0&blSPL=1&teeSPL=0&snpSPL=2&ucodeSPL=71"
    );
}
