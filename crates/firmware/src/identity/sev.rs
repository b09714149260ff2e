//! The legacy SEV platform identity (shared/spec/sev-legacy.md §1.4, §1.7, §2, §2.5):
//! the chip endorsement key (CEK, from the chip-unique key), the owner's certificate
//! authority (OCA), the platform endorsement key (PEK) and the platform Diffie-Hellman
//! key (PDH) with their SEV certificates, the AMD-format ARK and ASK over the product's
//! simulated RSA roots, and the firmware's certificate rules.
//!
//! * `SevIdentity` (crate-private): OCA, PEK and PDH as the firmware keeps them in its persistent
//!   store (§1.4 steps 2–4, §1.7); its `to_store` / `from_store`
//!   are the store's plaintext, [`seal_nv`] / [`open_nv`] the INIT_EX NV-buffer form.
//! * [`SevSigner`], [`sev_cert_validate`], [`sev_cert_sanity_check`]: ASPFW
//!   `sev_cert.c` (§2.3), statuses as the firmware returns them.
//! * [`LegacyCa`]: AMD-format ASK and ARK (§2.2) for a product, the CEK signed by the
//!   ASK (§2.6 step 3), and [`validate_amd_certs`] with the pinned ARK (§2.2).

use super::IdentityError;
use super::amd::AmdRoot;
use crate::state::FwVersion;
use softsev_abi::FwStatus;
use softsev_abi::sev_cert::{
    AmdCaCert, SEV_ECC_CURVE_P384, SevAlgo, SevCert, SevSigSlot, SevUsage, amd_certs_len_is_valid,
};
use softsev_crypto::aead::{Aes256Gcm, NONCE_LEN, TAG_LEN};
use softsev_crypto::ecdsa::{P384PublicKey, P384Signature, P384SigningKey};
use softsev_crypto::hash::sha384;
use softsev_crypto::rng::Rng;
use softsev_crypto::rsa::{RsaPssHash, verify_pss};
use softsev_crypto::sev::EcdhP384;
use zerocopy::{FromBytes, FromZeros, IntoBytes};
use zeroize::Zeroizing;

/// Size of one SEV certificate (§2.1).
pub const CERT_LEN: usize = 0x824;

/// The usage a certificate's public key carries.
fn key_usage(c: &SevCert) -> SevUsage {
    SevUsage(c.pubkey_usage)
}

/// The algorithm a certificate's public key carries.
fn key_algo(c: &SevCert) -> SevAlgo {
    SevAlgo(c.pubkey_algo)
}

/// A usage the firmware knows (`sev_cert_usage_is_valid`).
fn known_usage(u: SevUsage) -> bool {
    matches!(
        u,
        SevUsage::ARK
            | SevUsage::ASK
            | SevUsage::OCA
            | SevUsage::PEK
            | SevUsage::PDH
            | SevUsage::CEK
    )
}

/// A public key as the firmware's certificate code holds it.
#[derive(Clone, Debug)]
pub enum SevPublicKey {
    /// A P-384 point (validated on the curve).
    Ecc(P384PublicKey),
    /// An RSA key, big-endian modulus and exponent.
    Rsa {
        /// Modulus, big-endian.
        modulus_be: Vec<u8>,
        /// Public exponent, big-endian.
        exponent_be: Vec<u8>,
    },
}

/// A signer as `sev_cert_validate` sees it: the signer's public key with the usage and
/// algorithm it carries (a signature slot counts only if it names exactly these).
#[derive(Clone, Debug)]
pub struct SevSigner {
    /// The signer's key usage.
    pub usage: SevUsage,
    /// The signer's key algorithm.
    pub algo: SevAlgo,
    /// The key.
    pub key: SevPublicKey,
}

