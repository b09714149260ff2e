//! Certificate chain tests: signatures verify with the crypto wrappers, the DER has the
//! shape of AMD's genuine certificates (compared field by field with the fixtures),
//! output is deterministic, tampering is caught, and outside tools accept the chain.

use der::{Decode, Encode};
use softsev_abi::{Product, TcbVersion};
use softsev_firmware::identity::cert::{self, AmdKeyRole};
use softsev_firmware::identity::{CertChain, CertTable, CertTableGuid, Chip};
use x509_cert::Certificate;
use x509_cert::crl::CertificateList;

use softsev_testkit::fixtures;

fn tcb(product: Product) -> TcbVersion {
    match product {
        Product::Turin => TcbVersion {
            fmc: 1,
            bootloader: 2,
            tee: 3,
            snp: 4,
            microcode: 0xdb,
        },
        _ => TcbVersion {
            fmc: 0,
            bootloader: 9,
            tee: 0,
            snp: 23,
            microcode: 0xdb,
        },
    }
}

fn chain(product: Product, seed: &[u8]) -> (Chip, CertChain) {
    let chip = Chip::from_seed(product, seed).unwrap();
    let c = chip.vcek_chain(&tcb(product)).unwrap();
    (chip, c)
}

#[test]
fn chains_verify_and_certify_the_reporting_key() {
    for product in Product::ALL {
        let (chip, c) = chain(product, b"chain");
        c.verify().unwrap();
        let vcek = Certificate::from_der(&c.vek).unwrap();
        let spki = vcek
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .unwrap();
        let key = chip.vcek(&tcb(product)).unwrap();
        assert_eq!(spki, key.signing_key().public().to_spki_der());
        // A signature made with the VCEK verifies with the certified key.
        let sig = key.signing_key().sign_deterministic(b"report");
        let pk = softsev_crypto::ecdsa::P384PublicKey::from_spki_der(&spki).unwrap();
        pk.verify(b"report", &sig).unwrap();
        // The CRL is the ARK's.
        cert::verify_crl_signed_by(chip.root().vcek_crl_der(), &c.ark).unwrap();
    }
}

#[test]
fn flipped_bits_fail_verification() {
    let (_, c) = chain(Product::Milan, b"flip");
    // A bit in the VCEK's TBS (inside the public key), and one in its signature.
    for pos in [400usize, c.vek.len() - 3] {
        let mut bad = c.clone();
        bad.vek[pos] ^= 0x01;
        assert!(bad.verify().is_err(), "flip at {pos} still verifies");
    }
    // An ASK not signed by this ARK.
    let (_, other) = chain(Product::Genoa, b"flip");
    let mut mixed = c.clone();
    mixed.ask = other.ask.clone();
    assert!(mixed.verify().is_err());
}

#[test]
fn same_seed_same_bytes_other_seed_other_chip() {
    let (a, ca) = chain(Product::Turin, b"det");
    let (b, cb) = chain(Product::Turin, b"det");
    assert_eq!(ca, cb);
    assert_eq!(a.chip_id(), b.chip_id());
    let (c, cc) = chain(Product::Turin, b"det2");
    assert_ne!(a.chip_id(), c.chip_id());
    assert_ne!(ca.vek, cc.vek);
    // Every chip of a product shares the AMD root, as on real hardware.
    assert_eq!(ca.ark, cc.ark);
    assert_eq!(ca.ask, cc.ask);
    // A different TCB is a different key and certificate.
    let mut t = tcb(Product::Turin);
    t.snp += 1;
    assert_ne!(a.vcek_cert_der(&t).unwrap(), ca.vek);
}

