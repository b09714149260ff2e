//! SEV certificates (PDH, PEK, OCA, CEK, GODH; 0x824 bytes, ASPFW `sev_cert.h:sev_cert_t`)
//! and AMD CA certificates (ARK, ASK; ASPFW `amd_cert.h:amd_cert_fixed_t`), the chain
//! files built from them, and their usage / algorithm codes. Spec:
//! shared/spec/sev-legacy.md §2.1–§2.2 and §2.4, host-interfaces.md §4.5 (corrected by
//! sev-legacy.md §0.2-1..3).
//!
//! Pure encode / decode / format checks of bytes. Signatures are not verified here
//! (that needs crypto; the firmware model and the verifier do it): this module only
//! converts between the little-endian wire fields and the big-endian integers the
//! crypto layer takes.
//!
//! Field encodings (§2.1): an ECC key is `u32 curve` then X and Y as 72-byte
//! little-endian fields (48 significant bytes for P-384), the rest of the 0x404-byte
//! key field zero; an ECDSA signature is `r[72]` LE ‖ `s[72]` LE in the 0x200-byte
//! signature field; an RSA key is `u32 modulus_bits; pub_exp[512] LE; modulus[512] LE`
//! and an RSA signature `s[512]` LE.

use thiserror::Error;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::sev_buf::{SEV_CERT_LEN, SEV_PDH_CHAIN_LEN, be48_to_le72, le72_to_be48};

crate::open_enum! {
    /// Key / signature usage code (§2.1; ASPFW `sev_cert.h`, sev crate `Usage`).
    pub struct SevUsage(u32) {
        /// AMD root key.
        ARK = 0x0000,
        /// AMD signing key.
        ASK = 0x0013,
        /// No key: an empty signature slot (also "INVALID").
        NONE = 0x1000,
        /// Owner certificate authority.
        OCA = 0x1001,
        /// Platform endorsement key.
        PEK = 0x1002,
        /// Platform Diffie-Hellman key.
        PDH = 0x1003,
        /// Chip endorsement key.
        CEK = 0x1004,
    }
}

crate::open_enum! {
    /// Key / signature algorithm code (§2.1).
    pub struct SevAlgo(u32) {
        /// None (empty slot).
        NONE = 0x000,
        /// RSA-PSS with SHA-256.
        RSA_SHA256 = 0x001,
        /// ECDSA with SHA-256.
        ECDSA_SHA256 = 0x002,
        /// ECDH key, SHA-256.
        ECDH_SHA256 = 0x003,
        /// RSA-PSS with SHA-384.
        RSA_SHA384 = 0x101,
        /// ECDSA with SHA-384.
        ECDSA_SHA384 = 0x102,
        /// ECDH key, SHA-384.
        ECDH_SHA384 = 0x103,
    }
}

impl SevAlgo {
    /// RSA_SHA256 or RSA_SHA384.
    pub fn is_rsa(self) -> bool {
        matches!(self, SevAlgo::RSA_SHA256 | SevAlgo::RSA_SHA384)
    }
    /// ECDSA_SHA256 or ECDSA_SHA384.
    pub fn is_ecdsa(self) -> bool {
        matches!(self, SevAlgo::ECDSA_SHA256 | SevAlgo::ECDSA_SHA384)
    }
    /// ECDH_SHA256 or ECDH_SHA384.
    pub fn is_ecdh(self) -> bool {
        matches!(self, SevAlgo::ECDH_SHA256 | SevAlgo::ECDH_SHA384)
    }
    /// An elliptic-curve key (ECDSA or ECDH): the key field holds an [`EccPoint`].
    pub fn is_ecc(self) -> bool {
        self.is_ecdsa() || self.is_ecdh()
    }
    /// The hash is SHA-384 (the `*_SHA384` codes); SHA-256 for the others (§2.1).
    pub fn is_sha384(self) -> bool {
        matches!(
            self,
            SevAlgo::RSA_SHA384 | SevAlgo::ECDSA_SHA384 | SevAlgo::ECDH_SHA384
        )
    }
}

