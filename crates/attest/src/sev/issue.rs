//! Making SEV certificates (sev-legacy.md §2.1, §2.5, §2.6): ECDSA and RSA-PSS slot
//! signatures over a certificate's 0x414-byte body, an OCA as `sevctl generate` makes
//! it (API 0.0, self-signed in slot 1), AMD-format CA certificates, and
//! [`TestPlatform`], a complete platform identity (ARK → ASK → CEK → PEK ← OCA, PDH) from
//! a seeded RNG whose chain `sevctl verify --sev … --ca …` accepts (§2.6). Custom CAs
//! here are never AMD's: their key ids are random.

use super::SevError;
use super::ca::{CaSource, SevCa};
use softsev_abi::sev_buf::{SEV_REPORT_LEN, SevAttestationReport};
use softsev_abi::sev_cert::{AmdCaCert, SevAlgo, SevCert, SevSigSlot, SevUsage};
use softsev_crypto::ecdsa::P384SigningKey;
use softsev_crypto::rng::Rng;
use softsev_crypto::rsa::RsaPssHash;
use softsev_crypto::rsa_sign::RsaPrivateKey;
use softsev_crypto::sev::EcdhP384;

/// Which signature slot of a SEV certificate.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Slot {
    /// `sig1` at 0x414.
    One,
    /// `sig2` at 0x61C.
    Two,
}

fn slot_mut(cert: &mut SevCert, which: Slot) -> &mut SevSigSlot {
    match which {
        Slot::One => &mut cert.sig1,
        Slot::Two => &mut cert.sig2,
    }
}

/// A SEV certificate for the P-384 key of `key` (both slots empty).
pub fn ecc_cert(
    usage: SevUsage,
    algo: SevAlgo,
    api: (u8, u8),
    xy: &([u8; 48], [u8; 48]),
) -> SevCert {
    SevCert::new_ecc(usage, algo, api.0, api.1, &xy.0, &xy.1)
}

/// The public (X, Y) of an ECDSA key, big-endian.
pub fn ecdsa_xy(key: &P384SigningKey) -> ([u8; 48], [u8; 48]) {
    let sec1 = key.public().to_sec1();
    let mut x = [0u8; 48];
    let mut y = [0u8; 48];
    x.copy_from_slice(&sec1[1..49]);
    y.copy_from_slice(&sec1[49..97]);
    (x, y)
}

/// Sign `cert`'s body with `key` (usage `signer`, algo ECDSA_SHA256 or ECDSA_SHA384)
/// into slot `which`.
pub fn sign_ecdsa(
    cert: &mut SevCert,
    which: Slot,
    signer: SevUsage,
    algo: SevAlgo,
    key: &P384SigningKey,
    rng: &mut Rng,
) -> Result<(), SevError> {
    let sig = match algo {
        SevAlgo::ECDSA_SHA256 => key.sign_digest_sha256_with_rng(rng, cert.body()),
        SevAlgo::ECDSA_SHA384 => key.sign_sha384_with_rng(rng, cert.body()),
        a => return Err(SevError::Format(format!("{a:?} is not an ECDSA algorithm"))),
    };
    *slot_mut(cert, which) = SevSigSlot::ecdsa(signer, algo, &sig.r, &sig.s);
    Ok(())
}

/// Sign `cert`'s body with the ASK key `ask` into slot `which`: usage ASK, algo
/// RSA_SHA256 for a 2048-bit key, RSA_SHA384 otherwise (the rule of [`super::chain`]).
pub fn sign_rsa_ask(
    cert: &mut SevCert,
    which: Slot,
    ask: &RsaPrivateKey,
    rng: &mut Rng,
) -> Result<(), SevError> {
    let (hash, algo) = if ask.bits() == 2048 {
        (RsaPssHash::Sha256, SevAlgo::RSA_SHA256)
    } else {
        (RsaPssHash::Sha384, SevAlgo::RSA_SHA384)
    };
    let sig = ask.sign_pss_with_rng(rng, hash, cert.body())?;
    *slot_mut(cert, which) = SevSigSlot::rsa(SevUsage::ASK, algo, &sig)?;
    Ok(())
}

