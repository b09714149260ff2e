//! `softsev id-block`: build the SNP ID block and ID authentication structure with the
//! flags and output of sev-snp-measure's `snp-create-id-block`, plus the fields that
//! tool fixes (family/image id, SVN, policy), deterministic signing, raw file output,
//! JSON, and `--verify` (the LAUNCH_FINISH checks on a given block/auth pair).

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use softsev_abi::id_block::{ID_AUTH_LEN, ID_BLOCK_LEN, IdAuth, IdBlock};
use softsev_crypto::ecdsa::P384SigningKey;
use softsev_measure::id_block::{
    DEFAULT_POLICY, IdBlockParams, SignMode, check_id_block, key_digest, sign_id_auth,
};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Integers as Python's `int(x, 0)` reads them: 0x.., 0o.., 0b.. or decimal.
fn parse_int(s: &str) -> Result<u64, String> {
    let t = s.trim().replace('_', "");
    let lower = t.to_ascii_lowercase();
    let (digits, radix) = if let Some(d) = lower.strip_prefix("0x") {
        (d, 16)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (d, 8)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (d, 2)
    } else {
        (lower.as_str(), 10)
    };
    u64::from_str_radix(digits, radix).map_err(|e| format!("invalid integer '{s}': {e}"))
}

fn parse_u32(s: &str) -> Result<u32, String> {
    let v = parse_int(s)?;
    u32::try_from(v).map_err(|_| format!("value {s} does not fit in 32 bits"))
}

/// A 16-byte id: 32 hex digits (bytes in order) or a GUID `xxxxxxxx-xxxx-...` (bytes
/// in the order written, as snpguest and the report display them).
fn parse_id16(s: &str) -> Result<[u8; 16], String> {
    let trimmed = s.trim();
    // Dashes only where a GUID has them (8-4-4-4-12), or none (probe P12).
    if trimmed.contains('-') {
        let groups: Vec<usize> = trimmed.split('-').map(str::len).collect();
        if groups != [8, 4, 4, 4, 12] {
            return Err(format!(
                "'{s}' is neither 32 hex digits nor a GUID xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
            ));
        }
    }
    let t: String = trimmed.chars().filter(|&c| c != '-').collect();
    let t = t.strip_prefix("0x").unwrap_or(&t);
    let v = hex::decode(t).map_err(|e| format!("'{s}' is not hex: {e}"))?;
    <[u8; 16]>::try_from(v.as_slice())
        .map_err(|_| format!("'{s}' is {} bytes; an id is 16 (32 hex digits)", v.len()))
}

/// Arguments of `softsev id-block`.
#[derive(clap::Args, Debug)]
#[command(about = "Build an SNP ID block and ID auth structure (snp-create-id-block compatible)")]
pub(crate) struct Args {
    /// Guest launch measurement (base64 as snp-create-id-block takes it, or 96 hex digits).
    #[arg(long, value_name = "VALUE")]
    measurement: String,
    /// ID private key file (P-384, PKCS#8 or SEC1 PEM).
    #[arg(long, value_name = "PATH", required_unless_present = "verify_id_block")]
    idkey: Option<PathBuf>,
    /// Author private key file (P-384 PEM). Without it AUTH_KEY_ALGO, ID_KEY_SIG and
    /// AUTHOR_KEY stay zero (launch with AUTHOR_KEY_EN = 0).
    #[arg(long, value_name = "PATH")]
    authorkey: Option<PathBuf>,
    /// FAMILY_ID: 32 hex digits or a GUID (default zero).
    #[arg(long, value_name = "ID", value_parser = parse_id16)]
    family_id: Option<[u8; 16]>,
    /// IMAGE_ID: 32 hex digits or a GUID (default zero).
    #[arg(long, value_name = "ID", value_parser = parse_id16)]
    image_id: Option<[u8; 16]>,
    /// GUEST_SVN (default 0).
    #[arg(long, value_name = "N", value_parser = parse_u32, default_value = "0")]
    guest_svn: u32,
    /// Guest policy; must equal the LAUNCH_START policy (default 0x30000).
    #[arg(long, value_name = "VALUE", value_parser = parse_int, default_value = "0x30000")]
    policy: u64,
    /// ID block VERSION (default 1).
    #[arg(long, value_name = "N", value_parser = parse_u32, default_value = "1")]
    id_block_version: u32,
    /// Sign with RFC 6979 nonces (same inputs, same bytes) instead of random nonces.
    #[arg(long)]
    deterministic: bool,
    /// Also write the 96-byte ID block to PATH.
    #[arg(long, value_name = "PATH")]
    id_block_out: Option<PathBuf>,
    /// Also write the 4096-byte ID auth structure to PATH.
    #[arg(long, value_name = "PATH")]
    id_auth_out: Option<PathBuf>,
    /// Print a JSON object instead of the snp-create-id-block lines.
    #[arg(long)]
    json: bool,
    /// Instead of signing: check this ID block (base64) with --verify-id-auth, the way
    /// SNP_LAUNCH_FINISH does, against --measurement and --policy. No keys are needed;
    /// the author key is checked if AUTH_KEY_ALGO is non-zero or
    /// --author-key-en is given.
    #[arg(long, value_name = "BASE64", requires = "verify_id_auth")]
    verify_id_block: Option<String>,
    /// ID auth structure (base64) for --verify-id-block.
    #[arg(long, value_name = "BASE64", requires = "verify_id_block")]
    verify_id_auth: Option<String>,
    /// With --verify-id-block: treat AUTHOR_KEY_EN as set.
    #[arg(long)]
    author_key_en: bool,
}