/// The public key of `cert` if it is valid for its algorithm (§2.3 steps 1 and 3,
/// §0.2-1: ECC keys must be curve 2 = P-384 and on the curve; RSA keys 2048 or 4096
/// bits). Anything else is INVALID_CERTIFICATE.
pub fn cert_public_key(cert: &SevCert) -> Result<SevPublicKey, FwStatus> {
    match key_algo(cert) {
        SevAlgo::ECDSA_SHA256
        | SevAlgo::ECDSA_SHA384
        | SevAlgo::ECDH_SHA256
        | SevAlgo::ECDH_SHA384 => {
            let p = cert.ecc_pubkey().ok_or(FwStatus::INVALID_CERTIFICATE)?;
            if p.curve != SEV_ECC_CURVE_P384 {
                return Err(FwStatus::INVALID_CERTIFICATE);
            }
            let k =
                P384PublicKey::from_xy(&p.x, &p.y).map_err(|_| FwStatus::INVALID_CERTIFICATE)?;
            Ok(SevPublicKey::Ecc(k))
        }
        SevAlgo::RSA_SHA256 | SevAlgo::RSA_SHA384 => {
            // §2.1: u32 modulus_bits; pub_exp[512] LE; modulus[512] LE.
            let k = cert.rsa_pubkey().ok_or(FwStatus::INVALID_CERTIFICATE)?;
            if k.modulus_bits != 2048 && k.modulus_bits != 4096 {
                return Err(FwStatus::INVALID_CERTIFICATE);
            }
            Ok(SevPublicKey::Rsa {
                exponent_be: k.pubexp_be,
                modulus_be: k.modulus_be,
            })
        }
        _ => Err(FwStatus::INVALID_CERTIFICATE),
    }
}

impl SevSigner {
    /// The signer whose key is `cert`'s public key (§2.3 step 1: a key of unknown usage
    /// or an invalid key is INVALID_CERTIFICATE).
    pub fn from_cert(cert: &SevCert) -> Result<SevSigner, FwStatus> {
        if !known_usage(key_usage(cert)) {
            return Err(FwStatus::INVALID_CERTIFICATE);
        }
        Ok(SevSigner {
            usage: key_usage(cert),
            algo: key_algo(cert),
            key: cert_public_key(cert)?,
        })
    }

    /// An AMD CA key exported for SEV certificate checks: its usage (ASK 0x13, ARK 0)
    /// with algorithm RSA_SHA384 (`amd_cert_export_pubkey`, §2.2).
    pub fn from_amd(ca: &AmdCaCert) -> SevSigner {
        SevSigner {
            usage: ca.key_usage,
            algo: SevAlgo::RSA_SHA384,
            key: SevPublicKey::Rsa {
                modulus_be: ca.modulus_be.clone(),
                exponent_be: ca.pubexp_be.clone(),
            },
        }
    }

    /// The signer of a P-384 key that signs with ECDSA_SHA256 (OCA, PEK, CEK).
    pub fn ecdsa(usage: SevUsage, key: &P384PublicKey) -> SevSigner {
        SevSigner {
            usage,
            algo: SevAlgo::ECDSA_SHA256,
            key: SevPublicKey::Ecc(*key),
        }
    }

    /// Whether `slot` holds this signer's valid signature over `body`.
    fn verifies(&self, body: &[u8], slot: &SevSigSlot) -> bool {
        match (&self.key, self.algo) {
            (SevPublicKey::Ecc(k), SevAlgo::ECDSA_SHA256 | SevAlgo::ECDSA_SHA384) => {
                // A high byte set in a 72-byte field is a value ≥ 2^384: not a signature.
                let Some((r, s)) = slot.ecdsa_rs_strict() else {
                    return false;
                };
                let sig = P384Signature { r, s };
                if self.algo == SevAlgo::ECDSA_SHA256 {
                    k.verify_sha256(body, &sig).is_ok()
                } else {
                    k.verify_sha384(body, &sig).is_ok()
                }
            }
            (
                SevPublicKey::Rsa {
                    modulus_be,
                    exponent_be,
                },
                SevAlgo::RSA_SHA256 | SevAlgo::RSA_SHA384,
            ) => {
                let hash = if self.algo == SevAlgo::RSA_SHA256 {
                    RsaPssHash::Sha256
                } else {
                    RsaPssHash::Sha384
                };
                let Ok(sig) = slot.rsa_sig_be(modulus_be.len()) else {
                    return false;
                };
                verify_pss(modulus_be, exponent_be, hash, body, &sig).is_ok()
            }
            // A key that cannot sign (ECDH) verifies nothing.
            _ => false,
        }
    }
}

