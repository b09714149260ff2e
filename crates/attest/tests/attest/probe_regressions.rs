//! Regressions of ../shared/reviews/probe-2026-12.md P6–P8 and P11 (verifier side):
//! impossible report values fail by name, high-S signatures are flagged, conflicting
//! certificates for one role are refused, productName must name an AMD product, and
//! inputs are read bounded.

use softsev_abi::Product;
use softsev_attest::cert::VekExtensions;
use softsev_attest::input::{MAX_REPORT_FILE, read_bounded};
use softsev_attest::{CertSet, CertSetError, Outcome, VerifyOptions, time::parse_rfc3339, verify};
use softsev_testkit::fixtures;

const REPORT: &str = "snp/milan-virtee-sev/report_milan.bin";
const VCEK: &str = "snp/milan-virtee-sev/vcek_milan.der";
const CHAIN: &str = "snp/milan-virtee-sev/cert_chain_milan.pem";

fn opts() -> VerifyOptions<'static> {
    VerifyOptions {
        at: parse_rfc3339("2026-01-01T00:00:00Z").unwrap(),
        ..VerifyOptions::new()
    }
}

fn milan() -> Option<(Vec<u8>, CertSet)> {
    let fx = fixtures()?;
    let mut c = CertSet::default();
    c.add_file(&fx.join(CHAIN)).unwrap();
    c.add_file(&fx.join(VCEK)).unwrap();
    Some((std::fs::read(fx.join(REPORT)).unwrap(), c))
}

fn outcome(bytes: &[u8], certs: &CertSet, id: &str) -> (Outcome, String) {
    let v = verify(bytes, certs, &opts());
    let c = v
        .check(id)
        .unwrap_or_else(|| panic!("no check {id}:\n{}", v.to_table()));
    (c.outcome, c.detail.to_string())
}

/// P11: VMPL 4 and 0xFFFFFFFF, reserved PLATFORM_INFO bits, MASK_CHIP_KEY with a VCEK
/// signature — each fails its own check (the signature fails too: the bytes changed).
#[test]
fn regression_p11_impossible_report_values_fail_by_name() {
    let Some((report, certs)) = milan() else {
        return;
    };
    assert_eq!(outcome(&report, &certs, "report.vmpl").0, Outcome::Pass);
    assert_eq!(
        outcome(&report, &certs, "report.platform_info").0,
        Outcome::Pass
    );
    for vmpl in [4u32, 0xFFFF_FFFF] {
        let mut b = report.clone();
        b[0x30..0x34].copy_from_slice(&vmpl.to_le_bytes());
        let (o, d) = outcome(&b, &certs, "report.vmpl");
        assert_eq!(o, Outcome::Fail, "VMPL {vmpl}: {d}");
        assert!(d.contains("does not exist"), "{d}");
    }
    let mut b = report.clone();
    b[0x40..0x48].copy_from_slice(&u64::MAX.to_le_bytes());
    let (o, d) = outcome(&b, &certs, "report.platform_info");
    assert_eq!(o, Outcome::Fail, "{d}");
    assert!(d.contains("reserved bits 0xffffffffffffff00"), "{d}");
    let mut b = report.clone();
    b[0x48] |= 1 << 1; // KEY_INFO.MASK_CHIP_KEY
    let (o, d) = outcome(&b, &certs, "report.key_info");
    assert_eq!(o, Outcome::Fail, "{d}");
    assert!(d.contains("MASK_CHIP_KEY = 1"), "{d}");
}