fn parse_measurement(s: &str) -> Result<[u8; 48]> {
    let t = s.trim();
    let bytes = if t.len() == 96 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(t).map_err(|e| anyhow!("--measurement '{s}' is not hex: {e}"))?
    } else {
        B64.decode(t)
            .map_err(|e| anyhow!("--measurement '{s}' is neither base64 nor 96 hex digits: {e}"))?
    };
    let len = bytes.len();
    <[u8; 48]>::try_from(bytes)
        .map_err(|_| anyhow!("--measurement is {len} bytes; a launch digest is 48"))
}

fn load_key(what: &str, path: &Path) -> Result<P384SigningKey> {
    // A PEM private key is a few hundred bytes.
    let mut raw = softsev_attest::input::read_bounded(path, 64 << 10, "a PEM private key")
        .with_context(|| format!("cannot read {what} file '{}'", path.display()))?;
    let result = match std::str::from_utf8(&raw) {
        Ok(pem) => P384SigningKey::from_pem(pem).map_err(|e| {
            let why = diagnose_pem(pem).unwrap_or_else(|| e.to_string());
            anyhow!("{what} file '{}': {why}", path.display())
        }),
        Err(_) => Err(anyhow!(
            "{what} file '{}' is not PEM text (P-384 private key expected)",
            path.display()
        )),
    };
    raw.fill(0);
    std::hint::black_box(&raw);
    result
}

