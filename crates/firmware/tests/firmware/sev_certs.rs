//! The firmware's SEV certificate rules (sev-legacy.md §2.3, ASPFW `sev_cert.c`), the
//! negatives one by one, on certificates made with softsev-crypto keys.

use softsev_abi::FwStatus;
use softsev_abi::sev_cert::{SevAlgo, SevCert, SevSigSlot, SevUsage};
use softsev_crypto::ecdsa::P384SigningKey;
use softsev_crypto::rng::Rng;
use softsev_crypto::sev::EcdhP384;
use softsev_firmware::FwVersion;
use softsev_firmware::identity::sev::{
    SevSigner, ecc_cert, sev_cert_sanity_check, sev_cert_validate, sign_ecdsa,
};

const API: FwVersion = FwVersion {
    major: 1,
    minor: 55,
    build: 21,
};

fn key(rng: &mut Rng) -> P384SigningKey {
    P384SigningKey::generate(rng)
}

/// An OCA (self-signed) and a PEK signed by it in sig1.
fn oca_pek(rng: &mut Rng) -> (P384SigningKey, SevCert, P384SigningKey, SevCert) {
    let ok = key(rng);
    let mut oca = ecc_cert(SevUsage::OCA, SevAlgo::ECDSA_SHA256, API, ok.public());
    sign_ecdsa(&mut oca, false, SevUsage::OCA, &ok, rng);
    let pk = key(rng);
    let mut pek = ecc_cert(SevUsage::PEK, SevAlgo::ECDSA_SHA256, API, pk.public());
    sign_ecdsa(&mut pek, false, SevUsage::OCA, &ok, rng);
    (ok, oca, pk, pek)
}

#[test]
fn good_chain_validates() {
    let mut rng = Rng::seeded(b"certs", "good");
    let (_, oca, _, pek) = oca_pek(&mut rng);
    let s = SevSigner::from_cert(&oca).unwrap();
    sev_cert_validate(&oca, &s).unwrap();
    sev_cert_validate(&pek, &s).unwrap();
}

#[test]
fn a_malformed_slot_is_bad_signature_at_once() {
    let mut rng = Rng::seeded(b"certs", "malformed");
    let (_, oca, _, mut pek) = oca_pek(&mut rng);
    let s = SevSigner::from_cert(&oca).unwrap();
    // sig2 with algo set and usage NONE (§0.2-2), even though sig1 verifies.
    pek.sig2 = SevSigSlot {
        usage: SevUsage::NONE.0,
        algo: SevAlgo::ECDSA_SHA256.0,
        sig: [0; 0x200],
    };
    assert_eq!(sev_cert_validate(&pek, &s), Err(FwStatus::BAD_SIGNATURE));
    pek.sig2 = SevSigSlot {
        usage: SevUsage::OCA.0,
        algo: SevAlgo::NONE.0,
        sig: [0; 0x200],
    };
    assert_eq!(sev_cert_validate(&pek, &s), Err(FwStatus::BAD_SIGNATURE));
}

#[test]
fn the_last_matching_slot_decides_and_none_is_invalid() {
    let mut rng = Rng::seeded(b"certs", "last");
    let (_, oca, _, pek) = oca_pek(&mut rng);
    let s = SevSigner::from_cert(&oca).unwrap();
    // sig1 valid, sig2 an OCA slot that does not verify: BAD_SIGNATURE.
    let mut two = pek;
    let mut other = pek;
    sign_ecdsa(&mut other, false, SevUsage::OCA, &key(&mut rng), &mut rng);
    two.sig2 = other.sig1;
    assert_eq!(sev_cert_validate(&two, &s), Err(FwStatus::BAD_SIGNATURE));
    // The other way round: SUCCESS.
    let mut swapped = two;
    swapped.sig1 = two.sig2;
    swapped.sig2 = two.sig1;
    sev_cert_validate(&swapped, &s).unwrap();
    // No slot names the signer: INVALID_CERTIFICATE.
    let pek_signer = SevSigner::from_cert(&pek).unwrap();
    assert_eq!(
        sev_cert_validate(&oca, &pek_signer),
        Err(FwStatus::INVALID_CERTIFICATE)
    );
    // A high byte set in r's 72-byte field is not a value below 2^384.
    let mut high = pek;
    high.sig1.sig[60] = 1;
    assert_eq!(sev_cert_validate(&high, &s), Err(FwStatus::BAD_SIGNATURE));
}

