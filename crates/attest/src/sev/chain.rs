//! Legacy SEV certificate-chain verification, one named check per certificate and per
//! link (sev-legacy.md §2.1–§2.4):
//!
//! ```text
//! ARK ─RSA-PSS→ ASK ─RSA-PSS→ CEK ─ECDSA→ PEK ─ECDSA→ PDH
//! ARK ─self                    OCA ─ECDSA→ PEK,  OCA ─self
//! ```
//!
//! Rules applied, and why:
//!
//! * **SEV-certificate signature slots** follow the firmware (`sev_cert.c:
//!   sev_cert_validate_sig`, §2.3, §0.2-2), which is stricter than the sev crate: a slot
//!   with exactly one of {algo = 0, usage = NONE} is malformed and fails the link; a slot
//!   counts for a signer only if its (usage, algo) equal the signer key's (usage, algo);
//!   the last matching slot decides; no matching slot fails the link. The signer's
//!   usage must fit the child (PDH←PEK, PEK←OCA or CEK, OCA←OCA, CEK←ASK). The signed
//!   bytes are the 0x414-byte body, hashed with SHA-256 for `*_SHA256` and SHA-384 for
//!   `*_SHA384` (§2.1); RSA is RSA-PSS with MGF1 of the same hash and salt = hash length.
//! * **AMD CA certificates** (ARK, ASK): the signature hash follows the *signer's key
//!   size* — SHA-256 for RSA-2048, SHA-384 for RSA-4096 — as the sev crate and sevctl
//!   do (§2.4, host-interfaces.md §4.5). ASPFW (Genoa, the only published firmware)
//!   always uses SHA-384 (§0.2-3), but it only ever meets 4096-bit keys, where both
//!   rules agree, and AMD's genuine Naples ARK and ASK are RSA-2048 signed with
//!   RSA-PSS-SHA256, which the Genoa rule would reject. Size fields must be 2048 or 4096
//!   (ASPFW) and `certifying_id` must equal the signer's `key_id` (both).
//! * **The ASK as a signer of the CEK** has the key (usage ASK 0x13, algo RSA_SHA256
//!   for 2048 bits, RSA_SHA384 for 4096): for 4096-bit ASKs that is exactly the
//!   firmware's export (`amd_cert_export_pubkey`, §2.2), for Naples it is the sev
//!   crate's rule and the genuine Naples CEK's label. So a Rome-or-later CEK labelled
//!   RSA_SHA256 fails, as sevctl reports "ASK ⬑̸" (§2.6).
//! * The ARK is trusted as given (built in, or the caller's `--sev-ca`); a custom CA
//!   whose ARK carries an AMD root's key id but is not that root fails `sev.ca`. The
//!   API version fields and the OCA's identity are reported, not judged (neither the
//!   sev crate nor sevctl checks them, §2.4).

use super::ca::{CaSource, SevCa, SevGeneration, expected_usage};
use crate::verdict::{Check, Fault, Verdict};
use softsev_abi::sev_buf::SEV_CERT_LEN;
use softsev_abi::sev_cert::{
    AmdCaCert, SEV_ECC_CURVE_P384, SevAlgo, SevCert, SevSigSlot, SevUsage,
};
use softsev_crypto::ecdsa::{P384PublicKey, P384Signature};
use softsev_crypto::rsa::{RsaPssHash, verify_pss};
use std::borrow::Cow;
use zerocopy::FromBytes;

/// Who signs a certificate.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Signer<'a> {
    /// A SEV certificate's key (OCA, CEK, PEK).
    Sev(&'a SevCert),
    /// An AMD CA key (the ASK for the CEK).
    Ca(&'a AmdCaCert),
}

/// Why a link does not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LinkError {
    pub(crate) fault: Fault,
    pub(crate) msg: String,
}

impl LinkError {
    fn malformed(msg: impl Into<String>) -> Self {
        LinkError {
            fault: Fault::Malformed,
            msg: msg.into(),
        }
    }
    fn crypto(msg: impl Into<String>) -> Self {
        LinkError {
            fault: Fault::Cryptography,
            msg: msg.into(),
        }
    }
}

