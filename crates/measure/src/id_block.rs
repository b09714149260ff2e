//! Building and checking SNP_LAUNCH_FINISH identity inputs: the 96-byte ID block, the
//! 4096-byte ID authentication structure and the ID/author key digests.
//! Notes: shared/spec/snp-launch.md §7.1–§7.5 (layouts in [`softsev_abi::id_block`]).
//!
//! * Guest-owner side: [`IdBlockParams::to_id_block`], [`sign_id_auth`], [`key_digest`]
//!   — what sev-snp-measure's `snp-create-id-block` produces.
//! * Firmware side: [`check_id_block`] runs the LAUNCH_FINISH checks in the firmware's
//!   order and says which one failed ([`IdCheckFailure`], mapped to the firmware status
//!   by [`IdCheckFailure::status`]).

use softsev_abi::ecdsa::{EcdsaLayoutError, EcdsaPublicKey, EcdsaSignature};
use softsev_abi::id_block::{ID_BLOCK_VERSION, IdAuth, IdBlock, SignatureAlgo};
use softsev_crypto::ecdsa::{P384PublicKey, P384Signature, P384SigningKey};
use softsev_crypto::hash::sha384;
use zerocopy::IntoBytes;

/// SHA-384 digest length.
pub const DIGEST_LEN: usize = 48;

/// Default ID-block policy of the tools (SMT allowed, bit 17 set): 0x30000.
pub const DEFAULT_POLICY: u64 = 0x30000;

/// Inputs of an ID block. `Default` matches `snp-create-id-block`: zero family and
/// image ids, version 1, guest SVN 0, policy 0x30000 (the LD must be set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdBlockParams {
    /// Expected launch digest.
    pub ld: [u8; DIGEST_LEN],
    /// FAMILY_ID.
    pub family_id: [u8; 16],
    /// IMAGE_ID.
    pub image_id: [u8; 16],
    /// VERSION (1).
    pub version: u32,
    /// GUEST_SVN.
    pub guest_svn: u32,
    /// Guest policy; must equal the LAUNCH_START policy.
    pub policy: u64,
}

impl Default for IdBlockParams {
    fn default() -> Self {
        Self {
            ld: [0; DIGEST_LEN],
            family_id: [0; 16],
            image_id: [0; 16],
            version: ID_BLOCK_VERSION,
            guest_svn: 0,
            policy: DEFAULT_POLICY,
        }
    }
}

impl IdBlockParams {
    /// The ID block with these fields.
    pub fn to_id_block(&self) -> IdBlock {
        IdBlock {
            ld: self.ld,
            family_id: self.family_id,
            image_id: self.image_id,
            version: self.version,
            guest_svn: self.guest_svn,
            policy: self.policy,
        }
    }
}

/// How ECDSA nonces are chosen when signing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SignMode {
    /// Fresh random nonce (what the tools do; signatures differ run to run).
    #[default]
    Randomized,
    /// RFC 6979 nonce: same key and input, same signature bytes.
    Deterministic,
}

/// Errors while producing an ID auth structure.
#[derive(Debug, thiserror::Error)]
pub enum IdSignError {
    /// The signer failed.
    #[error("signing the {what} failed: {error}")]
    Sign {
        /// "ID block" or "ID key".
        what: &'static str,
        /// The crypto error.
        error: softsev_crypto::CryptoError,
    },
}

/// AMD wire form of a P-384 public key (CURVE 2, 72-byte LE coordinates).
pub fn wire_public_key(key: &P384PublicKey) -> EcdsaPublicKey {
    EcdsaPublicKey::from_be(&key.x, &key.y)
}

/// AMD wire form of a P-384 signature (72-byte LE R and S).
pub fn wire_signature(sig: &P384Signature) -> EcdsaSignature {
    EcdsaSignature::from_be(&sig.r, &sig.s)
}

/// Why a wire public key is not a usable P-384 key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireKeyError {
    /// Curve word or field width wrong.
    #[error(transparent)]
    Layout(#[from] EcdsaLayoutError),
    /// (QX, QY) is not a point on P-384.
    #[error("ECDSA public key: (QX, QY) is not a point on P-384")]
    NotOnCurve,
}

/// The P-384 key in a wire public key: CURVE must be 2, QX/QY must fit 48 bytes and be
/// a point on the curve.
pub fn p384_public_key(wire: &EcdsaPublicKey) -> Result<P384PublicKey, WireKeyError> {
    let (x, y) = wire.to_be()?;
    P384PublicKey::from_xy(&x, &y).map_err(|_| WireKeyError::NotOnCurve)
}

/// The P-384 signature in a wire signature (R and S must fit 48 bytes).
pub fn p384_signature(wire: &EcdsaSignature) -> Result<P384Signature, EcdsaLayoutError> {
    let (r, s) = wire.to_be()?;
    Ok(P384Signature { r, s })
}

