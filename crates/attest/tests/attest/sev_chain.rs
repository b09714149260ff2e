//! Legacy SEV chain and report verification (`softsev_attest::sev`) on AMD's genuine
//! Naples chain and built-in CAs (shared/fixtures/sev-legacy, VECTORS.md §1), on the
//! sevctl outcomes of sev-legacy.md §9.2, and on chains made with `sev::issue`.

use softsev_abi::sev_cert::{SevCert, SevUsage};
use softsev_attest::sev::issue::TestPlatform;
use softsev_attest::sev::{
    CaChoice, CaSource, SevCa, SevChainOptions, SevGeneration, SevReportExpect,
    verify_report_with_pek, verify_sev_chain,
};
use softsev_attest::verdict::{Fault, Outcome};
use softsev_crypto::rng::Rng;
use std::path::Path;
use std::sync::OnceLock;
use zerocopy::FromBytes;

use softsev_testkit::fixture_dir;

/// The genuine Naples chain PDH ‖ PEK ‖ OCA ‖ CEK.
pub(crate) fn naples_chain(fx: &Path) -> Vec<u8> {
    let d = fx.join("virtee-sev-tests/naples");
    ["pdh", "pek", "oca", "cek"]
        .iter()
        .flat_map(|n| std::fs::read(d.join(format!("{n}.cert"))).unwrap())
        .collect()
}

/// ASK ‖ ARK of a built-in fixture CA.
pub(crate) fn ca_file(fx: &Path, generation: &str) -> Vec<u8> {
    let d = fx.join("builtin-ca").join(generation);
    let mut v = std::fs::read(d.join("ask.cert")).unwrap();
    v.extend(std::fs::read(d.join("ark.cert")).unwrap());
    v
}

fn custom(bytes: &[u8]) -> SevChainOptions {
    SevChainOptions {
        ca: CaChoice::Custom(Box::new(SevCa::from_ask_ark(bytes).unwrap())),
        oca: None,
    }
}

/// One simulated platform for the tests of this binary (RSA-2048 CA: quick to make).
pub(crate) fn platform() -> &'static TestPlatform {
    static P: OnceLock<TestPlatform> = OnceLock::new();
    P.get_or_init(|| {
        TestPlatform::generate(
            &mut Rng::seeded(b"attest sev tests", "platform"),
            2048,
            (0, 24),
        )
        .unwrap()
    })
}

const LINKS: [&str; 7] = [
    "sev.pdh.signed_by_pek",
    "sev.oca.self_signed",
    "sev.pek.signed_by_oca",
    "sev.pek.signed_by_cek",
    "sev.cek.signed_by_ask",
    "sev.ask.signed_by_ark",
    "sev.ark.self_signed",
];

#[test]
fn genuine_naples_chain_verifies_under_the_builtin_ca() {
    let Some(fx) = fixture_dir("sev-legacy") else {
        return;
    };
    let chain = naples_chain(&fx);
    let v = verify_sev_chain(&chain, &SevChainOptions::default());
    assert!(v.passed(), "{}", v.to_table());
    assert_eq!(v.generation, Some(SevGeneration::Naples));
    assert_eq!(v.ca, Some(CaSource::Builtin(SevGeneration::Naples)));
    for id in LINKS {
        assert_eq!(v.verdict.check(id).unwrap().outcome, Outcome::Pass, "{id}");
    }
    // The same with the CA given as a file (sevctl `--ca naples-ca.cert`): recognised
    // as AMD's genuine ARK.
    let v = verify_sev_chain(&chain, &custom(&ca_file(&fx, "naples")));
    assert!(v.passed(), "{}", v.to_table());
    assert_eq!(v.generation, Some(SevGeneration::Naples));
    assert!(
        v.verdict
            .check("sev.ca")
            .unwrap()
            .detail
            .contains("genuine Naples ARK")
    );
    let j = v.to_json();
    assert_eq!(j["kind"], "sev");
    assert_eq!(j["generation"], "Naples");
    assert_eq!(j["ca"], "custom");
}

#[test]
fn naples_chain_fails_under_every_other_generation_at_the_ask_link() {
    let Some(fx) = fixture_dir("sev-legacy") else {
        return;
    };
    let chain = naples_chain(&fx);
    // §9.2: `sevctl verify --sev naples --ca rome-ca.cert` → only "ASK ⬑̸".
    for g in ["rome", "milan", "genoa", "turin"] {
        let v = verify_sev_chain(&chain, &custom(&ca_file(&fx, g)));
        assert_eq!(
            v.failed_ids(),
            vec!["sev.cek.signed_by_ask"],
            "{g}: {}",
            v.to_table()
        );
        let gen_ = SevGeneration::from_name(g).unwrap();
        let v = verify_sev_chain(
            &chain,
            &SevChainOptions {
                ca: CaChoice::Generation(gen_),
                oca: None,
            },
        );
        assert_eq!(v.failed_ids(), vec!["sev.cek.signed_by_ask"], "{g}");
    }
}

