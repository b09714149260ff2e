//! ECDSA P-384 with SHA-384: VCEK/VLEK report signatures, ID block and ID auth
//! signatures, certificate signatures; and ECDSA P-384 over a SHA-256 digest, the
//! `ECDSA_SHA256` algorithm (2) of legacy SEV certificates (OCA, PEK, CEK, PDH and the
//! ATTESTATION report; sev-legacy.md §2.1: the 32-byte digest is used as is, being
//! shorter than the order, per SEC1 4.1.3 step 5).
//!
//! Integers are big-endian here (as in SEC1/X.509); conversions to AMD's 72-byte
//! little-endian fields live in `softsev-abi`.

use crate::CryptoError;
use aws_lc_rs::signature::{
    self as awssig, ECDSA_P384_SHA256_ASN1, ECDSA_P384_SHA384_FIXED,
    ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
};
use p384::ecdsa::signature::hazmat::{PrehashSigner, RandomizedPrehashSigner};
use p384::ecdsa::signature::{RandomizedSigner, Signer};
use p384::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use zeroize::Zeroizing;

/// Whether `s` (big-endian) of a P-384 signature is in the "high-S" half (s > n/2).
/// ECDSA verifies (r, s) and (r, n − s) alike; AMD's firmware does not normalize, so a
/// genuine report may carry either form. `false` for a value that is not a scalar.
pub fn p384_is_high_s(s: &[u8; 48]) -> bool {
    use p384::elliptic_curve::PrimeField;
    use p384::elliptic_curve::scalar::IsHigh;
    Option::<p384::Scalar>::from(p384::Scalar::from_repr((*s).into()))
        .is_some_and(|x| bool::from(x.is_high()))
}

/// A P-384 signature as (r, s), big-endian, 48 bytes each.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct P384Signature {
    /// r, big-endian.
    pub r: [u8; 48],
    /// s, big-endian.
    pub s: [u8; 48],
}

impl P384Signature {
    fn from_fixed(b: &[u8]) -> Self {
        let mut r = [0u8; 48];
        let mut s = [0u8; 48];
        r.copy_from_slice(&b[..48]);
        s.copy_from_slice(&b[48..96]);
        Self { r, s }
    }
    /// r ‖ s (96 bytes).
    pub fn to_fixed(&self) -> [u8; 96] {
        let mut out = [0u8; 96];
        out[..48].copy_from_slice(&self.r);
        out[48..].copy_from_slice(&self.s);
        out
    }
    /// ASN.1 DER `Ecdsa-Sig-Value`, as X.509 signatures carry it.
    pub fn to_der(&self) -> Vec<u8> {
        let sig = p384::ecdsa::Signature::from_scalars(self.r, self.s)
            .expect("components came from a valid signature");
        sig.to_der().as_bytes().to_vec()
    }
    /// Parse an ASN.1 DER `Ecdsa-Sig-Value`.
    pub fn from_der(der: &[u8]) -> Result<Self, CryptoError> {
        let sig = p384::ecdsa::Signature::from_der(der)
            .map_err(|_| CryptoError::BadSignature("P-384 (malformed DER)"))?;
        Ok(Self::from_fixed(&sig.to_bytes()))
    }
}

/// A P-384 public key (affine x, y; big-endian).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct P384PublicKey {
    /// x coordinate, big-endian.
    pub x: [u8; 48],
    /// y coordinate, big-endian.
    pub y: [u8; 48],
}

