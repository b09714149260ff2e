//! Reports signed by softsev's own firmware identity (simulated AMD root, chip, VCEK,
//! VLEK) verify when its root is given as a custom root, and fail against AMD's
//! built-in roots. softsev-firmware is a dev-dependency only: the library judges its
//! output as any relying party would.

use softsev_abi::ecdsa::EcdsaSignature;
use softsev_abi::report::{AttestationReport, FirmwareVersion, KeyInfo, ReportTcbs, SigningKey};
use softsev_abi::{Product, TcbVersion};
use softsev_attest::cert::crl_from_bytes;
use softsev_attest::{
    AmdCert, CertSet, Policy, TrustStore, VerifyOptions, time::parse_rfc3339, verify, verify_batch,
};
use softsev_crypto::ecdsa::P384SigningKey;
use softsev_firmware::identity::{AmdKeyRole, Chip};

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

/// A report as the firmware fills it (every field), signed by `key`.
fn report(chip: &Chip, t: &TcbVersion, key: &P384SigningKey, signer: SigningKey) -> Vec<u8> {
    let product = chip.product();
    let mut r = AttestationReport {
        version: if product == Product::Turin { 5 } else { 3 },
        guest_svn: 2,
        policy: 0x30000,
        vmpl: 1,
        signature_algo: 1,
        platform_info: softsev_abi::report::PlatformInfo(0x25),
        key_info: KeyInfo::new(false, false, signer),
        report_id_ma: [0xFF; 32],
        chip_id: if signer == SigningKey::VLEK {
            [0; 64]
        } else {
            *chip.chip_id()
        },
        ..Default::default()
    };
    r.set_cpuid_for(product);
    r.report_data = [0x5A; 64];
    r.measurement = [0x11; 48];
    r.report_id = [0x22; 32];
    r.set_tcbs(
        product,
        &ReportTcbs {
            current: *t,
            reported: *t,
            committed: *t,
            launch: *t,
        },
    )
    .unwrap();
    let v = FirmwareVersion {
        major: 1,
        minor: 55,
        build: 29,
    };
    r.set_current_version(v);
    r.set_committed_version(v);
    let sig = key.sign_deterministic(r.signed_bytes());
    r.signature = EcdsaSignature::from_be(&sig.r, &sig.s);
    zerocopy::IntoBytes::as_bytes(&r).to_vec()
}

fn at() -> u64 {
    parse_rfc3339("2026-01-01T00:00:00Z").unwrap()
}

fn certset(ark: &[u8], ask: &[u8], vek: &[u8]) -> CertSet {
    let mut c = CertSet::default();
    for d in [ark, ask, vek] {
        c.insert(AmdCert::from_der("own", d).unwrap(), None)
            .unwrap();
    }
    c
}

#[test]
fn own_vcek_reports_verify_with_custom_root_only() {
    for product in Product::ALL {
        let chip = Chip::from_seed(product, b"attest-own").unwrap();
        let t = tcb(product);
        let chain = chip.vcek_chain(&t).unwrap();
        let key = chip.vcek(&t).unwrap();
        let bytes = report(&chip, &t, key.signing_key(), SigningKey::VCEK);
        let certs = certset(&chain.ark, &chain.ask, &chain.vek);
        // Custom root from a directory written the way snpguest reads it.
        let dir = tempfile::tempdir().unwrap();
        chain.write_dir(dir.path(), true).unwrap();
        let trust = TrustStore::from_dir(dir.path(), None).unwrap();
        let o = VerifyOptions {
            trust: &trust,
            at: at(),
            policy: Policy {
                vmpl: Some(1),
                measurement: Some([0x11; 48]),
                product: Some(product),
                require_committed: true,
                ..Policy::default()
            },
            ..VerifyOptions::new()
        };
        let from_dir = CertSet::from_dir(dir.path()).unwrap();
        let v = verify(&bytes, &from_dir, &o);
        assert!(v.passed(), "{product}:\n{}", v.to_table());
        assert!(verify(&bytes, &certs, &o).passed());
        // AMD's roots do not vouch for the simulated ARK.
        let amd = VerifyOptions {
            at: at(),
            ..VerifyOptions::new()
        };
        let v = verify(&bytes, &certs, &amd);
        assert!(v.failed("chain.ark_pinned"), "{product}:\n{}", v.to_table());
        assert!(v.failed("chain.intermediate"));
        // Signed by the VCEK of an older TCB: signature fails; claims another TCB:
        // binding fails (what snpguest checks too).
        let mut older = t;
        older.snp -= 1;
        let old_key = chip.vcek(&older).unwrap();
        let v = verify(
            &report(&chip, &t, old_key.signing_key(), SigningKey::VCEK),
            &certs,
            &o,
        );
        assert_eq!(
            v.failures().map(|c| c.id).collect::<Vec<_>>(),
            ["report.signature"]
        );
        let v = verify(
            &report(&chip, &older, key.signing_key(), SigningKey::VCEK),
            &certs,
            &o,
        );
        assert!(v.failed("binding.tcb"), "{}", v.to_table());
        // Another chip's VCEK for the same TCB: hwID and signature fail.
        let other = Chip::from_seed(product, b"attest-other").unwrap();
        let oc = other.vcek_chain(&t).unwrap();
        let v = verify(&bytes, &certset(&oc.ark, &oc.ask, &oc.vek), &o);
        assert!(v.failed("binding.hwid") && v.failed("report.signature"));
        // Batch over cores.
        let many = vec![bytes.clone(); 16];
        assert!(verify_batch(&many, &certs, &o).iter().all(|v| v.passed()));
    }
}

