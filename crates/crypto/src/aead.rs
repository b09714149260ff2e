//! AES-256-GCM, as used by SNP guest messages (VMPCK-protected requests) and
//! migration. Backed by `ring`.

use crate::CryptoError;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};
use zeroize::Zeroizing;

/// GCM tag length.
pub const TAG_LEN: usize = 16;
/// GCM nonce (IV) length.
pub const NONCE_LEN: usize = 12;

/// An AES-256-GCM key. The raw key is zeroized on drop; `Debug` prints nothing secret.
pub struct Aes256Gcm {
    key: LessSafeKey,
    _raw: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Aes256Gcm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Aes256Gcm(<secret>)")
    }
}

impl Aes256Gcm {
    /// A key from 32 raw bytes.
    pub fn new(key: &[u8; 32]) -> Self {
        let unbound = UnboundKey::new(&AES_256_GCM, key).expect("32-byte key is valid");
        Self {
            key: LessSafeKey::new(unbound),
            _raw: Zeroizing::new(*key),
        }
    }

    /// Encrypt `buf` in place and return the tag.
    pub fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], CryptoError> {
        let tag = self
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), buf)
            .map_err(|_| CryptoError::Backend("AES-GCM seal"))?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Decrypt `buf` in place after checking `tag` (in constant time, inside ring).
    /// On failure `buf` is left zeroed rather than half-decrypted.
    pub fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoError> {
        let tag = Tag::from(*tag);
        match self.key.open_in_place_separate_tag(
            Nonce::assume_unique_for_key(*nonce),
            Aad::from(aad),
            tag,
            buf,
            0..,
        ) {
            Ok(_) => Ok(()),
            Err(_) => {
                buf.fill(0);
                Err(CryptoError::AeadAuth)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nist_gcm_test_case_16_prefix() {
        // McGrew & Viega GCM spec, test case 14: zero key, zero IV, one zero block.
        let k = Aes256Gcm::new(&[0u8; 32]);
        let mut buf = [0u8; 16];
        let tag = k.seal(&[0u8; 12], b"", &mut buf).unwrap();
        assert_eq!(hex::encode(buf), "cea7403d4d606b6e074ec5d3baf39d18");
        assert_eq!(hex::encode(tag), "d0d1c8a799996bf0265b98b5d48ab919");
        k.open(&[0u8; 12], b"", &mut buf, &tag).unwrap();
        assert_eq!(buf, [0u8; 16]);
    }

    #[test]
    fn tamper_fails_and_wipes() {
        let k = Aes256Gcm::new(&[7u8; 32]);
        let mut buf = *b"attestation data";
        let tag = k.seal(&[1u8; 12], b"hdr", &mut buf).unwrap();
        let mut bad = buf;
        bad[0] ^= 1;
        assert_eq!(
            k.open(&[1u8; 12], b"hdr", &mut bad, &tag),
            Err(CryptoError::AeadAuth)
        );
        assert_eq!(bad, [0u8; 16]);
        let mut b2 = buf;
        assert!(k.open(&[1u8; 12], b"hdX", &mut b2, &tag).is_err());
        assert_eq!(format!("{k:?}"), "Aes256Gcm(<secret>)");
    }
}