impl P384PublicKey {
    /// From a SEC1 uncompressed point (0x04 ‖ x ‖ y), checking it is on the curve.
    pub fn from_sec1(bytes: &[u8]) -> Result<Self, CryptoError> {
        let pk = p384::PublicKey::from_sec1_bytes(bytes).map_err(|_| CryptoError::InvalidKey {
            what: "P-384 public",
            why: "not a valid SEC1 point on P-384".into(),
        })?;
        let ep = p384::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&pk, false);
        Self::from_affine_unchecked(ep.as_bytes())
    }

    /// From affine coordinates, checking the point is on the curve.
    pub fn from_xy(x: &[u8; 48], y: &[u8; 48]) -> Result<Self, CryptoError> {
        let mut sec1 = [0u8; 97];
        sec1[0] = 4;
        sec1[1..49].copy_from_slice(x);
        sec1[49..].copy_from_slice(y);
        Self::from_sec1(&sec1)
    }

    fn from_affine_unchecked(sec1: &[u8]) -> Result<Self, CryptoError> {
        if sec1.len() != 97 || sec1[0] != 4 {
            return Err(CryptoError::InvalidKey {
                what: "P-384 public",
                why: "not an uncompressed point".into(),
            });
        }
        let mut x = [0u8; 48];
        let mut y = [0u8; 48];
        x.copy_from_slice(&sec1[1..49]);
        y.copy_from_slice(&sec1[49..97]);
        Ok(Self { x, y })
    }

    /// SEC1 uncompressed encoding (97 bytes).
    pub fn to_sec1(&self) -> [u8; 97] {
        let mut out = [0u8; 97];
        out[0] = 4;
        out[1..49].copy_from_slice(&self.x);
        out[49..].copy_from_slice(&self.y);
        out
    }

    /// DER SubjectPublicKeyInfo (id-ecPublicKey, secp384r1).
    pub fn to_spki_der(&self) -> Vec<u8> {
        use p384::pkcs8::EncodePublicKey;
        let pk = p384::PublicKey::from_sec1_bytes(&self.to_sec1()).expect("checked on creation");
        pk.to_public_key_der()
            .expect("encoding a valid key")
            .as_bytes()
            .to_vec()
    }

    /// From a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, CryptoError> {
        use p384::pkcs8::DecodePublicKey;
        let pk =
            p384::PublicKey::from_public_key_der(der).map_err(|e| CryptoError::InvalidKey {
                what: "P-384 public",
                why: e.to_string(),
            })?;
        let ep = p384::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&pk, false);
        Self::from_affine_unchecked(ep.as_bytes())
    }

    /// A verifier with the point parsed once, for checking many signatures by one key
    /// (a cached VCEK): about 1.5× the throughput of [`P384PublicKey::verify`].
    pub fn verifier(&self) -> Result<P384Verifier, CryptoError> {
        let key = awssig::ParsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, self.to_sec1()).map_err(
            |e| CryptoError::InvalidKey {
                what: "P-384 public",
                why: e.to_string(),
            },
        )?;
        Ok(P384Verifier { key, public: *self })
    }

    /// Verify an ECDSA-SHA384 signature over `msg`.
    pub fn verify(&self, msg: &[u8], sig: &P384Signature) -> Result<(), CryptoError> {
        awssig::UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, &self.to_sec1()[..])
            .verify(msg, &sig.to_fixed())
            .map_err(|_| CryptoError::BadSignature("ECDSA P-384"))
    }

    /// Verify an ECDSA-SHA384 signature over `msg` (the same as [`Self::verify`], named
    /// for symmetry with [`Self::verify_sha256`]).
    pub fn verify_sha384(&self, msg: &[u8], sig: &P384Signature) -> Result<(), CryptoError> {
        self.verify(msg, sig)
    }

    /// Verify an ECDSA P-384 signature over SHA-256(`msg`), SEV's `ECDSA_SHA256`
    /// (sev-legacy.md §2.1). An r or s of zero or not below the order fails.
    pub fn verify_sha256(&self, msg: &[u8], sig: &P384Signature) -> Result<(), CryptoError> {
        const WHAT: &str = "ECDSA P-384 SHA-256";
        let der = p384::ecdsa::Signature::from_scalars(sig.r, sig.s)
            .map_err(|_| CryptoError::BadSignature(WHAT))?
            .to_der();
        awssig::UnparsedPublicKey::new(&ECDSA_P384_SHA256_ASN1, &self.to_sec1()[..])
            .verify(msg, der.as_bytes())
            .map_err(|_| CryptoError::BadSignature(WHAT))
    }
}