/// Whether a certificate of usage `child` may be signed by a key of usage `signer`
/// (§2.3 step 4: PDH←PEK, PEK←OCA or CEK, OCA←OCA, CEK←ASK).
fn signer_fits(child: SevUsage, signer: SevUsage) -> bool {
    matches!(
        (child, signer),
        (SevUsage::PDH, SevUsage::PEK)
            | (SevUsage::PEK, SevUsage::OCA)
            | (SevUsage::PEK, SevUsage::CEK)
            | (SevUsage::OCA, SevUsage::OCA)
            | (SevUsage::CEK, SevUsage::ASK)
    )
}

/// The body checks of §2.3 step 3: version 1 and a valid own public key.
fn check_body(cert: &SevCert) -> Result<(), FwStatus> {
    if cert.version != 1 || !known_usage(key_usage(cert)) {
        return Err(FwStatus::INVALID_CERTIFICATE);
    }
    cert_public_key(cert).map(|_| ())
}

/// ASPFW `sev_cert_validate(cert, signer)` (§2.3), in its order:
/// 1. the signer is valid (guaranteed by [`SevSigner`]'s constructors);
/// 2. sig1 then sig2: a malformed slot (exactly one of algo 0 / usage NONE, §0.2-2) is
///    BAD_SIGNATURE at once; a slot naming another (usage, algo) than the signer's is
///    skipped; a matching slot is verified and its result becomes the status (the last
///    matching slot decides); no matching slot is INVALID_CERTIFICATE;
/// 3. version ≠ 1 or an invalid own key: INVALID_CERTIFICATE;
/// 4. the signer's usage must fit the certificate's: INVALID_CERTIFICATE.
pub fn sev_cert_validate(cert: &SevCert, signer: &SevSigner) -> Result<(), FwStatus> {
    let body = cert.body();
    let mut status = None;
    for slot in [&cert.sig1, &cert.sig2] {
        if slot.is_malformed() {
            return Err(FwStatus::BAD_SIGNATURE);
        }
        if SevUsage(slot.usage) != signer.usage || SevAlgo(slot.algo) != signer.algo {
            continue;
        }
        status = Some(if signer.verifies(body, slot) {
            FwStatus::SUCCESS
        } else {
            FwStatus::BAD_SIGNATURE
        });
    }
    match status {
        None => return Err(FwStatus::INVALID_CERTIFICATE),
        Some(FwStatus::SUCCESS) => {}
        Some(s) => return Err(s),
    }
    check_body(cert)?;
    if !signer_fits(key_usage(cert), signer.usage) {
        return Err(FwStatus::INVALID_CERTIFICATE);
    }
    Ok(())
}

/// ASPFW `sev_cert_sanity_check(cert, usage, algo)` (§2.3, used for the guest owner's
/// GODH and the PDH given to SEND/RECEIVE): the body checks plus exact usage and
/// algorithm; signatures are not looked at. Violations are INVALID_CERTIFICATE.
pub fn sev_cert_sanity_check(
    cert: &SevCert,
    usage: SevUsage,
    algo: SevAlgo,
) -> Result<(), FwStatus> {
    check_body(cert)?;
    if key_usage(cert) != usage || key_algo(cert) != algo {
        return Err(FwStatus::INVALID_CERTIFICATE);
    }
    Ok(())
}

/// A new ECC certificate of `usage`/`algo` for the P-384 point `public`, carrying the
/// firmware's API version (`sev_cert_init`, §1.4), both signature slots empty.
pub fn ecc_cert(usage: SevUsage, algo: SevAlgo, api: FwVersion, public: &P384PublicKey) -> SevCert {
    let sec1 = public.to_sec1();
    let mut x = [0u8; 48];
    let mut y = [0u8; 48];
    x.copy_from_slice(&sec1[1..49]);
    y.copy_from_slice(&sec1[49..97]);
    SevCert::new_ecc(usage, algo, api.major, api.minor, &x, &y)
}