/// Why a PEM text is not a usable P-384 private key, when the cause can be named
/// (probe P13: one message used to cover eight causes). `None` leaves the parser's word.
fn diagnose_pem(pem: &str) -> Option<String> {
    if pem.trim().is_empty() {
        return Some("the file is empty (a P-384 private key in PEM expected)".into());
    }
    if pem.starts_with('\u{feff}') {
        return Some("the file starts with a UTF-8 byte-order mark; remove it".into());
    }
    let begins: Vec<&str> = pem
        .lines()
        .filter_map(|l| l.trim().strip_prefix("-----BEGIN "))
        .filter_map(|l| l.strip_suffix("-----"))
        .collect();
    match begins.as_slice() {
        [] => return Some("no PEM block (-----BEGIN …-----) in the file".into()),
        [_] => {}
        many => {
            return Some(format!(
                "{} PEM blocks in one file ({}); give one private key",
                many.len(),
                many.join(", ")
            ));
        }
    }
    let label = begins[0];
    if !pem.contains(&format!("-----END {label}-----")) {
        return Some(format!(
            "the {label} block is truncated (no -----END {label}----- line)"
        ));
    }
    match label {
        "ENCRYPTED PRIVATE KEY" => {
            return Some(
                "an encrypted PKCS#8 key; decrypt it first (openssl pkcs8 -in KEY -out plain.pem)"
                    .into(),
            );
        }
        "PUBLIC KEY" | "EC PUBLIC KEY" => {
            return Some("a public key; the private key is needed to sign".into());
        }
        "RSA PRIVATE KEY" => return Some("an RSA key; ID and author keys are ECDSA P-384".into()),
        "PRIVATE KEY" | "EC PRIVATE KEY" => {}
        other => return Some(format!("a {other} block, not a private key")),
    }
    // Name the algorithm or curve from its OID in the DER body.
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .map(str::trim)
        .collect();
    let der = B64.decode(body).ok()?;
    let has = |oid: &[u8]| der.windows(oid.len()).any(|w| w == oid);
    const P256: &[u8] = &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
    const P521: &[u8] = &[0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x23];
    const RSA: &[u8] = &[
        0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01,
    ];
    const ED25519: &[u8] = &[0x06, 0x03, 0x2B, 0x65, 0x70];
    if has(P256) {
        Some("a P-256 key; ID and author keys are P-384".into())
    } else if has(P521) {
        Some("a P-521 key; ID and author keys are P-384".into())
    } else if has(RSA) {
        Some("an RSA key; ID and author keys are ECDSA P-384".into())
    } else if has(ED25519) {
        Some("an Ed25519 key; ID and author keys are ECDSA P-384".into())
    } else {
        None
    }
}

