//! `softsev_crypto::sev` and the SEV signature variants against every known-answer
//! vector of sev-legacy.md §3.2, §3.4, §5.3, §9.2 and host-interfaces.md §4.6–4.7, and
//! against genuine AMD Naples / Rome certificates (shared/fixtures/sev-legacy).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use softsev_crypto::CryptoError;
use softsev_crypto::ecdsa::{P384PublicKey, P384Signature, P384SigningKey};
use softsev_crypto::hash::{sha256, sha384};
use softsev_crypto::rng::Rng;
use softsev_crypto::rsa::{RsaPssHash, verify_pss, verify_pss_der};
use softsev_crypto::rsa_sign::RsaPrivateKey;
use softsev_crypto::sev::*;
use std::path::PathBuf;

fn h<const N: usize>(s: &str) -> [u8; N] {
    let v = hex::decode(s.replace([' ', '\n'], "")).expect("hex");
    v.try_into().expect("length")
}

fn seq<const N: usize>(start: u8) -> [u8; N] {
    std::array::from_fn(|i| start + i as u8)
}

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/sev-legacy"
    ))
}

fn fixture(rel: &str) -> Vec<u8> {
    let p = fixtures().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

// ---- host-interfaces.md §4.6: the virtee/sev zero vectors --------------------------

#[test]
fn kdf_and_hmac_zero_vectors() {
    let mut master = [0u8; 16];
    kdf_hmac_sha256(&[0u8; 16], b"sev-master-secret", &[0u8; 16], &mut master);
    assert_eq!(hex::encode(master), "ab4d269fcc62bedb4511d56c386ce706");
    assert_eq!(
        hex::encode(policy_mac(&[0u8; 16], 0)),
        "aa7855e13839dd767cd5da7c1ff5036540c9264b7a803029315e55375287b4af"
    );
}

#[test]
fn kdf_multi_block_uses_le_counter_and_length() {
    let mut out = [0u8; 40];
    kdf_hmac_sha256(b"k", b"lab", b"ctx", &mut out);
    let l = 320u32.to_le_bytes();
    let b1 =
        softsev_crypto::hash::hmac_sha256(b"k", &[&1u32.to_le_bytes(), b"lab", &[0], b"ctx", &l]);
    let b2 =
        softsev_crypto::hash::hmac_sha256(b"k", &[&2u32.to_le_bytes(), b"lab", &[0], b"ctx", &l]);
    assert_eq!(&out[..32], &b1);
    assert_eq!(&out[32..], &b2[..8]);
}

#[test]
fn zero_session_vector() {
    // Z = 16 zero bytes in the virtee/sev test, so the KDF is called directly.
    let mut master = [0u8; 16];
    kdf_hmac_sha256(&[0u8; 16], LABEL_MASTER_SECRET, &[0u8; 16], &mut master);
    let mut kek = [0u8; 16];
    let mut kik = [0u8; 16];
    kdf_hmac_sha256(&master, LABEL_KEK, &[], &mut kek);
    kdf_hmac_sha256(&master, LABEL_KIK, &[], &mut kik);
    assert_eq!(hex::encode(kek), "b6abfbfb75ea1ea74ed8750b8afdb973");
    assert_eq!(hex::encode(kik), "53b524bf5669a363f365c864acba8572");
    let (wrap_tk, wrap_mac) = wrap_transport_keys(&kek, &kik, &[0; 16], &[0; 16], &[0; 16]);
    assert_eq!(
        hex::encode(wrap_tk),
        "2137bc7f9bb8bd7c3e55a576a15d3454b3856b8ba27afadf46dcfee9f02c02c4"
    );
    assert_eq!(
        hex::encode(wrap_mac),
        "3176c0752738bd9d5e86689534020f528c088f16238826b000b327dee6aeed7d"
    );
    let (tek, tik) = unwrap_transport_keys(&kek, &kik, &[0; 16], &wrap_tk, &wrap_mac).unwrap();
    assert_eq!(*tek, [0u8; 16]);
    assert_eq!(*tik, [0u8; 16]);
}

// ---- sev-legacy.md §3.2: the ECDH session vector -----------------------------------

const D_PDH: &str = "f3a1e3ed1ed4e7d60f5d44098932ee747e4306ede7ac4d28470f21ade020cdba1522f14afca856077fc46f3ea3b447bf";
const D_GODH: &str = "a63543ab0b76d0b9a96a819b02f34de559d1b5d19deb4a438b2a97fe9cbc927b6c2e5d08d22d217149dcb1c1d38725b9";
const Z: &str = "c0b3ffa6e4681d584d09b9497fb226e7113194354c7b123c918746718809cb446f175b129f75e7f99e6ae26ba2c89e71";
const SESSION: &str = "000102030405060708090a0b0c0d0e0f 6babbbe438cbc20daf9cd84084475083abb4d56933e2c75767bf602ed41d7f02
          101112131415161718191a1b1c1d1e1f dcef35404e68cd47e88d47be5f1f36c904a74d364267fc292e984cdb0a5946a5
          8585504451b5248c1b852848af92a14f126f6a4e2516e31a8881ab061e143547";

#[test]
fn ecdh_session_vector_section_3_2() {
    // The scalars are SHA-384 digests of the labels (below n, so unreduced).
    assert_eq!(hex::encode(sha384(b"softsev-vector-pdh")), D_PDH);
    assert_eq!(hex::encode(sha384(b"softsev-vector-godh")), D_GODH);
    let pdh = EcdhP384::from_scalar_be(&h(D_PDH)).unwrap();
    let godh = EcdhP384::from_scalar_be(&h(D_GODH)).unwrap();
    assert_eq!(*pdh.scalar_be(), h::<48>(D_PDH));
    let (gx, gy) = godh.public_xy_be();
    let (px, py) = pdh.public_xy_be();
    let z_fw = pdh.shared_x_be(&gx, &gy).unwrap();
    let z_owner = godh.shared_x_be(&px, &py).unwrap();
    assert_eq!(hex::encode(*z_fw), Z);
    assert_eq!(*z_fw, *z_owner);

    let nonce: [u8; 16] = seq(0x00);
    let wrap_iv: [u8; 16] = seq(0x10);
    let tek: [u8; 16] = seq(0x20);
    let tik: [u8; 16] = seq(0x30);
    let s = derive_session_secrets(&z_fw, &nonce);
    assert_eq!(hex::encode(*s.master), "d67b2b939d3dc82e062b5d4b22f3d821");
    assert_eq!(hex::encode(*s.kek), "633bfc5c116a6954863e548db4ac8198");
    assert_eq!(hex::encode(*s.kik), "2bf63c0915009d99d91e262d2e76ff09");

    let session: [u8; 128] = h(SESSION);
    let (wrap_tk, wrap_mac) = wrap_transport_keys(&s.kek, &s.kik, &wrap_iv, &tek, &tik);
    let pmac = policy_mac(&tik, 3);
    let mut built = Vec::new();
    for part in [&nonce[..], &wrap_tk, &wrap_iv, &wrap_mac, &pmac] {
        built.extend_from_slice(part);
    }
    assert_eq!(hex::encode(&built), hex::encode(session));

    // Firmware side from the session bytes alone.
    let f = |a: usize, b: usize| session[a..b].to_vec();
    let (tek2, tik2) = unwrap_transport_keys(
        &s.kek,
        &s.kik,
        &f(48, 64).try_into().unwrap(),
        &f(16, 48).try_into().unwrap(),
        &f(64, 96).try_into().unwrap(),
    )
    .unwrap();
    assert_eq!(*tek2, tek);
    assert_eq!(*tik2, tik);
    assert!(softsev_crypto::ct::ct_eq(
        &policy_mac(&tik2, 3),
        &session[96..128]
    ));
    assert!(!softsev_crypto::ct::ct_eq(
        &policy_mac(&tik2, 1),
        &session[96..128]
    ));
}

#[test]
fn flipped_wrap_mac_or_wrap_tk_is_mac_mismatch() {
    let kek: [u8; 16] = seq(1);
    let kik: [u8; 16] = seq(2);
    let iv: [u8; 16] = seq(3);
    let (wrap_tk, wrap_mac) = wrap_transport_keys(&kek, &kik, &iv, &seq(4), &seq(5));
    for i in [0, 17, 31] {
        let mut bad = wrap_mac;
        bad[i] ^= 0x01;
        assert_eq!(
            unwrap_transport_keys(&kek, &kik, &iv, &wrap_tk, &bad).unwrap_err(),
            MacMismatch
        );
        let mut bad_tk = wrap_tk;
        bad_tk[i] ^= 0x80;
        assert_eq!(
            unwrap_transport_keys(&kek, &kik, &iv, &bad_tk, &wrap_mac).unwrap_err(),
            MacMismatch
        );
    }
    // Wrong KIK: also a mismatch; wrong KEK with the right KIK decrypts to other keys.
    assert!(unwrap_transport_keys(&kek, &seq(9), &iv, &wrap_tk, &wrap_mac).is_err());
    let (tek, _) = unwrap_transport_keys(&seq(9), &kik, &iv, &wrap_tk, &wrap_mac).unwrap();
    assert_ne!(*tek, seq::<16>(4));
}

#[test]
fn ecdh_rejects_off_curve_points() {
    let k = EcdhP384::from_scalar_be(&h(D_PDH)).unwrap();
    let (x, y) = k.public_xy_be();
    let mut y_bad = y;
    y_bad[47] ^= 1;
    assert!(matches!(
        k.shared_x_be(&x, &y_bad),
        Err(CryptoError::InvalidKey { .. })
    ));
    assert!(k.shared_x_be(&[0u8; 48], &[0u8; 48]).is_err());
    assert!(k.shared_x_be(&[0xff; 48], &[0xff; 48]).is_err());
    assert!(k.shared_x_be(&x, &y).is_ok());
    assert!(EcdhP384::from_scalar_be(&[0u8; 48]).is_err());
    assert!(EcdhP384::from_scalar_be(&[0xff; 48]).is_err());
}

#[test]
fn generated_keys_agree_and_are_seeded() {
    let a = EcdhP384::generate(&mut Rng::seeded(b"s", "a"));
    let a2 = EcdhP384::generate(&mut Rng::seeded(b"s", "a"));
    let b = EcdhP384::generate(&mut Rng::seeded(b"s", "b"));
    assert_eq!(a.public_xy_be(), a2.public_xy_be());
    assert_ne!(a.public_xy_be(), b.public_xy_be());
    let (ax, ay) = a.public_xy_be();
    let (bx, by) = b.public_xy_be();
    assert_eq!(
        *a.shared_x_be(&bx, &by).unwrap(),
        *b.shared_x_be(&ax, &ay).unwrap()
    );
}

#[test]
fn debug_prints_no_secret() {
    let k = EcdhP384::from_scalar_be(&h(D_PDH)).unwrap();
    let dbg = format!("{k:?}");
    assert!(!dbg.contains(&D_PDH[..16]), "{dbg}");
    assert!(dbg.contains(&hex::encode(k.public_xy_be().0)));
    let s = derive_session_secrets(&h(Z), &seq(0));
    let dbg = format!("{s:?}");
    assert_eq!(dbg, "SessionSecrets { .. }");
    let sk = P384SigningKey::from_scalar(&h(D_GODH)).unwrap();
    assert!(!format!("{sk:?}").contains(&D_GODH[..16]));
}

// ---- measurement: sev-legacy.md §3.4, host-interfaces.md §4.7, §9.2 (sevctl) --------

#[test]
fn launch_measure_vectors() {
    let ld = sha256(b"");
    assert_eq!(
        hex::encode(launch_measure(&seq(0x30), 0, 24, 15, 3, &ld, &seq(0x40))),
        "a964fc65a71e5704df537bb307fc38f54c3bced638b4f76e3387e5ac97168dbb"
    );
    assert_eq!(
        hex::encode(launch_measure(
            &h("66320db73158a35a255d051758e95ed4"),
            0,
            0x12,
            0x0f,
            0,
            &ld,
            &h("4fbe0bedbad6c86ae8f68971d103e554")
        )),
        "6faab2daae389bcd3405a05d6cafe33c0414f7bedd0bae19ba5f38b7fd1664ea"
    );
}

#[test]
fn sevctl_measurement_build_vector() {
    let tik: [u8; 16] = fixture("sevctl/measurement/tik1.bin")
        .try_into()
        .expect("tik1.bin is 16 bytes");
    let nonce: [u8; 16] = B64
        .decode("wxP6tRHCFrFQWxsuqZA8QA==")
        .unwrap()
        .try_into()
        .unwrap();
    let ld: [u8; 32] = B64
        .decode("xkvRAfyaSizgonxAjZIAkR8TmolUabBKQKb6KJCDDSM=")
        .unwrap()
        .try_into()
        .unwrap();
    let measure = launch_measure(&tik, 1, 40, 40, 0x03, &ld, &nonce);
    let mut blob = measure.to_vec();
    blob.extend_from_slice(&nonce);
    assert_eq!(
        B64.encode(&blob),
        "lswbxWxI9gckya16JQvdFtpYmNO4b+3inAPpqsgoBI7DE/q1EcIWsVBbGy6pkDxA"
    );
    // VECTORS.md §3 "--firmware": LD = SHA-256 of the trimmed OVMF.
    let fw = fixture("sevctl/OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9");
    let measure = launch_measure(&tik, 1, 40, 40, 0x03, &sha256(&fw), &nonce);
    let mut blob = measure.to_vec();
    blob.extend_from_slice(&nonce);
    assert_eq!(
        B64.encode(&blob),
        "oMDewIouJSpbpNRHj7Mk3p08H2dPZQdsZMU14qIymBnDE/q1EcIWsVBbGy6pkDxA"
    );
}

// ---- sev-legacy.md §5.3: transport and secret packets ------------------------------

#[test]
fn transport_and_secret_packet_vectors() {
    let tek: [u8; 16] = seq(0x20);
    let tik: [u8; 16] = seq(0x30);
    let iv: [u8; 16] = seq(0x50);
    let plain: [u8; 32] = seq(0x00);
    let mut ct = plain;
    aes128_ctr(&tek, &iv, &mut ct);
    assert_eq!(
        hex::encode(ct),
        "b0505bc0603c21e24d4ee2aa4b2cdfe43aaeef48ea3ac195ebe34bbff9770ae6"
    );
    assert_eq!(
        hex::encode(transport_packet_mac(&tik, 0, &iv, 32, 32, &ct)),
        "7b22ac9770e0185677f16d46a251e8b39e7be7a7972f720f74b60cb018a1a94f"
    );
    let measure = launch_measure(&tik, 0, 24, 15, 3, &sha256(b""), &seq(0x40));
    assert_eq!(
        hex::encode(secret_packet_mac(&tik, 0, &iv, 32, 32, &ct, &measure)),
        "d8d5433de6d5009d53a9998f79ac240eea468983928700070277f3980485aad9"
    );
    // Each header field is authenticated.
    let base = transport_packet_mac(&tik, 0, &iv, 32, 32, &ct);
    assert_ne!(transport_packet_mac(&tik, 1, &iv, 32, 32, &ct), base);
    assert_ne!(transport_packet_mac(&tik, 0, &seq(0x51), 32, 32, &ct), base);
    assert_ne!(transport_packet_mac(&tik, 0, &iv, 16, 32, &ct), base);
    assert_ne!(transport_packet_mac(&tik, 0, &iv, 32, 16, &ct), base);
    let mut back = ct;
    aes128_ctr(&tek, &iv, &mut back);
    assert_eq!(back, plain);
}

#[test]
fn ctr_counter_is_full_128_bit_big_endian() {
    // The counter block ff..ff wraps to 00..00 (a 64-bit counter would keep the nonce
    // half). Block 2's keystream under IV ff..ff must equal block 1's under IV 0.
    let key: [u8; 16] = seq(7);
    let mut a = [0u8; 32];
    aes128_ctr(&key, &[0xff; 16], &mut a);
    let mut b = [0u8; 16];
    aes128_ctr(&key, &[0u8; 16], &mut b);
    assert_eq!(a[16..], b[..]);
    // Carry across the low 64 bits.
    let mut iv = [0u8; 16];
    iv[8..].fill(0xff);
    let mut c = [0u8; 32];
    aes128_ctr(&key, &iv, &mut c);
    let mut iv2 = [0u8; 16];
    iv2[7] = 1;
    let mut d = [0u8; 16];
    aes128_ctr(&key, &iv2, &mut d);
    assert_eq!(c[16..], d[..]);
    // Carry across the low 32 bits (where a ctr32 implementation would wrap).
    let mut iv = [0u8; 16];
    iv[12..].fill(0xff);
    let mut e = [0u8; 32];
    aes128_ctr(&key, &iv, &mut e);
    let mut iv2 = [0u8; 16];
    iv2[11] = 1;
    let mut f = [0u8; 16];
    aes128_ctr(&key, &iv2, &mut f);
    assert_eq!(e[16..], f[..]);
}

#[test]
fn ctr_matches_rustcrypto_ctr128be() {
    use ctr::cipher::{KeyIvInit, StreamCipher};
    let key: [u8; 16] = seq(0x61);
    for iv_hex in [
        "00000000000000000000000000000000",
        "000000000000000000000000fffffffd",
        "0000000000000000fffffffffffffffe",
        "fffffffffffffffffffffffffffffffc",
        "5c1b3a0fe2d94477a0b1c2d3e4f50617",
    ] {
        let iv: [u8; 16] = h(iv_hex);
        for len in [1usize, 16, 17, 100, 4096] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut ours = data.clone();
            aes128_ctr(&key, &iv, &mut ours);
            let mut theirs = data.clone();
            ctr::Ctr128BE::<aes::Aes128>::new(&key.into(), &iv.into()).apply_keystream(&mut theirs);
            assert_eq!(ours, theirs, "iv {iv_hex} len {len}");
        }
    }
}

