//! Fuzz entry points (stable Rust: plain functions; `fuzz/` wraps them for
//! libFuzzer, tests replay corpora through them). None may panic on any input.

use crate::cert::{certs_from_bytes, crl_from_bytes};
use crate::certset::CertSet;
use crate::table::CertTable;
use crate::verify::{VerifyOptions, verify};
use softsev_abi::Product;
use softsev_abi::report::AttestationReport;

/// Report parsing, every accessor, the JSON view, and a full verification against the
/// built-in roots (which must fail without certificates).
pub fn fuzz_report(data: &[u8]) {
    if let Ok((r, _)) = AttestationReport::parse_prefix(data) {
        let _ = r.check_reserved();
        for p in Product::ALL {
            let _ = r.tcbs(p);
            let _ = r.chip_id_for(p);
        }
        let _ = r.product();
        let _ = r.signature.to_be();
        let _ = crate::show::report_text(&r, crate::show::product_for_show(&r, None));
    }
    let opts = VerifyOptions::new();
    let v = verify(data, &CertSet::default(), &opts);
    assert!(!v.passed(), "a report verified without any certificate");
}

/// Certificate and CRL parsing (PEM or DER) and every accessor.
pub fn fuzz_cert(data: &[u8]) {
    if let Ok(certs) = certs_from_bytes("fuzz", data) {
        for c in &certs {
            let _ = c.role();
            let _ = c.extensions().product();
            for p in Product::ALL {
                let _ = c.extensions().tcb(p);
            }
            let _ = c.verify_signed_by(c);
            let _ = c.p384_verifier();
            let _ = c.tbs().len();
        }
    }
    if let Ok(crl) = crl_from_bytes("fuzz", data) {
        let _ = crl.current_at(0);
        let _ = crl.revoked_serials().len();
    }
}

/// Certificate-table parsing: a parsed table re-encodes to a table that parses equal.
pub fn fuzz_cert_table(data: &[u8]) {
    if let Ok(t) = CertTable::parse(data) {
        let again = CertTable::parse(&t.to_bytes());
        assert_eq!(again.as_ref(), Ok(&t), "table did not round-trip");
    }
    let _ = CertSet::from_table(data);
}

/// Legacy SEV certificates and chains (sev-legacy.md §2): an SEV certificate, an AMD CA
/// certificate, an ASK ‖ ARK pair, and a PDH ‖ PEK ‖ OCA ‖ CEK chain verified under the
/// built-in CAs, then a legacy report checked against the chain's PEK. Decoding is
/// re-encoded byte for byte; nothing may panic.
pub fn fuzz_sev_certs(data: &[u8]) {
    use crate::sev::{SevChainOptions, SevReportExpect, verify_report_with_pek, verify_sev_chain};
    use softsev_abi::sev_cert::{AmdCaCert, SevCert};
    if let Ok(c) = SevCert::decode(data) {
        assert_eq!(c.encode(), data, "SEV certificate did not re-encode");
        let _ = c.check_format();
        let _ = c.ecc_pubkey();
        let _ = c.rsa_pubkey();
        for s in c.slots() {
            let _ = s.ecdsa_rs_strict();
            let _ = s.is_malformed();
        }
    }
    if let Ok((ca, used)) = AmdCaCert::decode(data) {
        assert_eq!(
            ca.encode(),
            data[..used],
            "AMD CA certificate did not re-encode"
        );
        let _ = ca.check();
        let _ = ca.signed_bytes();
    }
    let _ = AmdCaCert::decode_ask_ark(data);
    let v = verify_sev_chain(data, &SevChainOptions::default());
    let _ = v.verdict.passed();
    if let Some(pek) = &v.pek {
        let tail = data.get(4 * 0x824..).unwrap_or_default();
        let _ = verify_report_with_pek(pek, tail, &SevReportExpect::default());
    }
}