/// Sign `cert`'s body into slot 1 (`second = false`) or 2 with an ECDSA_SHA256 key of
/// `usage` (`sev_cert_sign`; §2.1: SHA-256 of the 0x414-byte body). The nonce comes
/// from `rng`, so a seeded firmware produces the same certificates.
pub fn sign_ecdsa(
    cert: &mut SevCert,
    second: bool,
    usage: SevUsage,
    key: &P384SigningKey,
    rng: &mut Rng,
) {
    let sig = key.sign_digest_sha256_with_rng(rng, cert.body());
    let slot = SevSigSlot::ecdsa(usage, SevAlgo::ECDSA_SHA256, &sig.r, &sig.s);
    if second {
        cert.sig2 = slot;
    } else {
        cert.sig1 = slot;
    }
}

/// A P-384 private key with its scalar kept for the persistent store.
pub(crate) struct EccKey {
    scalar: Zeroizing<[u8; 48]>,
    key: P384SigningKey,
}

impl EccKey {
    fn generate(rng: &mut Rng) -> EccKey {
        // EcdhP384 draws a valid scalar; the same scalar makes the ECDSA key.
        let scalar = EcdhP384::generate(rng).scalar_be();
        Self::from_scalar(&scalar).unwrap_or_else(|_| EccKey::generate(rng))
    }

    fn from_scalar(scalar: &[u8; 48]) -> Result<EccKey, FwStatus> {
        let key = P384SigningKey::from_scalar(scalar).map_err(|_| FwStatus::SECURE_DATA_INVALID)?;
        Ok(EccKey {
            scalar: Zeroizing::new(*scalar),
            key,
        })
    }
}

/// OCA, PEK and PDH with their certificates: what the firmware's persistent store
/// holds (§1.4, §1.7). The OCA private key is absent once the platform is externally
/// owned (PEK_CERT_IMPORT stores only the owner's OCA certificate).
pub(crate) struct SevIdentity {
    /// The self-owned OCA's private key (`None` when externally owned).
    oca_key: Option<EccKey>,
    /// The OCA certificate (self-signed, or the owner's).
    pub(crate) oca: SevCert,
    pek_key: EccKey,
    /// The PEK certificate: sig1 by the OCA, sig2 by the CEK.
    pub(crate) pek: SevCert,
    pdh_key: EcdhP384,
    /// The PDH certificate: sig1 by the PEK.
    pub(crate) pdh: SevCert,
    /// Whether PEK_CERT_IMPORT made the platform externally owned.
    pub(crate) owned: bool,
}

/// Magic of the store plaintext (softsev's layout; ASPFW's is not public).
const STORE_MAGIC: &[u8; 8] = b"SSEVID01";
/// Length of the store plaintext.
pub(crate) const STORE_LEN: usize = 8 + 1 + 3 * 48 + 3 * CERT_LEN;

impl SevIdentity {
    /// A new self-owned identity: OCA (self-signed), PEK (sig1 OCA, sig2 CEK), PDH
    /// (sig1 PEK) — §1.4 steps 2–4, PEK_GEN (§1.7).
    pub(crate) fn generate(rng: &mut Rng, cek: &P384SigningKey, api: FwVersion) -> SevIdentity {
        let oca_key = EccKey::generate(rng);
        let mut oca = ecc_cert(
            SevUsage::OCA,
            SevAlgo::ECDSA_SHA256,
            api,
            oca_key.key.public(),
        );
        sign_ecdsa(&mut oca, false, SevUsage::OCA, &oca_key.key, rng);
        let pek_key = EccKey::generate(rng);
        let mut pek = ecc_cert(
            SevUsage::PEK,
            SevAlgo::ECDSA_SHA256,
            api,
            pek_key.key.public(),
        );
        sign_ecdsa(&mut pek, false, SevUsage::OCA, &oca_key.key, rng);
        sign_ecdsa(&mut pek, true, SevUsage::CEK, cek, rng);
        let mut id = SevIdentity {
            oca_key: Some(oca_key),
            oca,
            pek_key,
            pek,
            pdh_key: EcdhP384::generate(rng),
            pdh: SevCert::new_zeroed(),
            owned: false,
        };
        id.regenerate_pdh(rng, api);
        id
    }