/// SHA-384 of the whole 0x404-byte public-key structure: ID_KEY_DIGEST /
/// AUTHOR_KEY_DIGEST as the firmware and the tools compute them.
pub fn key_digest(key: &EcdsaPublicKey) -> [u8; DIGEST_LEN] {
    sha384(key.as_bytes())
}

/// Build the ID auth structure: ID_BLOCK_SIG by `id_key` over the 96-byte block, and,
/// with an author key, ID_KEY_SIG by it over the 0x404-byte ID_KEY field. Without an
/// author key AUTH_KEY_ALGO, ID_KEY_SIG and AUTHOR_KEY stay zero. Reserved bytes zero.
pub fn sign_id_auth(
    block: &IdBlock,
    id_key: &P384SigningKey,
    author_key: Option<&P384SigningKey>,
    mode: SignMode,
) -> Result<IdAuth, IdSignError> {
    let det = mode == SignMode::Deterministic;
    let mut auth = IdAuth {
        id_key_algo: SignatureAlgo::ECDSA_P384_SHA384.0,
        id_key: wire_public_key(id_key.public()),
        ..IdAuth::default()
    };
    let sig = id_key
        .sign_mode(block.as_bytes(), det)
        .map_err(|error| IdSignError::Sign {
            what: "ID block",
            error,
        })?;
    auth.id_block_sig = wire_signature(&sig);
    if let Some(ak) = author_key {
        auth.auth_key_algo = SignatureAlgo::ECDSA_P384_SHA384.0;
        auth.author_key = wire_public_key(ak.public());
        let sig = ak
            .sign_mode(auth.id_key.as_bytes(), det)
            .map_err(|error| IdSignError::Sign {
                what: "ID key",
                error,
            })?;
        auth.id_key_sig = wire_signature(&sig);
    }
    Ok(auth)
}

/// Firmware status a failed ID check maps to (codes: spec host-interfaces.md status
/// table; Linux `psp-sev.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdCheckStatus {
    /// BAD_SIGNATURE (0x0A).
    BadSignature,
    /// BAD_MEASUREMENT (0x0B).
    BadMeasurement,
    /// POLICY_FAILURE (0x07).
    PolicyFailure,
    /// INVALID_PARAM (0x16).
    InvalidParam,
}

impl IdCheckStatus {
    /// The firmware status code.
    pub fn code(self) -> u32 {
        match self {
            Self::BadSignature => 0x0A,
            Self::BadMeasurement => 0x0B,
            Self::PolicyFailure => 0x07,
            Self::InvalidParam => 0x16,
        }
    }

    /// The firmware mnemonic.
    pub fn mnemonic(self) -> &'static str {
        match self {
            Self::BadSignature => "BAD_SIGNATURE",
            Self::BadMeasurement => "BAD_MEASUREMENT",
            Self::PolicyFailure => "POLICY_FAILURE",
            Self::InvalidParam => "INVALID_PARAM",
        }
    }
}

/// The LAUNCH_FINISH ID check that failed (in the firmware's order).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdCheckFailure {
    /// ID block LD differs from the guest's launch digest.
    #[error("ID block LD {block} differs from the launch digest {actual}")]
    Measurement {
        /// LD in the block (hex).
        block: String,
        /// Guest launch digest (hex).
        actual: String,
    },
    /// ID block POLICY differs from the LAUNCH_START policy.
    #[error("ID block policy {block:#x} differs from the launch policy {actual:#x}")]
    Policy {
        /// Policy in the block.
        block: u64,
        /// Policy of the guest.
        actual: u64,
    },
    /// ID_KEY_ALGO is not 1.
    #[error("ID auth ID_KEY_ALGO is {0}, expected 1 (ECDSA P-384 SHA-384)")]
    IdKeyAlgo(u32),
    /// AUTH_KEY_ALGO is not 1 while the author key is enabled.
    #[error("ID auth AUTH_KEY_ALGO is {0}, expected 1 (ECDSA P-384 SHA-384)")]
    AuthKeyAlgo(u32),
    /// ID_KEY is not a valid P-384 key.
    #[error("ID auth ID_KEY: {0}")]
    IdKey(WireKeyError),
    /// ID_BLOCK_SIG does not verify over the ID block with ID_KEY.
    #[error("ID auth ID_BLOCK_SIG does not verify over the ID block with ID_KEY")]
    IdBlockSignature,
    /// AUTHOR_KEY is not a valid P-384 key.
    #[error("ID auth AUTHOR_KEY: {0}")]
    AuthorKey(WireKeyError),
    /// ID_KEY_SIG does not verify over ID_KEY with AUTHOR_KEY.
    #[error("ID auth ID_KEY_SIG does not verify over ID_KEY with AUTHOR_KEY")]
    IdKeySignature,
}