/// P11: (r, n − s) verifies as (r, s) does; the verdict says which form it got, so a
/// relying party knows the bytes are malleable.
#[test]
fn regression_p11_high_s_signatures_are_flagged() {
    let Some((report, certs)) = milan() else {
        return;
    };
    const N: [u8; 48] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37,
        0x2d, 0xdf, 0x58, 0x1a, 0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc,
        0xc5, 0x29, 0x73,
    ];
    // S is little-endian in the report at 0x2E8 (72 bytes, the top 24 zero).
    let mut s_be = [0u8; 48];
    for (i, b) in report[0x2E8..0x2E8 + 48].iter().enumerate() {
        s_be[47 - i] = *b;
    }
    let mut neg = [0u8; 48];
    let mut borrow = 0i16;
    for i in (0..48).rev() {
        let d = i16::from(N[i]) - i16::from(s_be[i]) - borrow;
        borrow = i16::from(d < 0);
        neg[i] = (d + if d < 0 { 256 } else { 0 }) as u8;
    }
    let mut mall = report.clone();
    for i in 0..48 {
        mall[0x2E8 + i] = neg[47 - i];
    }
    let (o1, d1) = outcome(&report, &certs, "report.signature");
    let (o2, d2) = outcome(&mall, &certs, "report.signature");
    assert_eq!((o1, o2), (Outcome::Pass, Outcome::Pass), "{d1} / {d2}");
    let flagged = [&d1, &d2].iter().filter(|d| d.contains("high-S")).count();
    assert_eq!(
        flagged, 1,
        "exactly one of (r, s), (r, n - s) is high-S: {d1} / {d2}"
    );
    assert!(verify(&mall, &certs, &opts()).passed());
}

/// P11: two different VCEKs for one report are refused whatever their order; the same
/// certificate twice is fine.
#[test]
fn regression_p11_conflicting_certificates_are_refused() {
    let Some(fx) = fixtures() else { return };
    let genoa = fx.join("snp/genoa-v3-yaxi/vcek.der");
    for order in [
        [fx.join(VCEK), genoa.clone()],
        [genoa.clone(), fx.join(VCEK)],
    ] {
        let mut c = CertSet::default();
        c.add_file(&order[0]).unwrap();
        let e = c.add_file(&order[1]).unwrap_err();
        assert!(matches!(e, CertSetError::Conflict { .. }), "{e}");
        assert!(
            e.to_string().contains("two different Vcek certificates"),
            "{e}"
        );
    }
    let mut c = CertSet::default();
    c.add_file(&fx.join(VCEK)).unwrap();
    c.add_file(&fx.join(VCEK)).unwrap();
    let mut other = CertSet::default();
    other.add_file(&genoa).unwrap();
    assert!(matches!(c.merge(other), Err(CertSetError::Conflict { .. })));
}

/// P11: productName binds only when it names an AMD product line, optionally with a
/// stepping (`Milan-B0`).
#[test]
fn regression_p11_product_name_must_name_a_product() {
    let ext = |n: Option<&str>| VekExtensions {
        product_name: n.map(str::to_string),
        ..Default::default()
    };
    assert_eq!(ext(Some("Milan-B0")).product(), Some(Product::Milan));
    assert_eq!(ext(Some("Genoa")).product(), Some(Product::Genoa));
    assert_eq!(ext(Some("Turin-B0")).product(), Some(Product::Turin));
    for bad in [
        "MilanX-B0",
        "Milan-B0\0Genoa",
        "Milan-",
        "Milan-b0",
        "milan-B0",
        "",
        "Milan-BX",
    ] {
        assert_eq!(ext(Some(bad)).product(), None, "{bad:?}");
    }
    assert_eq!(ext(None).product(), None);
}

/// P7: a report path that is a device, a FIFO or an oversized file is refused before
/// reading.
#[test]
fn regression_p7_report_inputs_are_bounded() {
    let e = read_bounded(
        std::path::Path::new("/dev/zero"),
        MAX_REPORT_FILE,
        "a report",
    )
    .unwrap_err();
    assert!(e.to_string().contains("character device"), "{e}");
    let d = tempfile::tempdir().unwrap();
    let big = d.path().join("big");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(2 << 30).unwrap(); // sparse: costs nothing
    let e = read_bounded(&big, MAX_REPORT_FILE, "a report").unwrap_err();
    assert!(e.to_string().contains("2147483648 bytes"), "{e}");
}