    /// A new PDH signed by the PEK (PDH_GEN, and after PEK_CERT_IMPORT).
    pub(crate) fn regenerate_pdh(&mut self, rng: &mut Rng, api: FwVersion) {
        let pdh_key = EcdhP384::generate(rng);
        let (x, y) = pdh_key.public_xy_be();
        let mut pdh = SevCert::new_ecc(
            SevUsage::PDH,
            SevAlgo::ECDH_SHA256,
            api.major,
            api.minor,
            &x,
            &y,
        );
        sign_ecdsa(&mut pdh, false, SevUsage::PEK, &self.pek_key.key, rng);
        self.pdh_key = pdh_key;
        self.pdh = pdh;
    }

    /// Replace the PEK and OCA certificates by the owner's (PEK_CERT_IMPORT, §1.7): the
    /// PEK key stays (the imported body equals the current one), the OCA key is gone.
    pub(crate) fn import_owner(&mut self, pek: SevCert, oca: SevCert) {
        self.pek = pek;
        self.oca = oca;
        self.oca_key = None;
        self.owned = true;
    }

    /// The PEK signing key (ATTESTATION reports).
    pub(crate) fn pek_key(&self) -> &P384SigningKey {
        &self.pek_key.key
    }

    /// The PDH private key (the firmware's side of the session ECDH).
    pub(crate) fn pdh_key(&self) -> &EcdhP384 {
        &self.pdh_key
    }

    /// Replace the PDH key by `scalar` and re-issue the PDH certificate (test hook for
    /// the spec vectors, [`crate::Firmware::sev_set_pdh_scalar_for_test`]).
    pub(crate) fn set_pdh_scalar(
        &mut self,
        scalar: &[u8; 48],
        rng: &mut Rng,
        api: FwVersion,
    ) -> Result<(), FwStatus> {
        let k = EcdhP384::from_scalar_be(scalar).map_err(|_| FwStatus::INVALID_PARAM)?;
        let (x, y) = k.public_xy_be();
        let mut pdh = SevCert::new_ecc(
            SevUsage::PDH,
            SevAlgo::ECDH_SHA256,
            api.major,
            api.minor,
            &x,
            &y,
        );
        sign_ecdsa(&mut pdh, false, SevUsage::PEK, &self.pek_key.key, rng);
        self.pdh_key = k;
        self.pdh = pdh;
        Ok(())
    }

    /// The store plaintext: magic, flags (bit 0 owned, bit 1 OCA key present), the
    /// OCA/PEK/PDH scalars (big-endian; OCA zero when absent), the three certificates.
    pub(crate) fn to_store(&self) -> Zeroizing<Vec<u8>> {
        let mut v = Zeroizing::new(Vec::with_capacity(STORE_LEN));
        v.extend_from_slice(STORE_MAGIC);
        v.push(u8::from(self.owned) | (u8::from(self.oca_key.is_some()) << 1));
        match &self.oca_key {
            Some(k) => v.extend_from_slice(&k.scalar[..]),
            None => v.extend_from_slice(&[0; 48]),
        }
        v.extend_from_slice(&self.pek_key.scalar[..]);
        v.extend_from_slice(&self.pdh_key.scalar_be()[..]);
        for c in [&self.oca, &self.pek, &self.pdh] {
            v.extend_from_slice(c.as_bytes());
        }
        v
    }