#[test]
fn ecdh_matches_p384_crate() {
    let a = EcdhP384::generate(&mut Rng::seeded(b"x", "a"));
    let b = EcdhP384::generate(&mut Rng::seeded(b"x", "b"));
    let (bx, by) = b.public_xy_be();
    let sk = p384::SecretKey::from_slice(&a.scalar_be()[..]).unwrap();
    let mut sec1 = vec![4u8];
    sec1.extend_from_slice(&bx);
    sec1.extend_from_slice(&by);
    let pk = p384::PublicKey::from_sec1_bytes(&sec1).unwrap();
    let z = p384::ecdh::diffie_hellman(sk.to_nonzero_scalar(), pk.as_affine());
    assert_eq!(
        &a.shared_x_be(&bx, &by).unwrap()[..],
        &z.raw_secret_bytes()[..]
    );
}

// ---- identity: CEK (§2.5) and GET_ID (§1.8) ----------------------------------------

#[test]
fn cek_scalar_vectors() {
    // Expected values computed independently in Python (hashlib/hmac and int arithmetic)
    // following §2.5.
    for (cuk, d) in [
        (
            seq::<32>(0),
            "0e86960358461467fe5f0a27b40e5ae1a262c61ea152b8d1c08adcf876f62474ecf5956954a220627f626b6fe77eeab4",
        ),
        (
            [0u8; 32],
            "b766291bedb9c8feb4db140b3f0f0ed3c593c3a176d723a10a07254ca95c62d602493f81a298d0a15fc663bc85d38a52",
        ),
        (
            [0xff; 32],
            "73e1c6f9daab95c8d0a8ac4f58987c53d2a7737ad7462684d808486d68652d0b237704cc44e3a153086cef0a4d1bc3a1",
        ),
    ] {
        let s = cek_scalar_from_cuk(&cuk);
        assert_eq!(hex::encode(*s), d);
        P384SigningKey::from_scalar(&s).expect("a valid P-384 private key");
    }
}