/// The RSA-PSS hash an AMD CA key of `bits` signs with (see the module docs).
pub(crate) fn ca_hash(bits: u32) -> Option<RsaPssHash> {
    match bits {
        2048 => Some(RsaPssHash::Sha256),
        4096 => Some(RsaPssHash::Sha384),
        _ => None,
    }
}

fn hash_name(h: RsaPssHash) -> &'static str {
    match h {
        RsaPssHash::Sha256 => "RSA-PSS-SHA256",
        RsaPssHash::Sha384 => "RSA-PSS-SHA384",
    }
}

/// The (usage, algo) of a signer's public key (§2.3; for an ASK, §2.2 and the module
/// docs).
fn signer_id(s: Signer<'_>) -> (SevUsage, SevAlgo) {
    match s {
        Signer::Sev(c) => (SevUsage(c.pubkey_usage), SevAlgo(c.pubkey_algo)),
        Signer::Ca(a) => (
            a.key_usage,
            if a.modulus_bits == 2048 {
                SevAlgo::RSA_SHA256
            } else {
                SevAlgo::RSA_SHA384
            },
        ),
    }
}

fn usage_name(u: SevUsage) -> String {
    u.name()
        .map_or_else(|| format!("{:#x}", u.0), str::to_string)
}

fn algo_name(a: SevAlgo) -> String {
    a.name()
        .map_or_else(|| format!("{:#x}", a.0), str::to_string)
}

/// The P-384 key of a SEV certificate, or why it has none.
pub(crate) fn ecc_key(c: &SevCert) -> Result<P384PublicKey, String> {
    let p = c.ecc_pubkey().ok_or_else(|| {
        format!(
            "{} key is not an ECC key",
            usage_name(SevUsage(c.pubkey_usage))
        )
    })?;
    if p.curve != SEV_ECC_CURVE_P384 {
        return Err(format!(
            "ECC curve {} is not P-384 ({SEV_ECC_CURVE_P384}); the firmware accepts only P-384",
            p.curve
        ));
    }
    P384PublicKey::from_xy(&p.x, &p.y).map_err(|e| format!("public key is not on P-384: {e}"))
}

/// Whether `signer` may sign a certificate of usage `child` (§2.3 step 4).
fn usage_fits(child: SevUsage, signer: SevUsage) -> bool {
    matches!(
        (child, signer),
        (SevUsage::PDH, SevUsage::PEK)
            | (SevUsage::PEK, SevUsage::OCA)
            | (SevUsage::PEK, SevUsage::CEK)
            | (SevUsage::OCA, SevUsage::OCA)
            | (SevUsage::CEK, SevUsage::ASK)
    )
}

fn verify_slot(child: &SevCert, slot: &SevSigSlot, signer: Signer<'_>) -> Result<(), String> {
    let algo = SevAlgo(slot.algo);
    match signer {
        Signer::Sev(s) => {
            let key = ecc_key(s)?;
            // The strict form: a non-zero byte above the 48 significant ones of r or s
            // is a value ≥ 2^384, which the firmware rejects (else the slot would be
            // malleable).
            let (r, s_) = slot
                .ecdsa_rs_strict()
                .ok_or("r or s has a non-zero byte above its 48 significant bytes")?;
            let sig = P384Signature { r, s: s_ };
            let res = match algo {
                SevAlgo::ECDSA_SHA256 => key.verify_sha256(child.body(), &sig),
                SevAlgo::ECDSA_SHA384 => key.verify_sha384(child.body(), &sig),
                a => return Err(format!("algo {} is not an ECDSA algorithm", algo_name(a))),
            };
            res.map_err(|e| format!("ECDSA signature does not verify: {e}"))
        }
        Signer::Ca(a) => {
            let hash = match algo {
                SevAlgo::RSA_SHA256 => RsaPssHash::Sha256,
                SevAlgo::RSA_SHA384 => RsaPssHash::Sha384,
                a => return Err(format!("algo {} is not an RSA algorithm", algo_name(a))),
            };
            let n = a.modulus_be.len();
            let sig = slot
                .rsa_sig_be(n)
                .map_err(|e| format!("RSA signature field: {e}"))?;
            verify_pss(&a.modulus_be, &a.pubexp_be, hash, child.body(), &sig)
                .map_err(|e| format!("{} signature does not verify: {e}", hash_name(hash)))
        }
    }
}