#[test]
fn builtin_cas_are_amds_and_self_consistent() {
    let Some(fx) = fixture_dir("sev-legacy") else {
        return;
    };
    let ids = [
        (
            SevGeneration::Naples,
            "1bb987c359494606b174945601c9ea5b",
            2048,
        ),
        (
            SevGeneration::Rome,
            "e6002122fb58419399d15fee7b131351",
            4096,
        ),
        (
            SevGeneration::Milan,
            "94c38e4177d0479292a7ae671d083fb6",
            4096,
        ),
        (
            SevGeneration::Genoa,
            "9f9d4a8fe761456599f6946c4c010f3a",
            4096,
        ),
        (
            SevGeneration::Turin,
            "d05c3a8bde484904b49552422ceb3942",
            4096,
        ),
    ];
    for (g, ark_id, bits) in ids {
        let ca = SevCa::builtin(g).unwrap();
        assert_eq!(hex::encode(ca.ark.key_id), ark_id, "{g}");
        assert_eq!(ca.ark.modulus_bits, bits, "{g}");
        assert_eq!(ca.ask.certifying_id, ca.ark.key_id, "{g}");
        assert_eq!(ca.ask.key_usage, SevUsage::ASK);
        // The compiled-in bytes are the fixture's (ASK ‖ ARK re-encodes identically).
        let file = ca_file(&fx, &g.name().to_lowercase());
        assert_eq!(ca.to_ask_ark(), file, "{g}");
        assert_eq!(
            SevCa::from_ask_ark(&file).unwrap().claims_builtin(),
            Some(g)
        );
    }
    assert_eq!(SevGeneration::from_name("ROME"), Some(SevGeneration::Rome));
    assert_eq!(SevGeneration::from_name("bergamo"), None);
    // A CA file with bytes after the ARK is refused.
    let mut f = ca_file(&fx, "naples");
    f.push(0);
    assert!(SevCa::from_ask_ark(&f).is_err());
}

#[test]
fn generation_detection_follows_the_cek() {
    let Some(fx) = fixture_dir("sev-legacy") else {
        return;
    };
    let chain = naples_chain(&fx);
    let cek = SevCert::read_from_bytes(&chain[3 * 0x824..]).unwrap();
    assert_eq!(SevGeneration::detect(&cek), Some(SevGeneration::Naples));
    let own = platform();
    assert_eq!(SevGeneration::detect(&own.cek), None);
    // A chain under no built-in CA: the generation cannot be deduced (sevctl: "failed
    // to deduce platform generation"), the CA links are skipped, the verdict fails.
    let v = verify_sev_chain(&own.chain_bytes(), &SevChainOptions::default());
    assert_eq!(v.failed_ids(), vec!["sev.ca"]);
    assert!(
        v.verdict
            .check("sev.ca")
            .unwrap()
            .detail
            .contains("failed to deduce platform generation")
    );
    assert_eq!(
        v.verdict.check("sev.cek.signed_by_ask").unwrap().outcome,
        Outcome::Skip
    );
}

/// Flip one byte of the chain file (cert index `i`, offset `off`) or of the CA file.
fn flip(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at] ^= 0x01;
    b
}

#[test]
fn a_flipped_byte_in_each_certificate_breaks_its_own_link() {
    let Some(fx) = fixture_dir("sev-legacy") else {
        return;
    };
    let chain = naples_chain(&fx);
    let naples = SevChainOptions {
        ca: CaChoice::Generation(SevGeneration::Naples),
        oca: None,
    };
    // api_minor (offset 5) is signed but is not the key: only the link that checks the
    // certificate's own signature breaks.
    let cases: [(usize, &[&str]); 4] = [
        (0, &["sev.pdh.signed_by_pek"]),
        (1, &["sev.pek.signed_by_oca", "sev.pek.signed_by_cek"]),
        (2, &["sev.oca.self_signed"]),
        (3, &["sev.cek.signed_by_ask"]),
    ];
    for (i, want) in cases {
        let v = verify_sev_chain(&flip(&chain, i * 0x824 + 5), &naples);
        assert_eq!(v.failed_ids(), want.to_vec(), "cert {i}: {}", v.to_table());
        // A byte of sig1's value breaks the same links.
        let v = verify_sev_chain(&flip(&chain, i * 0x824 + 0x41C + 7), &naples);
        let want_sig: Vec<&str> = match i {
            1 => vec!["sev.pek.signed_by_oca"],
            _ => want.to_vec(),
        };
        assert_eq!(v.failed_ids(), want_sig, "cert {i} sig1");
    }
    // The PEK's key (offset 0x14: X) breaks the PEK's own links and the PDH it signs.
    let v = verify_sev_chain(&flip(&chain, 0x824 + 0x14), &naples);
    assert!(v.failed("sev.pdh.signed_by_pek") && v.failed("sev.pek.signed_by_oca"));
    // The ASK and the ARK in a CA file (reserved bytes at 0x28 are signed).
    let ca = ca_file(&fx, "naples");
    let ask_len = 832;
    let v = verify_sev_chain(&chain, &custom(&flip(&ca, 0x28)));
    assert_eq!(v.failed_ids(), vec!["sev.ask.signed_by_ark"]);
    let v = verify_sev_chain(&chain, &custom(&flip(&ca, ask_len + 0x28)));
    // The flipped ARK keeps AMD's key id but is not AMD's certificate.
    assert_eq!(v.failed_ids(), vec!["sev.ca", "sev.ark.self_signed"]);
    // With the built-in CA, a CEK flip means no generation's ASK signs it.
    let v = verify_sev_chain(&flip(&chain, 3 * 0x824 + 5), &SevChainOptions::default());
    assert_eq!(v.failed_ids(), vec!["sev.ca"]);
}