/// An OCA as `sevctl generate` makes it: a fresh P-384 key, API 0.0, usage OCA, algo
/// ECDSA_SHA256, self-signed in slot 1.
pub fn generate_oca(rng: &mut Rng) -> Result<(SevCert, P384SigningKey), SevError> {
    let key = P384SigningKey::generate(rng);
    let mut oca = ecc_cert(
        SevUsage::OCA,
        SevAlgo::ECDSA_SHA256,
        (0, 0),
        &ecdsa_xy(&key),
    );
    sign_ecdsa(
        &mut oca,
        Slot::One,
        SevUsage::OCA,
        SevAlgo::ECDSA_SHA256,
        &key,
        rng,
    )?;
    Ok((oca, key))
}

fn left_pad(be: &[u8], len: usize) -> Vec<u8> {
    let be = &be[be.iter().position(|&b| b != 0).unwrap_or(be.len())..];
    let mut v = vec![0u8; len.saturating_sub(be.len())];
    v.extend_from_slice(be);
    v
}

/// An AMD-format CA certificate for `key` (usage ARK or ASK) signed by `signer`
/// (RSA-PSS, SHA-256 for a 2048-bit signer, SHA-384 for 4096; `certifying_id` = the
/// signer's `signer_id`).
pub fn ca_cert(
    key: &RsaPrivateKey,
    usage: SevUsage,
    key_id: [u8; 16],
    signer: &RsaPrivateKey,
    signer_id: [u8; 16],
    rng: &mut Rng,
) -> Result<AmdCaCert, SevError> {
    let bits = key.bits() as u32;
    let width = key.bits() / 8;
    let mut c = AmdCaCert {
        version: 1,
        key_id,
        certifying_id: signer_id,
        key_usage: usage,
        reserved: [0; 16],
        pubexp_bits: bits,
        modulus_bits: bits,
        pubexp_be: left_pad(&key.public_exponent_be(), width),
        modulus_be: left_pad(&key.public_modulus_be(), width),
        signature_be: Vec::new(),
    };
    let hash = if signer.bits() == 2048 {
        RsaPssHash::Sha256
    } else {
        RsaPssHash::Sha384
    };
    c.signature_be = left_pad(
        &signer.sign_pss_with_rng(rng, hash, &c.signed_bytes())?,
        signer.bits() / 8,
    );
    Ok(c)
}

/// A whole simulated platform identity from a seeded RNG: a custom AMD-format CA,
/// CEK, OCA, PEK (signed by OCA in slot 1 and CEK in slot 2) and PDH (signed by the
/// PEK), with the private keys — for tests and demos of the owner and relying-party
/// paths. Never AMD's: the CA key ids are random.
pub struct TestPlatform {
    /// ASK ‖ ARK.
    pub ca: SevCa,
    /// The PDH certificate.
    pub pdh: SevCert,
    /// The PEK certificate.
    pub pek: SevCert,
    /// The OCA certificate.
    pub oca: SevCert,
    /// The CEK certificate, signed by the ASK.
    pub cek: SevCert,
    /// The PDH private key (ECDH).
    pub pdh_key: EcdhP384,
    /// The PEK private key (signs reports and the PDH).
    pub pek_key: P384SigningKey,
    /// The OCA private key.
    pub oca_key: P384SigningKey,
}

impl std::fmt::Debug for TestPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPlatform")
            .field("ark_key_id", &hex::encode(self.ca.ark.key_id))
            .finish_non_exhaustive()
    }
}