/// Verify that `signer` signed `child` by the firmware's slot rules (module docs, §2.3).
/// Ok carries what was verified.
pub(crate) fn verify_sev_signature(
    child: &SevCert,
    signer: Signer<'_>,
) -> Result<String, LinkError> {
    let (s_usage, s_algo) = signer_id(signer);
    // Step 1: the signer's key must be usable.
    match signer {
        Signer::Sev(s) => {
            ecc_key(s).map_err(|e| {
                LinkError::malformed(format!("signer {}: {e}", usage_name(s_usage)))
            })?;
        }
        Signer::Ca(a) => {
            if ca_hash(a.modulus_bits).is_none() {
                return Err(LinkError::malformed(format!(
                    "signer {} modulus size {} is not 2048 or 4096",
                    usage_name(s_usage),
                    a.modulus_bits
                )));
            }
        }
    }
    // Step 2: the slots.
    let mut decided: Option<(usize, Result<(), String>)> = None;
    for (i, slot) in [&child.sig1, &child.sig2].into_iter().enumerate() {
        if slot.is_malformed() {
            return Err(LinkError::malformed(format!(
                "signature slot {} is malformed: usage {}, algo {} (exactly one of them empty)",
                i + 1,
                usage_name(SevUsage(slot.usage)),
                algo_name(SevAlgo(slot.algo))
            )));
        }
        if SevUsage(slot.usage) != s_usage || SevAlgo(slot.algo) != s_algo {
            continue;
        }
        decided = Some((i + 1, verify_slot(child, slot, signer)));
    }
    let child_usage = SevUsage(child.pubkey_usage);
    let Some((slot, res)) = decided else {
        return Err(LinkError::crypto(format!(
            "no signature slot by {} / {} (slots: {} / {}, {} / {})",
            usage_name(s_usage),
            algo_name(s_algo),
            usage_name(SevUsage(child.sig1.usage)),
            algo_name(SevAlgo(child.sig1.algo)),
            usage_name(SevUsage(child.sig2.usage)),
            algo_name(SevAlgo(child.sig2.algo)),
        )));
    };
    res.map_err(|e| LinkError::crypto(format!("slot {slot}: {e}")))?;
    // Step 4: the signer's usage must fit the child.
    if !usage_fits(child_usage, s_usage) {
        return Err(LinkError::malformed(format!(
            "a {} does not sign a {}",
            usage_name(s_usage),
            usage_name(child_usage)
        )));
    }
    Ok(format!(
        "slot {slot} ({} / {}) verifies",
        usage_name(s_usage),
        algo_name(s_algo)
    ))
}

/// Verify that `signer` signed the AMD CA certificate `child` (module docs, §2.2).
pub(crate) fn verify_ca_signature(
    child: &AmdCaCert,
    signer: &AmdCaCert,
) -> Result<String, LinkError> {
    if child.certifying_id != signer.key_id {
        return Err(LinkError::crypto(format!(
            "certifying_id {} is not the signer's key_id {}",
            hex::encode(child.certifying_id),
            hex::encode(signer.key_id)
        )));
    }
    let hash = ca_hash(signer.modulus_bits).ok_or_else(|| {
        LinkError::malformed(format!(
            "signer modulus size {} is not 2048 or 4096",
            signer.modulus_bits
        ))
    })?;
    verify_pss(
        &signer.modulus_be,
        &signer.pubexp_be,
        hash,
        &child.signed_bytes(),
        &child.signature_be,
    )
    .map_err(|e| LinkError::crypto(format!("{}: {e}", hash_name(hash))))?;
    Ok(format!("RSA-{} {}", signer.modulus_bits, hash_name(hash)))
}