#[test]
fn own_crl_revocation_is_enforced() {
    let product = Product::Milan;
    let chip = Chip::from_seed(product, b"attest-crl").unwrap();
    let t = tcb(product);
    let chain = chip.vcek_chain(&t).unwrap();
    let key = chip.vcek(&t).unwrap();
    let bytes = report(&chip, &t, key.signing_key(), SigningKey::VCEK);
    let trust =
        TrustStore::custom(vec![AmdCert::from_der("ark", &chain.ark).unwrap()], None).unwrap();
    let base = VerifyOptions {
        trust: &trust,
        at: at(),
        require_crl: true,
        ..VerifyOptions::new()
    };
    let mut certs = certset(&chain.ark, &chain.ask, &chain.vek);
    certs
        .crls
        .push(crl_from_bytes("crl", chip.root().vcek_crl_der()).unwrap());
    let v = verify(&bytes, &certs, &base);
    assert!(v.passed(), "{}", v.to_table());
    let revoking = chip
        .root()
        .crl_revoking(&[AmdKeyRole::Ask.serial(product)], 7)
        .unwrap();
    certs.crls = vec![crl_from_bytes("crl", &revoking).unwrap()];
    let v = verify(&bytes, &certs, &base);
    assert_eq!(
        v.failures().map(|c| c.id).collect::<Vec<_>>(),
        ["crl.revocation"],
        "{}",
        v.to_table()
    );
    let mut bad = revoking.clone();
    let n = bad.len();
    bad[n - 5] ^= 1;
    certs.crls = vec![crl_from_bytes("crl", &bad).unwrap()];
    assert!(verify(&bytes, &certs, &base).failed("crl.signature"));
}

#[test]
fn own_vlek_reports_verify() {
    let product = Product::Genoa;
    let chip = Chip::from_seed(product, b"attest-vlek").unwrap();
    let t = tcb(product);
    let mut rng = softsev_crypto::rng::Rng::seeded(b"kds", "vlek");
    let wrapped = chip.provision_vlek(&mut rng, &t, "softsev-csp").unwrap();
    let vlek = chip.load_vlek(&wrapped).unwrap();
    let chain = chip.vlek_chain().unwrap();
    let bytes = report(&chip, &t, vlek.signing_key(), SigningKey::VLEK);
    let dir = tempfile::tempdir().unwrap();
    chain.write_dir(dir.path(), false).unwrap();
    let certs = CertSet::from_dir(dir.path()).unwrap();
    assert!(certs.vlek.is_some() && certs.asvk.is_some());
    let trust = TrustStore::from_dir(dir.path(), None).unwrap();
    let o = VerifyOptions {
        trust: &trust,
        at: at(),
        ..VerifyOptions::new()
    };
    let v = verify(&bytes, &certs, &o);
    assert!(v.passed(), "{}", v.to_table());
    assert_eq!(v.signer, Some("VLEK"));
    // The same report claiming VCEK: no VCEK certificate.
    let mut b = bytes.clone();
    b[0x48] = 0;
    assert!(verify(&b, &certs, &o).failed("chain.vek_present"));
}
