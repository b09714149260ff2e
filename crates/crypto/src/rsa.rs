//! RSA-PSS verification: SHA-384 (MGF1-SHA384, salt 48), the scheme of AMD's ARK, ASK
//! and ASVK certificates on Rome and later, and SHA-256 (MGF1-SHA256, salt 32), that of
//! the Naples ARK/ASK and of `RSA_SHA256` SEV signatures (sev-legacy.md §2.1: MGF1 with
//! the same hash, salt = hash length). Backed by `aws-lc-rs`, for 2048- to 8192-bit keys.

use crate::CryptoError;
use aws_lc_rs::signature::{
    RSA_PSS_2048_8192_SHA256, RSA_PSS_2048_8192_SHA384, RsaParameters, RsaPublicKeyComponents,
    UnparsedPublicKey,
};

/// The hash of an RSASSA-PSS signature; MGF1 uses the same hash and the salt is as long
/// as the digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsaPssHash {
    /// SHA-256, MGF1-SHA256, 32-byte salt (SEV `RSA_SHA256` = 1; Naples ARK/ASK).
    Sha256,
    /// SHA-384, MGF1-SHA384, 48-byte salt (SEV `RSA_SHA384` = 0x101; Rome+ ARK/ASK).
    Sha384,
}

impl RsaPssHash {
    /// The salt length in bytes (= the digest length).
    pub fn salt_len(self) -> usize {
        match self {
            RsaPssHash::Sha256 => 32,
            RsaPssHash::Sha384 => 48,
        }
    }

    fn params(self) -> &'static RsaParameters {
        match self {
            RsaPssHash::Sha256 => &RSA_PSS_2048_8192_SHA256,
            RsaPssHash::Sha384 => &RSA_PSS_2048_8192_SHA384,
        }
    }

    fn what(self) -> &'static str {
        match self {
            RsaPssHash::Sha256 => "RSA-PSS-SHA256",
            RsaPssHash::Sha384 => "RSA-PSS-SHA384",
        }
    }
}

/// Verify an RSA-PSS-SHA384 signature. `public_key_der` is a PKCS#1 `RSAPublicKey`
/// (the BIT STRING contents of an X.509 SubjectPublicKeyInfo).
pub fn verify_pss_sha384(
    public_key_der: &[u8],
    msg: &[u8],
    signature: &[u8],
) -> Result<(), CryptoError> {
    verify_pss_der(public_key_der, RsaPssHash::Sha384, msg, signature)
}

/// Verify an RSA-PSS signature with `hash` under a PKCS#1 `RSAPublicKey` DER key.
pub fn verify_pss_der(
    public_key_der: &[u8],
    hash: RsaPssHash,
    msg: &[u8],
    signature: &[u8],
) -> Result<(), CryptoError> {
    UnparsedPublicKey::new(hash.params(), public_key_der)
        .verify(msg, signature)
        .map_err(|_| CryptoError::BadSignature(hash.what()))
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[first..]
}

/// Verify an RSA-PSS signature with `hash` under the key (modulus, exponent), both
/// big-endian of any width (leading zero bytes, as AMD's fixed-width fields carry once
/// byte-reversed, are ignored). `sig_be` is the big-endian signature, as long as the
/// modulus (AMD certificates store it little-endian: reverse it first).
pub fn verify_pss(
    modulus_be: &[u8],
    exponent_be: &[u8],
    hash: RsaPssHash,
    msg: &[u8],
    sig_be: &[u8],
) -> Result<(), CryptoError> {
    let key = RsaPublicKeyComponents {
        n: strip_leading_zeros(modulus_be),
        e: strip_leading_zeros(exponent_be),
    };
    key.verify(hash.params(), msg, sig_be)
        .map_err(|_| CryptoError::BadSignature(hash.what()))
}