#[test]
fn body_version_key_and_signer_usage_are_checked_after_signatures() {
    let mut rng = Rng::seeded(b"certs", "body");
    let (ok, oca, pk, _) = oca_pek(&mut rng);
    let s = SevSigner::from_cert(&oca).unwrap();
    // Version 2, properly signed: INVALID_CERTIFICATE (step 3).
    let mut v2 = ecc_cert(SevUsage::PEK, SevAlgo::ECDSA_SHA256, API, pk.public());
    v2.version = 2;
    sign_ecdsa(&mut v2, false, SevUsage::OCA, &ok, &mut rng);
    assert_eq!(
        sev_cert_validate(&v2, &s),
        Err(FwStatus::INVALID_CERTIFICATE)
    );
    // A changed body with the old signature: BAD_SIGNATURE (step 2 first).
    let mut altered = v2;
    altered.version = 1;
    assert_eq!(
        sev_cert_validate(&altered, &s),
        Err(FwStatus::BAD_SIGNATURE)
    );
    // A PDH signed by the OCA: the signature is fine, PDH←OCA is not (step 4).
    let pdh_key = EcdhP384::generate(&mut rng);
    let (x, y) = pdh_key.public_xy_be();
    let mut pdh = SevCert::new_ecc(SevUsage::PDH, SevAlgo::ECDH_SHA256, 1, 55, &x, &y);
    sign_ecdsa(&mut pdh, false, SevUsage::OCA, &ok, &mut rng);
    assert_eq!(
        sev_cert_validate(&pdh, &s),
        Err(FwStatus::INVALID_CERTIFICATE)
    );
    // A signer whose key is not on P-384 (curve 1): INVALID_CERTIFICATE (step 1).
    let mut bad_curve = oca;
    bad_curve.pubkey[0] = 1;
    assert_eq!(
        SevSigner::from_cert(&bad_curve).err(),
        Some(FwStatus::INVALID_CERTIFICATE)
    );
    // A point off the curve.
    let mut off = oca;
    off.pubkey[4] ^= 1;
    assert_eq!(
        SevSigner::from_cert(&off).err(),
        Some(FwStatus::INVALID_CERTIFICATE)
    );
}

#[test]
fn sanity_check_wants_exact_usage_and_algo() {
    let mut rng = Rng::seeded(b"certs", "sanity");
    let k = EcdhP384::generate(&mut rng);
    let (x, y) = k.public_xy_be();
    let godh = SevCert::new_ecc(SevUsage::PDH, SevAlgo::ECDH_SHA256, 0, 0, &x, &y);
    sev_cert_sanity_check(&godh, SevUsage::PDH, SevAlgo::ECDH_SHA256).unwrap();
    let as384 = SevCert::new_ecc(SevUsage::PDH, SevAlgo::ECDH_SHA384, 0, 0, &x, &y);
    assert_eq!(
        sev_cert_sanity_check(&as384, SevUsage::PDH, SevAlgo::ECDH_SHA256),
        Err(FwStatus::INVALID_CERTIFICATE)
    );
    let as_pek = SevCert::new_ecc(SevUsage::PEK, SevAlgo::ECDH_SHA256, 0, 0, &x, &y);
    assert_eq!(
        sev_cert_sanity_check(&as_pek, SevUsage::PDH, SevAlgo::ECDH_SHA256),
        Err(FwStatus::INVALID_CERTIFICATE)
    );
    let mut v0 = godh;
    v0.version = 0;
    assert_eq!(
        sev_cert_sanity_check(&v0, SevUsage::PDH, SevAlgo::ECDH_SHA256),
        Err(FwStatus::INVALID_CERTIFICATE)
    );
    // Signatures are not looked at.
    let mut junk = godh;
    junk.sig1.algo = 7;
    sev_cert_sanity_check(&junk, SevUsage::PDH, SevAlgo::ECDH_SHA256).unwrap();
}
