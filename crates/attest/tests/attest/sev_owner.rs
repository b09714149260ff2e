//! The guest owner's operations (`softsev_attest::sev::owner`) on the derived vectors of
//! sev-legacy.md §3.2, §3.4 and §5.3 and on the upstream sevctl/sev-crate vectors
//! (VECTORS.md §2, §3), plus the platform-side opening and its failures.

use base64::Engine;
use softsev_abi::sev_buf::SevSession;
use softsev_abi::sev_cert::{SevAlgo, SevUsage};
use softsev_attest::sev::issue::ecc_cert;
use softsev_attest::sev::owner::{
    MeasureInputs, OpenError, OwnerSession, SecretEntry, SecretError, check_measurement,
    launch_measure_blob, open_secret, open_session, parse_guid, parse_secret_table, seal_secret,
    secret_table,
};
use softsev_crypto::hash::sha256;
use softsev_crypto::rng::Rng;
use softsev_crypto::sev::EcdhP384;
use zerocopy::{FromBytes, IntoBytes};
use zeroize::Zeroizing;

use softsev_testkit::fixture_dir;

fn h<const N: usize>(s: &str) -> [u8; N] {
    let v = hex::decode(s.replace(' ', "")).unwrap();
    v.try_into().unwrap()
}

fn seq<const N: usize>(start: u8) -> [u8; N] {
    std::array::from_fn(|i| start + i as u8)
}

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

const D_PDH: &str = "f3a1e3ed1ed4e7d60f5d44098932ee747e4306ede7ac4d28470f21ade020cdba1522f14afca856077fc46f3ea3b447bf";
const D_GODH: &str = "a63543ab0b76d0b9a96a819b02f34de559d1b5d19deb4a438b2a97fe9cbc927b6c2e5d08d22d217149dcb1c1d38725b9";

fn vector_session() -> (EcdhP384, OwnerSession) {
    let pdh_key = EcdhP384::from_scalar_be(&h::<48>(D_PDH)).unwrap();
    let pdh = ecc_cert(
        SevUsage::PDH,
        SevAlgo::ECDH_SHA256,
        (0, 24),
        &pdh_key.public_xy_be(),
    );
    let godh_key = EcdhP384::from_scalar_be(&h::<48>(D_GODH)).unwrap();
    let s = OwnerSession::start_with(
        &pdh,
        3,
        &godh_key,
        seq(0x00),
        seq(0x10),
        Zeroizing::new(seq(0x20)),
        Zeroizing::new(seq(0x30)),
    )
    .unwrap();
    (pdh_key, s)
}

#[test]
fn session_vector_3_2() {
    let (pdh_key, s) = vector_session();
    let want = concat!(
        "000102030405060708090a0b0c0d0e0f",
        "6babbbe438cbc20daf9cd84084475083abb4d56933e2c75767bf602ed41d7f02",
        "101112131415161718191a1b1c1d1e1f",
        "dcef35404e68cd47e88d47be5f1f36c904a74d364267fc292e984cdb0a5946a5",
        "8585504451b5248c1b852848af92a14f126f6a4e2516e31a8881ab061e143547"
    );
    assert_eq!(hex::encode(s.session().as_bytes()), want);
    assert_eq!(
        hex::encode(sha256(s.godh().as_bytes())),
        "a9572d0a6bed8d3ad8aecfde3944a6ef1b2a0ddb7fa5b9ac148a4c8cb2ec43bf"
    );
    // The platform side opens it.
    let (tek, tik) = open_session(&pdh_key, s.godh(), s.session(), 3).unwrap();
    assert_eq!(*tek, seq::<16>(0x20));
    assert_eq!(*tik, seq::<16>(0x30));
    // Another policy: BAD_MEASUREMENT on the policy MAC.
    assert_eq!(
        open_session(&pdh_key, s.godh(), s.session(), 7).unwrap_err(),
        OpenError::PolicyMac(7)
    );
    // The nonce, the wrapped keys and the wrap MAC are checked by wrap_mac.
    for off in [0, 16, 47, 64, 95] {
        let mut b = s.session().as_bytes().to_vec();
        b[off] ^= 1;
        let bad = SevSession::read_from_bytes(&b).unwrap();
        assert_eq!(
            open_session(&pdh_key, s.godh(), &bad, 3).unwrap_err(),
            OpenError::WrapMac,
            "offset {off}"
        );
    }
    // wrap_mac covers wrap_tk only (§3.2): a changed wrap IV unwraps other keys, which
    // the policy MAC then refuses; so does a changed policy_mac.
    for off in [48, 63, 100] {
        let mut b = s.session().as_bytes().to_vec();
        b[off] ^= 1;
        let bad = SevSession::read_from_bytes(&b).unwrap();
        assert_eq!(
            open_session(&pdh_key, s.godh(), &bad, 3).unwrap_err(),
            OpenError::PolicyMac(3),
            "offset {off}"
        );
    }
    // The wrong platform key.
    let other = EcdhP384::from_scalar_be(&h::<48>(D_GODH)).unwrap();
    assert_eq!(
        open_session(&other, s.godh(), s.session(), 3).unwrap_err(),
        OpenError::WrapMac
    );
    // A GODH with another usage or algo: INVALID_CERTIFICATE.
    let mut g = *s.godh();
    g.pubkey_algo = SevAlgo::ECDH_SHA384.0;
    assert!(matches!(
        open_session(&pdh_key, &g, s.session(), 3),
        Err(OpenError::InvalidCertificate(_))
    ));
    // The sevctl files.
    assert_eq!(b64(&s.godh_b64()), s.godh().as_bytes());
    assert_eq!(b64(&s.session_b64()), s.session().as_bytes());
    assert_eq!(s.godh_b64().len(), 2780);
    // Debug does not print keys.
    let dbg = format!("{s:?}");
    assert!(
        !dbg.contains("2021222324") && !dbg.contains("3031323334"),
        "{dbg}"
    );
}

