//! Golden ID block / ID auth vectors from independent sources (spec snp-launch.md §9.5;
//! fixtures listed in shared/fixtures/PROVENANCE.md):
//! * `SSM`  = virtee/sev-snp-measure 0.0.13 `tests/test_id_block.py` @ 8f2b337e, keys
//!   `tests/keyfile/{id,author}_key_test.pem` (fixtures `measurement/idblock-sev-snp-measure/`).
//! * `VSEV` = virtee/sev `tests/id-block.rs` @ 9cf2adbf, keys and pre-made signatures
//!   `tests/measurement/test_*` (fixtures `measurement/idblock-virtee-sev/`).
//! * `LIT`  = LIT-Protocol/sev-snp-utils `resources/test/identity/*` @ 4d3f9418, with the
//!   key fingerprints from its `src/guest/identity/fingerprint.rs` test.
//!
//! Fixtures are read from ../shared/fixtures; without them the tests print SKIP.

use softsev_abi::ecdsa::EcdsaPublicKey;
use softsev_abi::id_block::{IdAuth, IdBlock};
use softsev_crypto::ecdsa::P384SigningKey;
use softsev_measure::id_block::{
    DEFAULT_POLICY, FinishContext, IdBlockParams, IdCheckError, IdCheckStatus, check_id_block,
    sign_id_block, signing_key_digest,
};
use std::path::{Path, PathBuf};
use zerocopy::IntoBytes;

fn fixtures() -> Option<PathBuf> {
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/measurement"
    ));
    if p.is_dir() {
        Some(p)
    } else {
        println!("SKIP: ../shared/fixtures not found at {}", p.display());
        None
    }
}

