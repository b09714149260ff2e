//! RSA private keys for the simulated AMD roots (ARK, ASK, ASVK): key generation from
//! the project RNG (deterministic when seeded) and RSASSA-PSS signing with SHA-384,
//! MGF1-SHA-384 and a 48-byte salt, as AMD signs. Backed by the `rsa` crate, the only
//! well-kept Rust RSA implementation that accepts a caller-supplied RNG for key
//! generation and salts. Verification stays in [`crate::rsa::verify_pss_sha384`].

use crate::CryptoError;
use crate::rng::Rng;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey, EncodeRsaPublicKey};
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use zeroize::Zeroizing;

/// An RSA private key. Its parts are zeroized on drop (the `rsa` crate does it);
/// `Debug` shows only the modulus size.
pub struct RsaPrivateKey(rsa::RsaPrivateKey);

impl std::fmt::Debug for RsaPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsaPrivateKey({} bits)", self.bits())
    }
}

impl RsaPrivateKey {
    /// Generate a key of `bits` bits with e = 65537 from `rng`. With a seeded RNG the
    /// same seed gives the same key. RSA-4096 takes seconds.
    pub fn generate(rng: &mut Rng, bits: usize) -> Result<Self, CryptoError> {
        rsa::RsaPrivateKey::new(rng, bits)
            .map(Self)
            .map_err(|e| CryptoError::InvalidKey {
                what: "RSA private",
                why: format!("generating {bits}-bit key: {e}"),
            })
    }

    /// From PKCS#1 `RSAPrivateKey` DER.
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self, CryptoError> {
        rsa::RsaPrivateKey::from_pkcs1_der(der)
            .map(Self)
            .map_err(|e| CryptoError::InvalidKey {
                what: "RSA private",
                why: e.to_string(),
            })
    }

    /// PKCS#1 `RSAPrivateKey` DER (secret; zeroized when dropped).
    pub fn to_pkcs1_der(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.0
            .to_pkcs1_der()
            .map(|d| Zeroizing::new(d.as_bytes().to_vec()))
            .map_err(|_| CryptoError::Backend("RSA PKCS#1 private encode"))
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        rsa::traits::PublicKeyParts::size(&self.0) * 8
    }

    /// The public key as PKCS#1 `RSAPublicKey` DER (what an X.509 SPKI BIT STRING holds
    /// and what [`crate::rsa::verify_pss_sha384`] takes).
    pub fn public_pkcs1_der(&self) -> Result<Vec<u8>, CryptoError> {
        self.0
            .to_public_key()
            .to_pkcs1_der()
            .map(|d| d.as_bytes().to_vec())
            .map_err(|_| CryptoError::Backend("RSA PKCS#1 public encode"))
    }

    /// RSASSA-PSS signature over `msg` with SHA-384, MGF1-SHA-384, salt length 48; the
    /// salt (and blinding) come from `rng`, so a seeded RNG gives the same bytes.
    pub fn sign_pss_sha384(&self, rng: &mut Rng, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let key = rsa::pss::BlindedSigningKey::<sha2::Sha384>::new(self.0.clone());
        let sig = key
            .try_sign_with_rng(rng, msg)
            .map_err(|_| CryptoError::Backend("RSA-PSS sign"))?;
        Ok(sig.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verifies_and_is_deterministic_when_seeded() {
        let k1 = RsaPrivateKey::generate(&mut Rng::seeded(b"t", "rsa"), 2048).unwrap();
        let k2 = RsaPrivateKey::generate(&mut Rng::seeded(b"t", "rsa"), 2048).unwrap();
        let pubk = k1.public_pkcs1_der().unwrap();
        assert_eq!(pubk, k2.public_pkcs1_der().unwrap());
        assert_eq!(k1.bits(), 2048);
        let s1 = k1
            .sign_pss_sha384(&mut Rng::seeded(b"s", "x"), b"msg")
            .unwrap();
        let s2 = k1
            .sign_pss_sha384(&mut Rng::seeded(b"s", "x"), b"msg")
            .unwrap();
        assert_eq!(s1, s2);
        crate::rsa::verify_pss_sha384(&pubk, b"msg", &s1).unwrap();
        assert!(crate::rsa::verify_pss_sha384(&pubk, b"msh", &s1).is_err());
        let der = k1.to_pkcs1_der().unwrap();
        let k3 = RsaPrivateKey::from_pkcs1_der(&der).unwrap();
        assert_eq!(k3.public_pkcs1_der().unwrap(), pubk);
        assert_eq!(format!("{k1:?}"), "RsaPrivateKey(2048 bits)");
    }
}