/// The only curve the firmware accepts in a SEV certificate: 2 = P-384 (§0.2-1).
pub const SEV_ECC_CURVE_P384: u32 = 2;
/// Bytes of a SEV certificate covered by its signatures: the body 0x000..0x414 (§2.1).
pub const SEV_CERT_BODY_LEN: usize = 0x414;
/// Size of the public-key field.
pub const SEV_CERT_PUBKEY_LEN: usize = 0x404;
/// Size of a signature field.
pub const SEV_CERT_SIG_LEN: usize = 0x200;
/// Width of one ECC coordinate / ECDSA component field (little-endian).
pub const SEV_ECC_FIELD_LEN: usize = 72;
/// Width of the RSA exponent and modulus fields of a SEV certificate key (4096 bits).
pub const SEV_RSA_FIELD_LEN: usize = 512;
/// Size of the fixed part of an AMD CA certificate (§2.2).
pub const AMD_CERT_FIXED_LEN: usize = 0x40;

/// What is wrong with certificate bytes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SevCertError {
    /// The input has the wrong length for what was asked.
    #[error("{what}: expected {expected} bytes, got {actual}")]
    Length {
        /// What was being decoded.
        what: &'static str,
        /// Required length.
        expected: usize,
        /// Given length.
        actual: usize,
    },
    /// The input ends before the structure does.
    #[error("{what}: truncated, needs {needed} bytes, got {actual}")]
    Truncated {
        /// What was being decoded.
        what: &'static str,
        /// Bytes the structure needs.
        needed: usize,
        /// Bytes given.
        actual: usize,
    },
    /// Certificate `version` is not 1.
    #[error("{what}: unsupported version {version} (must be 1)")]
    Version {
        /// Which certificate.
        what: &'static str,
        /// The version found.
        version: u32,
    },
    /// A certificate in a fixed chain position has the wrong key usage.
    #[error("{position}: key usage {found}, expected {expected}")]
    Usage {
        /// The position (e.g. "PEK of PDH‖PEK‖OCA‖CEK").
        position: &'static str,
        /// The usage that position requires.
        expected: SevUsage,
        /// The usage found.
        found: SevUsage,
    },
    /// AMD CA certificate `pubexp_size_bits` is not 2048 or 4096 (§0.2-3).
    #[error("AMD CA certificate: pubexp_size_bits {0} (must be 2048 or 4096)")]
    PubexpBits(u32),
    /// AMD CA certificate `modulus_size_bits` is not 2048 or 4096 (§2.2).
    #[error("AMD CA certificate: modulus_size_bits {0} (must be 2048 or 4096)")]
    ModulusBits(u32),
    /// SEV certificate usage code unknown (§2.1).
    #[error("SEV certificate: unknown key usage {0:#x}")]
    UnknownUsage(u32),
    /// SEV certificate algorithm code unknown, or NONE for a key (§2.1).
    #[error("SEV certificate: key algorithm {0} is not a key algorithm")]
    KeyAlgo(SevAlgo),
    /// ECC key on a curve other than P-384 (§0.2-1).
    #[error("SEV certificate: ECC curve {0} (only 2 = P-384 is accepted)")]
    Curve(u32),
    /// A 72-byte ECC field has non-zero bytes above the 48 significant ones.
    #[error("SEV certificate: ECC value does not fit 48 bytes")]
    EccValueTooLarge,
    /// SEV certificate RSA key with an unusable modulus size.
    #[error("SEV certificate: RSA modulus_bits {0} (must be 2048 or 4096)")]
    RsaModulusBits(u32),
    /// A signature slot has exactly one of algo = 0 / usage = NONE (§0.2-2).
    #[error("SEV certificate: signature slot {slot} is malformed (usage {usage}, algo {algo})")]
    MalformedSlot {
        /// 1 or 2.
        slot: u8,
        /// Its usage.
        usage: SevUsage,
        /// Its algorithm.
        algo: SevAlgo,
    },
    /// An RSA signature is longer than its field, or has non-zero bytes beyond the
    /// modulus length.
    #[error("RSA signature of {len} bytes does not fit a {max}-byte field")]
    RsaSignatureLength {
        /// Bytes given / needed.
        len: usize,
        /// The field width.
        max: usize,
    },
}

// ---------------------------------------------------------------------------------
// SEV certificate.
// ---------------------------------------------------------------------------------

crate::wire!(
    /// One signature slot of a SEV certificate (§2.1): usage, algorithm, 0x200 bytes.
    SevSigSlot, size = 0x208, {
        /// Signer's key usage ([`SevUsage`]; NONE = empty).
        usage: u32 = 0x000,
        /// Signature algorithm ([`SevAlgo`]; 0 = empty).
        algo: u32 = 0x004,
        /// ECDSA: `r[72]` LE ‖ `s[72]` LE ‖ zeros; RSA: s LE.
        sig: [u8; SEV_CERT_SIG_LEN] = 0x008,
    }
);

