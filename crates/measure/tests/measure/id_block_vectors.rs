//! ID block / ID auth golden vectors from independent projects (spec
//! shared/spec/snp-launch.md §9.5; files listed in shared/fixtures/PROVENANCE.md).

use softsev_abi::ecdsa::EcdsaSignature;
use softsev_abi::id_block::{IdAuth, IdBlock};
use softsev_crypto::ecdsa::P384SigningKey;
use softsev_measure::id_block::{
    DEFAULT_POLICY, IdBlockParams, IdCheckFailure, IdCheckStatus, SignMode, check_id_block,
    key_digest, p384_signature, sign_id_auth, wire_public_key,
};
use std::path::PathBuf;
use zerocopy::{FromBytes, IntoBytes};

fn fixtures() -> Option<PathBuf> {
    softsev_testkit::fixture_dir("measurement")
}

/// Plain RFC 4648 base64 (with padding, whitespace ignored) for the test vectors.
fn b64(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = A.iter().position(|&a| a == c).expect("base64 character") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn key(path: PathBuf) -> P384SigningKey {
    P384SigningKey::from_pem(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn ld(bytes: &[u8]) -> [u8; 48] {
    bytes.try_into().unwrap()
}

/// sev-snp-measure v0.0.13 `tests/test_id_block.py` (commit 8f2b337e38bc), keys
/// `tests/keyfile/{id,author}_key_test.pem` (SEC1 "EC PRIVATE KEY" PEM).
#[test]
fn sev_snp_measure_vector() {
    let Some(f) = fixtures() else { return };
    let dir = f.join("idblock-sev-snp-measure");
    let params = IdBlockParams {
        ld: ld(&b64(
            "B28FLQi9p6cAqipgjFyqawDrrSl7bWioWkWx5mmlWLZ+G5HShKMB/mPE+gdQRn7t",
        )),
        ..Default::default()
    };
    let block = params.to_id_block();
    assert_eq!(
        block.as_bytes(),
        &b64(
            "B28FLQi9p6cAqipgjFyqawDrrSl7bWioWkWx5mmlWLZ+G5HShKMB/mPE+gdQRn7tAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAwAAAAAA"
        )[..]
    );
    let idk = key(dir.join("id_key_test.pem"));
    let ak = key(dir.join("author_key_test.pem"));
    assert_eq!(
        key_digest(&wire_public_key(idk.public())).to_vec(),
        b64("hwt+NcU/inLQ0yL3WrKvgmJ5Kq9leWIs5BMcPyHyied8sFYKXjuQs5MuZ07HCcsU")
    );
    assert_eq!(
        key_digest(&wire_public_key(ak.public())).to_vec(),
        b64("YxEcNLv8Ckk4+aAJvQdJgNgXIyPmFZnJ/TNtqGcySOHcqY0L6PdjdqEGuK/UwKBX")
    );
    // Our signatures over it pass the firmware checks in both modes.
    for mode in [SignMode::Randomized, SignMode::Deterministic] {
        let auth = sign_id_auth(&block, &idk, Some(&ak), mode).unwrap();
        let pass = check_id_block(&block, &auth, &params.ld, DEFAULT_POLICY, true).unwrap();
        assert_eq!(
            pass.id_key_digest.to_vec(),
            b64("hwt+NcU/inLQ0yL3WrKvgmJ5Kq9leWIs5BMcPyHyied8sFYKXjuQs5MuZ07HCcsU")
        );
    }
}

const VSEV_BLOCK: &str = "oU1jg0HlZ0Yo/h4C++3r5eWrT68d1y2JZgaOYVu5nv0T0hSzXCMXFbOOJj3GBZdFAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAwAAAAAA";
const VSEV_LD: &str = "a14d638341e5674628fe1e02fbedebe5e5ab4faf1dd72d8966068e615bb99efd13d214b35c231715b38e263dc6059745";

/// virtee/sev `tests/id-block.rs` (commit 9cf2adbffa20) with
/// `tests/measurement/test_{id,auth}_key.pem`, `test_auth_block.bin`,
/// `test_id_sig.bin`, `test_auth_sig.bin`.
#[test]
fn virtee_sev_vector_and_auth_block() {
    let Some(f) = fixtures() else { return };
    let dir = f.join("idblock-virtee-sev");
    let params = IdBlockParams {
        ld: ld(&hex::decode(VSEV_LD).unwrap()),
        ..Default::default()
    };
    let block = params.to_id_block();
    assert_eq!(block.as_bytes(), &b64(VSEV_BLOCK)[..]);
    let idk = key(dir.join("test_id_key.pem"));
    let ak = key(dir.join("test_auth_key.pem"));
    let id_digest = b64("WfssaG36T+9J84M5qndckAUcKNVzg93DuvO160sUlt87DbvcuuX+J2d6ZEggdz/i");
    let auth_digest = b64("7tgRafsMteDsNHlPEo/U4MSkb2fGWhrfqB/LJLzAiMJyNpt//D6ytq9qQoShs2xf");
    assert_eq!(
        key_digest(&wire_public_key(idk.public())).to_vec(),
        id_digest
    );
    assert_eq!(
        key_digest(&wire_public_key(ak.public())).to_vec(),
        auth_digest
    );

    // The ready-made ID auth page passes every LAUNCH_FINISH check.
    let raw = std::fs::read(dir.join("test_auth_block.bin")).unwrap();
    let auth = IdAuth::from_wire(&raw).unwrap();
    assert!(auth.reserved_is_zero());
    assert_eq!(auth.id_key, wire_public_key(idk.public()));
    assert_eq!(auth.author_key, wire_public_key(ak.public()));
    let pass = check_id_block(&block, &auth, &params.ld, DEFAULT_POLICY, true).unwrap();
    assert_eq!(pass.id_key_digest.to_vec(), id_digest);
    assert_eq!(pass.author_key_digest.unwrap().to_vec(), auth_digest);
    assert_eq!(
        pass.checks,
        [
            "LD",
            "POLICY",
            "ID_KEY_ALGO",
            "AUTH_KEY_ALGO",
            "ID_KEY",
            "ID_BLOCK_SIG",
            "AUTHOR_KEY",
            "ID_KEY_SIG"
        ]
    );

    // The loose signature files verify on their own and are the ones in the page.
    let id_sig =
        EcdsaSignature::read_from_bytes(&std::fs::read(dir.join("test_id_sig.bin")).unwrap())
            .unwrap();
    let au_sig =
        EcdsaSignature::read_from_bytes(&std::fs::read(dir.join("test_auth_sig.bin")).unwrap())
            .unwrap();
    idk.public()
        .verify(block.as_bytes(), &p384_signature(&id_sig).unwrap())
        .unwrap();
    ak.public()
        .verify(auth.id_key.as_bytes(), &p384_signature(&au_sig).unwrap())
        .unwrap();
    assert_eq!(auth.id_block_sig, id_sig);
    assert_eq!(auth.id_key_sig, au_sig);

    // Every byte of R and S in both signatures, and every coordinate byte of the keys,
    // flipped one at a time: the check fails with BAD_SIGNATURE at the right step.
    for off in (0x40..0x40 + 0x90).chain(0x680..0x680 + 0x90) {
        let mut r = raw.clone();
        r[off] ^= 0x01;
        let a = IdAuth::from_wire(&r).unwrap();
        let e = check_id_block(&block, &a, &params.ld, DEFAULT_POLICY, true).unwrap_err();
        let want = if off < 0x680 {
            IdCheckFailure::IdBlockSignature
        } else {
            IdCheckFailure::IdKeySignature
        };
        assert_eq!(e, want, "flip at {off:#x}");
        assert_eq!(e.status(), IdCheckStatus::BadSignature);
    }
    for off in [0x240, 0x244, 0x244 + 47, 0x28C, 0x880, 0x884, 0x8CC + 10] {
        let mut r = raw.clone();
        r[off] ^= 0x01;
        let a = IdAuth::from_wire(&r).unwrap();
        let e = check_id_block(&block, &a, &params.ld, DEFAULT_POLICY, true).unwrap_err();
        let ok = if off < 0x880 {
            matches!(e, IdCheckFailure::IdKey(_))
        } else {
            matches!(e, IdCheckFailure::AuthorKey(_))
        };
        assert!(ok, "flip at {off:#x}: {e}");
        assert_eq!(e.status(), IdCheckStatus::BadSignature);
    }
    // Reserved bytes are not checked by the firmware, but a reserved byte inside
    // ID_KEY changes what ID_KEY_SIG covers.
    let mut r = raw.clone();
    r[0xFFF] = 0xAA;
    r[0x10] = 0xAA;
    assert!(
        check_id_block(
            &block,
            &IdAuth::from_wire(&r).unwrap(),
            &params.ld,
            DEFAULT_POLICY,
            true
        )
        .is_ok()
    );
    let mut r = raw.clone();
    r[0x400] ^= 1;
    assert_eq!(
        check_id_block(
            &block,
            &IdAuth::from_wire(&r).unwrap(),
            &params.ld,
            DEFAULT_POLICY,
            true
        ),
        Err(IdCheckFailure::IdKeySignature)
    );
    // Block-side failures.
    let mut bad = block;
    bad.guest_svn = 1;
    assert_eq!(
        check_id_block(&bad, &auth, &params.ld, DEFAULT_POLICY, true),
        Err(IdCheckFailure::IdBlockSignature)
    );
    let mut other_ld = params.ld;
    other_ld[47] ^= 1;
    assert_eq!(
        check_id_block(&block, &auth, &other_ld, DEFAULT_POLICY, true)
            .unwrap_err()
            .status(),
        IdCheckStatus::BadMeasurement
    );
    assert_eq!(
        check_id_block(&block, &auth, &params.ld, 0x70000, true)
            .unwrap_err()
            .status(),
        IdCheckStatus::PolicyFailure
    );
    let mut r = raw.clone();
    r[0] = 2;
    assert_eq!(
        check_id_block(
            &block,
            &IdAuth::from_wire(&r).unwrap(),
            &params.ld,
            DEFAULT_POLICY,
            true
        )
        .unwrap_err()
        .status(),
        IdCheckStatus::InvalidParam
    );

    // Deterministic signing with these keys is reproducible and also passes.
    let ours = sign_id_auth(&block, &idk, Some(&ak), SignMode::Deterministic).unwrap();
    assert_eq!(
        ours,
        sign_id_auth(&block, &idk, Some(&ak), SignMode::Deterministic).unwrap()
    );
    assert_eq!(ours.id_key, auth.id_key);
    assert_eq!(ours.author_key, auth.author_key);
    assert!(check_id_block(&block, &ours, &params.ld, DEFAULT_POLICY, true).is_ok());
}

/// LIT-Protocol/sev-snp-utils `resources/test/identity/` (commit 4d3f94189926):
/// id_block.b64 + auth_info.b64 signed with id-key.pem / author-key.pem (PKCS#8).
/// Consistent: the page's keys are the PEM keys and both signatures verify. Digests
/// below were computed independently with Python `cryptography` (derived, not upstream).
#[test]
fn lit_protocol_vector() {
    let Some(f) = fixtures() else { return };
    let dir = f.join("idblock-lit-sev-snp-utils");
    let block_raw = b64(&std::fs::read_to_string(dir.join("id_block.b64")).unwrap());
    let auth_raw = b64(&std::fs::read_to_string(dir.join("auth_info.b64")).unwrap());
    let block = IdBlock::from_wire(&block_raw).unwrap();
    let auth = IdAuth::from_wire(&auth_raw).unwrap();
    assert_eq!(
        (block.version, block.guest_svn, block.policy),
        (1, 0, 0x30000)
    );
    let idk = key(dir.join("id-key.pem"));
    let ak = key(dir.join("author-key.pem"));
    assert_eq!(auth.id_key, wire_public_key(idk.public()));
    assert_eq!(auth.author_key, wire_public_key(ak.public()));
    let pass = check_id_block(&block, &auth, &block.ld, block.policy, true).unwrap();
    assert_eq!(
        pass.id_key_digest.to_vec(),
        b64("ZKfc5tzESpjw25UwHexdM97yT/1x3ykRZj3YYD4YpoMaxvr9K2fZg7M4MF24GFFs")
    );
    assert_eq!(
        pass.author_key_digest.unwrap().to_vec(),
        b64("u7J9Y+qEfgQStbB8zdZzpGISVFrOr2uHUhRnq2a5gurXkBqaGQvdH/rPZWx6wenM")
    );
    // Rebuilding the block from its fields gives the same bytes.
    let params = IdBlockParams {
        ld: block.ld,
        ..Default::default()
    };
    assert_eq!(params.to_id_block().as_bytes(), &block_raw[..]);
}