    /// Parse the store plaintext; anything inconsistent (layout, a key that does not
    /// match its certificate) is SECURE_DATA_INVALID.
    pub(crate) fn from_store(b: &[u8]) -> Result<SevIdentity, FwStatus> {
        let bad = FwStatus::SECURE_DATA_INVALID;
        if b.len() != STORE_LEN || &b[..8] != STORE_MAGIC || b[8] & !3 != 0 {
            return Err(bad);
        }
        let scalar = |i: usize| -> Zeroizing<[u8; 48]> {
            let mut s = Zeroizing::new([0u8; 48]);
            s.copy_from_slice(&b[9 + 48 * i..9 + 48 * (i + 1)]);
            s
        };
        let cert = |i: usize| -> Result<SevCert, FwStatus> {
            let off = 9 + 3 * 48 + CERT_LEN * i;
            SevCert::read_from_bytes(&b[off..off + CERT_LEN]).map_err(|_| bad)
        };
        let oca_key = if b[8] & 2 != 0 {
            Some(EccKey::from_scalar(&scalar(0))?)
        } else {
            None
        };
        let pek_key = EccKey::from_scalar(&scalar(1))?;
        let pdh_key = EcdhP384::from_scalar_be(&scalar(2)).map_err(|_| bad)?;
        let (oca, pek, pdh) = (cert(0)?, cert(1)?, cert(2)?);
        let same = |c: &SevCert, k: &P384PublicKey| matches!(cert_public_key(c), Ok(SevPublicKey::Ecc(p)) if p == *k);
        let pdh_pub = {
            let (x, y) = pdh_key.public_xy_be();
            P384PublicKey::from_xy(&x, &y).map_err(|_| bad)?
        };
        if !same(&pek, pek_key.key.public())
            || !same(&pdh, &pdh_pub)
            || oca_key
                .as_ref()
                .is_some_and(|k| !same(&oca, k.key.public()))
        {
            return Err(bad);
        }
        Ok(SevIdentity {
            oca_key,
            oca,
            pek_key,
            pek,
            pdh_key,
            pdh,
            owned: b[8] & 1 != 0,
        })
    }
}

/// Magic of a sealed INIT_EX NV buffer (softsev's layout).
const NV_MAGIC: &[u8; 8] = b"SSEVNV01";

/// Whether an NV buffer holds no store (never written, or erased: all 0x00 or 0xFF).
pub fn nv_is_empty(nv: &[u8]) -> bool {
    nv.iter().all(|&b| b == 0) || nv.iter().all(|&b| b == 0xFF)
}

/// Seal the store plaintext into an NV buffer of `nv_len` bytes: magic, LE32 length,
/// a 12-byte nonce, the AES-256-GCM ciphertext under `key` (the chip's NV key) and the
/// tag; the rest 0xFF. The magic and length are authenticated.
pub fn seal_nv(
    key: &[u8; 32],
    rng: &mut Rng,
    plain: &[u8],
    nv_len: usize,
) -> Result<Vec<u8>, IdentityError> {
    let mut out = vec![0xFFu8; nv_len];
    let need = 8 + 4 + NONCE_LEN + plain.len() + TAG_LEN;
    if need > nv_len {
        return Err(IdentityError::Malformed(
            "SEV store does not fit the NV buffer",
        ));
    }
    let len = u32::try_from(plain.len()).map_err(|_| IdentityError::Malformed("store length"))?;
    let nonce = rng.array::<NONCE_LEN>();
    let mut ct = Zeroizing::new(plain.to_vec());
    let mut aad = NV_MAGIC.to_vec();
    aad.extend_from_slice(&len.to_le_bytes());
    let tag = Aes256Gcm::new(key).seal(&nonce, &aad, &mut ct)?;
    let mut w = 0;
    for part in [&aad[..], &nonce[..], &ct[..], &tag[..]] {
        out[w..w + part.len()].copy_from_slice(part);
        w += part.len();
    }
    Ok(out)
}

/// Open a sealed NV buffer: `Ok(None)` when empty, the plaintext when authentic,
/// SECURE_DATA_INVALID otherwise (§1.4: an integrity failure of the persistent state).
pub fn open_nv(key: &[u8; 32], nv: &[u8]) -> Result<Option<Zeroizing<Vec<u8>>>, FwStatus> {
    if nv_is_empty(nv) {
        return Ok(None);
    }
    let bad = FwStatus::SECURE_DATA_INVALID;
    if nv.len() < 8 + 4 + NONCE_LEN + TAG_LEN || &nv[..8] != NV_MAGIC {
        return Err(bad);
    }
    let len = u32::from_le_bytes([nv[8], nv[9], nv[10], nv[11]]) as usize;
    let body = 8 + 4 + NONCE_LEN;
    if len > nv.len() - body - TAG_LEN {
        return Err(bad);
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&nv[12..body]);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&nv[body + len..body + len + TAG_LEN]);
    let mut plain = Zeroizing::new(nv[body..body + len].to_vec());
    Aes256Gcm::new(key)
        .open(&nonce, &nv[..12], &mut plain, &tag)
        .map_err(|_| bad)?;
    Ok(Some(plain))
}

