//! `softsev id-block` through the binary: golden vectors, deterministic/randomized
//! signing, --verify, bad inputs, and interop with sev-snp-measure's
//! `snp-create-id-block` (skipped when it is not on PATH).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use softsev_abi::id_block::{IdAuth, IdBlock};
use softsev_crypto::ecdsa::P384SigningKey;
use softsev_measure::id_block::{check_id_block, key_digest, wire_public_key};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TOOL: &str = "snp-create-id-block";

fn softsev(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_softsev"))
        .arg("id-block")
        .args(args)
        .output()
        .unwrap()
}

fn fixtures() -> Option<PathBuf> {
    softsev_testkit::fixture_dir("measurement")
}

/// The three output lines of snp-create-id-block: (id-block, id-auth, id digest,
/// author digest).
fn parse_output(stdout: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>, Option<Vec<u8>>) {
    let text = String::from_utf8(stdout.to_vec()).unwrap();
    let mut lines = text.lines();
    let first = lines.next().unwrap();
    let (b, a) = first.split_once(",id-auth=").unwrap();
    let b = b.strip_prefix("id-block=").unwrap();
    let id = lines.next().unwrap().strip_prefix("id_key_hash: ").unwrap();
    let au = lines
        .next()
        .map(|l| B64.decode(l.strip_prefix("author_key: ").unwrap()).unwrap());
    (
        B64.decode(b).unwrap(),
        B64.decode(a).unwrap(),
        B64.decode(id).unwrap(),
        au,
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const SSM_LD: &str = "B28FLQi9p6cAqipgjFyqawDrrSl7bWioWkWx5mmlWLZ+G5HShKMB/mPE+gdQRn7t";

/// sev-snp-measure v0.0.13 tests/test_id_block.py vector (keys from tests/keyfile,
/// commit 8f2b337e38bc; spec §9.5).
#[test]
fn ssm_vector_deterministic_and_randomized() {
    let Some(f) = fixtures() else { return };
    let d = f.join("idblock-sev-snp-measure");
    let (ip, ap) = (d.join("id_key_test.pem"), d.join("author_key_test.pem"));
    let args = [
        "--measurement",
        SSM_LD,
        "--idkey",
        s(&ip),
        "--authorkey",
        s(&ap),
    ];
    let mut det = args.to_vec();
    det.push("--deterministic");
    let o1 = softsev(&det);
    assert!(
        o1.status.success(),
        "{}",
        String::from_utf8_lossy(&o1.stderr)
    );
    let o2 = softsev(&det);
    assert_eq!(
        o1.stdout, o2.stdout,
        "deterministic signing differs between runs"
    );
    let (block, auth, idd, aud) = parse_output(&o1.stdout);
    assert_eq!(
        B64.encode(&block),
        "B28FLQi9p6cAqipgjFyqawDrrSl7bWioWkWx5mmlWLZ+G5HShKMB/mPE+gdQRn7tAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAwAAAAAA"
    );
    assert_eq!(
        B64.encode(&idd),
        "hwt+NcU/inLQ0yL3WrKvgmJ5Kq9leWIs5BMcPyHyied8sFYKXjuQs5MuZ07HCcsU"
    );
    assert_eq!(
        B64.encode(aud.unwrap()),
        "YxEcNLv8Ckk4+aAJvQdJgNgXIyPmFZnJ/TNtqGcySOHcqY0L6PdjdqEGuK/UwKBX"
    );
    assert_eq!(auth.len(), 4096);

    let r1 = softsev(&args);
    let r2 = softsev(&args);
    let (b1, a1, _, _) = parse_output(&r1.stdout);
    let (b2, a2, _, _) = parse_output(&r2.stdout);
    assert_eq!(b1, block);
    assert_eq!(b1, b2);
    assert_ne!(a1, a2, "randomized signatures should differ run to run");
    for a in [&a1, &a2, &auth] {
        let blk = IdBlock::from_wire(&block).unwrap();
        let au = IdAuth::from_wire(a).unwrap();
        check_id_block(&blk, &au, &blk.ld, 0x30000, true).unwrap();
    }
}

#[test]
fn fields_json_files_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = softsev_crypto::rng::Rng::seeded(b"cli-id-block", "keys");
    let idk = P384SigningKey::generate(&mut rng);
    let idp = dir.path().join("id.pem");
    std::fs::write(&idp, idk.to_pkcs8_pem().as_bytes()).unwrap();
    let ld = "11".repeat(48);
    let bo = dir.path().join("block.bin");
    let ao = dir.path().join("auth.bin");
    let o = softsev(&[
        "--measurement",
        &ld,
        "--idkey",
        s(&idp),
        "--family-id",
        "00112233-4455-6677-8899-aabbccddeeff",
        "--image-id",
        "ffeeddccbbaa99887766554433221100",
        "--guest-svn",
        "7",
        "--policy",
        "0x70000",
        "--id-block-out",
        s(&bo),
        "--id-auth-out",
        s(&ao),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let block_raw = std::fs::read(&bo).unwrap();
    let auth_raw = std::fs::read(&ao).unwrap();
    assert_eq!(v["id_block"], B64.encode(&block_raw));
    assert_eq!(v["id_auth"], B64.encode(&auth_raw));
    assert_eq!(v["author_key_digest"], serde_json::Value::Null);
    assert_eq!(
        v["id_key_digest"],
        hex::encode(key_digest(&wire_public_key(idk.public())))
    );
    let blk = IdBlock::from_wire(&block_raw).unwrap();
    assert_eq!(blk.ld, [0x11; 48]);
    assert_eq!(blk.family_id[0..2], [0x00, 0x11]);
    assert_eq!(blk.image_id[0], 0xff);
    assert_eq!((blk.version, blk.guest_svn, blk.policy), (1, 7, 0x70000));
    let auth = IdAuth::from_wire(&auth_raw).unwrap();
    assert_eq!(auth.auth_key_algo, 0);
    check_id_block(&blk, &auth, &[0x11; 48], 0x70000, false).unwrap();

    // --verify: passes on our output, fails with the firmware status otherwise.
    let b64b = B64.encode(&block_raw);
    let b64a = B64.encode(&auth_raw);
    let ok = softsev(&[
        "--measurement",
        &ld,
        "--policy",
        "0x70000",
        "--verify-id-block",
        &b64b,
        "--verify-id-auth",
        &b64a,
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("OK: LD, POLICY"));
    // (policy, expected status, byte of the ID auth to XOR: offset, mask)
    let cases = [
        ("0x70000", "BAD_SIGNATURE", Some((0x40, 1))),
        ("0x30000", "POLICY_FAILURE", None),
        ("0x70000", "INVALID_PARAM", Some((0, 2))),
        ("0x70000", "INVALID_PARAM", Some((4, 2))),
    ];
    for (policy, status, flip) in cases {
        let mut a = auth_raw.clone();
        if let Some((off, mask)) = flip {
            a[off] ^= mask;
        }
        let o = softsev(&[
            "--measurement",
            &ld,
            "--policy",
            policy,
            "--verify-id-block",
            &b64b,
            "--verify-id-auth",
            &B64.encode(&a),
        ]);
        assert_eq!(o.status.code(), Some(1));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.starts_with(&format!("FAIL ({status})")), "{out}");
    }
    let o = softsev(&[
        "--measurement",
        &"22".repeat(48),
        "--verify-id-block",
        &b64b,
        "--verify-id-auth",
        &b64a,
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], "BAD_MEASUREMENT");
}

/// A throwaway NIST P-256 key (generated for this test with `openssl ecparam -name
/// prime256v1`): the right PEM shape, the wrong curve.
const P256_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgxzGBxRWeTE+GoMVp
ng3Xz53Ng8iNdXks4BT9QQ+kbZyhRANCAAS4IzOdWTxGtb7u+6nNegPQyyJKbfdx
/F4KLD688IB2Wj6AoZhS/r9dtqMe6TrHpyHQgvxKADrheK2xQv2Uvzh0
-----END PRIVATE KEY-----
";

#[test]
fn bad_inputs_fail_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = softsev_crypto::rng::Rng::seeded(b"cli-id-block", "bad");
    let good = dir.path().join("good.pem");
    std::fs::write(
        &good,
        P384SigningKey::generate(&mut rng).to_pkcs8_pem().as_bytes(),
    )
    .unwrap();
    let p256 = dir.path().join("p256.pem");
    std::fs::write(&p256, P256_PEM).unwrap();
    let bin = dir.path().join("bin.pem");
    std::fs::write(&bin, [0xffu8, 0xfe, 0x00, 0x80]).unwrap();
    let ld = B64.encode([5u8; 48]);
    let short = B64.encode([5u8; 32]);
    let missing = dir.path().join("missing.pem");
    let nodir = dir.path().join("no/such/dir/x");
    // Probe P13: one message per cause of an unusable key file.
    let good_pem = P384SigningKey::generate(&mut rng).to_pkcs8_pem();
    let key_file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let empty = key_file("empty.pem", "");
    let bom = key_file("bom.pem", &format!("\u{feff}{}", good_pem.as_str()));
    let two = key_file(
        "two.pem",
        &format!("{}{}", good_pem.as_str(), good_pem.as_str()),
    );
    let trunc = key_file("trunc.pem", &good_pem.as_str()[..good_pem.len() - 30]);
    let encrypted = key_file(
        "enc.pem",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    let public = key_file(
        "pub.pem",
        "-----BEGIN PUBLIC KEY-----\nMHYwEAYHKoZIzj0CAQYFK4EEACIDYgAE\n-----END PUBLIC KEY-----\n",
    );
    let rsa = key_file(
        "rsa.pem",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAK\n-----END RSA PRIVATE KEY-----\n",
    );
    let same = dir.path().join("same.bin");
    let existing = dir.path().join("existing.bin");
    std::fs::write(&existing, b"keep me").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--measurement", &ld, "--idkey", s(&p256)], "P-384"),
        (
            vec![
                "--measurement",
                &ld,
                "--idkey",
                s(&good),
                "--authorkey",
                s(&p256),
            ],
            "author key",
        ),
        (vec!["--measurement", &ld, "--idkey", s(&bin)], "not PEM"),
        (
            vec!["--measurement", &short, "--idkey", s(&good)],
            "32 bytes",
        ),
        (
            vec!["--measurement", "not*base64", "--idkey", s(&good)],
            "neither base64",
        ),
        (
            vec!["--measurement", &ld, "--idkey", s(&missing)],
            "cannot read ID key",
        ),
        (
            vec![
                "--measurement",
                &ld,
                "--idkey",
                s(&good),
                "--family-id",
                "xyz",
            ],
            "not hex",
        ),
        (
            vec![
                "--measurement",
                &ld,
                "--idkey",
                s(&good),
                "--image-id",
                "0011",
            ],
            "16",
        ),
        (
            vec![
                "--measurement",
                &ld,
                "--idkey",
                s(&good),
                "--guest-svn",
                "0x100000000",
            ],
            "32 bits",
        ),
        (
            vec![
                "--measurement",
                &ld,
                "--idkey",
                s(&good),
                "--verify-id-block",
                "AAAA",
                "--verify-id-auth",
                "AAAA",
            ],
            "expected 96",
        ),
        (
            vec![
                "--measurement",
                &ld,
                "--idkey",
                s(&good),
                "--verify-id-block",
                "@@",
                "--verify-id-auth",
                "AAAA",
            ],
            "not base64",
        ),
        (vec!["--measurement", &ld], "--idkey"),
        (
            vec![
                "--measurement",
                &ld,
                "--idkey",
                s(&good),
                "--id-auth-out",
                s(&nodir),
            ],
            "cannot write ID auth",
        ),
        (
            vec!["--measurement", &ld, "--idkey", s(&empty)],
            "the file is empty",
        ),
        (
            vec!["--measurement", &ld, "--idkey", s(&bom)],
            "byte-order mark",
        ),
        (
            vec!["--measurement", &ld, "--idkey", s(&two)],
            "2 PEM blocks in one file",
        ),
        (
            vec!["--measurement", &ld, "--idkey", s(&trunc)],
            "is truncated",
        ),
        (
            vec!["--measurement", &ld, "--idkey", s(&encrypted)],
            "encrypted PKCS#8",
        ),
        (
            vec!["--measurement", &ld, "--idkey", s(&public)],
            "a public key",
        ),
        (vec!["--measurement", &ld, "--idkey", s(&rsa)], "an RSA key"),
        (
            vec!["--measurement", &ld, "--idkey", s(&p256)],
            "a P-256 key",
        ),
        // Probe P12: policies the firmware refuses, dashes outside GUID positions,
        // one file for both outputs, an existing output file.
        (
            vec!["--measurement", &ld, "--idkey", s(&good), "--policy", "0x0"],
            "reserved bit 17 must be 1; SNP_LAUNCH_START refuses it",
        ),
        (
            vec![
                "--measurement",
                &ld,
                "--idkey",
                s(&good),
                "--policy",
                "0x10000",
            ],
            "reserved bit 17 must be 1",
        ),
        (
            vec![
                "--measurement",
                &ld,
                "--idkey",
                s(&good),
                "--policy",
                "0xffffffffffffffff",
            ],
            "reserved bits 63:26 must be 0",
        ),
        (
            vec![
                "--measurement",
                &ld,
                "--idkey",
                s(&good),
                "--family-id",
                "0011-2233-4455-6677-8899-aabb-ccdd-eeff",
            ],
            "neither 32 hex digits nor a GUID",
        ),
        (
            vec![
                "--measurement",
                &ld,
                "--idkey",
                s(&good),
                "--id-block-out",
                s(&same),
                "--id-auth-out",
                s(&same),
            ],
            "are the same file",
        ),
        (
            vec![
                "--measurement",
                &ld,
                "--idkey",
                s(&good),
                "--id-block-out",
                s(&existing),
            ],
            "it exists (not overwriting",
        ),
    ];
    for (args, needle) in cases {
        let o = softsev(&args);
        assert!(!same.exists(), "{args:?} wrote {}", same.display());
        assert_eq!(std::fs::read(&existing).unwrap(), b"keep me", "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: expected '{needle}' in: {err}"
        );
        // Our own errors are one line; clap's (bad flag values) add a usage hint.
        if err.starts_with("softsev: error:") {
            assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        }
    }
}

fn tool_present() -> bool {
    softsev_testkit::tool(TOOL).is_some()
}

/// Same inputs to snp-create-id-block and softsev: same ID block bytes and digests,
/// the same public keys in the ID auth, and each tool's ID auth passes the firmware
/// checks (signatures themselves differ: ECDSA nonces are random). Fixture keys plus
/// seeded random keys (PKCS#8 and SEC1 PEM) and launch digests.
#[test]
fn interop_snp_create_id_block() {
    if !tool_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cases: Vec<(PathBuf, PathBuf, String)> = Vec::new();
    if let Some(f) = fixtures() {
        for (d, i, a) in [
            (
                "idblock-sev-snp-measure",
                "id_key_test.pem",
                "author_key_test.pem",
            ),
            ("idblock-virtee-sev", "test_id_key.pem", "test_auth_key.pem"),
            ("idblock-lit-sev-snp-utils", "id-key.pem", "author-key.pem"),
        ] {
            cases.push((f.join(d).join(i), f.join(d).join(a), SSM_LD.to_owned()));
        }
    }
    let mut rng = softsev_crypto::rng::Rng::seeded(b"cli-id-block", "interop");
    for n in 0..6 {
        let ip = dir.path().join(format!("id{n}.pem"));
        let ap = dir.path().join(format!("au{n}.pem"));
        std::fs::write(
            &ip,
            P384SigningKey::generate(&mut rng).to_pkcs8_pem().as_bytes(),
        )
        .unwrap();
        std::fs::write(
            &ap,
            P384SigningKey::generate(&mut rng).to_pkcs8_pem().as_bytes(),
        )
        .unwrap();
        cases.push((ip, ap, B64.encode(rng.array::<48>())));
    }
    let count = cases.len();
    for (ip, ap, ld) in cases {
        let args = [
            "--measurement",
            &ld,
            "--idkey",
            s(&ip),
            "--authorkey",
            s(&ap),
        ];
        let theirs = Command::new(TOOL).args(args).output().unwrap();
        assert!(
            theirs.status.success(),
            "{TOOL}: {}",
            String::from_utf8_lossy(&theirs.stderr)
        );
        let ours = softsev(&args);
        assert!(
            ours.status.success(),
            "{}",
            String::from_utf8_lossy(&ours.stderr)
        );
        let t = parse_output(&theirs.stdout);
        let o = parse_output(&ours.stdout);
        assert_eq!(t.0, o.0, "ID block differs for {}", ip.display());
        assert_eq!(t.2, o.2, "ID key digest differs for {}", ip.display());
        assert_eq!(t.3, o.3, "author key digest differs for {}", ip.display());
        let blk = IdBlock::from_wire(&o.0).unwrap();
        let ta = IdAuth::from_wire(&t.1).unwrap();
        let oa = IdAuth::from_wire(&o.1).unwrap();
        assert_eq!(ta.id_key, oa.id_key);
        assert_eq!(ta.author_key, oa.author_key);
        assert_eq!(
            (ta.id_key_algo, ta.auth_key_algo),
            (oa.id_key_algo, oa.auth_key_algo)
        );
        assert!(ta.reserved_is_zero() && oa.reserved_is_zero());
        let ld_bytes: [u8; 48] = B64.decode(&ld).unwrap().try_into().unwrap();
        let tp = check_id_block(&blk, &ta, &ld_bytes, 0x30000, true).unwrap();
        let op = check_id_block(&blk, &oa, &ld_bytes, 0x30000, true).unwrap();
        assert_eq!(tp, op);
        assert_eq!(tp.id_key_digest.to_vec(), o.2);
        // Our --verify accepts their output too.
        let v = softsev(&[
            "--measurement",
            &ld,
            "--verify-id-block",
            &B64.encode(&t.0),
            "--verify-id-auth",
            &B64.encode(&t.1),
        ]);
        assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
        // And the output text is byte-identical apart from the ID auth signatures.
        let mut ours_text = String::from_utf8(ours.stdout.clone()).unwrap();
        ours_text = ours_text.replace(&B64.encode(&o.1), &B64.encode(&t.1));
        assert_eq!(
            ours_text.trim_end(),
            String::from_utf8(theirs.stdout).unwrap().trim_end()
        );
    }
    println!("interop: {count} cases, 0 mismatches");
}