#[test]
fn format_and_slot_rules() {
    let Some(fx) = fixture_dir("sev-legacy") else {
        return;
    };
    let chain = naples_chain(&fx);
    let naples = SevChainOptions {
        ca: CaChoice::Generation(SevGeneration::Naples),
        oca: None,
    };
    // Swapped certificates: usages do not fit their positions.
    let mut swapped = chain.clone();
    swapped[..0x824].copy_from_slice(&chain[0x824..2 * 0x824]);
    swapped[0x824..2 * 0x824].copy_from_slice(&chain[..0x824]);
    let v = verify_sev_chain(&swapped, &naples);
    assert!(v.failed("sev.pdh.format") && v.failed("sev.pek.format"));
    // A malformed slot (usage set, algo 0) in the PDH's empty sig2 fails its link, as
    // the firmware's BAD_SIGNATURE (§0.2-2).
    let mut m = chain.clone();
    m[0x61C..0x620].copy_from_slice(&0x1002u32.to_le_bytes());
    let v = verify_sev_chain(&m, &naples);
    assert_eq!(v.failed_ids(), vec!["sev.pdh.signed_by_pek"]);
    let c = v.verdict.check("sev.pdh.signed_by_pek").unwrap();
    assert_eq!(c.fault, Fault::Malformed);
    assert!(c.detail.contains("malformed"), "{}", c.detail);
    // A slot that names another signer does not count: no slot by the PEK.
    let mut m = chain.clone();
    m[0x414..0x418].copy_from_slice(&0x1001u32.to_le_bytes());
    let v = verify_sev_chain(&m, &naples);
    assert!(
        v.verdict
            .check("sev.pdh.signed_by_pek")
            .unwrap()
            .detail
            .contains("no signature slot")
    );
    // A non-zero byte above r's 48 significant bytes: not a P-384 value, even though
    // the low 48 bytes still verify.
    let mut m = chain.clone();
    m[0x41C + 50] = 1;
    let v = verify_sev_chain(&m, &naples);
    assert_eq!(v.failed_ids(), vec!["sev.pdh.signed_by_pek"]);
    // Curve id 1 is not accepted (§0.2-1).
    let mut m = chain.clone();
    m[0x10..0x14].copy_from_slice(&1u32.to_le_bytes());
    let v = verify_sev_chain(&m, &naples);
    assert!(v.failed("sev.pdh.format"));
    // Version 2.
    let mut m = chain.clone();
    m[2 * 0x824] = 2;
    assert!(verify_sev_chain(&m, &naples).failed("sev.oca.format"));
    // Wrong size.
    let v = verify_sev_chain(&chain[..3 * 0x824], &naples);
    assert_eq!(v.failed_ids(), vec!["sev.chain.size"]);
}

#[test]
fn a_separately_given_oca_replaces_the_chains() {
    let Some(fx) = fixture_dir("sev-legacy") else {
        return;
    };
    let chain = naples_chain(&fx);
    let oca = SevCert::read_from_bytes(&chain[2 * 0x824..3 * 0x824]).unwrap();
    let v = verify_sev_chain(
        &chain,
        &SevChainOptions {
            ca: CaChoice::Builtin,
            oca: Some(oca),
        },
    );
    assert!(v.passed());
    assert!(
        v.verdict
            .check("sev.oca.format")
            .unwrap()
            .detail
            .contains("given separately")
    );
    // An unrelated OCA (sevctl `--oca gen-oca.cert`): "•⬑̸ OCA".
    let (other, _) =
        softsev_attest::sev::issue::generate_oca(&mut Rng::seeded(b"o", "oca")).unwrap();
    let v = verify_sev_chain(
        &chain,
        &SevChainOptions {
            ca: CaChoice::Builtin,
            oca: Some(other),
        },
    );
    assert_eq!(v.failed_ids(), vec!["sev.pek.signed_by_oca"]);
}

