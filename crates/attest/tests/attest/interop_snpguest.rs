//! Differential test against `snpguest verify attestation` (virtee, crates.io): on the
//! genuine fixtures, tampered variants and reports signed by softsev's own firmware,
//! our verdict passes exactly when snpguest accepts. Skipped when snpguest is absent
//! (unless SOFTSEV_REQUIRE_INTEROP=1).

use softsev_abi::ecdsa::EcdsaSignature;
use softsev_abi::report::{AttestationReport, KeyInfo, ReportTcbs, SigningKey};
use softsev_abi::{Product, TcbVersion};
use softsev_attest::{AmdCert, CertSet, TrustStore, VerifyOptions, time::parse_rfc3339, verify};
use std::path::{Path, PathBuf};

use softsev_testkit::tool;

fn snpguest_accepts(sg: &Path, dir: &Path, report: &[u8], product: Product, v2: bool) -> bool {
    let path = dir.join("report.bin");
    std::fs::write(&path, report).unwrap();
    let mut c = std::process::Command::new(sg);
    c.args(["verify", "attestation"]);
    if v2 {
        c.args(["-p", &product.name().to_lowercase()]);
    }
    c.arg(dir).arg(&path).output().unwrap().status.success()
}

/// Field offsets to flip: REPORT_DATA, MEASUREMENT, REPORTED_TCB, CHIP_ID, R, and
/// a reserved byte.
const FLIPS: [usize; 6] = [0x50, 0x90, 0x180, 0x1A0, 0x2A0, 0x18C];

fn compare(
    sg: &Path,
    name: &str,
    bytes: &[u8],
    certs: &CertSet,
    o: &VerifyOptions<'_>,
    product: Product,
) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("vcek.der"),
        certs.vcek.as_ref().unwrap().der(),
    )
    .unwrap();
    let v2 = bytes[0] == 2;
    let mut cases = vec![("genuine".to_string(), bytes.to_vec())];
    for off in FLIPS {
        let mut b = bytes.to_vec();
        b[off] ^= 1;
        cases.push((format!("flip {off:#x}"), b));
    }
    for (what, b) in cases {
        let ours = verify(&b, certs, o).passed();
        let theirs = snpguest_accepts(sg, dir.path(), &b, product, v2);
        assert_eq!(
            ours, theirs,
            "{name} {what}: softsev {ours}, snpguest {theirs}"
        );
        assert_eq!(ours, what == "genuine", "{name} {what}");
    }
}

#[test]
fn genuine_fixtures_agree_with_snpguest() {
    let Some(sg) = tool("snpguest") else { return };
    let fx = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/snp"
    ));
    if !fx.is_dir() {
        println!("SKIP: fixtures not found");
        return;
    }
    let o = VerifyOptions {
        at: parse_rfc3339("2026-01-01T00:00:00Z").unwrap(),
        ..VerifyOptions::new()
    };
    for (name, report, vek, product) in [
        (
            "milan-virtee",
            "milan-virtee-sev/report_milan.bin",
            "milan-virtee-sev/vcek_milan.der",
            Product::Milan,
        ),
        (
            "milan-gsg",
            "milan-go-sev-guest/attestation.bin",
            "milan-go-sev-guest/vcek.der",
            Product::Milan,
        ),
        (
            "genoa-v3",
            "genoa-v3-yaxi/report.bin",
            "genoa-v3-yaxi/vcek.der",
            Product::Genoa,
        ),
        (
            "turin-v5",
            "turin-v5-yaxi/report.bin",
            "turin-v5-yaxi/vcek.der",
            Product::Turin,
        ),
    ] {
        let mut certs = CertSet::default();
        certs.add_file(&fx.join(vek)).unwrap();
        compare(
            &sg,
            name,
            &std::fs::read(fx.join(report)).unwrap(),
            &certs,
            &o,
            product,
        );
    }
}

#[test]
fn own_firmware_reports_agree_with_snpguest() {
    let Some(sg) = tool("snpguest") else { return };
    for product in Product::ALL {
        let chip = softsev_firmware::identity::Chip::from_seed(product, b"interop").unwrap();
        let t = TcbVersion {
            fmc: u8::from(product == Product::Turin),
            bootloader: 4,
            tee: 0,
            snp: 22,
            microcode: 0xd1,
        };
        let chain = chip.vcek_chain(&t).unwrap();
        let mut r = AttestationReport {
            version: 3,
            policy: 0x30000,
            signature_algo: 1,
            key_info: KeyInfo::new(false, false, SigningKey::VCEK),
            chip_id: *chip.chip_id(),
            report_id_ma: [0xFF; 32],
            ..Default::default()
        };
        r.set_cpuid_for(product);
        r.set_tcbs(
            product,
            &ReportTcbs {
                current: t,
                reported: t,
                committed: t,
                launch: t,
            },
        )
        .unwrap();
        let sig = chip
            .vcek(&t)
            .unwrap()
            .signing_key()
            .sign_deterministic(r.signed_bytes());
        r.signature = EcdsaSignature::from_be(&sig.r, &sig.s);
        let mut certs = CertSet::default();
        for d in [&chain.ark, &chain.ask, &chain.vek] {
            certs
                .insert(AmdCert::from_der("own", d).unwrap(), None)
                .unwrap();
        }
        let trust =
            TrustStore::custom(vec![AmdCert::from_der("ark", &chain.ark).unwrap()], None).unwrap();
        let o = VerifyOptions {
            trust: &trust,
            at: parse_rfc3339("2026-01-01T00:00:00Z").unwrap(),
            ..VerifyOptions::new()
        };
        compare(
            &sg,
            product.name(),
            zerocopy::IntoBytes::as_bytes(&r),
            &certs,
            &o,
            product,
        );
    }
}