#[test]
fn seeded_sessions_are_reproducible_and_fresh_otherwise() {
    let pdh_key = EcdhP384::from_scalar_be(&h::<48>(D_PDH)).unwrap();
    let pdh = ecc_cert(
        SevUsage::PDH,
        SevAlgo::ECDH_SHA256,
        (0, 24),
        &pdh_key.public_xy_be(),
    );
    let a = OwnerSession::start(&pdh, 1, &mut Rng::seeded(b"s", "session")).unwrap();
    let b = OwnerSession::start(&pdh, 1, &mut Rng::seeded(b"s", "session")).unwrap();
    let c = OwnerSession::start(&pdh, 1, &mut Rng::seeded(b"t", "session")).unwrap();
    assert_eq!(a.session().as_bytes(), b.session().as_bytes());
    assert_eq!(a.godh().as_bytes(), b.godh().as_bytes());
    assert_ne!(a.session().as_bytes(), c.session().as_bytes());
    assert_ne!(a.tek(), c.tek());
    let (tek, tik) = open_session(&pdh_key, c.godh(), c.session(), 1).unwrap();
    assert_eq!((&*tek, &*tik), (c.tek(), c.tik()));
    // The GODH is what sevctl makes: PDH / ECDH_SHA256, API 0.0, both slots empty.
    let g = a.godh();
    assert_eq!(
        (g.pubkey_usage, g.pubkey_algo, g.api_major, g.api_minor),
        (0x1003, 3, 0, 0)
    );
    assert!(g.sig1.is_empty() && g.sig2.is_empty());
    // A PEK given as the PDH is refused.
    let mut not_pdh = pdh;
    not_pdh.pubkey_usage = 0x1002;
    assert!(OwnerSession::start(&not_pdh, 1, &mut Rng::os()).is_err());
}

#[test]
fn sevctl_policy_mangling_9_3() {
    use softsev_attest::sev::owner::sevctl_macs_policy;
    // The three observations of §9.3.
    assert_eq!(sevctl_macs_policy(4099), 0x3);
    assert_eq!(sevctl_macs_policy(0x0137_0005), 0x0703_0005);
    assert_eq!(sevctl_macs_policy(0x0001_0005), 0x0100_0005);
    // Bits 6–31 zero: unchanged.
    for p in [0, 1, 0x3, 0x5, 0x3F] {
        assert_eq!(sevctl_macs_policy(p), p);
    }
}

