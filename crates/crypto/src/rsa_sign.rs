//! RSA private keys for the simulated AMD roots (ARK, ASK, ASVK): key generation from
//! the project RNG (deterministic when seeded) and RSASSA-PSS signing with SHA-384,
//! MGF1-SHA-384 and a 48-byte salt, as AMD signs on Rome and later, or SHA-256,
//! MGF1-SHA-256 and a 32-byte salt (Naples, SEV `RSA_SHA256`; sev-legacy.md §2.1).
//! Backed by the `rsa` crate, the only well-kept Rust RSA implementation that accepts a
//! caller-supplied RNG for key generation and salts. Verification stays in
//! [`crate::rsa`].

use crate::CryptoError;
use crate::rng::Rng;
use crate::rsa::RsaPssHash;
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

    /// The modulus n, big-endian, without leading zero bytes.
    pub fn public_modulus_be(&self) -> Vec<u8> {
        rsa::traits::PublicKeyParts::n(&self.0).to_bytes_be()
    }

    /// The public exponent e, big-endian, without leading zero bytes.
    pub fn public_exponent_be(&self) -> Vec<u8> {
        rsa::traits::PublicKeyParts::e(&self.0).to_bytes_be()
    }

    /// RSASSA-PSS signature over `msg` with SHA-384, MGF1-SHA-384, salt length 48; the
    /// salt (and blinding) come from `rng`, so a seeded RNG gives the same bytes.
    pub fn sign_pss_sha384(&self, rng: &mut Rng, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.sign_pss_with_rng(rng, RsaPssHash::Sha384, msg)
    }

    /// RSASSA-PSS signature over `msg` with `hash` (MGF1 with the same hash, salt as long
    /// as the digest), salt and blinding from the OS RNG. Big-endian, as long as the
    /// modulus.
    pub fn sign_pss(&self, hash: RsaPssHash, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.sign_pss_with_rng(&mut Rng::os(), hash, msg)
    }

    /// [`Self::sign_pss`] with the salt (and blinding) from `rng`, so a seeded RNG gives
    /// the same bytes.
    pub fn sign_pss_with_rng(
        &self,
        rng: &mut Rng,
        hash: RsaPssHash,
        msg: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let sig = match hash {
            RsaPssHash::Sha256 => rsa::pss::BlindedSigningKey::<sha2::Sha256>::new(self.0.clone())
                .try_sign_with_rng(rng, msg)
                .map(|s| s.to_vec()),
            RsaPssHash::Sha384 => rsa::pss::BlindedSigningKey::<sha2::Sha384>::new(self.0.clone())
                .try_sign_with_rng(rng, msg)
                .map(|s| s.to_vec()),
        };
        sig.map_err(|_| CryptoError::Backend("RSA-PSS sign"))
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