/// Write `bytes` to `path`, which must not exist: written to a temporary name beside
/// it, then linked into place (no other file is overwritten, and a failed write leaves
/// nothing under `path`).
fn write_out(path: &Path, what: &str, bytes: &[u8]) -> Result<()> {
    if path.symlink_metadata().is_ok() {
        bail!(
            "cannot write {what} to '{}': it exists (not overwriting; remove it first)",
            path.display()
        );
    }
    let name = path.file_name().ok_or_else(|| {
        anyhow!(
            "cannot write {what} to '{}': not a file name",
            path.display()
        )
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let r = std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::hard_link(&tmp, path))
        .with_context(|| format!("cannot write {what} to '{}'", path.display()));
    let _ = std::fs::remove_file(&tmp);
    r
}

fn decode_fixed(flag: &str, s: &str, len: usize) -> Result<Vec<u8>> {
    let v = B64
        .decode(s.trim())
        .map_err(|e| anyhow!("{flag} is not base64: {e}"))?;
    if v.len() != len {
        bail!("{flag} is {} bytes; expected {len}", v.len());
    }
    Ok(v)
}

fn verify(a: &Args, block_b64: &str, auth_b64: &str) -> Result<ExitCode> {
    let ld = parse_measurement(&a.measurement)?;
    let block = IdBlock::from_wire(&decode_fixed("--verify-id-block", block_b64, ID_BLOCK_LEN)?)?;
    let auth = IdAuth::from_wire(&decode_fixed("--verify-id-auth", auth_b64, ID_AUTH_LEN)?)?;
    let author_en = a.author_key_en || auth.auth_key_algo != 0;
    match check_id_block(&block, &auth, &ld, a.policy, author_en) {
        Ok(pass) => {
            if a.json {
                let v = serde_json::json!({
                    "ok": true,
                    "checks": pass.checks,
                    "id_key_digest": hex::encode(pass.id_key_digest),
                    "author_key_digest": pass.author_key_digest.map(hex::encode),
                });
                println!("{v}");
            } else {
                println!("OK: {}", pass.checks.join(", "));
                println!("id_key_hash: {}", B64.encode(pass.id_key_digest));
                if let Some(d) = pass.author_key_digest {
                    println!("author_key: {}", B64.encode(d));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if a.json {
                let v = serde_json::json!({
                    "ok": false,
                    "status": e.status().mnemonic(),
                    "error": e.to_string(),
                });
                println!("{v}");
            } else {
                println!("FAIL ({}): {e}", e.status().mnemonic());
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Run `softsev id-block`.
pub(crate) fn run(a: Args) -> Result<ExitCode> {
    if let (Some(b), Some(au)) = (&a.verify_id_block, &a.verify_id_auth) {
        return verify(&a, b, au);
    }
    let params = IdBlockParams {
        ld: parse_measurement(&a.measurement)?,
        family_id: a.family_id.unwrap_or_default(),
        image_id: a.image_id.unwrap_or_default(),
        version: a.id_block_version,
        guest_svn: a.guest_svn,
        policy: a.policy,
    };
    if params.policy != DEFAULT_POLICY {
        tracing::info!(policy = params.policy, "non-default ID block policy");
    }
    // The block's POLICY must equal the LAUNCH_START policy, and the firmware refuses
    // a policy with bit 17 clear or a reserved bit set there (probe P12).
    softsev_abi::policy::GuestPolicy(params.policy)
        .check_reserved()
        .map_err(|e| anyhow!("--policy: {e}; SNP_LAUNCH_START refuses it"))?;
    if let (Some(b), Some(au)) = (&a.id_block_out, &a.id_auth_out)
        && (b == au
            || (b.canonicalize().ok().is_some() && b.canonicalize().ok() == au.canonicalize().ok()))
    {
        bail!(
            "--id-block-out and --id-auth-out are the same file '{}'",
            b.display()
        );
    }
    let Some(idkey) = a.idkey.as_deref() else {
        bail!("--idkey is required to sign an ID block");
    };
    let id_key = load_key("ID key", idkey)?;
    let author_key = a
        .authorkey
        .as_deref()
        .map(|p| load_key("author key", p))
        .transpose()?;
    let mode = if a.deterministic {
        SignMode::Deterministic
    } else {
        SignMode::Randomized
    };
    let block = params.to_id_block();
    let auth = sign_id_auth(&block, &id_key, author_key.as_ref(), mode)?;
    let id_digest = key_digest(&auth.id_key);
    let author_digest = author_key.as_ref().map(|_| key_digest(&auth.author_key));
    if let Some(p) = &a.id_block_out {
        write_out(p, "ID block", block.as_wire())?;
    }
    if let Some(p) = &a.id_auth_out {
        write_out(p, "ID auth", auth.as_wire())?;
    }
    if a.json {
        let v = serde_json::json!({
            "id_block": B64.encode(block.as_wire()),
            "id_auth": B64.encode(auth.as_wire()),
            "id_key_digest": hex::encode(id_digest),
            "author_key_digest": author_digest.map(hex::encode),
            "family_id": hex::encode(params.family_id),
            "image_id": hex::encode(params.image_id),
            "guest_svn": params.guest_svn,
            "policy": format!("{:#x}", params.policy),
        });
        println!("{v}");
    } else {
        // snp-create-id-block's exact output (QEMU's sev-snp-guest id-block/id-auth
        // property syntax, then the digests).
        println!(
            "id-block={},id-auth={}",
            B64.encode(block.as_wire()),
            B64.encode(auth.as_wire())
        );
        println!("id_key_hash: {}", B64.encode(id_digest));
        if let Some(d) = author_digest {
            println!("author_key: {}", B64.encode(d));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_measurements() {
        assert_eq!(
            parse_id16("00112233-4455-6677-8899-aabbccddeeff").unwrap()[..3],
            [0, 0x11, 0x22]
        );
        assert!(parse_id16("0011").unwrap_err().contains("2 bytes"));
        assert!(parse_id16("zz").unwrap_err().contains("not hex"));
        assert_eq!(parse_measurement(&"ab".repeat(48)).unwrap(), [0xab; 48]);
        assert_eq!(parse_measurement(&B64.encode([7u8; 48])).unwrap(), [7; 48]);
        let e = parse_measurement(&B64.encode([7u8; 32]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("32 bytes"), "{e}");
        let e = parse_measurement("!!notbase64").unwrap_err().to_string();
        assert!(e.contains("neither base64"), "{e}");
        assert_eq!(parse_int("0x30000").unwrap(), 0x30000);
        assert!(parse_u32("0x1_0000_0000").is_err());
    }
}