impl IdCheckFailure {
    /// The status the firmware returns for this failure.
    pub fn status(&self) -> IdCheckStatus {
        match self {
            Self::Measurement { .. } => IdCheckStatus::BadMeasurement,
            Self::Policy { .. } => IdCheckStatus::PolicyFailure,
            Self::IdKeyAlgo(_) | Self::AuthKeyAlgo(_) => IdCheckStatus::InvalidParam,
            Self::IdKey(_) | Self::IdBlockSignature | Self::AuthorKey(_) | Self::IdKeySignature => {
                IdCheckStatus::BadSignature
            }
        }
    }
}

/// A passing ID check: the digests the firmware stores for the report, and the checks
/// that ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdCheckPass {
    /// ID_KEY_DIGEST (SHA-384 of the 0x404-byte ID_KEY).
    pub id_key_digest: [u8; DIGEST_LEN],
    /// AUTHOR_KEY_DIGEST when the author key is enabled.
    pub author_key_digest: Option<[u8; DIGEST_LEN]>,
    /// Names of the checks that ran, in order.
    pub checks: Vec<&'static str>,
}

fn verify_sig(key: &P384PublicKey, msg: &[u8], wire: &EcdsaSignature) -> bool {
    match p384_signature(wire) {
        Ok(sig) => key.verify(msg, &sig).is_ok(),
        Err(_) => false,
    }
}

/// Check an ID block and ID auth as SNP_LAUNCH_FINISH does (spec §7.3), given the
/// guest's launch digest and LAUNCH_START policy and the command's AUTH_KEY_EN bit.
/// Order: LD, POLICY, ID_KEY_ALGO, AUTH_KEY_ALGO (if enabled), ID_KEY point,
/// ID_BLOCK_SIG, then (if enabled) AUTHOR_KEY point and ID_KEY_SIG. Reserved bytes
/// and the block VERSION are not checked (the firmware does not check them).
pub fn check_id_block(
    block: &IdBlock,
    auth: &IdAuth,
    launch_digest: &[u8; DIGEST_LEN],
    policy: u64,
    author_key_en: bool,
) -> Result<IdCheckPass, IdCheckFailure> {
    let mut checks = Vec::with_capacity(8);
    if &block.ld != launch_digest {
        return Err(IdCheckFailure::Measurement {
            block: hex_lower(&block.ld),
            actual: hex_lower(launch_digest),
        });
    }
    checks.push("LD");
    if block.policy != policy {
        return Err(IdCheckFailure::Policy {
            block: block.policy,
            actual: policy,
        });
    }
    checks.push("POLICY");
    if auth.id_key_algo() != SignatureAlgo::ECDSA_P384_SHA384 {
        return Err(IdCheckFailure::IdKeyAlgo(auth.id_key_algo));
    }
    checks.push("ID_KEY_ALGO");
    if author_key_en {
        if auth.auth_key_algo() != SignatureAlgo::ECDSA_P384_SHA384 {
            return Err(IdCheckFailure::AuthKeyAlgo(auth.auth_key_algo));
        }
        checks.push("AUTH_KEY_ALGO");
    }
    let id_key = p384_public_key(&auth.id_key).map_err(IdCheckFailure::IdKey)?;
    checks.push("ID_KEY");
    if !verify_sig(&id_key, block.as_bytes(), &auth.id_block_sig) {
        return Err(IdCheckFailure::IdBlockSignature);
    }
    checks.push("ID_BLOCK_SIG");
    let id_key_digest = key_digest(&auth.id_key);
    let author_key_digest = if author_key_en {
        let author = p384_public_key(&auth.author_key).map_err(IdCheckFailure::AuthorKey)?;
        checks.push("AUTHOR_KEY");
        if !verify_sig(&author, auth.id_key.as_bytes(), &auth.id_key_sig) {
            return Err(IdCheckFailure::IdKeySignature);
        }
        checks.push("ID_KEY_SIG");
        Some(key_digest(&auth.author_key))
    } else {
        None
    };
    Ok(IdCheckPass {
        id_key_digest,
        author_key_digest,
        checks,
    })
}