#[test]
fn simulated_platform_chain_and_report() {
    let p = platform();
    let opts = SevChainOptions {
        ca: CaChoice::Custom(Box::new(p.ca.clone())),
        oca: None,
    };
    let v = verify_sev_chain(&p.chain_bytes(), &opts);
    assert!(v.passed(), "{}", v.to_table());
    assert_eq!(v.generation, None);
    assert!(
        v.verdict
            .check("sev.ca")
            .unwrap()
            .detail
            .contains("not an AMD root")
    );
    let mut rng = Rng::seeded(b"report", "t");
    let ld = [0x11; 32];
    let report = p.sign_report([7; 16], ld, 0x3, &mut rng);
    let expect = SevReportExpect {
        mnonce: Some([7; 16]),
        launch_digest: Some(ld),
        policy: Some(0x3),
        policy_required: Some(0x1),
    };
    let rv = v.clone().with_report(&report, &expect);
    assert!(rv.passed(), "{}", rv.to_table());
    for id in [
        "sev.report.size",
        "sev.report.signer",
        "sev.report.reserved",
        "sev.report.signature",
        "sev.report.mnonce",
        "sev.report.launch_digest",
        "sev.report.policy",
        "sev.report.policy_required",
    ] {
        assert_eq!(rv.verdict.check(id).unwrap().outcome, Outcome::Pass, "{id}");
    }
    // Each signed field (bytes 0x00..0x33) breaks the signature; r and s too,
    // including a byte of r above its 48 significant ones (0x72).
    for off in [0x00, 0x10, 0x30, 0x40, 0x72, 0x88] {
        let v = verify_report_with_pek(&p.pek, &flip(&report, off), &SevReportExpect::default());
        assert!(v.failed("sev.report.signature"), "offset {off:#x}");
    }
    // The signature usage is not signed; it is checked by value.
    let v = verify_report_with_pek(&p.pek, &flip(&report, 0x34), &SevReportExpect::default());
    assert!(v.failed("sev.report.signer"));
    // Reserved (not signed): only that check fails.
    let v = verify_report_with_pek(&p.pek, &flip(&report, 0x3C), &SevReportExpect::default());
    assert_eq!(
        v.failures().map(|c| c.id).collect::<Vec<_>>(),
        vec!["sev.report.reserved"]
    );
    // Size: exactly 0xD0 (sevctl "Unexpected report size encountered.").
    let v = verify_report_with_pek(&p.pek, &report[..0xC0], &SevReportExpect::default());
    assert!(v.failed("sev.report.size"));
    // Expectations.
    let wrong = SevReportExpect {
        mnonce: Some([8; 16]),
        launch_digest: Some([0x12; 32]),
        policy: Some(0x1),
        policy_required: Some(0x8),
    };
    let v = verify_report_with_pek(&p.pek, &report, &wrong);
    assert_eq!(
        v.failures().map(|c| (c.id, c.fault)).collect::<Vec<_>>(),
        vec![
            ("sev.report.mnonce", Fault::Policy),
            ("sev.report.launch_digest", Fault::Policy),
            ("sev.report.policy", Fault::Policy),
            ("sev.report.policy_required", Fault::Policy),
        ]
    );
    // A report signed by another PEK.
    let other =
        TestPlatform::generate(&mut Rng::seeded(b"other", "platform"), 2048, (0, 24)).unwrap();
    let r2 = other.sign_report([7; 16], ld, 3, &mut rng);
    assert!(
        verify_report_with_pek(&p.pek, &r2, &SevReportExpect::default())
            .failed("sev.report.signature")
    );
}

#[test]
fn rsa4096_ca_labels_cek_rsa_sha384() {
    // Rome-and-later shape: a 4096-bit ASK signs the CEK with RSA_SHA384 (0x101), the
    // label the firmware exports (§2.2); relabelling it RSA_SHA256 breaks the link, as
    // sevctl reports "ASK ⬑̸" (§2.6).
    let p =
        TestPlatform::generate(&mut Rng::seeded(b"rsa4096", "platform"), 4096, (1, 55)).unwrap();
    assert_eq!(p.cek.sig1.algo, 0x101);
    let opts = SevChainOptions {
        ca: CaChoice::Custom(Box::new(p.ca.clone())),
        oca: None,
    };
    assert!(verify_sev_chain(&p.chain_bytes(), &opts).passed());
    let mut chain = p.chain_bytes();
    chain[3 * 0x824 + 0x418..3 * 0x824 + 0x41C].copy_from_slice(&1u32.to_le_bytes());
    let v = verify_sev_chain(&chain, &opts);
    assert_eq!(v.failed_ids(), vec!["sev.cek.signed_by_ask"]);
}