/// Structural checks of a SEV certificate expected to have usage `want` (§2.1, §2.3
/// step 3).
pub(crate) fn sev_cert_format(c: &SevCert, want: SevUsage) -> Result<String, String> {
    if c.version != 1 {
        return Err(format!("version {} is not 1", c.version));
    }
    let usage = SevUsage(c.pubkey_usage);
    if usage != want {
        return Err(format!(
            "key usage {} where a {} belongs",
            usage_name(usage),
            usage_name(want)
        ));
    }
    let algo = SevAlgo(c.pubkey_algo);
    let algo_ok = if want == SevUsage::PDH {
        matches!(algo, SevAlgo::ECDH_SHA256 | SevAlgo::ECDH_SHA384)
    } else {
        matches!(algo, SevAlgo::ECDSA_SHA256 | SevAlgo::ECDSA_SHA384)
    };
    if !algo_ok {
        return Err(format!(
            "key algo {} is not {} for a {}",
            algo_name(algo),
            if want == SevUsage::PDH {
                "ECDH_SHA256/ECDH_SHA384"
            } else {
                "ECDSA_SHA256/ECDSA_SHA384"
            },
            usage_name(want)
        ));
    }
    ecc_key(c)?;
    Ok(format!(
        "version 1, api {}.{}, {} P-384",
        c.api_major,
        c.api_minor,
        algo_name(algo)
    ))
}

/// Structural checks of an AMD CA certificate (ARK or ASK, §2.2).
pub(crate) fn ca_cert_format(c: &AmdCaCert, is_ark: bool) -> Result<String, String> {
    if c.version != 1 {
        return Err(format!("version {} is not 1", c.version));
    }
    let want = expected_usage(is_ark);
    if c.key_usage != want {
        return Err(format!(
            "key usage {} where the {} belongs",
            usage_name(c.key_usage),
            usage_name(want)
        ));
    }
    for (what, bits) in [("pubexp", c.pubexp_bits), ("modulus", c.modulus_bits)] {
        if bits != 2048 && bits != 4096 {
            return Err(format!("{what} size {bits} bits is not 2048 or 4096"));
        }
    }
    Ok(format!(
        "version 1, RSA-{}, key id {}",
        c.modulus_bits,
        hex::encode(c.key_id)
    ))
}

/// Which CA to verify the chain under.
#[derive(Clone, Debug, Default)]
pub enum CaChoice {
    /// AMD's built-in CA of the generation whose ASK signs the CEK (sevctl without
    /// `--ca`).
    #[default]
    Builtin,
    /// AMD's built-in CA of this generation.
    Generation(SevGeneration),
    /// The caller's CA (sevctl `--ca FILE`).
    Custom(Box<SevCa>),
}

/// How to verify a SEV chain.
#[derive(Clone, Debug, Default)]
pub struct SevChainOptions {
    /// The CA.
    pub ca: CaChoice,
    /// An OCA to use instead of the chain's (sevctl `--oca FILE`).
    pub oca: Option<SevCert>,
}

/// The verdict on a SEV chain (and optionally a legacy report): every check, plus the
/// generation and the certificates later steps need.
#[derive(Clone, Debug)]
pub struct SevVerdict {
    /// The generation of the CA used, when it is AMD's (built in or a custom copy).
    pub generation: Option<SevGeneration>,
    /// Where the CA came from, if one was used.
    pub ca: Option<CaSource>,
    /// The checks, in order.
    pub verdict: Verdict,
    /// The chain's PDH, if the chain decoded.
    pub pdh: Option<SevCert>,
    /// The chain's PEK, if the chain decoded.
    pub pek: Option<SevCert>,
}