#[test]
fn get_id_vectors_and_refusals() {
    let mut one = [0u8; 32];
    one[31] = 1;
    // 1·G of secp256k1 (SEC 2 §2.4.1).
    assert_eq!(
        hex::encode(get_id_from_cuk(&one).unwrap()),
        "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798\
         483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8"
    );
    let mut two = [0u8; 32];
    two[31] = 2;
    // 2·G (well-known).
    assert_eq!(
        hex::encode(&get_id_from_cuk(&two).unwrap()[..32]),
        "c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5"
    );
    let n: [u8; 32] = h("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141");
    let mut n_minus_1 = n;
    n_minus_1[31] -= 1;
    assert!(get_id_from_cuk(&n_minus_1).is_ok());
    for bad in [[0u8; 32], n, [0xff; 32]] {
        assert!(matches!(
            get_id_from_cuk(&bad),
            Err(CryptoError::InvalidKey { .. })
        ));
    }
}

// ---- ECDSA P-384 with SHA-256 / SHA-384 --------------------------------------------

#[test]
fn ecdsa_sha256_and_sha384_sign_verify() {
    let k = P384SigningKey::generate(&mut Rng::seeded(b"t", "ecdsa256"));
    let msg = b"sev cert body";
    let r = k.sign_digest_sha256(msg).unwrap();
    k.public().verify_sha256(msg, &r).unwrap();
    assert!(k.public().verify_sha256(b"sev cert bodz", &r).is_err());
    assert!(k.public().verify_sha384(msg, &r).is_err(), "hash is bound");
    assert_ne!(k.sign_digest_sha256(msg).unwrap(), r, "randomized");

    let d1 = k.sign_digest_sha256_deterministic(msg);
    assert_eq!(d1, k.sign_digest_sha256_mode(msg, true).unwrap());
    k.public().verify_sha256(msg, &d1).unwrap();
    k.public()
        .verify_sha256(msg, &k.sign_digest_sha256_mode(msg, false).unwrap())
        .unwrap();
    let s1 = k.sign_digest_sha256_with_rng(&mut Rng::seeded(b"n", "x"), msg);
    let s2 = k.sign_digest_sha256_with_rng(&mut Rng::seeded(b"n", "x"), msg);
    let s3 = k.sign_digest_sha256_with_rng(&mut Rng::seeded(b"n", "y"), msg);
    assert_eq!(s1, s2);
    assert_ne!(s1, s3);
    k.public().verify_sha256(msg, &s3).unwrap();

    let t = k.sign_sha384(msg).unwrap();
    k.public().verify_sha384(msg, &t).unwrap();
    assert!(k.public().verify_sha256(msg, &t).is_err());
    let t1 = k.sign_sha384_with_rng(&mut Rng::seeded(b"n", "x"), msg);
    assert_eq!(t1, k.sign_sha384_with_rng(&mut Rng::seeded(b"n", "x"), msg));
    k.public().verify(msg, &t1).unwrap();

    // Out-of-range components are a bad signature, not a panic.
    let zero = P384Signature {
        r: [0; 48],
        s: d1.s,
    };
    assert!(k.public().verify_sha256(msg, &zero).is_err());
    let big = P384Signature {
        r: [0xff; 48],
        s: d1.s,
    };
    assert!(k.public().verify_sha256(msg, &big).is_err());
}