#[test]
fn measurement_vectors() {
    // §3.4 (derived), with the §3.2 TIK.
    let m = MeasureInputs {
        api_major: 0,
        api_minor: 24,
        build: 15,
        policy: 3,
        launch_digest: sha256(b""),
    };
    let tik = seq::<16>(0x30);
    let blob = launch_measure_blob(&tik, &m, &seq(0x40));
    assert_eq!(
        hex::encode(&blob[..32]),
        "a964fc65a71e5704df537bb307fc38f54c3bced638b4f76e3387e5ac97168dbb"
    );
    assert_eq!(blob[32..], seq::<16>(0x40));
    check_measurement(&tik, &m, &blob).unwrap();
    for (i, other) in [
        MeasureInputs { policy: 7, ..m },
        MeasureInputs { build: 16, ..m },
        MeasureInputs { api_minor: 25, ..m },
        MeasureInputs {
            launch_digest: [0; 32],
            ..m
        },
    ]
    .iter()
    .enumerate()
    {
        assert!(check_measurement(&tik, other, &blob).is_err(), "case {i}");
    }
    let mut bad = blob;
    bad[40] ^= 1; // another mnonce
    assert!(check_measurement(&tik, &m, &bad).is_err());
    // virtee/sev session test (host-interfaces.md §4.7).
    let m = MeasureInputs {
        api_major: 0,
        api_minor: 0x12,
        build: 0x0f,
        policy: 0,
        launch_digest: sha256(b""),
    };
    let blob = launch_measure_blob(
        &h("66320db73158a35a255d051758e95ed4"),
        &m,
        &h("4fbe0bedbad6c86ae8f68971d103e554"),
    );
    assert_eq!(
        hex::encode(&blob[..32]),
        "6faab2daae389bcd3405a05d6cafe33c0414f7bedd0bae19ba5f38b7fd1664ea"
    );
}

#[test]
fn sevctl_measurement_vector() {
    let Some(fx) = fixture_dir("sev-legacy") else {
        return;
    };
    let tik: [u8; 16] = std::fs::read(fx.join("sevctl/measurement/tik1.bin"))
        .unwrap()
        .try_into()
        .unwrap();
    let m = MeasureInputs {
        api_major: 1,
        api_minor: 40,
        build: 40,
        policy: 3,
        launch_digest: b64("xkvRAfyaSizgonxAjZIAkR8TmolUabBKQKb6KJCDDSM=")
            .try_into()
            .unwrap(),
    };
    let nonce: [u8; 16] = b64("wxP6tRHCFrFQWxsuqZA8QA==").try_into().unwrap();
    let blob = launch_measure_blob(&tik, &m, &nonce);
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(blob),
        "lswbxWxI9gckya16JQvdFtpYmNO4b+3inAPpqsgoBI7DE/q1EcIWsVBbGy6pkDxA"
    );
}

#[test]
fn transport_and_secret_vector_5_3() {
    let tek = seq::<16>(0x20);
    let tik = seq::<16>(0x30);
    let iv = seq::<16>(0x50);
    let measure: [u8; 32] = h("a964fc65a71e5704df537bb307fc38f54c3bced638b4f76e3387e5ac97168dbb");
    let pt = seq::<32>(0x00);
    let p = seal_secret(&tek, &tik, &measure, &iv, &pt).unwrap();
    assert_eq!(
        hex::encode(&p.ciphertext),
        "b0505bc0603c21e24d4ee2aa4b2cdfe43aaeef48ea3ac195ebe34bbff9770ae6"
    );
    assert_eq!(
        hex::encode(p.header.mac),
        "d8d5433de6d5009d53a9998f79ac240eea468983928700070277f3980485aad9"
    );
    assert_eq!((p.header.flags, p.header.iv), (0, iv));
    assert_eq!(
        &*open_secret(&tek, &tik, &measure, &p.header, &p.ciphertext).unwrap(),
        &pt
    );
    // Tampering: ciphertext, IV, MAC, another measurement → BAD_MEASUREMENT.
    let mut c = p.ciphertext.clone();
    c[3] ^= 1;
    assert_eq!(
        open_secret(&tek, &tik, &measure, &p.header, &c).unwrap_err(),
        SecretError::Mac
    );
    let mut hd = p.header;
    hd.iv[0] ^= 1;
    assert_eq!(
        open_secret(&tek, &tik, &measure, &hd, &p.ciphertext).unwrap_err(),
        SecretError::Mac
    );
    let mut m2 = measure;
    m2[0] ^= 1;
    assert_eq!(
        open_secret(&tek, &tik, &m2, &p.header, &p.ciphertext).unwrap_err(),
        SecretError::Mac
    );
    // COMPRESSED set and MACed: UNSUPPORTED, after the MAC check.
    let mut hd = p.header;
    hd.flags = 1;
    hd.mac = softsev_crypto::sev::secret_packet_mac(&tik, 1, &iv, 32, 32, &p.ciphertext, &measure);
    assert_eq!(
        open_secret(&tek, &tik, &measure, &hd, &p.ciphertext).unwrap_err(),
        SecretError::Compressed(1)
    );
    // Lengths the firmware refuses.
    for n in [0, 17, 0x5010] {
        assert_eq!(
            seal_secret(&tek, &tik, &measure, &iv, &vec![0; n]).unwrap_err(),
            SecretError::Length(n)
        );
    }
}

fn entry(guid: &str, data: &[u8]) -> SecretEntry {
    SecretEntry {
        guid: parse_guid(guid).unwrap(),
        data: Zeroizing::new(data.to_vec()),
    }
}