crate::wire!(
    /// A SEV certificate, 0x824 bytes (§2.1; ASPFW `sev_cert_t`, AMD SEV API
    /// Appendix C.1, sev crate `certs::sev::sev::Certificate`).
    SevCert, size = 0x824, {
        /// Format version, 1.
        version: u32 = 0x000,
        /// Firmware API major at creation.
        api_major: u8 = 0x004,
        /// Firmware API minor at creation.
        api_minor: u8 = 0x005,
        /// Reserved, 0.
        reserved: [u8; 2] = 0x006,
        /// Key usage ([`SevUsage`]).
        pubkey_usage: u32 = 0x008,
        /// Key algorithm ([`SevAlgo`]).
        pubkey_algo: u32 = 0x00C,
        /// Public key field (ECC: curve, X, Y; RSA: bits, exponent, modulus).
        pubkey: [u8; SEV_CERT_PUBKEY_LEN] = 0x010,
        /// First signature.
        sig1: SevSigSlot = 0x414,
        /// Second signature.
        sig2: SevSigSlot = 0x61C,
    }
);

const _: () = assert!(SevCert::LEN == SEV_CERT_LEN);

/// An ECC public key from a SEV certificate: the curve code and big-endian X, Y.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EccPoint {
    /// Curve code ([`SEV_ECC_CURVE_P384`] for every valid certificate).
    pub curve: u32,
    /// X, big-endian.
    pub x: [u8; 48],
    /// Y, big-endian.
    pub y: [u8; 48],
}

/// An RSA public key from a SEV certificate's key field (§2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SevRsaKey {
    /// The `modulus_bits` field.
    pub modulus_bits: u32,
    /// The exponent, big-endian, `modulus_bits / 8` bytes.
    pub pubexp_be: Vec<u8>,
    /// The modulus, big-endian, `modulus_bits / 8` bytes.
    pub modulus_be: Vec<u8>,
}

fn usage_of(v: u32) -> SevUsage {
    SevUsage(v)
}

fn read_u32(b: &[u8], off: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(w)
}

fn field72(b: &[u8], off: usize) -> [u8; 72] {
    let mut f = [0u8; 72];
    f.copy_from_slice(&b[off..off + 72]);
    f
}

/// Reverse a little-endian field into a big-endian vector of the same width.
fn le_to_be(le: &[u8]) -> Vec<u8> {
    le.iter().rev().copied().collect()
}

impl SevSigSlot {
    /// An empty slot: usage NONE, algorithm 0, zero signature.
    pub fn empty() -> Self {
        SevSigSlot {
            usage: SevUsage::NONE.0,
            algo: SevAlgo::NONE.0,
            sig: [0; SEV_CERT_SIG_LEN],
        }
    }

    /// The slot's usage as a named value.
    pub fn usage(&self) -> SevUsage {
        usage_of(self.usage)
    }

    /// The slot's algorithm as a named value.
    pub fn algo(&self) -> SevAlgo {
        SevAlgo(self.algo)
    }

    /// Empty: usage NONE **and** algorithm 0 (the firmware's rule, §0.2-2).
    pub fn is_empty(&self) -> bool {
        self.usage == SevUsage::NONE.0 && self.algo == SevAlgo::NONE.0
    }

    /// Malformed: exactly one of algorithm 0 / usage NONE (BAD_SIGNATURE in the
    /// firmware, §0.2-2).
    pub fn is_malformed(&self) -> bool {
        (self.usage == SevUsage::NONE.0) != (self.algo == SevAlgo::NONE.0)
    }

    /// An ECDSA slot from big-endian r and s (stored as 72-byte little-endian fields).
    pub fn ecdsa(usage: SevUsage, algo: SevAlgo, r_be: &[u8; 48], s_be: &[u8; 48]) -> Self {
        let mut sig = [0u8; SEV_CERT_SIG_LEN];
        sig[..SEV_ECC_FIELD_LEN].copy_from_slice(&be48_to_le72(r_be));
        sig[SEV_ECC_FIELD_LEN..2 * SEV_ECC_FIELD_LEN].copy_from_slice(&be48_to_le72(s_be));
        SevSigSlot {
            usage: usage.0,
            algo: algo.0,
            sig,
        }
    }