fn hex_lower(b: &[u8]) -> String {
    use std::fmt::Write;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

/// Fuzz entry point `id_auth_parse`: the first 96 bytes are taken as an ID block, the
/// next 4096 as an ID auth (short inputs are zero-padded); the block's own LD and
/// policy are used so the checker reaches the key and signature checks. Must never
/// panic; the verdict is returned for the caller to ignore.
pub fn fuzz_id_auth_parse(data: &[u8]) -> bool {
    let mut buf =
        vec![0u8; softsev_abi::id_block::ID_BLOCK_LEN + softsev_abi::id_block::ID_AUTH_LEN];
    let n = data.len().min(buf.len());
    if let (Some(dst), Some(src)) = (buf.get_mut(..n), data.get(..n)) {
        dst.copy_from_slice(src);
    }
    let (b, a) = buf.split_at(softsev_abi::id_block::ID_BLOCK_LEN);
    let (Ok(block), Ok(auth)) = (IdBlock::from_wire(b), IdAuth::from_wire(a)) else {
        return false;
    };
    let en = data.len() > buf.len() && data.last().is_some_and(|x| x & 1 == 1);
    let _ = auth.reserved_is_zero();
    check_id_block(&block, &auth, &block.ld, block.policy, en).is_ok()
        || check_id_block(&block, &auth, &block.ld, block.policy, !en).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(label: &str) -> P384SigningKey {
        let mut rng = softsev_crypto::rng::Rng::seeded(b"measure-id-block", label);
        P384SigningKey::generate(&mut rng)
    }

    #[test]
    fn sign_then_check_and_each_failure() {
        let idk = key("id");
        let ak = key("author");
        let p = IdBlockParams {
            ld: [7; 48],
            guest_svn: 3,
            ..Default::default()
        };
        let block = p.to_id_block();
        let auth = sign_id_auth(&block, &idk, Some(&ak), SignMode::Deterministic).unwrap();
        let again = sign_id_auth(&block, &idk, Some(&ak), SignMode::Deterministic).unwrap();
        assert_eq!(auth, again);
        assert!(auth.reserved_is_zero());
        let pass = check_id_block(&block, &auth, &[7; 48], DEFAULT_POLICY, true).unwrap();
        assert_eq!(
            pass.id_key_digest,
            key_digest(&wire_public_key(idk.public()))
        );
        assert_eq!(
            pass.author_key_digest,
            Some(key_digest(&wire_public_key(ak.public())))
        );
        assert_eq!(pass.checks.len(), 8);
        assert_eq!(IdCheckStatus::BadSignature.code(), 0x0A);
        assert_eq!(IdCheckStatus::InvalidParam.mnemonic(), "INVALID_PARAM");

        let st = |r: Result<IdCheckPass, IdCheckFailure>| r.unwrap_err().status();
        assert_eq!(
            st(check_id_block(
                &block,
                &auth,
                &[8; 48],
                DEFAULT_POLICY,
                true
            )),
            IdCheckStatus::BadMeasurement
        );
        assert_eq!(
            st(check_id_block(&block, &auth, &[7; 48], 0x30001, true)),
            IdCheckStatus::PolicyFailure
        );
        let mut a = auth;
        a.id_key_algo = 2;
        assert_eq!(
            check_id_block(&block, &a, &[7; 48], DEFAULT_POLICY, true),
            Err(IdCheckFailure::IdKeyAlgo(2))
        );
        let mut a = auth;
        a.auth_key_algo = 0;
        assert_eq!(
            check_id_block(&block, &a, &[7; 48], DEFAULT_POLICY, true),
            Err(IdCheckFailure::AuthKeyAlgo(0))
        );
        // Author key not enabled: AUTH_KEY_ALGO and the author fields are not looked at.
        assert!(check_id_block(&block, &a, &[7; 48], DEFAULT_POLICY, false).is_ok());
        let mut a = auth;
        a.id_block_sig.s[3] ^= 1;
        assert_eq!(
            check_id_block(&block, &a, &[7; 48], DEFAULT_POLICY, true),
            Err(IdCheckFailure::IdBlockSignature)
        );
        let mut a = auth;
        a.id_key.curve = 1;
        assert_eq!(
            st(check_id_block(&block, &a, &[7; 48], DEFAULT_POLICY, true)),
            IdCheckStatus::BadSignature
        );
        let mut a = auth;
        a.author_key.qx[0] ^= 1;
        assert!(matches!(
            check_id_block(&block, &a, &[7; 48], DEFAULT_POLICY, true),
            Err(IdCheckFailure::AuthorKey(WireKeyError::NotOnCurve))
        ));
        let mut a = auth;
        a.id_key_sig.r[60] = 1;
        assert_eq!(
            check_id_block(&block, &a, &[7; 48], DEFAULT_POLICY, true),
            Err(IdCheckFailure::IdKeySignature)
        );
    }

    #[test]
    fn without_author_key() {
        let idk = key("id2");
        let block = IdBlockParams::default().to_id_block();
        let auth = sign_id_auth(&block, &idk, None, SignMode::Randomized).unwrap();
        assert_eq!(auth.auth_key_algo, 0);
        assert_eq!(auth.author_key, EcdsaPublicKey::default());
        let pass = check_id_block(&block, &auth, &[0; 48], DEFAULT_POLICY, false).unwrap();
        assert_eq!(pass.author_key_digest, None);
        assert_eq!(
            check_id_block(&block, &auth, &[0; 48], DEFAULT_POLICY, true),
            Err(IdCheckFailure::AuthKeyAlgo(0))
        );
    }
}