impl TestPlatform {
    /// Generate one: RSA keys of `rsa_bits` (2048 or 4096) for ARK and ASK, P-384 for
    /// the rest; PEK, OCA and PDH carry API `api`, the CEK 0.14 (as AMD's KDS CEKs).
    pub fn generate(
        rng: &mut Rng,
        rsa_bits: usize,
        api: (u8, u8),
    ) -> Result<TestPlatform, SevError> {
        let ark_key = RsaPrivateKey::generate(rng, rsa_bits)?;
        let ask_key = RsaPrivateKey::generate(rng, rsa_bits)?;
        let ark_id = rng.array::<16>();
        let ask_id = rng.array::<16>();
        let ark = ca_cert(&ark_key, SevUsage::ARK, ark_id, &ark_key, ark_id, rng)?;
        let ask = ca_cert(&ask_key, SevUsage::ASK, ask_id, &ark_key, ark_id, rng)?;

        let cek_key = P384SigningKey::generate(rng);
        let mut cek = ecc_cert(
            SevUsage::CEK,
            SevAlgo::ECDSA_SHA256,
            (0, 14),
            &ecdsa_xy(&cek_key),
        );
        sign_rsa_ask(&mut cek, Slot::One, &ask_key, rng)?;

        let oca_key = P384SigningKey::generate(rng);
        let mut oca = ecc_cert(
            SevUsage::OCA,
            SevAlgo::ECDSA_SHA256,
            api,
            &ecdsa_xy(&oca_key),
        );
        sign_ecdsa(
            &mut oca,
            Slot::One,
            SevUsage::OCA,
            SevAlgo::ECDSA_SHA256,
            &oca_key,
            rng,
        )?;

        let pek_key = P384SigningKey::generate(rng);
        let mut pek = ecc_cert(
            SevUsage::PEK,
            SevAlgo::ECDSA_SHA256,
            api,
            &ecdsa_xy(&pek_key),
        );
        sign_ecdsa(
            &mut pek,
            Slot::One,
            SevUsage::OCA,
            SevAlgo::ECDSA_SHA256,
            &oca_key,
            rng,
        )?;
        sign_ecdsa(
            &mut pek,
            Slot::Two,
            SevUsage::CEK,
            SevAlgo::ECDSA_SHA256,
            &cek_key,
            rng,
        )?;

        let pdh_key = EcdhP384::generate(rng);
        let mut pdh = ecc_cert(
            SevUsage::PDH,
            SevAlgo::ECDH_SHA256,
            api,
            &pdh_key.public_xy_be(),
        );
        sign_ecdsa(
            &mut pdh,
            Slot::One,
            SevUsage::PEK,
            SevAlgo::ECDSA_SHA256,
            &pek_key,
            rng,
        )?;
        Ok(TestPlatform {
            ca: SevCa {
                ask,
                ark,
                source: CaSource::Custom,
            },
            pdh,
            pek,
            oca,
            cek,
            pdh_key,
            pek_key,
            oca_key,
        })
    }

    /// sevctl's `--sev` file: PDH ‖ PEK ‖ OCA ‖ CEK.
    pub fn chain_bytes(&self) -> Vec<u8> {
        [&self.pdh, &self.pek, &self.oca, &self.cek]
            .iter()
            .flat_map(|c| zerocopy::IntoBytes::as_bytes(*c).to_vec())
            .collect()
    }

    /// A legacy attestation report as ATTESTATION writes it (§4), signed by the PEK.
    pub fn sign_report(
        &self,
        mnonce: [u8; 16],
        launch_digest: [u8; 32],
        policy: u32,
        rng: &mut Rng,
    ) -> [u8; SEV_REPORT_LEN] {
        sign_report(&self.pek_key, mnonce, launch_digest, policy, rng)
    }
}

/// A legacy attestation report (§4) signed by `pek_key`: usage PEK, algo
/// ECDSA_SHA256, r and s as 72-byte little-endian fields.
pub fn sign_report(
    pek_key: &P384SigningKey,
    mnonce: [u8; 16],
    launch_digest: [u8; 32],
    policy: u32,
    rng: &mut Rng,
) -> [u8; SEV_REPORT_LEN] {
    let mut r = SevAttestationReport {
        mnonce,
        launch_digest,
        policy,
        sig_usage: SevUsage::PEK.0,
        sig_algo: SevAlgo::ECDSA_SHA256.0,
        reserved: 0,
        sig_r: [0u8; 72],
        sig_s: [0u8; 72],
    };
    let sig = pek_key.sign_digest_sha256_with_rng(rng, r.signed_bytes());
    r.set_signature_rs_be(&sig.r, &sig.s);
    let mut out = [0u8; SEV_REPORT_LEN];
    out.copy_from_slice(zerocopy::IntoBytes::as_bytes(&r));
    out
}