/// The AMD-format legacy CA of a product (§2.2): ASK and ARK over the same simulated
/// RSA-4096 keys as the SNP X.509 chain ([`AmdRoot`]), RSA-PSS-SHA384 signatures.
#[derive(Clone, Debug)]
pub struct LegacyCa {
    /// The ARK (self-signed).
    pub ark: AmdCaCert,
    /// The ASK (signed by the ARK).
    pub ask: AmdCaCert,
}

/// The 16-byte key id softsev gives an AMD CA key: SHA-384 of a label, the product
/// and the modulus, truncated (AMD's ids are opaque numbers; §2.2 needs only that
/// ARK and ASK differ and that `certifying_id` names the signer).
fn key_id(label: &str, product: softsev_abi::Product, modulus_be: &[u8]) -> [u8; 16] {
    let mut m = format!("softsev sev {label} key id {}", product.name()).into_bytes();
    m.extend_from_slice(modulus_be);
    let d = sha384(&m);
    let mut id = [0u8; 16];
    id.copy_from_slice(&d[..16]);
    id
}

impl LegacyCa {
    /// Build the ARK and ASK of `root`'s product (signatures from a seeded RNG, so
    /// every process makes the same bytes).
    pub fn build(root: &AmdRoot) -> Result<LegacyCa, IdentityError> {
        let product = root.product();
        let (ark_key, ask_key) = root.rsa_keys();
        let mut rng = Rng::seeded(
            product.name().as_bytes(),
            "softsev sev legacy CA signatures",
        );
        let ark_n = ark_key.public_modulus_be();
        let ask_n = ask_key.public_modulus_be();
        let ark_id = key_id("ark", product, &ark_n);
        let ask_id = key_id("ask", product, &ask_n);
        let mut ark = AmdCaCert {
            version: 1,
            key_id: ark_id,
            certifying_id: ark_id,
            key_usage: SevUsage::ARK,
            reserved: [0; 16],
            pubexp_bits: 4096,
            modulus_bits: 4096,
            pubexp_be: ark_key.public_exponent_be(),
            modulus_be: ark_n,
            signature_be: Vec::new(),
        };
        ark.signature_be =
            ark_key.sign_pss_with_rng(&mut rng, RsaPssHash::Sha384, &ark.signed_bytes())?;
        let mut ask = AmdCaCert {
            version: 1,
            key_id: ask_id,
            certifying_id: ark_id,
            key_usage: SevUsage::ASK,
            reserved: [0; 16],
            pubexp_bits: 4096,
            modulus_bits: 4096,
            pubexp_be: ask_key.public_exponent_be(),
            modulus_be: ask_n,
            signature_be: Vec::new(),
        };
        ask.signature_be =
            ark_key.sign_pss_with_rng(&mut rng, RsaPssHash::Sha384, &ask.signed_bytes())?;
        Ok(LegacyCa { ark, ask })
    }

    /// The pinned-root facts the firmware has fused (§2.2): the ARK's key id and
    /// SHA-384(fixed ‖ pubexp ‖ modulus).
    pub fn pinned(&self) -> PinnedArk {
        PinnedArk {
            key_id: self.ark.key_id,
            hash: sha384(&self.ark.signed_bytes()),
        }
    }