// ---- RSA-PSS SHA-256 / SHA-384, 2048 and 4096 bits --------------------------------

#[test]
fn rsa_pss_both_hashes_2048_and_4096() {
    for bits in [2048usize, 4096] {
        let k = RsaPrivateKey::generate(&mut Rng::seeded(b"t", "rsa-sev"), bits).unwrap();
        let (n, e) = (k.public_modulus_be(), k.public_exponent_be());
        assert_eq!(n.len() * 8, bits);
        assert_eq!(e, [1, 0, 1]);
        let der = k.public_pkcs1_der().unwrap();
        for hash in [RsaPssHash::Sha256, RsaPssHash::Sha384] {
            let sig = k.sign_pss(hash, b"msg").unwrap();
            assert_eq!(sig.len(), bits / 8);
            verify_pss(&n, &e, hash, b"msg", &sig).unwrap();
            verify_pss_der(&der, hash, b"msg", &sig).unwrap();
            assert!(verify_pss(&n, &e, hash, b"msh", &sig).is_err());
            let other = match hash {
                RsaPssHash::Sha256 => RsaPssHash::Sha384,
                RsaPssHash::Sha384 => RsaPssHash::Sha256,
            };
            assert!(verify_pss(&n, &e, other, b"msg", &sig).is_err());
            // Fixed-width exponent field (leading zeros) as AMD stores it.
            let mut e_wide = vec![0u8; 256];
            e_wide[253..].copy_from_slice(&e);
            verify_pss(&n, &e_wide, hash, b"msg", &sig).unwrap();
            let a = k
                .sign_pss_with_rng(&mut Rng::seeded(b"s", "x"), hash, b"msg")
                .unwrap();
            let b = k
                .sign_pss_with_rng(&mut Rng::seeded(b"s", "x"), hash, b"msg")
                .unwrap();
            assert_eq!(a, b);
        }
    }
    assert_eq!(RsaPssHash::Sha256.salt_len(), 32);
    assert_eq!(RsaPssHash::Sha384.salt_len(), 48);
}