impl SevVerdict {
    /// Whether every check passed or was skipped, and at least one ran.
    pub fn passed(&self) -> bool {
        self.verdict.passed()
    }
    /// Whether check `id` ran and failed.
    pub fn failed(&self, id: &str) -> bool {
        self.verdict.failed(id)
    }
    /// The ids of the failed checks, in order.
    pub fn failed_ids(&self) -> Vec<&'static str> {
        self.verdict.failures().map(|c| c.id).collect()
    }
    /// JSON: `{ "passed", "kind": "sev", "generation", "ca", "checks": [...] }` (the
    /// checks as in the SNP verdict).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "passed": self.passed(),
            "kind": "sev",
            "generation": self.generation.map(|g| g.name()),
            "ca": self.ca.map(|c| match c {
                CaSource::Builtin(_) => "builtin",
                CaSource::Custom => "custom",
            }),
            "checks": self.verdict.checks,
        })
    }
    /// One line per check, then the summary.
    pub fn to_table(&self) -> String {
        let mut s = self.verdict.to_table();
        if self.passed()
            && let Some(g) = self.generation
        {
            s.push_str(&format!("SEV chain under the {g} CA\n"));
        }
        s
    }
}

fn check_from(id: &'static str, r: Result<String, LinkError>, fault_on_pass: Fault) -> Check {
    match r {
        Ok(d) => Check::pass(id, fault_on_pass, d),
        Err(e) => Check::fail(id, e.fault, e.msg),
    }
}

fn format_check(id: &'static str, r: Result<String, String>) -> Check {
    match r {
        Ok(d) => Check::pass(id, Fault::Malformed, d),
        Err(e) => Check::fail(id, Fault::Malformed, e),
    }
}

/// Split PDH ‖ PEK ‖ OCA ‖ CEK (4 × 0x824 bytes, sev crate `sev::Chain` order, §2.4)
/// without judging the usages (the checks do).
pub fn split_chain(bytes: &[u8]) -> Option<[SevCert; 4]> {
    if bytes.len() != 4 * SEV_CERT_LEN {
        return None;
    }
    let mut it = bytes
        .chunks_exact(SEV_CERT_LEN)
        .map(|c| SevCert::read_from_bytes(c).ok());
    Some([it.next()??, it.next()??, it.next()??, it.next()??])
}