/// A P-384 public key parsed once for repeated verification. `Send + Sync`.
#[derive(Clone)]
pub struct P384Verifier {
    key: awssig::ParsedPublicKey,
    public: P384PublicKey,
}

impl std::fmt::Debug for P384Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("P384Verifier").field(&self.public).finish()
    }
}

impl P384Verifier {
    /// The key this verifier checks against.
    pub fn public(&self) -> &P384PublicKey {
        &self.public
    }
    /// Verify an ECDSA-SHA384 signature over `msg`.
    pub fn verify(&self, msg: &[u8], sig: &P384Signature) -> Result<(), CryptoError> {
        self.key
            .verify_sig(msg, &sig.to_fixed())
            .map_err(|_| CryptoError::BadSignature("ECDSA P-384"))
    }
}

/// A P-384 signing key. The scalar is zeroized on drop; `Debug` shows only the public key.
pub struct P384SigningKey {
    scalar: Zeroizing<[u8; 48]>,
    fast: EcdsaKeyPair,
    public: P384PublicKey,
}

impl std::fmt::Debug for P384SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("P384SigningKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl P384SigningKey {
    /// From a big-endian scalar in [1, n-1].
    pub fn from_scalar(scalar: &[u8; 48]) -> Result<Self, CryptoError> {
        let sk = p384::SecretKey::from_slice(scalar).map_err(|_| CryptoError::InvalidKey {
            what: "P-384 private",
            why: "scalar is zero or not below the group order".into(),
        })?;
        Self::from_secret(&sk)
    }

    /// Derive a key from arbitrary key material (e.g. a KDF output of at least 48
    /// bytes), reducing it into [1, n-1] the way FIPS 186-5 A.4.1 does: take 64 bytes,
    /// compute `c mod (n-1) + 1`.
    pub fn from_seed_material(material: &[u8; 64]) -> Self {
        use p384::elliptic_curve::PrimeField;
        use p384::elliptic_curve::ops::Reduce;
        // Hash-to-scalar: reduce the 512-bit value modulo n via two halves:
        // v = hi * 2^256 + lo  (little bias, < 2^-128, acceptable for key derivation).
        let mut hi = [0u8; 48];
        hi[16..].copy_from_slice(&material[..32]);
        let mut lo = [0u8; 48];
        lo[16..].copy_from_slice(&material[32..]);
        let hi_s = <p384::Scalar as Reduce<p384::U384>>::reduce_bytes(&hi.into());
        let lo_s = <p384::Scalar as Reduce<p384::U384>>::reduce_bytes(&lo.into());
        let mut two256 = [0u8; 48];
        two256[15] = 1;
        let t = <p384::Scalar as Reduce<p384::U384>>::reduce_bytes(&two256.into());
        let mut s = hi_s * t + lo_s;
        if bool::from(p384::elliptic_curve::Field::is_zero(&s)) {
            s = p384::Scalar::ONE;
        }
        let bytes: [u8; 48] = s.to_repr().into();
        let out = Self::from_scalar(&bytes).expect("non-zero reduced scalar");
        hi.fill(0);
        lo.fill(0);
        out
    }

    /// From PKCS#8 or SEC1 ("EC PRIVATE KEY") PEM, as `openssl genpkey`/`ecparam` write.
    pub fn from_pem(pem: &str) -> Result<Self, CryptoError> {
        if let Ok(sk) = p384::SecretKey::from_pkcs8_pem(pem) {
            return Self::from_secret(&sk);
        }
        if let Ok(sk) = p384::SecretKey::from_sec1_pem(pem) {
            return Self::from_secret(&sk);
        }
        Err(CryptoError::InvalidKey {
            what: "P-384 private",
            why: "not a PKCS#8 or SEC1 PEM P-384 private key".into(),
        })
    }

    /// A new random key.
    pub fn generate(rng: &mut crate::rng::Rng) -> Self {
        let sk = p384::SecretKey::random(rng);
        Self::from_secret(&sk).expect("random key is valid")
    }

    fn from_secret(sk: &p384::SecretKey) -> Result<Self, CryptoError> {
        let der = sk
            .to_pkcs8_der()
            .map_err(|_| CryptoError::Backend("PKCS#8 encode"))?;
        let fast = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, der.as_bytes())
            .map_err(|e| CryptoError::InvalidKey {
                what: "P-384 private",
                why: e.to_string(),
            })?;
        let public = P384PublicKey::from_sec1(fast.public_key().as_ref())?;
        let mut scalar = Zeroizing::new([0u8; 48]);
        scalar.copy_from_slice(&sk.to_bytes());
        Ok(Self {
            scalar,
            fast,
            public,
        })
    }

    /// PKCS#8 PEM of the private key (for exporting keys a user asked to be written).
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        let sk = p384::SecretKey::from_slice(&self.scalar[..]).expect("valid scalar");
        Zeroizing::new(
            sk.to_pkcs8_pem(p384::pkcs8::LineEnding::LF)
                .expect("encoding a valid key")
                .to_string(),
        )
    }

    /// The public key.
    pub fn public(&self) -> &P384PublicKey {
        &self.public
    }

    /// Sign `msg` (ECDSA-SHA384) with a fresh random nonce (aws-lc-rs; fastest).
    pub fn sign(&self, msg: &[u8]) -> Result<P384Signature, CryptoError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let sig = self
            .fast
            .sign(&rng, msg)
            .map_err(|_| CryptoError::Backend("ECDSA sign"))?;
        Ok(P384Signature::from_fixed(sig.as_ref()))
    }

    /// Sign `msg` with an RFC 6979 deterministic nonce: same key and message, same bytes.
    pub fn sign_deterministic(&self, msg: &[u8]) -> P384Signature {
        let sk = p384::ecdsa::SigningKey::from_slice(&self.scalar[..]).expect("valid scalar");
        let sig: p384::ecdsa::Signature = sk.sign(msg);
        P384Signature::from_fixed(&sig.to_bytes())
    }

    /// Sign randomized or deterministically, as the caller's mode says.
    pub fn sign_mode(&self, msg: &[u8], deterministic: bool) -> Result<P384Signature, CryptoError> {
        if deterministic {
            Ok(self.sign_deterministic(msg))
        } else {
            self.sign(msg)
        }
    }

    fn rustcrypto(&self) -> p384::ecdsa::SigningKey {
        p384::ecdsa::SigningKey::from_slice(&self.scalar[..]).expect("valid scalar")
    }

    /// ECDSA-SHA384 over `msg` with a fresh random nonce (the same as [`Self::sign`],
    /// named for symmetry with [`Self::sign_digest_sha256`]).
    pub fn sign_sha384(&self, msg: &[u8]) -> Result<P384Signature, CryptoError> {
        self.sign(msg)
    }

    /// ECDSA-SHA384 over `msg` with the nonce hedged by `rng` (RFC 6979 §3.6 with added
    /// entropy): a seeded `rng` gives the same bytes for the same key and message.
    pub fn sign_sha384_with_rng(&self, rng: &mut crate::rng::Rng, msg: &[u8]) -> P384Signature {
        let sig: p384::ecdsa::Signature = self.rustcrypto().sign_with_rng(rng, msg);
        P384Signature::from_fixed(&sig.to_bytes())
    }

    /// SEV `ECDSA_SHA256`: ECDSA P-384 over SHA-256(`msg`) with a random nonce (the
    /// RFC 6979 nonce hedged by OS randomness).
    pub fn sign_digest_sha256(&self, msg: &[u8]) -> Result<P384Signature, CryptoError> {
        Ok(self.sign_digest_sha256_with_rng(&mut crate::rng::Rng::os(), msg))
    }

    /// SEV `ECDSA_SHA256` with the nonce hedged by `rng` (RFC 6979 §3.6 with added
    /// entropy): a seeded `rng` gives the same bytes for the same key and message.
    pub fn sign_digest_sha256_with_rng(
        &self,
        rng: &mut crate::rng::Rng,
        msg: &[u8],
    ) -> P384Signature {
        let digest = crate::hash::sha256(msg);
        let sig: p384::ecdsa::Signature = self
            .rustcrypto()
            .sign_prehash_with_rng(rng, &digest)
            .expect("a 32-byte digest is a valid P-384 prehash");
        P384Signature::from_fixed(&sig.to_bytes())
    }

    /// SEV `ECDSA_SHA256` with an RFC 6979 deterministic nonce: same key and message,
    /// same bytes.
    pub fn sign_digest_sha256_deterministic(&self, msg: &[u8]) -> P384Signature {
        let digest = crate::hash::sha256(msg);
        let sig: p384::ecdsa::Signature = self
            .rustcrypto()
            .sign_prehash(&digest)
            .expect("a 32-byte digest is a valid P-384 prehash");
        P384Signature::from_fixed(&sig.to_bytes())
    }

    /// SEV `ECDSA_SHA256`, randomized or deterministic as the caller's mode says (as
    /// [`Self::sign_mode`]).
    pub fn sign_digest_sha256_mode(
        &self,
        msg: &[u8],
        deterministic: bool,
    ) -> Result<P384Signature, CryptoError> {
        if deterministic {
            Ok(self.sign_digest_sha256_deterministic(msg))
        } else {
            self.sign_digest_sha256(msg)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_both_modes() {
        let mut rng = crate::rng::Rng::seeded(b"t", "ecdsa");
        let k = P384SigningKey::generate(&mut rng);
        let s1 = k.sign(b"msg").unwrap();
        k.public().verify(b"msg", &s1).unwrap();
        let v = k.public().verifier().unwrap();
        v.verify(b"msg", &s1).unwrap();
        assert!(v.verify(b"msh", &s1).is_err());
        let d1 = k.sign_deterministic(b"msg");
        let d2 = k.sign_deterministic(b"msg");
        assert_eq!(d1, d2);
        k.public().verify(b"msg", &d1).unwrap();
        assert!(k.public().verify(b"msh", &d1).is_err());
        let der = d1.to_der();
        assert_eq!(P384Signature::from_der(&der).unwrap(), d1);
        let spki = k.public().to_spki_der();
        assert_eq!(&P384PublicKey::from_spki_der(&spki).unwrap(), k.public());
        let pem = k.to_pkcs8_pem();
        let k2 = P384SigningKey::from_pem(&pem).unwrap();
        assert_eq!(k2.public(), k.public());
        assert!(!format!("{k:?}").contains(&hex::encode(&k.scalar[..])));
    }

    #[test]
    fn seed_material_is_deterministic() {
        let a = P384SigningKey::from_seed_material(&[9u8; 64]);
        let b = P384SigningKey::from_seed_material(&[9u8; 64]);
        let c = P384SigningKey::from_seed_material(&[8u8; 64]);
        assert_eq!(a.public(), b.public());
        assert_ne!(a.public(), c.public());
    }

    #[test]
    fn rejects_bad_keys() {
        assert!(P384SigningKey::from_scalar(&[0u8; 48]).is_err());
        assert!(P384SigningKey::from_scalar(&[0xffu8; 48]).is_err());
        assert!(P384PublicKey::from_xy(&[1u8; 48], &[2u8; 48]).is_err());
        assert!(P384SigningKey::from_pem("-----BEGIN NOTHING-----").is_err());
    }
}
