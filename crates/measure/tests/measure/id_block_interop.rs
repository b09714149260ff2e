//! Differential test against sev-snp-measure 0.0.13's `snp-create-id-block` (PyPI,
//! installed by scripts/install-interop-tools.sh): same inputs → the same 96-byte ID
//! block and the same ID/author key digests; its ID auth passes our LAUNCH_FINISH
//! checker exactly as ours does (same checks, same digests, same failure for the same
//! corruption). ECDSA signatures are randomized on both sides, so signature bytes are
//! not compared; the signatures are cross-verified instead, and our ID auth is also
//! verified by an independent ECDSA implementation (Python `cryptography`, which
//! sev-snp-measure depends on).
//!
//! Keys: the fixture key sets of sev-snp-measure (SEC1 PEM), virtee/sev and
//! LIT-Protocol/sev-snp-utils (PKCS#8 PEM); see shared/fixtures/PROVENANCE.md.
//! Without the tool: prints SKIP (fails when SOFTSEV_REQUIRE_INTEROP=1).

use softsev_abi::id_block::{IdAuth, IdBlock};
use softsev_crypto::ecdsa::P384SigningKey;
use softsev_measure::id_block::{
    DEFAULT_POLICY, IdBlockParams, IdCheckPass, IdCheckStatus, SignMode, check_id_block,
    key_digest, sign_id_auth, wire_public_key,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use zerocopy::IntoBytes;

const TOOL: &str = "snp-create-id-block";

fn require_interop() -> bool {
    std::env::var("SOFTSEV_REQUIRE_INTEROP").is_ok_and(|v| v == "1")
}

fn skip(what: &str) {
    assert!(
        !require_interop(),
        "{what} not installed and SOFTSEV_REQUIRE_INTEROP=1"
    );
    println!("SKIP: {what} not installed (run scripts/install-interop-tools.sh)");
}

fn on_path(tool: &str) -> bool {
    softsev_testkit::on_path(tool).is_some()
}

fn fixtures() -> Option<PathBuf> {
    softsev_testkit::fixture_dir("measurement")
}

const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.len();
        let v = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= n {
                out.push(B64[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn b64_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = B64
            .iter()
            .position(|&a| a == c)
            .unwrap_or_else(|| panic!("not base64: {c:?}")) as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// What `snp-create-id-block` printed.
struct ToolOutput {
    block: Vec<u8>,
    auth: Vec<u8>,
    id_key_digest: Vec<u8>,
    author_key_digest: Vec<u8>,
}

/// Run the tool. Its output is
/// `id-block=<b64>,id-auth=<b64>\nid_key_hash: <b64>\nauthor_key: <b64>`.
fn run_tool(ld: &[u8; 48], id_key: &Path, author_key: &Path) -> ToolOutput {
    let out = Command::new(TOOL)
        .arg("--measurement")
        .arg(b64_encode(ld))
        .arg("--idkey")
        .arg(id_key)
        .arg("--authorkey")
        .arg(author_key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{TOOL} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let first = lines.next().unwrap();
    let (block, auth) = first.split_once(",id-auth=").unwrap();
    let block = block.strip_prefix("id-block=").unwrap();
    let id = lines.next().unwrap().strip_prefix("id_key_hash: ").unwrap();
    let author = lines.next().unwrap().strip_prefix("author_key: ").unwrap();
    ToolOutput {
        block: b64_decode(block),
        auth: b64_decode(auth),
        id_key_digest: b64_decode(id),
        author_key_digest: b64_decode(author),
    }
}

fn key(path: &Path) -> P384SigningKey {
    P384SigningKey::from_pem(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Launch digests: the sev-snp-measure and virtee/sev test vectors plus seeded ones.
fn launch_digests() -> Vec<[u8; 48]> {
    let mut v = vec![
        b64_decode("B28FLQi9p6cAqipgjFyqawDrrSl7bWioWkWx5mmlWLZ+G5HShKMB/mPE+gdQRn7t")
            .try_into()
            .unwrap(),
        hex::decode("a14d638341e5674628fe1e02fbedebe5e5ab4faf1dd72d8966068e615bb99efd13d214b35c231715b38e263dc6059745")
            .unwrap()
            .try_into()
            .unwrap(),
        [0u8; 48],
        [0xFF; 48],
    ];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..2 {
        let mut ld = [0u8; 48];
        for b in &mut ld {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        v.push(ld);
    }
    v
}

fn key_sets(fx: &Path) -> Vec<(PathBuf, PathBuf)> {
    vec![
        (
            fx.join("idblock-sev-snp-measure/id_key_test.pem"),
            fx.join("idblock-sev-snp-measure/author_key_test.pem"),
        ),
        (
            fx.join("idblock-virtee-sev/test_id_key.pem"),
            fx.join("idblock-virtee-sev/test_auth_key.pem"),
        ),
        (
            fx.join("idblock-lit-sev-snp-utils/id-key.pem"),
            fx.join("idblock-lit-sev-snp-utils/author-key.pem"),
        ),
    ]
}

/// The corruptions applied identically to the tool's and our ID auth / context; the
/// checker must give the same outcome for both.
fn outcomes(block: &IdBlock, auth: &IdAuth, ld: &[u8; 48]) -> Vec<Result<usize, IdCheckStatus>> {
    let run = |b: &IdBlock, a: &IdAuth, ld: &[u8; 48], policy: u64, en: bool| {
        check_id_block(b, a, ld, policy, en)
            .map(|p: IdCheckPass| p.checks.len())
            .map_err(|e| e.status())
    };
    let mut out = vec![
        run(block, auth, ld, DEFAULT_POLICY, true),
        run(block, auth, ld, DEFAULT_POLICY, false),
    ];
    let mut other_ld = *ld;
    other_ld[5] ^= 0x20;
    out.push(run(block, auth, &other_ld, DEFAULT_POLICY, true));
    out.push(run(block, auth, ld, 0x1_0000, true));
    for off in [
        0x000, 0x004, 0x040, 0x0A0, 0x240, 0x260, 0x400, 0x680, 0x6E0, 0x890, 0x8F0, 0xD00,
    ] {
        let mut raw = auth.as_bytes().to_vec();
        raw[off] ^= 0x04;
        let a = IdAuth::from_wire(&raw).unwrap();
        out.push(run(block, &a, ld, DEFAULT_POLICY, true));
    }
    let mut b = *block;
    b.image_id[15] ^= 1;
    out.push(run(&b, auth, ld, DEFAULT_POLICY, true));
    out
}

#[test]
fn snp_create_id_block_agrees_with_softsev() {
    let Some(fx) = fixtures() else { return };
    if !on_path(TOOL) {
        skip(TOOL);
        return;
    }
    let mut cases = 0;
    for (id_path, author_path) in key_sets(&fx) {
        let idk = key(&id_path);
        let ak = key(&author_path);
        let id_digest = key_digest(&wire_public_key(idk.public()));
        let author_digest = key_digest(&wire_public_key(ak.public()));
        for ld in launch_digests() {
            let tool = run_tool(&ld, &id_path, &author_path);
            let ctx = format!("keys {}, LD {}", id_path.display(), hex::encode(ld));

            // Same ID block bytes and key digests.
            let block = IdBlockParams {
                ld,
                ..Default::default()
            }
            .to_id_block();
            assert_eq!(block.as_bytes(), &tool.block[..], "ID block, {ctx}");
            assert_eq!(tool.id_key_digest, id_digest, "ID key digest, {ctx}");
            assert_eq!(
                tool.author_key_digest, author_digest,
                "author key digest, {ctx}"
            );

            // Their ID auth: same structure as ours, passes our checker.
            let theirs = IdAuth::from_wire(&tool.auth).unwrap();
            let ours = sign_id_auth(&block, &idk, Some(&ak), SignMode::Randomized).unwrap();
            let det = sign_id_auth(&block, &idk, Some(&ak), SignMode::Deterministic).unwrap();
            for a in [&ours, &det] {
                assert_eq!(theirs.id_key_algo, a.id_key_algo, "{ctx}");
                assert_eq!(theirs.auth_key_algo, a.auth_key_algo, "{ctx}");
                assert_eq!(theirs.id_key, a.id_key, "ID_KEY, {ctx}");
                assert_eq!(theirs.author_key, a.author_key, "AUTHOR_KEY, {ctx}");
                // Signature reserved bytes and the page's reserved bytes: zero on both.
                assert!(a.reserved_is_zero(), "{ctx}");
            }
            assert!(theirs.reserved_is_zero(), "{ctx}");
            assert_ne!(
                theirs.id_block_sig, ours.id_block_sig,
                "randomized nonces, {ctx}"
            );

            let pass_theirs = check_id_block(&block, &theirs, &ld, DEFAULT_POLICY, true)
                .unwrap_or_else(|e| panic!("their ID auth fails our checker ({e}), {ctx}"));
            let pass_ours = check_id_block(&block, &ours, &ld, DEFAULT_POLICY, true).unwrap();
            assert_eq!(pass_theirs, pass_ours, "{ctx}");
            assert_eq!(pass_theirs.id_key_digest.to_vec(), tool.id_key_digest);
            assert_eq!(
                pass_theirs.author_key_digest.map(|d| d.to_vec()),
                Some(tool.author_key_digest.clone())
            );

            // Signatures are interchangeable: same key, same message.
            let mut mixed = ours;
            mixed.id_block_sig = theirs.id_block_sig;
            mixed.id_key_sig = det.id_key_sig;
            assert!(check_id_block(&block, &mixed, &ld, DEFAULT_POLICY, true).is_ok());

            // Same verdict for the same corruption, and the verdicts the firmware gives.
            let expected = {
                use IdCheckStatus::*;
                vec![
                    Ok(8),               // author key enabled: all 8 checks
                    Ok(5),               // AUTH_KEY_EN = 0: ID-key checks only
                    Err(BadMeasurement), // other GCTX.LD
                    Err(PolicyFailure),  // other LAUNCH_START policy
                    Err(InvalidParam),   // ID_KEY_ALGO
                    Err(InvalidParam),   // AUTH_KEY_ALGO
                    Err(BadSignature),   // ID_BLOCK_SIG.R
                    Err(BadSignature),   // ID_BLOCK_SIG.S
                    Err(BadSignature),   // ID_KEY.CURVE
                    Err(BadSignature),   // ID_KEY.QX
                    Err(BadSignature),   // ID_KEY reserved byte (covered by ID_KEY_SIG)
                    Err(BadSignature),   // ID_KEY_SIG.R
                    Err(BadSignature),   // ID_KEY_SIG.S
                    Err(BadSignature),   // AUTHOR_KEY.QX
                    Err(BadSignature),   // AUTHOR_KEY.QY
                    Ok(8),               // page reserved byte: not checked
                    Err(BadSignature),   // IMAGE_ID changed after signing
                ]
            };
            assert_eq!(outcomes(&block, &theirs, &ld), expected, "theirs, {ctx}");
            assert_eq!(outcomes(&block, &ours, &ld), expected, "ours, {ctx}");
            cases += 1;
        }
    }
    println!("{TOOL}: {cases} cases agree");
    assert_eq!(cases, 18);
}

/// Our ID auth checked by an independent ECDSA implementation (Python `cryptography`):
/// ID_BLOCK_SIG over the 96-byte block with ID_KEY and ID_KEY_SIG over the 0x404-byte
/// ID_KEY with AUTHOR_KEY, r/s and QX/QY read as 72-byte little-endian integers.
#[test]
fn python_cryptography_verifies_our_id_auth() {
    let Some(fx) = fixtures() else { return };
    let probe = Command::new("python3")
        .args(["-c", "import cryptography"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        skip("python3 with cryptography (a sev-snp-measure dependency)");
        return;
    }
    const SCRIPT: &str = r#"
import sys, base64
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
for line in sys.stdin:
    blk, auth = (base64.b64decode(x) for x in line.split())
    def key(b):
        assert int.from_bytes(b[0:4], 'little') == 2
        x = int.from_bytes(b[4:76], 'little'); y = int.from_bytes(b[76:148], 'little')
        return ec.EllipticCurvePublicNumbers(x, y, ec.SECP384R1()).public_key()
    def sig(b):
        return utils.encode_dss_signature(int.from_bytes(b[0:72], 'little'), int.from_bytes(b[72:144], 'little'))
    key(auth[0x240:0x644]).verify(sig(auth[0x40:0x240]), blk, ec.ECDSA(hashes.SHA384()))
    key(auth[0x880:0xC84]).verify(sig(auth[0x680:0x880]), auth[0x240:0x644], ec.ECDSA(hashes.SHA384()))
    print("ok")
"#;
    let mut input = String::new();
    let mut n = 0;
    for (id_path, author_path) in key_sets(&fx) {
        let idk = key(&id_path);
        let ak = key(&author_path);
        for (i, ld) in launch_digests().into_iter().enumerate() {
            let block = IdBlockParams {
                ld,
                family_id: [i as u8; 16],
                image_id: [0xA0 | i as u8; 16],
                guest_svn: i as u32,
                ..Default::default()
            }
            .to_id_block();
            let mode = if i % 2 == 0 {
                SignMode::Deterministic
            } else {
                SignMode::Randomized
            };
            let auth = sign_id_auth(&block, &idk, Some(&ak), mode).unwrap();
            input.push_str(&format!(
                "{} {}\n",
                b64_encode(block.as_bytes()),
                b64_encode(auth.as_bytes())
            ));
            n += 1;
        }
    }
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python verification failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), n);
}

#[test]
fn base64_helpers_round_trip() {
    for len in 0..10 {
        let data: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37)).collect();
        assert_eq!(b64_decode(&b64_encode(&data)), data);
    }
    assert_eq!(b64_encode(b"Ma"), "TWE=");
}