/// Verify a SEV chain file (PDH ‖ PEK ‖ OCA ‖ CEK) under the chosen CA.
pub fn verify_sev_chain(bytes: &[u8], opts: &SevChainOptions) -> SevVerdict {
    let mut v = Verdict::default();
    let mut out = SevVerdict {
        generation: None,
        ca: None,
        verdict: Verdict::default(),
        pdh: None,
        pek: None,
    };
    let Some([pdh, pek, chain_oca, cek]) = split_chain(bytes) else {
        v.push(Check::fail(
            "sev.chain.size",
            Fault::Malformed,
            format!(
                "{} bytes; a SEV chain is PDH ‖ PEK ‖ OCA ‖ CEK = {} bytes",
                bytes.len(),
                4 * SEV_CERT_LEN
            ),
        ));
        out.verdict = v;
        return out;
    };
    v.push(Check::pass(
        "sev.chain.size",
        Fault::Malformed,
        "PDH ‖ PEK ‖ OCA ‖ CEK, 4 × 0x824 bytes",
    ));
    let oca = opts.oca.unwrap_or(chain_oca);
    v.push(format_check(
        "sev.pdh.format",
        sev_cert_format(&pdh, SevUsage::PDH),
    ));
    v.push(format_check(
        "sev.pek.format",
        sev_cert_format(&pek, SevUsage::PEK),
    ));
    v.push(format_check(
        "sev.oca.format",
        sev_cert_format(&oca, SevUsage::OCA).map(|d| {
            if opts.oca.is_some() {
                format!("{d} (given separately)")
            } else {
                d
            }
        }),
    ));
    v.push(format_check(
        "sev.cek.format",
        sev_cert_format(&cek, SevUsage::CEK),
    ));

    // The CA.
    let ca: Option<&SevCa> = match &opts.ca {
        CaChoice::Builtin => match SevGeneration::detect(&cek) {
            Some(g) => {
                v.push(Check::pass(
                    "sev.ca",
                    Fault::Cryptography,
                    format!("built-in AMD {g} CA (its ASK signs the CEK)"),
                ));
                out.generation = Some(g);
                SevCa::builtin(g)
            }
            None => {
                v.push(Check::fail(
                    "sev.ca",
                    Fault::Cryptography,
                    "failed to deduce platform generation: no built-in AMD ASK (Naples, Rome, \
                     Milan, Genoa, Turin) signs the CEK; give the CA",
                ));
                None
            }
        },
        CaChoice::Generation(g) => {
            v.push(Check::pass(
                "sev.ca",
                Fault::Cryptography,
                format!("built-in AMD {g} CA (requested)"),
            ));
            out.generation = Some(*g);
            SevCa::builtin(*g)
        }
        CaChoice::Custom(c) => {
            match c.claims_builtin() {
                Some(g) if SevCa::builtin(g).is_some_and(|b| b.same_ark(c)) => {
                    v.push(Check::pass(
                        "sev.ca",
                        Fault::Cryptography,
                        format!("given CA; its ARK is AMD's genuine {g} ARK"),
                    ));
                    out.generation = Some(g);
                }
                Some(g) => v.push(Check::fail(
                    "sev.ca",
                    Fault::Cryptography,
                    format!(
                        "given ARK has the key id {} of AMD's {g} ARK but is not that certificate",
                        hex::encode(c.ark.key_id)
                    ),
                )),
                None => v.push(Check::pass(
                    "sev.ca",
                    Fault::Cryptography,
                    Cow::Owned(format!(
                        "given CA (ARK key id {}, not an AMD root)",
                        hex::encode(c.ark.key_id)
                    )),
                )),
            }
            Some(&**c)
        }
    };
    out.ca = ca.map(|c| c.source);
    if let Some(ca) = ca {
        v.push(format_check(
            "sev.ask.format",
            ca_cert_format(&ca.ask, false),
        ));
        v.push(format_check(
            "sev.ark.format",
            ca_cert_format(&ca.ark, true),
        ));
    }

    // The links, in sevctl's order (§9.2).
    v.push(check_from(
        "sev.pdh.signed_by_pek",
        verify_sev_signature(&pdh, Signer::Sev(&pek)),
        Fault::Cryptography,
    ));
    v.push(check_from(
        "sev.oca.self_signed",
        verify_sev_signature(&oca, Signer::Sev(&oca)),
        Fault::Cryptography,
    ));
    v.push(check_from(
        "sev.pek.signed_by_oca",
        verify_sev_signature(&pek, Signer::Sev(&oca)),
        Fault::Cryptography,
    ));
    v.push(check_from(
        "sev.pek.signed_by_cek",
        verify_sev_signature(&pek, Signer::Sev(&cek)),
        Fault::Cryptography,
    ));
    match ca {
        Some(ca) => {
            v.push(check_from(
                "sev.cek.signed_by_ask",
                verify_sev_signature(&cek, Signer::Ca(&ca.ask)),
                Fault::Cryptography,
            ));
            v.push(check_from(
                "sev.ask.signed_by_ark",
                verify_ca_signature(&ca.ask, &ca.ark).map(|d| format!("{d} by the ARK")),
                Fault::Cryptography,
            ));
            v.push(check_from(
                "sev.ark.self_signed",
                verify_ca_signature(&ca.ark, &ca.ark).map(|d| format!("{d}, self-signed")),
                Fault::Cryptography,
            ));
        }
        None => {
            for id in [
                "sev.cek.signed_by_ask",
                "sev.ask.signed_by_ark",
                "sev.ark.self_signed",
            ] {
                v.push(Check::skip(id, Fault::Cryptography, "no CA"));
            }
        }
    }
    out.pdh = Some(pdh);
    out.pek = Some(pek);
    out.verdict = v;
    out
}