    /// Big-endian r, s: the low 48 bytes of each 72-byte little-endian field. Bytes
    /// above those 48 are **ignored** here; a verifier must also require
    /// [`ecdsa_rs_strict`](Self::ecdsa_rs_strict) (a non-zero high byte means a value
    /// ≥ 2^384, which the firmware reads as such and rejects).
    pub fn ecdsa_rs(&self) -> ([u8; 48], [u8; 48]) {
        let low48_be = |off: usize| {
            let mut be = [0u8; 48];
            for (d, v) in be.iter_mut().zip(self.sig[off..off + 48].iter().rev()) {
                *d = *v;
            }
            be
        };
        (low48_be(0), low48_be(SEV_ECC_FIELD_LEN))
    }

    /// Big-endian r, s; `None` if either 72-byte field has a non-zero byte above its
    /// 48 significant ones.
    pub fn ecdsa_rs_strict(&self) -> Option<([u8; 48], [u8; 48])> {
        let r = le72_to_be48(&field72(&self.sig, 0))?;
        let s = le72_to_be48(&field72(&self.sig, SEV_ECC_FIELD_LEN))?;
        Some((r, s))
    }

    /// An RSA slot from a big-endian signature (at most 512 bytes; stored
    /// little-endian, zero-extended).
    pub fn rsa(usage: SevUsage, algo: SevAlgo, sig_be: &[u8]) -> Result<Self, SevCertError> {
        if sig_be.len() > SEV_CERT_SIG_LEN {
            return Err(SevCertError::RsaSignatureLength {
                len: sig_be.len(),
                max: SEV_CERT_SIG_LEN,
            });
        }
        let mut sig = [0u8; SEV_CERT_SIG_LEN];
        for (d, s) in sig.iter_mut().zip(sig_be.iter().rev()) {
            *d = *s;
        }
        Ok(SevSigSlot {
            usage: usage.0,
            algo: algo.0,
            sig,
        })
    }

    /// The RSA signature as `modulus_bytes` big-endian bytes (256 for the Naples
    /// 2048-bit ASK, 512 for 4096-bit). Error if `modulus_bytes` exceeds the field or
    /// a byte beyond it is non-zero.
    pub fn rsa_sig_be(&self, modulus_bytes: usize) -> Result<Vec<u8>, SevCertError> {
        if modulus_bytes > SEV_CERT_SIG_LEN {
            return Err(SevCertError::RsaSignatureLength {
                len: modulus_bytes,
                max: SEV_CERT_SIG_LEN,
            });
        }
        if self.sig[modulus_bytes..].iter().any(|&b| b != 0) {
            return Err(SevCertError::RsaSignatureLength {
                len: SEV_CERT_SIG_LEN,
                max: modulus_bytes,
            });
        }
        Ok(le_to_be(&self.sig[..modulus_bytes]))
    }
}

impl SevCert {
    /// Decode exactly [`SEV_CERT_LEN`] bytes (no field checks; see
    /// [`check_format`](Self::check_format)).
    pub fn decode(bytes: &[u8]) -> Result<SevCert, SevCertError> {
        SevCert::read_from_bytes(bytes).map_err(|_| SevCertError::Length {
            what: "SEV certificate",
            expected: SEV_CERT_LEN,
            actual: bytes.len(),
        })
    }

    /// The 0x824 wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }

    /// The signed body, bytes 0x000..0x414.
    pub fn body(&self) -> &[u8] {
        &self.as_bytes()[..SEV_CERT_BODY_LEN]
    }

    /// The key usage as a named value.
    pub fn usage(&self) -> SevUsage {
        usage_of(self.pubkey_usage)
    }

    /// The key algorithm as a named value.
    pub fn algo(&self) -> SevAlgo {
        SevAlgo(self.pubkey_algo)
    }

    /// The ECC public key (curve code and big-endian X, Y); `None` if the algorithm is
    /// not ECDSA/ECDH or a coordinate does not fit 48 bytes. The curve is returned as
    /// stored (the firmware accepts only [`SEV_ECC_CURVE_P384`]).
    pub fn ecc_pubkey(&self) -> Option<EccPoint> {
        if !self.algo().is_ecc() {
            return None;
        }
        let k = &self.pubkey;
        let x = le72_to_be48(&field72(k, 4))?;
        let y = le72_to_be48(&field72(k, 4 + SEV_ECC_FIELD_LEN))?;
        Some(EccPoint {
            curve: read_u32(k, 0),
            x,
            y,
        })
    }