/// Standard base64 (RFC 4648, padded) for the vectors, which upstream writes in base64.
fn b64(s: &str) -> Vec<u8> {
    const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = ALPHA.iter().position(|&a| a == c).expect("base64 digit") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn key(path: &Path) -> P384SigningKey {
    P384SigningKey::from_pem(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn arr48(v: &[u8]) -> [u8; 48] {
    v.try_into().unwrap()
}

#[test]
fn ssm_test_id_block_vector() {
    let Some(fx) = fixtures() else { return };
    let d = fx.join("idblock-sev-snp-measure");
    // SSM tests/test_id_block.py
    let ld = b64("B28FLQi9p6cAqipgjFyqawDrrSl7bWioWkWx5mmlWLZ+G5HShKMB/mPE+gdQRn7t");
    let expected_block = b64(
        "B28FLQi9p6cAqipgjFyqawDrrSl7bWioWkWx5mmlWLZ+G5HShKMB/mPE+gdQRn7tAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAwAAAAAA",
    );
    let idk = key(&d.join("id_key_test.pem"));
    let ak = key(&d.join("author_key_test.pem"));
    let block = IdBlockParams::new(arr48(&ld)).to_id_block();
    assert_eq!(block.as_bytes(), &expected_block[..]);
    let s = sign_id_block(&block, &idk, Some(&ak), false).unwrap();
    assert_eq!(
        s.id_key_digest.to_vec(),
        b64("hwt+NcU/inLQ0yL3WrKvgmJ5Kq9leWIs5BMcPyHyied8sFYKXjuQs5MuZ07HCcsU")
    );
    assert_eq!(
        s.author_key_digest.unwrap().to_vec(),
        b64("YxEcNLv8Ckk4+aAJvQdJgNgXIyPmFZnJ/TNtqGcySOHcqY0L6PdjdqEGuK/UwKBX")
    );
    let ctx = FinishContext {
        ld: arr48(&ld),
        policy: DEFAULT_POLICY,
        author_key_en: true,
    };
    let pass = check_id_block(&s.block, &s.auth, &ctx).unwrap();
    assert_eq!(pass.id_key_digest, s.id_key_digest);
}

const VSEV_LD: &str = "a14d638341e5674628fe1e02fbedebe5e5ab4faf1dd72d8966068e615bb99efd13d214b35c231715b38e263dc6059745";
const VSEV_BLOCK: &str = "oU1jg0HlZ0Yo/h4C++3r5eWrT68d1y2JZgaOYVu5nv0T0hSzXCMXFbOOJj3GBZdFAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAwAAAAAA";
const VSEV_ID_DIGEST: &str = "WfssaG36T+9J84M5qndckAUcKNVzg93DuvO160sUlt87DbvcuuX+J2d6ZEggdz/i";
const VSEV_AUTHOR_DIGEST: &str = "7tgRafsMteDsNHlPEo/U4MSkb2fGWhrfqB/LJLzAiMJyNpt//D6ytq9qQoShs2xf";

#[test]
fn vsev_id_block_and_digests() {
    let Some(fx) = fixtures() else { return };
    let d = fx.join("idblock-virtee-sev");
    // VSEV tests/id-block.rs test_id_block_and_key_digests
    let ld = arr48(&hex::decode(VSEV_LD).unwrap());
    let block = IdBlockParams::new(ld).to_id_block();
    assert_eq!(block.as_bytes(), &b64(VSEV_BLOCK)[..]);
    let idk = key(&d.join("test_id_key.pem"));
    let ak = key(&d.join("test_auth_key.pem"));
    assert_eq!(signing_key_digest(&idk).to_vec(), b64(VSEV_ID_DIGEST));
    assert_eq!(signing_key_digest(&ak).to_vec(), b64(VSEV_AUTHOR_DIGEST));
}

fn vsev_auth(d: &Path) -> IdAuth {
    IdAuth::from_wire(&std::fs::read(d.join("test_auth_block.bin")).unwrap()).unwrap()
}

#[test]
fn vsev_auth_block_verifies_like_firmware() {
    let Some(fx) = fixtures() else { return };
    let d = fx.join("idblock-virtee-sev");
    let ld = arr48(&hex::decode(VSEV_LD).unwrap());
    let block = IdBlock::from_wire(&b64(VSEV_BLOCK)).unwrap();
    let auth = vsev_auth(&d);
    // test_auth_block.bin is assembled from test_id_sig.bin / test_auth_sig.bin and the
    // public halves of the two PEM keys.
    let id_sig = std::fs::read(d.join("test_id_sig.bin")).unwrap();
    let auth_sig = std::fs::read(d.join("test_auth_sig.bin")).unwrap();
    assert_eq!(auth.id_block_sig.as_bytes(), &id_sig[..]);
    assert_eq!(auth.id_key_sig.as_bytes(), &auth_sig[..]);
    let idk = key(&d.join("test_id_key.pem"));
    let ak = key(&d.join("test_auth_key.pem"));
    assert_eq!(auth.id_key, EcdsaPublicKey::from_p384(idk.public()));
    assert_eq!(auth.author_key, EcdsaPublicKey::from_p384(ak.public()));
    assert!(auth.reserved_is_zero());

    let ctx = FinishContext {
        ld,
        policy: 0x30000,
        author_key_en: true,
    };
    let pass = check_id_block(&block, &auth, &ctx).unwrap();
    assert_eq!(pass.id_key_digest.to_vec(), b64(VSEV_ID_DIGEST));
    assert_eq!(pass.author_key_digest.unwrap().to_vec(), b64(VSEV_AUTHOR_DIGEST));

    // Every single-byte flip of the signed material fails with the right reason.
    let status = |b: &IdBlock, a: &IdAuth, c: &FinishContext| {
        check_id_block(b, a, c).unwrap_err().status()
    };
    let mut b = block;
    b.ld[17] ^= 0x80;
    assert_eq!(status(&b, &auth, &ctx), IdCheckStatus::BadMeasurement);
    let mut c = ctx;
    c.ld[47] ^= 1;
    assert_eq!(status(&block, &auth, &c), IdCheckStatus::BadMeasurement);
    let mut b = block;
    b.policy |= 1 << 19;
    assert_eq!(status(&b, &auth, &ctx), IdCheckStatus::PolicyFailure);
    for off in [0x30, 0x40, 0x50, 0x54] {
        let mut raw = block.as_bytes().to_vec();
        raw[off] ^= 1;
        let b = IdBlock::from_wire(&raw).unwrap();
        assert!(
            matches!(
                check_id_block(&b, &auth, &ctx),
                Err(IdCheckError::IdBlockSignature(_))
            ),
            "ID block byte {off:#x}"
        );
    }
    for (off, want) in [
        (0x000, IdCheckStatus::InvalidParam), // ID_KEY_ALGO
        (0x004, IdCheckStatus::InvalidParam), // AUTH_KEY_ALGO
        (0x040, IdCheckStatus::BadSignature), // ID_BLOCK_SIG.R
        (0x088, IdCheckStatus::BadSignature), // ID_BLOCK_SIG.S
        (0x240, IdCheckStatus::BadSignature), // ID_KEY.CURVE
        (0x250, IdCheckStatus::BadSignature), // ID_KEY.QX
        (0x300, IdCheckStatus::BadSignature), // ID_KEY reserved (signed by the author key)
        (0x680, IdCheckStatus::BadSignature), // ID_KEY_SIG.R
        (0x6D0, IdCheckStatus::BadSignature), // ID_KEY_SIG.S
        (0x8A0, IdCheckStatus::BadSignature), // AUTHOR_KEY.QX
        (0x900, IdCheckStatus::BadSignature), // AUTHOR_KEY.QY
    ] {
        let mut raw = auth.as_bytes().to_vec();
        raw[off] ^= 0x01;
        let a = IdAuth::from_wire(&raw).unwrap();
        assert_eq!(status(&block, &a, &ctx), want, "ID auth byte {off:#x}");
    }
    // Reserved bytes outside the signed ID_KEY are ignored by the firmware.
    for off in [0x008, 0x0D0, 0x644, 0x7F0, 0xA00, 0xC84, 0xFFF] {
        let mut raw = auth.as_bytes().to_vec();
        raw[off] ^= 0xFF;
        let a = IdAuth::from_wire(&raw).unwrap();
        assert!(check_id_block(&block, &a, &ctx).is_ok(), "reserved byte {off:#x}");
    }
    // With AUTH_KEY_EN = 0 the author half is not looked at.
    let mut raw = auth.as_bytes().to_vec();
    raw[0x004] = 0;
    raw[0x6D0] ^= 1;
    let a = IdAuth::from_wire(&raw).unwrap();
    let c = FinishContext {
        author_key_en: false,
        ..ctx
    };
    let pass = check_id_block(&block, &a, &c).unwrap();
    assert_eq!(pass.author_key_digest, None);
}

#[test]
fn lit_protocol_id_block_and_auth_info() {
    let Some(fx) = fixtures() else { return };
    let d = fx.join("idblock-lit-sev-snp-utils");
    let block_raw = b64(&std::fs::read_to_string(d.join("id_block.b64")).unwrap());
    let auth_raw = b64(&std::fs::read_to_string(d.join("auth_info.b64")).unwrap());
    let block = IdBlock::from_wire(&block_raw).unwrap();
    let auth = IdAuth::from_wire(&auth_raw).unwrap();
    // LIT types.rs id_block_test: LD, zero ids, version 1, svn 0, policy 0x30000.
    assert_eq!(
        hex::encode(block.ld),
        "ffb0cb7f01a5d5b122430d66f211326ab5cf11a9a5d3189ec53adf9a60730bc63d9856fe9fe602abd662861d0ee36007"
    );
    assert_eq!((block.version, block.guest_svn, block.policy), (1, 0, 0x30000));
    // The keys in auth_info are the public halves of the committed PEMs.
    let idk = key(&d.join("id-key.pem"));
    let ak = key(&d.join("author-key.pem"));
    assert_eq!(auth.id_key, EcdsaPublicKey::from_p384(idk.public()));
    assert_eq!(auth.author_key, EcdsaPublicKey::from_p384(ak.public()));
    let ctx = FinishContext {
        ld: block.ld,
        policy: 0x30000,
        author_key_en: true,
    };
    let pass = check_id_block(&block, &auth, &ctx).unwrap();
    // LIT fingerprint.rs fingerprint_id_key_test.
    assert_eq!(
        hex::encode(pass.id_key_digest),
        "64a7dce6dcc44a98f0db95301dec5d33def24ffd71df2911663dd8603e18a6831ac6fafd2b67d983b338305db818516c"
    );
    assert_eq!(
        hex::encode(pass.author_key_digest.unwrap()),
        "bbb27d63ea847e0412b5b07ccdd673a46212545aceaf6b87521467ab66b982ead7901a9a190bdd1ffacf656c7ac1e9cc"
    );
    let mut b = block;
    b.image_id[0] = 1;
    assert_eq!(
        check_id_block(&b, &auth, &ctx).unwrap_err().status(),
        IdCheckStatus::BadSignature
    );
}

#[test]
fn deterministic_signatures_repeat_and_verify_across_fixture_keys() {
    let Some(fx) = fixtures() else { return };
    let d = fx.join("idblock-virtee-sev");
    let idk = key(&d.join("test_id_key.pem"));
    let ak = key(&d.join("test_auth_key.pem"));
    let mut p = IdBlockParams::new([0xA5; 48]);
    p.family_id = [1; 16];
    p.image_id = [2; 16];
    p.guest_svn = 9;
    p.policy = 0x3_0000 | (1 << 19);
    let a = sign_id_block(&p.to_id_block(), &idk, Some(&ak), true).unwrap();
    let b = sign_id_block(&p.to_id_block(), &idk, Some(&ak), true).unwrap();
    assert_eq!(a.auth.as_bytes(), b.auth.as_bytes());
    let r = sign_id_block(&p.to_id_block(), &idk, Some(&ak), false).unwrap();
    assert_ne!(a.auth.id_block_sig, r.auth.id_block_sig);
    assert_eq!(a.auth.id_key, r.auth.id_key);
    let ctx = FinishContext {
        ld: [0xA5; 48],
        policy: p.policy,
        author_key_en: true,
    };
    check_id_block(&a.block, &a.auth, &ctx).unwrap();
    check_id_block(&r.block, &r.auth, &ctx).unwrap();
    assert_eq!(a.block.as_bytes()[0x30..0x40], [1; 16]);
    assert_eq!(a.block.as_bytes()[0x54], 9);
}