    /// The CEK certificate for `cek` signed by this ASK with (0x13, RSA_SHA384) in sig1,
    /// as AMD's KDS serves it (§2.6 step 3), carrying `api`.
    pub fn sign_cek(
        &self,
        root: &AmdRoot,
        cek: &P384PublicKey,
        api: FwVersion,
    ) -> Result<SevCert, IdentityError> {
        let (_, ask_key) = root.rsa_keys();
        let mut cert = ecc_cert(SevUsage::CEK, SevAlgo::ECDSA_SHA256, api, cek);
        let mut rng = Rng::seeded(cek.to_sec1().as_slice(), "softsev sev KDS CEK signature");
        let sig = ask_key.sign_pss_with_rng(&mut rng, RsaPssHash::Sha384, cert.body())?;
        cert.sig1 = SevSigSlot::rsa(SevUsage::ASK, SevAlgo::RSA_SHA384, &sig).map_err(|_| {
            IdentityError::Malformed("ASK signature longer than a SEV signature slot")
        })?;
        Ok(cert)
    }
}

/// The ARK a firmware trusts (§2.2 "ARK pinned").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinnedArk {
    /// The root key id.
    pub key_id: [u8; 16],
    /// SHA-384 of the ARK's fixed part, exponent and modulus.
    pub hash: [u8; 48],
}

/// Verify an AMD CA certificate's RSA-PSS-SHA384 signature with `signer`'s key.
fn amd_sig_ok(cert: &AmdCaCert, signer: &AmdCaCert) -> bool {
    verify_pss(
        &signer.modulus_be,
        &signer.pubexp_be,
        RsaPssHash::Sha384,
        &cert.signed_bytes(),
        &cert.signature_be,
    )
    .is_ok()
}

/// The common AMD CA rules (§2.2, `amd_cert_validate`): version 1, both size fields
/// 2048 or 4096, the expected usage, `certifying_id` = the signer's key id, and the
/// signature (SHA-384). Violations are INVALID_CERTIFICATE.
fn amd_cert_validate(
    cert: &AmdCaCert,
    signer: &AmdCaCert,
    usage: SevUsage,
) -> Result<(), FwStatus> {
    let sizes = [2048, 4096];
    if cert.version != 1
        || !sizes.contains(&cert.pubexp_bits)
        || !sizes.contains(&cert.modulus_bits)
        || cert.key_usage != usage
        || cert.certifying_id != signer.key_id
        || !amd_sig_ok(cert, signer)
    {
        return Err(FwStatus::INVALID_CERTIFICATE);
    }
    Ok(())
}

/// `amd_cert_validate_ark`: the AMD rules, self-signed, and pinned — key id and
/// SHA-384 hash equal to the fused root's (§2.2). INVALID_CERTIFICATE otherwise.
pub fn validate_ark(ark: &AmdCaCert, pinned: &PinnedArk) -> Result<(), FwStatus> {
    amd_cert_validate(ark, ark, SevUsage::ARK)?;
    if ark.key_id != pinned.key_id || sha384(&ark.signed_bytes()) != pinned.hash {
        return Err(FwStatus::INVALID_CERTIFICATE);
    }
    Ok(())
}

/// `amd_cert_validate_ask`: the AMD rules with the ARK as signer.
pub fn validate_ask(ask: &AmdCaCert, ark: &AmdCaCert) -> Result<(), FwStatus> {
    amd_cert_validate(ask, ark, SevUsage::ASK)
}

/// The firmware's check of an `amd_certs` blob ASK ‖ ARK (SEND_START with policy SEV,
/// §5.1, §2.2): the length must be one of the accepted values (INVALID_LENGTH), the ARK
/// must validate and be the pinned root, the ASK must be signed by it
/// (INVALID_CERTIFICATE). Returns the ASK as a signer for CEK←ASK.
pub fn validate_amd_certs(blob: &[u8], pinned: &PinnedArk) -> Result<SevSigner, FwStatus> {
    if !amd_certs_len_is_valid(blob.len()) {
        return Err(FwStatus::INVALID_LENGTH);
    }
    let (ask, used) = AmdCaCert::decode(blob).map_err(|_| FwStatus::INVALID_CERTIFICATE)?;
    let (ark, _) = AmdCaCert::decode(blob.get(used..).unwrap_or(&[]))
        .map_err(|_| FwStatus::INVALID_CERTIFICATE)?;
    validate_ark(&ark, pinned)?;
    validate_ask(&ask, &ark)?;
    Ok(SevSigner::from_amd(&ask))
}