    /// The RSA public key; `None` if the algorithm is not RSA or `modulus_bits` is not
    /// a multiple of 8 within the 4096-bit field.
    pub fn rsa_pubkey(&self) -> Option<SevRsaKey> {
        if !self.algo().is_rsa() {
            return None;
        }
        let k = &self.pubkey;
        let modulus_bits = read_u32(k, 0);
        let n = usize::try_from(modulus_bits).ok()? / 8;
        if !modulus_bits.is_multiple_of(8) || n == 0 || n > SEV_RSA_FIELD_LEN {
            return None;
        }
        let e_le = &k[4..4 + SEV_RSA_FIELD_LEN];
        let n_le = &k[4 + SEV_RSA_FIELD_LEN..4 + 2 * SEV_RSA_FIELD_LEN];
        Some(SevRsaKey {
            modulus_bits,
            pubexp_be: le_to_be(&e_le[..n]),
            modulus_be: le_to_be(&n_le[..n]),
        })
    }

    /// A version-1 certificate with a P-384 key from big-endian X, Y; both signature
    /// slots empty (usage NONE, algorithm 0).
    pub fn new_ecc(
        usage: SevUsage,
        algo: SevAlgo,
        api_major: u8,
        api_minor: u8,
        x_be: &[u8; 48],
        y_be: &[u8; 48],
    ) -> SevCert {
        let mut pubkey = [0u8; SEV_CERT_PUBKEY_LEN];
        pubkey[..4].copy_from_slice(&SEV_ECC_CURVE_P384.to_le_bytes());
        pubkey[4..4 + SEV_ECC_FIELD_LEN].copy_from_slice(&be48_to_le72(x_be));
        pubkey[4 + SEV_ECC_FIELD_LEN..4 + 2 * SEV_ECC_FIELD_LEN]
            .copy_from_slice(&be48_to_le72(y_be));
        SevCert {
            version: 1,
            api_major,
            api_minor,
            reserved: [0; 2],
            pubkey_usage: usage.0,
            pubkey_algo: algo.0,
            pubkey,
            sig1: SevSigSlot::empty(),
            sig2: SevSigSlot::empty(),
        }
    }

    /// Both slots, in order.
    pub fn slots(&self) -> [&SevSigSlot; 2] {
        [&self.sig1, &self.sig2]
    }

    /// The byte-level checks the firmware applies to a certificate before looking at
    /// signatures (§2.3 step 3, less the on-curve test, which needs crypto): version 1,
    /// a known usage, a key algorithm, an ECC key on P-384 whose coordinates fit 48
    /// bytes or an RSA key of 2048/4096 bits, and no malformed signature slot.
    pub fn check_format(&self) -> Result<(), SevCertError> {
        if self.version != 1 {
            return Err(SevCertError::Version {
                what: "SEV certificate",
                version: self.version,
            });
        }
        let usage = self.usage();
        if usage.name().is_none() || usage == SevUsage::NONE {
            return Err(SevCertError::UnknownUsage(self.pubkey_usage));
        }
        let algo = self.algo();
        if algo.is_ecc() {
            let curve = read_u32(&self.pubkey, 0);
            if curve != SEV_ECC_CURVE_P384 {
                return Err(SevCertError::Curve(curve));
            }
            if self.ecc_pubkey().is_none() {
                return Err(SevCertError::EccValueTooLarge);
            }
        } else if algo.is_rsa() {
            let bits = read_u32(&self.pubkey, 0);
            if bits != 2048 && bits != 4096 {
                return Err(SevCertError::RsaModulusBits(bits));
            }
        } else {
            return Err(SevCertError::KeyAlgo(algo));
        }
        for (i, s) in self.slots().into_iter().enumerate() {
            if s.is_malformed() {
                return Err(SevCertError::MalformedSlot {
                    slot: i as u8 + 1,
                    usage: s.usage(),
                    algo: s.algo(),
                });
            }
        }
        Ok(())
    }
}

