//! RSA-PSS with SHA-384 (MGF1-SHA384, salt 48), the signature scheme of AMD's ARK, ASK
//! and ASVK certificates. Verification is backed by `aws-lc-rs`.

use crate::CryptoError;
use aws_lc_rs::signature::{RSA_PSS_2048_8192_SHA384, UnparsedPublicKey};

/// Verify an RSA-PSS-SHA384 signature. `public_key_der` is a PKCS#1 `RSAPublicKey`
/// (the BIT STRING contents of an X.509 SubjectPublicKeyInfo).
pub fn verify_pss_sha384(
    public_key_der: &[u8],
    msg: &[u8],
    signature: &[u8],
) -> Result<(), CryptoError> {
    UnparsedPublicKey::new(&RSA_PSS_2048_8192_SHA384, public_key_der)
        .verify(msg, signature)
        .map_err(|_| CryptoError::BadSignature("RSA-PSS-SHA384"))
}
