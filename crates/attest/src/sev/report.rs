//! The legacy SEV attestation report (ATTESTATION 0x036; sev-legacy.md §4): 0xD0
//! bytes — mnonce, launch digest, policy, signature usage/algo, reserved, and an ECDSA
//! P-384 signature by the PEK over SHA-256 of bytes 0x00..0x33 (r and s 72-byte
//! little-endian fields). It proves that this platform's PEK saw a guest with that
//! launch digest and policy; it carries no TIK-based MAC, so nothing about the session.
//!
//! Checks: `sev.report.size` (exactly 0xD0, as `sevctl validate` demands),
//! `sev.report.signer` (usage PEK, algo = the PEK's algo), `sev.report.reserved`,
//! `sev.report.signature`, then what the caller expects: `sev.report.mnonce`,
//! `sev.report.launch_digest`, `sev.report.policy`, `sev.report.policy_required`.

use super::chain::{SevVerdict, ecc_key};
use crate::verdict::{Check, Fault, Verdict};
use softsev_abi::sev_buf::{SEV_REPORT_LEN, SevAttestationReport};
use softsev_abi::sev_cert::{SevAlgo, SevCert, SevUsage};
use softsev_crypto::ct::ct_eq;
use softsev_crypto::ecdsa::P384Signature;
use zerocopy::FromBytes;

/// What the relying party requires of a report besides its signature.
#[derive(Clone, Debug, Default)]
pub struct SevReportExpect {
    /// The mnonce the relying party sent (ATTESTATION copies the caller's, §4).
    pub mnonce: Option<[u8; 16]>,
    /// The expected launch digest (e.g. `softsev measure --mode sev`).
    pub launch_digest: Option<[u8; 32]>,
    /// The exact policy.
    pub policy: Option<u32>,
    /// Policy bits that must be set (e.g. 0x1 NODBG, 0x8 NOSEND).
    pub policy_required: Option<u32>,
}

/// The report checks against `pek` (sevctl `validate` plus the expectations).
pub fn verify_report_with_pek(pek: &SevCert, bytes: &[u8], expect: &SevReportExpect) -> Verdict {
    let mut v = Verdict::default();
    report_checks(&mut v, pek, bytes, expect);
    v
}

fn report_checks(v: &mut Verdict, pek: &SevCert, bytes: &[u8], expect: &SevReportExpect) {
    let Some(r) = (bytes.len() == SEV_REPORT_LEN)
        .then(|| SevAttestationReport::read_from_bytes(bytes).ok())
        .flatten()
    else {
        v.push(Check::fail(
            "sev.report.size",
            Fault::Malformed,
            format!(
                "{} bytes; a legacy attestation report is exactly {SEV_REPORT_LEN} (0xD0)",
                bytes.len()
            ),
        ));
        return;
    };
    v.push(Check::pass(
        "sev.report.size",
        Fault::Malformed,
        "0xD0 bytes",
    ));
    let (usage, algo) = (SevUsage(r.sig_usage), SevAlgo(r.sig_algo));
    let pek_algo = SevAlgo(pek.pubkey_algo);
    v.push(Check::cond(
        "sev.report.signer",
        Fault::Malformed,
        usage == SevUsage::PEK && algo == pek_algo,
        format!("PEK, {algo:?}"),
        || {
            format!(
                "signature usage {usage:?} / algo {algo:?}; the PEK signs with PEK / {pek_algo:?}"
            )
        },
    ));
    let reserved = r.reserved;
    v.push(Check::cond(
        "sev.report.reserved",
        Fault::Malformed,
        reserved == 0,
        "reserved word at 0x3C is zero",
        || format!("reserved word at 0x3C is {reserved:#x}"),
    ));
    let sig = r.signature_rs_be().map(|(r, s)| P384Signature { r, s });
    let res = match (ecc_key(pek), sig) {
        (Err(e), _) => Err(format!("PEK: {e}")),
        (_, None) => Err("r or s does not fit 48 bytes (bytes 48..72 of a field not zero)".into()),
        (Ok(k), Some(sig)) => match algo {
            SevAlgo::ECDSA_SHA384 => k.verify_sha384(r.signed_bytes(), &sig),
            _ => k.verify_sha256(r.signed_bytes(), &sig),
        }
        .map_err(|e| format!("PEK does not sign the attestation report: {e}")),
    };
    v.push(match res {
        Ok(()) => Check::pass(
            "sev.report.signature",
            Fault::Cryptography,
            "signed by the PEK (ECDSA P-384 over bytes 0x00..0x33)",
        ),
        Err(e) => Check::fail("sev.report.signature", Fault::Cryptography, e),
    });
    if let Some(m) = &expect.mnonce {
        v.push(Check::cond(
            "sev.report.mnonce",
            Fault::Policy,
            ct_eq(m, &r.mnonce),
            "mnonce as sent",
            || {
                format!(
                    "mnonce {} is not the expected {}",
                    hex::encode(r.mnonce),
                    hex::encode(m)
                )
            },
        ));
    }
    if let Some(ld) = &expect.launch_digest {
        v.push(Check::cond(
            "sev.report.launch_digest",
            Fault::Policy,
            ct_eq(ld, &r.launch_digest),
            format!("launch digest {}", hex::encode(ld)),
            || {
                format!(
                    "launch digest {} is not the expected {}",
                    hex::encode(r.launch_digest),
                    hex::encode(ld)
                )
            },
        ));
    }
    let policy = r.policy;
    if let Some(p) = expect.policy {
        v.push(Check::cond(
            "sev.report.policy",
            Fault::Policy,
            policy == p,
            format!("policy {p:#x}"),
            || format!("policy {policy:#x} is not the expected {p:#x}"),
        ));
    }
    if let Some(req) = expect.policy_required {
        v.push(Check::cond(
            "sev.report.policy_required",
            Fault::Policy,
            policy & req == req,
            format!("policy {policy:#x} sets {req:#x}"),
            || format!("policy {policy:#x} lacks bits {:#x}", req & !policy),
        ));
    }
}

impl SevVerdict {
    /// Add the checks of a legacy report signed by this chain's PEK (the chain's checks
    /// stay; the verdict passes only if both the chain and the report do).
    pub fn with_report(mut self, bytes: &[u8], expect: &SevReportExpect) -> SevVerdict {
        match self.pek {
            Some(pek) => report_checks(&mut self.verdict, &pek, bytes, expect),
            None => self.verdict.push(Check::fail(
                "sev.report.signature",
                Fault::Malformed,
                "no PEK: the chain did not decode",
            )),
        }
        self
    }
}