/// Decode `n` consecutive SEV certificates from exactly `n × 0x824` bytes, each with
/// its expected usage.
fn decode_certs<const N: usize>(
    what: &'static str,
    bytes: &[u8],
    expect: [(SevUsage, &'static str); N],
) -> Result<[SevCert; N], SevCertError> {
    if bytes.len() != N * SEV_CERT_LEN {
        return Err(SevCertError::Length {
            what,
            expected: N * SEV_CERT_LEN,
            actual: bytes.len(),
        });
    }
    let mut out = [SevCert::new_zeroed_cert(); N];
    for (i, (chunk, (usage, position))) in bytes.chunks_exact(SEV_CERT_LEN).zip(expect).enumerate()
    {
        let c = SevCert::decode(chunk)?;
        if c.usage() != usage {
            return Err(SevCertError::Usage {
                position,
                expected: usage,
                found: c.usage(),
            });
        }
        out[i] = c;
    }
    Ok(out)
}

impl SevCert {
    fn new_zeroed_cert() -> SevCert {
        <SevCert as zerocopy::FromZeros>::new_zeroed()
    }
}

/// A platform's full SEV chain as the sev crate and `sevctl export` store it:
/// PDH ‖ PEK ‖ OCA ‖ CEK, 4 × 0x824 bytes (§2.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SevCertChain {
    /// Platform Diffie-Hellman key, signed by the PEK.
    pub pdh: SevCert,
    /// Platform endorsement key, signed by the OCA and the CEK.
    pub pek: SevCert,
    /// Owner CA (self-signed).
    pub oca: SevCert,
    /// Chip endorsement key (ASK-signed when it comes from AMD's KDS).
    pub cek: SevCert,
}

impl SevCertChain {
    /// Encoded length: 4 × 0x824.
    pub const LEN: usize = 4 * SEV_CERT_LEN;

    /// Decode exactly [`Self::LEN`] bytes, checking each certificate's usage.
    pub fn decode(bytes: &[u8]) -> Result<Self, SevCertError> {
        let [pdh, pek, oca, cek] = decode_certs(
            "SEV chain PDH‖PEK‖OCA‖CEK",
            bytes,
            [
                (SevUsage::PDH, "PDH of PDH‖PEK‖OCA‖CEK"),
                (SevUsage::PEK, "PEK of PDH‖PEK‖OCA‖CEK"),
                (SevUsage::OCA, "OCA of PDH‖PEK‖OCA‖CEK"),
                (SevUsage::CEK, "CEK of PDH‖PEK‖OCA‖CEK"),
            ],
        )?;
        Ok(SevCertChain { pdh, pek, oca, cek })
    }

    /// PDH ‖ PEK ‖ OCA ‖ CEK.
    pub fn encode(&self) -> Vec<u8> {
        [&self.pdh, &self.pek, &self.oca, &self.cek]
            .iter()
            .flat_map(|c| c.as_bytes().iter().copied())
            .collect()
    }
}

/// The platform certificates of PDH_CERT_EXPORT's chain output and SEND_START's
/// `plat_certs`: PEK ‖ OCA ‖ CEK, 0x186C bytes (§1.7, §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SevPlatformCerts {
    /// Platform endorsement key.
    pub pek: SevCert,
    /// Owner CA.
    pub oca: SevCert,
    /// Chip endorsement key.
    pub cek: SevCert,
}

impl SevPlatformCerts {
    /// Encoded length: [`SEV_PDH_CHAIN_LEN`].
    pub const LEN: usize = SEV_PDH_CHAIN_LEN;

    /// Decode exactly [`Self::LEN`] bytes, checking each certificate's usage.
    pub fn decode(bytes: &[u8]) -> Result<Self, SevCertError> {
        let [pek, oca, cek] = decode_certs(
            "platform certs PEK‖OCA‖CEK",
            bytes,
            [
                (SevUsage::PEK, "PEK of PEK‖OCA‖CEK"),
                (SevUsage::OCA, "OCA of PEK‖OCA‖CEK"),
                (SevUsage::CEK, "CEK of PEK‖OCA‖CEK"),
            ],
        )?;
        Ok(SevPlatformCerts { pek, oca, cek })
    }

    /// PEK ‖ OCA ‖ CEK.
    pub fn encode(&self) -> Vec<u8> {
        [&self.pek, &self.oca, &self.cek]
            .iter()
            .flat_map(|c| c.as_bytes().iter().copied())
            .collect()
    }
}

// ---------------------------------------------------------------------------------
// AMD CA certificate.
// ---------------------------------------------------------------------------------

/// An AMD CA certificate (ARK or ASK; §2.2, ASPFW `amd_cert_fixed_t`, AMD SEV API
/// Appendix B.1): a 64-byte fixed part, then the public exponent, the modulus and the
/// signature, little-endian, each `bits / 8` bytes. Held decoded, with the integers
/// big-endian at their full field width (leading zeros kept, so encoding gives back
/// the same bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmdCaCert {
    /// Format version (1).
    pub version: u32,
    /// This key's id.
    pub key_id: [u8; 16],
    /// The signer's `key_id` (the ARK's own for the ARK).
    pub certifying_id: [u8; 16],
    /// ARK (0x00) or ASK (0x13).
    pub key_usage: SevUsage,
    /// Reserved bytes at 0x28 (zero in AMD's certificates; kept as found).
    pub reserved: [u8; 16],
    /// Width of the exponent field in bits (2048 or 4096; §0.2-3).
    pub pubexp_bits: u32,
    /// Modulus size in bits (2048 or 4096).
    pub modulus_bits: u32,
    /// Public exponent, big-endian, `pubexp_bits / 8` bytes.
    pub pubexp_be: Vec<u8>,
    /// Modulus, big-endian, `modulus_bits / 8` bytes.
    pub modulus_be: Vec<u8>,
    /// RSA-PSS signature, big-endian, `modulus_bits / 8` bytes.
    pub signature_be: Vec<u8>,
}