// ---- genuine AMD certificates (layouts: VECTORS.md §1) -----------------------------

/// Little-endian field → big-endian bytes, keeping the low `n` bytes.
fn le_to_be(field: &[u8], n: usize) -> Vec<u8> {
    let mut v = field[..n].to_vec();
    v.reverse();
    v
}

/// The P-384 public key of a SEV certificate (curve u32 at 0x10, X and Y as 72-byte
/// little-endian fields at 0x14 and 0x5C).
fn sev_cert_pubkey(cert: &[u8]) -> P384PublicKey {
    assert_eq!(u32::from_le_bytes(cert[0x10..0x14].try_into().unwrap()), 2);
    let x: [u8; 48] = le_to_be(&cert[0x14..], 48).try_into().unwrap();
    let y: [u8; 48] = le_to_be(&cert[0x5C..], 48).try_into().unwrap();
    P384PublicKey::from_xy(&x, &y).unwrap()
}

/// ECDSA (r, s) of the signature slot at `slot` (0x414 = sig1, 0x61C = sig2): usage u32,
/// algo u32, then r and s as 72-byte little-endian fields.
fn sev_slot_ecdsa(cert: &[u8], slot: usize) -> (u32, u32, P384Signature) {
    let usage = u32::from_le_bytes(cert[slot..slot + 4].try_into().unwrap());
    let algo = u32::from_le_bytes(cert[slot + 4..slot + 8].try_into().unwrap());
    let r = le_to_be(&cert[slot + 8..], 48).try_into().unwrap();
    let s = le_to_be(&cert[slot + 8 + 72..], 48).try_into().unwrap();
    (usage, algo, P384Signature { r, s })
}