/// (OID, critical, first byte of extnValue, extnValue length when raw bytes).
fn ext_shape(c: &Certificate) -> Vec<(String, bool, u8, usize)> {
    c.tbs_certificate
        .extensions
        .as_ref()
        .map(|v| {
            v.iter()
                .map(|e| {
                    let b = e.extn_value.as_bytes();
                    (
                        e.extn_id.to_string(),
                        e.critical,
                        b.first().copied().unwrap_or(0),
                        b.len(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Validity as (years between, month, day, hour, minute, second of not_before equal
/// to not_after's): AMD adds calendar years.
fn validity_shape(c: &Certificate) -> (u16, bool) {
    let v = &c.tbs_certificate.validity;
    let (b, a) = (v.not_before.to_date_time(), v.not_after.to_date_time());
    let same_moment = (b.month(), b.day(), b.hour(), b.minutes(), b.seconds())
        == (a.month(), a.day(), a.hour(), a.minutes(), a.seconds());
    (a.year() - b.year(), same_moment)
}

fn alg_der(c: &Certificate) -> Vec<u8> {
    c.signature_algorithm.to_der().unwrap()
}

#[test]
fn vcek_has_the_shape_of_genuine_ones() {
    let Some(fx) = fixtures() else { return };
    let cases = [
        (Product::Milan, "snp/milan-virtee-sev/vcek_milan.der"),
        (Product::Genoa, "snp/genoa-v3-yaxi/vcek.der"),
        (Product::Turin, "snp/turin-virtee-sev/vcek_turin.der"),
    ];
    for (product, file) in cases {
        let genuine = Certificate::from_der(&std::fs::read(fx.join(file)).unwrap()).unwrap();
        let (_, c) = chain(product, b"shape");
        let ours = Certificate::from_der(&c.vek).unwrap();
        let (g, o) = (&genuine.tbs_certificate, &ours.tbs_certificate);
        assert_eq!(o.version, g.version, "{product}");
        assert_eq!(o.serial_number, g.serial_number, "{product}");
        assert_eq!(
            o.issuer.to_der().unwrap(),
            g.issuer.to_der().unwrap(),
            "{product} issuer"
        );
        assert_eq!(
            o.subject.to_der().unwrap(),
            g.subject.to_der().unwrap(),
            "{product} subject"
        );
        assert_eq!(
            o.subject_public_key_info.algorithm.to_der().unwrap(),
            g.subject_public_key_info.algorithm.to_der().unwrap()
        );
        assert_eq!(
            o.signature.to_der().unwrap(),
            g.signature.to_der().unwrap(),
            "{product} tbs alg"
        );
        assert_eq!(alg_der(&ours), alg_der(&genuine), "{product} signature alg");
        assert_eq!(
            validity_shape(&ours),
            validity_shape(&genuine),
            "{product} validity"
        );
        assert_eq!(validity_shape(&ours), (7, true));
        assert!(matches!(
            o.validity.not_before,
            x509_cert::time::Time::UtcTime(_)
        ));
        // Same extensions, same order, same criticality, same encodings (INTEGER, IA5String,
        // raw hwID of the same length); only values differ.
        let (gs, os) = (ext_shape(&genuine), ext_shape(&ours));
        assert_eq!(gs.len(), os.len(), "{product}");
        for (gx, ox) in gs.iter().zip(&os) {
            assert_eq!((&gx.0, gx.1), (&ox.0, ox.1), "{product}");
            if gx.0.ends_with(".1.4") {
                assert_eq!(gx.3, ox.3, "{product} hwID length");
            } else {
                assert_eq!(gx.2, ox.2, "{product} {} tag", gx.0);
            }
        }
        assert_eq!(o.signature.to_der().unwrap(), g.signature.to_der().unwrap());
    }
}

#[test]
fn vcek_extensions_carry_the_tcb_and_chip_id() {
    for product in Product::ALL {
        let (chip, c) = chain(product, b"values");
        let ours = Certificate::from_der(&c.vek).unwrap();
        let exts = ours.tbs_certificate.extensions.unwrap();
        let get = |oid: &str| {
            exts.iter()
                .find(|e| e.extn_id.to_string() == oid)
                .map(|e| e.extn_value.as_bytes().to_vec())
        };
        let t = tcb(product);
        assert_eq!(
            get("1.3.6.1.4.1.3704.1.3.1"),
            Some(vec![2, 1, t.bootloader])
        );
        assert_eq!(get("1.3.6.1.4.1.3704.1.3.3"), Some(vec![2, 1, t.snp]));
        assert_eq!(get("1.3.6.1.4.1.3704.1.3.8"), Some(vec![2, 2, 0, 0xdb]));
        let hw = get("1.3.6.1.4.1.3704.1.4").unwrap();
        assert_eq!(hw, chip.chip_id()[..product.chip_id_len()]);
        let fmc = get("1.3.6.1.4.1.3704.1.3.9");
        assert_eq!(fmc, (product == Product::Turin).then(|| vec![2, 1, 1]));
        let sv = get("1.3.6.1.4.1.3704.1.1").unwrap();
        assert_eq!(sv, vec![2, 1, u8::from(product == Product::Turin)]);
    }
}

#[test]
fn ark_ask_and_crl_have_the_shape_of_genuine_ones() {
    let Some(fx) = fixtures() else { return };
    for product in Product::ALL {
        let dir = fx
            .join("amd-roots/virtee-sev-snp-builtin")
            .join(product.name().to_lowercase());
        let (chip, c) = chain(product, b"roots");
        for (file, ours_der, role) in [
            ("ark.pem", &c.ark, AmdKeyRole::Ark),
            ("ask.pem", &c.ask, AmdKeyRole::Ask),
        ] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            let genuine =
                Certificate::from_der(&cert::from_pem("CERTIFICATE", &text).unwrap()).unwrap();
            let ours = Certificate::from_der(ours_der).unwrap();
            let (g, o) = (&genuine.tbs_certificate, &ours.tbs_certificate);
            let what = format!("{product} {role:?}");
            assert_eq!(o.serial_number, g.serial_number, "{what}");
            assert_eq!(
                o.issuer.to_der().unwrap(),
                g.issuer.to_der().unwrap(),
                "{what}"
            );
            assert_eq!(
                o.subject.to_der().unwrap(),
                g.subject.to_der().unwrap(),
                "{what}"
            );
            assert_eq!(o.validity, g.validity, "{what}");
            assert_eq!(alg_der(&ours), alg_der(&genuine), "{what}");
            assert_eq!(
                o.subject_public_key_info.algorithm.to_der().unwrap(),
                g.subject_public_key_info.algorithm.to_der().unwrap()
            );
            assert_eq!(
                o.subject_public_key_info
                    .subject_public_key
                    .raw_bytes()
                    .len(),
                g.subject_public_key_info
                    .subject_public_key
                    .raw_bytes()
                    .len(),
                "{what}: RSA-4096 key size"
            );
            let gs: Vec<_> = ext_shape(&genuine)
                .into_iter()
                .map(|x| (x.0, x.1, x.2, x.3))
                .collect();
            let os = ext_shape(&ours);
            assert_eq!(gs, os, "{what} extensions");
            // Values that are not keys are equal too: KU, BC, CRL DP.
            let exts = |c: &Certificate| c.tbs_certificate.extensions.clone().unwrap();
            for (ge, oe) in exts(&genuine).iter().zip(exts(&ours).iter()) {
                let id = ge.extn_id.to_string();
                if id == "2.5.29.15" || id == "2.5.29.19" || id == "2.5.29.31" {
                    assert_eq!(ge.extn_value, oe.extn_value, "{what} {id}");
                }
            }
        }
        let crl_file = fx.join(format!(
            "amd-roots/crl-cyntrisec/{}_crl.der",
            product.name().to_lowercase()
        ));
        let genuine = CertificateList::from_der(&std::fs::read(crl_file).unwrap()).unwrap();
        let ours = CertificateList::from_der(chip.root().vcek_crl_der()).unwrap();
        assert_eq!(ours.tbs_cert_list.version, genuine.tbs_cert_list.version);
        assert_eq!(
            ours.tbs_cert_list.issuer.to_der().unwrap(),
            genuine.tbs_cert_list.issuer.to_der().unwrap()
        );
        assert_eq!(
            ours.signature_algorithm.to_der().unwrap(),
            genuine.signature_algorithm.to_der().unwrap()
        );
        let oids = |l: &CertificateList| -> Vec<String> {
            l.tbs_cert_list
                .crl_extensions
                .iter()
                .flatten()
                .map(|e| e.extn_id.to_string())
                .collect()
        };
        assert_eq!(oids(&ours), oids(&genuine));
    }
}

#[test]
fn cert_table_and_exports() {
    let (_, c) = chain(Product::Genoa, b"table");
    let t = c.cert_table();
    let bytes = t.to_bytes().unwrap();
    let back = CertTable::from_bytes(&bytes).unwrap();
    assert_eq!(back.get(CertTableGuid::ARK), Some(&c.ark[..]));
    assert_eq!(back.get(CertTableGuid::ASK), Some(&c.ask[..]));
    assert_eq!(back.get(CertTableGuid::VCEK), Some(&c.vek[..]));
    assert_eq!(&bytes[..16], &CertTableGuid::ARK.0);
    let pem = cert::to_pem("CERTIFICATE", &c.vek).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert_eq!(cert::from_pem("CERTIFICATE", &pem).unwrap(), c.vek);
    assert!(cert::from_pem("X509 CRL", &pem).is_err());
    let dir = tempfile::tempdir().unwrap();
    c.write_dir(dir.path(), true).unwrap();
    c.write_dir(dir.path(), false).unwrap();
    for f in [
        "ark.pem", "ask.pem", "vcek.pem", "ark.der", "ask.der", "vcek.der",
    ] {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
    assert_eq!(std::fs::read(dir.path().join("vcek.der")).unwrap(), c.vek);
}

#[test]
fn vlek_provision_load_and_chain() {
    let chip = Chip::from_seed(Product::Milan, b"vlek").unwrap();
    let t = tcb(Product::Milan);
    let mut rng = softsev_crypto::rng::Rng::seeded(b"kds", "vlek");
    let wrapped = chip.provision_vlek(&mut rng, &t, "softsev-csp").unwrap();
    // Another chip cannot load it, and tampering is caught.
    let other = Chip::from_seed(Product::Milan, b"vlek-other").unwrap();
    assert!(other.load_vlek(&wrapped).is_err());
    let mut bad = wrapped.clone();
    bad.ciphertext[0] ^= 1;
    assert!(chip.load_vlek(&bad).is_err());
    let mut bad = wrapped.clone();
    bad.csp_id.push('x');
    assert!(chip.load_vlek(&bad).is_err());
    assert!(chip.vlek().is_none());
    let v = chip.load_vlek(&wrapped).unwrap();
    assert_eq!(v.csp_id(), "softsev-csp");
    let c = chip.vlek_chain().unwrap();
    c.verify().unwrap();
    assert_eq!(c.file_stems(), ["ark", "asvk", "vlek"]);
    let cert = Certificate::from_der(&c.vek).unwrap();
    let ask = Certificate::from_der(&c.ask).unwrap();
    assert!(
        cert.tbs_certificate
            .subject
            .to_string()
            .contains("CN=SEV-VLEK")
    );
    assert!(
        ask.tbs_certificate
            .subject
            .to_string()
            .contains("CN=SEV-VLEK-Milan")
    );
    let exts = cert.tbs_certificate.extensions.unwrap();
    assert!(
        exts.iter()
            .any(|e| e.extn_id.to_string() == "1.3.6.1.4.1.3704.1.5")
    );
    assert!(
        !exts
            .iter()
            .any(|e| e.extn_id.to_string() == "1.3.6.1.4.1.3704.1.4")
    );
    assert_eq!(c.cert_table().get(CertTableGuid::VLEK), Some(&c.vek[..]));
    cert::verify_crl_signed_by(chip.root().vlek_crl_der().unwrap(), &c.ark).unwrap();
}

use softsev_testkit::tool;

#[test]
fn openssl_verifies_chain_and_crl() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    for product in Product::ALL {
        let (chip, c) = chain(product, b"openssl");
        let dir = tempfile::tempdir().unwrap();
        c.write_dir(dir.path(), true).unwrap();
        let d = |f: &str| dir.path().join(f);
        let out = std::process::Command::new(&openssl)
            .args(["verify", "-CAfile"])
            .arg(d("ark.pem"))
            .arg("-untrusted")
            .arg(d("ask.pem"))
            .arg(d("vcek.pem"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{product}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(d("crl.der"), chip.root().vcek_crl_der()).unwrap();
        let out = std::process::Command::new(&openssl)
            .args(["crl", "-inform", "DER", "-noout", "-in"])
            .arg(d("crl.der"))
            .arg("-CAfile")
            .arg(d("ark.pem"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && err.contains("verify OK"),
            "{product} CRL: {err}"
        );
        // A tampered VCEK is refused.
        let mut bad = c.clone();
        let n = bad.vek.len();
        bad.vek[n - 10] ^= 0x40;
        bad.write_dir(dir.path(), true).unwrap();
        let out = std::process::Command::new(&openssl)
            .args(["verify", "-CAfile"])
            .arg(d("ark.pem"))
            .arg("-untrusted")
            .arg(d("ask.pem"))
            .arg(d("vcek.pem"))
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{product}: tampered VCEK accepted by openssl"
        );
    }
}

#[test]
fn snpguest_verify_certs_accepts_the_chain() {
    let Some(snpguest) = tool("snpguest") else {
        return;
    };
    for product in Product::ALL {
        let (_, c) = chain(product, b"snpguest");
        let dir = tempfile::tempdir().unwrap();
        c.write_dir(dir.path(), true).unwrap();
        let out = std::process::Command::new(&snpguest)
            .args(["verify", "certs"])
            .arg(dir.path())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{product}: {text}");
        assert!(
            text.contains("The AMD ARK was self-signed!"),
            "{product}: {text}"
        );
        // And refuses a chain whose ASK signature is broken.
        let mut bad = c.clone();
        let n = bad.ask.len();
        bad.ask[n - 10] ^= 0x40;
        bad.write_dir(dir.path(), true).unwrap();
        let out = std::process::Command::new(&snpguest)
            .args(["verify", "certs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{product}: tampered ASK accepted by snpguest"
        );
    }
}

/// A minimal version-3 ATTESTATION_REPORT (snp-attestation.md §1.1) with REPORTED_TCB
/// `reported`, signed by `signer` (R and S little-endian, 72 bytes each).
fn report_v3(chip: &Chip, reported: &TcbVersion, signer: &TcbVersion) -> Vec<u8> {
    let product = chip.product();
    let raw = reported.encode(product).unwrap().0;
    let mut r = vec![0u8; 0x4a0];
    r[0..4].copy_from_slice(&3u32.to_le_bytes());
    r[8..16].copy_from_slice(&0x3_0000u64.to_le_bytes());
    r[0x34..0x38].copy_from_slice(&1u32.to_le_bytes());
    for off in [0x38, 0x180, 0x1e0, 0x1f0] {
        r[off..off + 8].copy_from_slice(&raw);
    }
    r[0x160..0x180].fill(0xff);
    let (f, m, s) = product.cpuid_fms();
    r[0x188..0x18b].copy_from_slice(&[f, m, s]);
    r[0x1a0..0x1e0].copy_from_slice(chip.chip_id());
    r[0x1e8..0x1eb].copy_from_slice(&[0x1d, 0x37, 0x01]);
    r[0x1ec..0x1ef].copy_from_slice(&[0x1d, 0x37, 0x01]);
    let key = chip.vcek(signer).unwrap();
    let sig = key.signing_key().sign_deterministic(&r[..0x2a0]).to_fixed();
    let (mut rr, mut ss) = (sig[..48].to_vec(), sig[48..].to_vec());
    rr.reverse();
    ss.reverse();
    r[0x2a0..0x2a0 + 48].copy_from_slice(&rr);
    r[0x2e8..0x2e8 + 48].copy_from_slice(&ss);
    r
}

/// snpguest checks the report signature with the VCEK and compares the certificate's
/// SPL extensions with REPORTED_TCB: the key that signs must be the one for
/// REPORTED_TCB.
#[test]
fn snpguest_verify_attestation_accepts_reports_signed_by_the_reported_tcb_vcek() {
    let Some(snpguest) = tool("snpguest") else {
        return;
    };
    for product in Product::ALL {
        let chip = Chip::from_seed(product, b"snpguest-att").unwrap();
        let t = tcb(product);
        let dir = tempfile::tempdir().unwrap();
        chip.vcek_chain(&t)
            .unwrap()
            .write_dir(dir.path(), true)
            .unwrap();
        let run = |report: &[u8]| {
            let path = dir.path().join("report.bin");
            std::fs::write(&path, report).unwrap();
            let out = std::process::Command::new(&snpguest)
                .args(["verify", "attestation"])
                .arg(dir.path())
                .arg(&path)
                .output()
                .unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (out.status.success(), text)
        };
        let (ok, text) = run(&report_v3(&chip, &t, &t));
        assert!(ok, "{product}: {text}");
        assert!(
            text.contains("VEK signed the Attestation Report"),
            "{product}: {text}"
        );
        // Signed by the VCEK of another TCB: the signature check fails.
        let mut older = t;
        older.snp -= 1;
        let (ok, text) = run(&report_v3(&chip, &t, &older));
        assert!(!ok, "{product}: wrong-TCB signer accepted: {text}");
        // Claims another REPORTED_TCB than the certificate: the TCB check fails.
        let (ok, text) = run(&report_v3(&chip, &older, &t));
        assert!(!ok, "{product}: TCB mismatch accepted: {text}");
    }
}

#[test]
fn crl_can_revoke_the_ask() {
    let (chip, c) = chain(Product::Milan, b"crl");
    let serial = AmdKeyRole::Ask.serial(Product::Milan);
    let der = chip.root().crl_revoking(&[serial], 7).unwrap();
    cert::verify_crl_signed_by(&der, &c.ark).unwrap();
    assert!(cert::verify_crl_signed_by(&der, &c.ask).is_err());
    let list = CertificateList::from_der(&der).unwrap();
    let revoked = list.tbs_cert_list.revoked_certificates.unwrap();
    assert_eq!(revoked.len(), 1);
    let ask = Certificate::from_der(&c.ask).unwrap();
    assert_eq!(revoked[0].serial_number, ask.tbs_certificate.serial_number);
    // The default CRL revokes nothing.
    let empty = CertificateList::from_der(chip.root().vcek_crl_der()).unwrap();
    assert!(empty.tbs_cert_list.revoked_certificates.is_none());
}