fn rsa_bits_ok(bits: u32) -> bool {
    bits == 2048 || bits == 4096
}

/// Write `be` little-endian into a field of `width` bytes: right-aligned, zero-extended;
/// if `be` is longer, its low-order `width` bytes.
fn put_le(out: &mut Vec<u8>, be: &[u8], width: usize) {
    let mut field = vec![0u8; width];
    for (d, s) in field.iter_mut().zip(be.iter().rev()) {
        *d = *s;
    }
    out.extend_from_slice(&field);
}

impl AmdCaCert {
    /// Decode one certificate from the start of `bytes`; returns it and the number of
    /// bytes it took (trailing bytes are left for the caller, e.g. ASK ‖ ARK). Checks
    /// version 1 and both size fields ∈ {2048, 4096} (§2.2).
    pub fn decode(bytes: &[u8]) -> Result<(AmdCaCert, usize), SevCertError> {
        const WHAT: &str = "AMD CA certificate";
        if bytes.len() < AMD_CERT_FIXED_LEN {
            return Err(SevCertError::Truncated {
                what: WHAT,
                needed: AMD_CERT_FIXED_LEN,
                actual: bytes.len(),
            });
        }
        let version = read_u32(bytes, 0x00);
        if version != 1 {
            return Err(SevCertError::Version {
                what: WHAT,
                version,
            });
        }
        let pubexp_bits = read_u32(bytes, 0x38);
        if !rsa_bits_ok(pubexp_bits) {
            return Err(SevCertError::PubexpBits(pubexp_bits));
        }
        let modulus_bits = read_u32(bytes, 0x3C);
        if !rsa_bits_ok(modulus_bits) {
            return Err(SevCertError::ModulusBits(modulus_bits));
        }
        let (pe, m) = (pubexp_bits as usize / 8, modulus_bits as usize / 8);
        let total = AMD_CERT_FIXED_LEN + pe + 2 * m;
        if bytes.len() < total {
            return Err(SevCertError::Truncated {
                what: WHAT,
                needed: total,
                actual: bytes.len(),
            });
        }
        let mut key_id = [0u8; 16];
        key_id.copy_from_slice(&bytes[0x04..0x14]);
        let mut certifying_id = [0u8; 16];
        certifying_id.copy_from_slice(&bytes[0x14..0x24]);
        let mut reserved = [0u8; 16];
        reserved.copy_from_slice(&bytes[0x28..0x38]);
        let e = AMD_CERT_FIXED_LEN;
        let n = e + pe;
        let s = n + m;
        Ok((
            AmdCaCert {
                version,
                key_id,
                certifying_id,
                key_usage: SevUsage(read_u32(bytes, 0x24)),
                reserved,
                pubexp_bits,
                modulus_bits,
                pubexp_be: le_to_be(&bytes[e..n]),
                modulus_be: le_to_be(&bytes[n..s]),
                signature_be: le_to_be(&bytes[s..total]),
            },
            total,
        ))
    }

    /// Decode exactly one certificate (no trailing bytes) and require `usage`.
    pub fn decode_exact(
        bytes: &[u8],
        usage: SevUsage,
        position: &'static str,
    ) -> Result<AmdCaCert, SevCertError> {
        let (c, used) = AmdCaCert::decode(bytes)?;
        if used != bytes.len() {
            return Err(SevCertError::Length {
                what: position,
                expected: used,
                actual: bytes.len(),
            });
        }
        if c.key_usage != usage {
            return Err(SevCertError::Usage {
                position,
                expected: usage,
                found: c.key_usage,
            });
        }
        Ok(c)
    }