#[test]
fn naples_platform_chain_ecdsa_sha256() {
    let cek = fixture("virtee-sev-tests/naples/cek.cert");
    let oca = fixture("virtee-sev-tests/naples/oca.cert");
    let pek = fixture("virtee-sev-tests/naples/pek.cert");
    let pdh = fixture("virtee-sev-tests/naples/pdh.cert");
    for c in [&cek, &oca, &pek, &pdh] {
        assert_eq!(c.len(), 0x824);
    }
    // PEK sig2 by the CEK (0x1004, ECDSA_SHA256).
    let (usage, algo, sig) = sev_slot_ecdsa(&pek, 0x61C);
    assert_eq!((usage, algo), (0x1004, 2));
    let cek_key = sev_cert_pubkey(&cek);
    cek_key.verify_sha256(&pek[..0x414], &sig).unwrap();
    assert!(cek_key.verify(&pek[..0x414], &sig).is_err(), "not SHA-384");
    let mut body = pek[..0x414].to_vec();
    body[4] ^= 1;
    assert!(cek_key.verify_sha256(&body, &sig).is_err());
    // PEK sig1 by the OCA, OCA self-signed, PDH by the PEK.
    let (usage, _, sig) = sev_slot_ecdsa(&pek, 0x414);
    assert_eq!(usage, 0x1001);
    sev_cert_pubkey(&oca)
        .verify_sha256(&pek[..0x414], &sig)
        .unwrap();
    let (_, _, sig) = sev_slot_ecdsa(&oca, 0x414);
    sev_cert_pubkey(&oca)
        .verify_sha256(&oca[..0x414], &sig)
        .unwrap();
    let (usage, _, sig) = sev_slot_ecdsa(&pdh, 0x414);
    assert_eq!(usage, 0x1002);
    sev_cert_pubkey(&pek)
        .verify_sha256(&pdh[..0x414], &sig)
        .unwrap();
    assert!(cek_key.verify_sha256(&pdh[..0x414], &sig).is_err());
}