#[test]
fn sevctl_secret_build_vectors() {
    let Some(fx) = fixture_dir("sev-legacy") else {
        return;
    };
    let d = fx.join("sevctl/secret");
    let rd = |n: &str| std::fs::read(d.join(n)).unwrap();
    let tik: [u8; 16] = rd("tik1.bin").try_into().unwrap();
    let tek: [u8; 16] = rd("tek1.bin").try_into().unwrap();
    let iv: [u8; 16] = b64("rFR07U3TLH2YnsUj2SVZ7A==").try_into().unwrap();
    let blob = b64("TLeA7607lZQntLjRY1/i+sbtdSZ+75zxpz4Px9hzpBLwItF5Q2o4prA++3ZZv9ZS");
    let measure: [u8; 32] = blob[..32].try_into().unwrap();
    let one = [entry(
        "736869e5-84f0-4973-92ec-06879ce3da0b",
        &rd("secret1.txt"),
    )];
    let table = secret_table(&one).unwrap();
    assert_eq!(table.len(), 64);
    assert_eq!(u32::from_le_bytes(table[16..20].try_into().unwrap()), 0x3a);
    let p = seal_secret(&tek, &tik, &measure, &iv, &table).unwrap();
    let enc = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    assert_eq!(
        enc(p.header.as_bytes()),
        "AAAAAKxUdO1N0yx9mJ7FI9klWey8FSzeYQ4X8K71VzNKLU/KQsIsQxLjtbhaPUewqshX5Q=="
    );
    assert_eq!(
        enc(&p.ciphertext),
        "0U3e5PcXv0UW+H4tSBFKOdCYfKE1+j38Bc2fuO16mYiyI+sWx7INfn+lgYj56GL12yyinDa+lVfCCwD/2w5cPA=="
    );
    let back =
        parse_secret_table(&open_secret(&tek, &tik, &measure, &p.header, &p.ciphertext).unwrap())
            .unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].guid, one[0].guid);
    assert_eq!(&*back[0].data, &rd("secret1.txt")[..]);
    // Two secrets.
    let two = [
        entry("736869e5-84f0-4973-92ec-06879ce3da0b", &rd("secret1.txt")),
        entry("736869e5-aaaa-4973-92ec-06879ce3da0b", &rd("secret2.txt")),
    ];
    let p = seal_secret(&tek, &tik, &measure, &iv, &secret_table(&two).unwrap()).unwrap();
    assert_eq!(
        enc(p.header.as_bytes()),
        "AAAAAKxUdO1N0yx9mJ7FI9klWeyZ3r0dOEKHUOhIRqzGYYvTJgdMtBPL1nK6GD9aGET7Ng=="
    );
    assert_eq!(
        enc(&p.ciphertext),
        "0U3e5PcXv0UW+H4tSBFKObWYfKE1+j38Bc2fuO16mYiyI+sWx7INfn+lgYj56GL12yyinDa+lVfCC+WWs332lpLNUX1ZI3YK7vYgtys4X+uGxEIlkIQ90v8/w8ZFmQMe"
    );
    // secret3 (16343 B) and secret4 (16344 B) both pad to 16384.
    for n in ["secret3.txt", "secret4.txt"] {
        let t = secret_table(&[entry("736869e5-84f0-4973-92ec-06879ce3da0b", &rd(n))]).unwrap();
        assert_eq!(t.len(), 16384, "{n}");
    }
}

#[test]
fn secret_table_parsing_rejects_damage() {
    let t = secret_table(&[entry("736869e5-84f0-4973-92ec-06879ce3da0b", b"abc")]).unwrap();
    assert_eq!(parse_secret_table(&t).unwrap().len(), 1);
    let mut bad = t.to_vec();
    bad[0] ^= 1;
    assert!(parse_secret_table(&bad).is_err());
    let mut bad = t.to_vec();
    bad[36] = 0xFF; // the entry's length beyond the table
    assert!(parse_secret_table(&bad).is_err());
    assert!(parse_secret_table(&t[..10]).is_err());
    assert!(parse_guid("736869e5-84f0-4973-92ec-06879ce3da0").is_err());
    assert!(parse_guid("736869e5x84f0-4973-92ec-06879ce3da0b").is_err());
    assert!(parse_guid("g36869e5-84f0-4973-92ec-06879ce3da0b").is_err());
    // Too large for one LAUNCH_SECRET.
    assert!(secret_table(&[entry("736869e5-84f0-4973-92ec-06879ce3da0b", &[0; 0x5000])]).is_err());
}