    /// Decode an `amd_certs` blob / sevctl `--ca` file: ASK ‖ ARK, nothing after,
    /// usages checked. Returns `(ask, ark)`.
    pub fn decode_ask_ark(bytes: &[u8]) -> Result<(AmdCaCert, AmdCaCert), SevCertError> {
        let (ask, used) = AmdCaCert::decode(bytes)?;
        if ask.key_usage != SevUsage::ASK {
            return Err(SevCertError::Usage {
                position: "ASK of ASK‖ARK",
                expected: SevUsage::ASK,
                found: ask.key_usage,
            });
        }
        let ark = AmdCaCert::decode_exact(&bytes[used..], SevUsage::ARK, "ARK of ASK‖ARK")?;
        Ok((ask, ark))
    }

    /// Bytes of the encoding: 64 + pubexp_bits/8 + 2 × modulus_bits/8.
    pub fn encoded_len(&self) -> usize {
        AMD_CERT_FIXED_LEN + self.pubexp_bits as usize / 8 + 2 * (self.modulus_bits as usize / 8)
    }

    /// The signed bytes: fixed part ‖ pubexp ‖ modulus, little-endian as on the wire.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.key_id);
        out.extend_from_slice(&self.certifying_id);
        out.extend_from_slice(&self.key_usage.0.to_le_bytes());
        out.extend_from_slice(&self.reserved);
        out.extend_from_slice(&self.pubexp_bits.to_le_bytes());
        out.extend_from_slice(&self.modulus_bits.to_le_bytes());
        put_le(&mut out, &self.pubexp_be, self.pubexp_bits as usize / 8);
        put_le(&mut out, &self.modulus_be, self.modulus_bits as usize / 8);
        out
    }

    /// The wire bytes: [`signed_bytes`](Self::signed_bytes) ‖ signature (LE). Integers
    /// shorter than their field are zero-extended; see [`check`](Self::check) for
    /// the consistency a well-formed certificate has.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.signed_bytes();
        put_le(&mut out, &self.signature_be, self.modulus_bits as usize / 8);
        out
    }

    /// Field consistency: version 1, both sizes ∈ {2048, 4096}, and each integer no
    /// longer than its field (ignoring leading zeros).
    pub fn check(&self) -> Result<(), SevCertError> {
        if self.version != 1 {
            return Err(SevCertError::Version {
                what: "AMD CA certificate",
                version: self.version,
            });
        }
        if !rsa_bits_ok(self.pubexp_bits) {
            return Err(SevCertError::PubexpBits(self.pubexp_bits));
        }
        if !rsa_bits_ok(self.modulus_bits) {
            return Err(SevCertError::ModulusBits(self.modulus_bits));
        }
        let fits = |v: &[u8], width: usize| {
            let sig = v.iter().position(|&b| b != 0).map_or(0, |i| v.len() - i);
            if sig > width {
                Err(SevCertError::Length {
                    what: "AMD CA certificate integer",
                    expected: width,
                    actual: sig,
                })
            } else {
                Ok(())
            }
        };
        let m = self.modulus_bits as usize / 8;
        fits(&self.pubexp_be, self.pubexp_bits as usize / 8)?;
        fits(&self.modulus_be, m)?;
        fits(&self.signature_be, m)
    }
}

/// Whether `amd_certs_len` (ASK ‖ ARK) is one of the lengths the firmware accepts
/// (`amd_cert_chain_length_is_valid`, §2.2): 0x680 (2K + 2K), 0xC80 (4K + 4K), 2688
/// (2K ASK + 4K ARK) and 2176 (4K ASK + 2K ARK) — the mixed values come from ASPFW's
/// formula, not from the certificates' real sizes.
pub fn amd_certs_len_is_valid(len: usize) -> bool {
    matches!(len, 0x680 | 0xC80 | 2688 | 2176)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_rules() {
        let e = SevSigSlot::empty();
        assert!(e.is_empty() && !e.is_malformed());
        let mut m = e;
        m.algo = SevAlgo::ECDSA_SHA256.0;
        assert!(m.is_malformed() && !m.is_empty());
        let r: [u8; 48] = core::array::from_fn(|i| i as u8);
        let s: [u8; 48] = core::array::from_fn(|i| 100 + i as u8);
        let slot = SevSigSlot::ecdsa(SevUsage::PEK, SevAlgo::ECDSA_SHA256, &r, &s);
        assert_eq!(slot.sig[0], 47);
        assert_eq!(slot.sig[72], 147);
        assert_eq!(slot.ecdsa_rs(), (r, s));
        assert_eq!(slot.ecdsa_rs_strict(), Some((r, s)));
    }

    #[test]
    fn mixed_ca_lengths() {
        assert!(amd_certs_len_is_valid(0x680));
        assert!(amd_certs_len_is_valid(3200));
        assert!(!amd_certs_len_is_valid(832 + 1600));
    }
}