/// An AMD CA certificate's RSA key (modulus, exponent big-endian), its signed bytes and
/// big-endian signature (VECTORS.md §1: sizes in bits at 0x38/0x3C, then exponent,
/// modulus and signature little-endian).
struct AmdCa {
    modulus: Vec<u8>,
    exponent: Vec<u8>,
    signed: Vec<u8>,
    sig: Vec<u8>,
}

fn amd_ca(b: &[u8]) -> AmdCa {
    let exp_bytes = u32::from_le_bytes(b[0x38..0x3C].try_into().unwrap()) as usize / 8;
    let mod_bytes = u32::from_le_bytes(b[0x3C..0x40].try_into().unwrap()) as usize / 8;
    let e_at = 0x40;
    let n_at = e_at + exp_bytes;
    let s_at = n_at + mod_bytes;
    AmdCa {
        exponent: le_to_be(&b[e_at..], exp_bytes),
        modulus: le_to_be(&b[n_at..], mod_bytes),
        signed: b[..s_at].to_vec(),
        sig: b
            .get(s_at..)
            .map(|s| le_to_be(s, s.len()))
            .unwrap_or_default(),
    }
}

#[test]
fn amd_ca_signatures_rsa_pss() {
    // Naples: RSA-2048, SHA-256.
    let ark = amd_ca(&fixture("builtin-ca/naples/ark.cert"));
    let ask = amd_ca(&fixture("builtin-ca/naples/ask.cert"));
    assert_eq!(ark.modulus.len(), 256);
    verify_pss(
        &ark.modulus,
        &ark.exponent,
        RsaPssHash::Sha256,
        &ask.signed,
        &ask.sig,
    )
    .unwrap();
    verify_pss(
        &ark.modulus,
        &ark.exponent,
        RsaPssHash::Sha256,
        &ark.signed,
        &ark.sig,
    )
    .unwrap();
    assert!(
        verify_pss(
            &ark.modulus,
            &ark.exponent,
            RsaPssHash::Sha384,
            &ask.signed,
            &ask.sig
        )
        .is_err()
    );
    assert!(
        verify_pss(
            &ask.modulus,
            &ask.exponent,
            RsaPssHash::Sha256,
            &ask.signed,
            &ask.sig
        )
        .is_err(),
        "the ASK does not sign itself"
    );
    // The Naples CEK's sig1 (0x13, RSA_SHA256) by the ASK: 256 bytes LE at 0x41C.
    let cek = fixture("virtee-sev-tests/naples/cek.cert");
    assert_eq!(
        u32::from_le_bytes(cek[0x414..0x418].try_into().unwrap()),
        0x13
    );
    assert_eq!(u32::from_le_bytes(cek[0x418..0x41C].try_into().unwrap()), 1);
    let cek_sig = le_to_be(&cek[0x41C..], 256);
    verify_pss(
        &ask.modulus,
        &ask.exponent,
        RsaPssHash::Sha256,
        &cek[..0x414],
        &cek_sig,
    )
    .unwrap();

    // Rome: RSA-4096, SHA-384; and the Rome ASK does not sign the Naples CEK.
    let ark = amd_ca(&fixture("builtin-ca/rome/ark.cert"));
    let ask = amd_ca(&fixture("builtin-ca/rome/ask.cert"));
    assert_eq!(ark.modulus.len(), 512);
    verify_pss(
        &ark.modulus,
        &ark.exponent,
        RsaPssHash::Sha384,
        &ask.signed,
        &ask.sig,
    )
    .unwrap();
    let mut tampered = ask.signed.clone();
    tampered[0x50] ^= 1;
    assert!(
        verify_pss(
            &ark.modulus,
            &ark.exponent,
            RsaPssHash::Sha384,
            &tampered,
            &ask.sig
        )
        .is_err()
    );
    let cek_sig_padded = le_to_be(&cek[0x41C..], 512);
    assert!(
        verify_pss(
            &ask.modulus,
            &ask.exponent,
            RsaPssHash::Sha384,
            &cek[..0x414],
            &cek_sig_padded
        )
        .is_err()
    );
}
