//! Verification: report structure, product, AMD chain against the trust store, CRLs,
//! validity at the given time, report-to-certificate binding, the report signature and
//! the relying party's policy — each a named [`Check`] in a [`Verdict`].
//!
//! A chain can be verified once ([`VerifiedChain::build`]) and reused for many reports
//! ([`VerifiedChain::verify_report`], [`verify_batch`] across cores with rayon).
//! Notes: shared/spec/snp-attestation.md §1, §6, §7.

use crate::cert::{AmdCert, AmdCrl, CertRole, PublicKey};
use crate::certset::CertSet;
use crate::kds;
use crate::policy::Policy;
use crate::trust::{TrustKind, TrustStore};
use crate::verdict::{Check, Fault, Verdict};
use rayon::prelude::*;
use softsev_abi::Product;
use softsev_abi::report::{
    AttestationReport, PlatformInfo, REPORT_SIZE, ReportTcbs, SignatureAlgo, SigningKey,
};
use softsev_crypto::ecdsa::{P384Signature, P384Verifier};
use std::borrow::Cow;

/// Where "now" comes from: certificate and CRL validity are judged at this time.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn now_unix(&self) -> u64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// A fixed time (tests, `--at`).
#[derive(Clone, Copy, Debug)]
pub struct FixedClock(pub u64);

impl Clock for FixedClock {
    fn now_unix(&self) -> u64 {
        self.0
    }
}

/// How to verify.
#[derive(Clone, Debug)]
pub struct VerifyOptions<'a> {
    /// The trust anchors (default: AMD's built-in roots, pinned).
    pub trust: &'a TrustStore,
    /// The time validity is judged at (Unix seconds).
    pub at: u64,
    /// The product, for reports that do not say (v2); also checked against v3+ CPUID.
    pub product: Option<Product>,
    /// Policy checks to run.
    pub policy: Policy,
    /// Extra CRLs (besides those in the certificate set).
    pub crls: Vec<AmdCrl>,
    /// Fail when no CRL for the product is available (default: skip the check).
    pub require_crl: bool,
}

impl<'a> VerifyOptions<'a> {
    /// AMD's built-in roots, the system clock, no policy.
    pub fn new() -> VerifyOptions<'static> {
        VerifyOptions {
            trust: TrustStore::builtin(),
            at: SystemClock.now_unix(),
            product: None,
            policy: Policy::default(),
            crls: Vec::new(),
            require_crl: false,
        }
    }
    /// Judge validity at `clock`'s time.
    pub fn with_clock(mut self, clock: &dyn Clock) -> Self {
        self.at = clock.now_unix();
        self
    }
    /// Use these roots.
    pub fn with_trust(self, trust: &TrustStore) -> VerifyOptions<'_> {
        VerifyOptions { trust, ..self }
    }
}

fn signer_name(k: SigningKey) -> &'static str {
    match k {
        SigningKey::VLEK => "VLEK",
        _ => "VCEK",
    }
}

/// Structural checks of the report bytes; `None` when nothing further can be read.
fn parse_checks(v: &mut Verdict, bytes: &[u8]) -> Option<AttestationReport> {
    use softsev_abi::report::ReportError;
    if bytes.len() != REPORT_SIZE {
        v.push(Check::fail(
            "report.size",
            Fault::Malformed,
            format!("{} bytes, expected {REPORT_SIZE} (0x4A0)", bytes.len()),
        ));
        return None;
    }
    v.push(Check::pass("report.size", Fault::Malformed, "0x4A0 bytes"));
    let r = match AttestationReport::parse(bytes) {
        Ok(r) => r,
        Err(e @ ReportError::UnsupportedVersion(_)) => {
            v.push(Check::fail(
                "report.version",
                Fault::Malformed,
                e.to_string(),
            ));
            return None;
        }
        Err(e) => {
            v.push(Check::fail("report.size", Fault::Malformed, e.to_string()));
            return None;
        }
    };
    v.push(Check::pass(
        "report.version",
        Fault::Malformed,
        match r.version {
            2 => "v2",
            3 => "v3",
            _ => "v5",
        },
    ));
    v.push(Check::cond(
        "report.signature_algo",
        Fault::Malformed,
        r.signature_algo() == SignatureAlgo::ECDSA_P384_SHA384,
        "ECDSA P-384 SHA-384",
        || {
            format!(
                "SIGNATURE_ALGO {} is not ECDSA_P384_SHA384 (1)",
                r.signature_algo()
            )
        },
    ));
    v.push(match r.check_reserved() {
        Ok(()) => Check::pass(
            "report.reserved",
            Fault::Malformed,
            "must-be-zero bytes are zero",
        ),
        Err(e) => Check::fail("report.reserved", Fault::Malformed, e.to_string()),
    });
    let key = r.key_info.signing_key();
    let masked = r.key_info.mask_chip_key();
    v.push(Check::cond(
        "report.key_info",
        Fault::Malformed,
        (key == SigningKey::VCEK || key == SigningKey::VLEK) && !masked,
        if key == SigningKey::VLEK {
            "signed by VLEK"
        } else {
            "signed by VCEK"
        },
        || {
            if key == SigningKey::NONE {
                "SIGNING_KEY = NONE: the report is unsigned (chip key masked)".to_string()
            } else if masked && (key == SigningKey::VCEK || key == SigningKey::VLEK) {
                format!(
                    "MASK_CHIP_KEY = 1 with SIGNING_KEY = {}: the firmware does not sign with a masked chip key",
                    signer_name(key)
                )
            } else {
                format!("SIGNING_KEY {} is reserved", key.0)
            }
        },
    ));
    // VMPL is 0..=3 (SNP ABI, ATTESTATION_REPORT offset 0x30).
    let vmpl = r.vmpl;
    v.push(Check::cond(
        "report.vmpl",
        Fault::Malformed,
        vmpl <= 3,
        format!("VMPL {vmpl}"),
        || format!("VMPL {vmpl} does not exist (0..=3)"),
    ));
    // PLATFORM_INFO bits 8..63 are reserved (bits 0..5 and 7 are published, bit 6 is
    // set by Turin parts).
    let pi = r.platform_info.0;
    let reserved = pi & !(PlatformInfo::KNOWN | PlatformInfo::BIT6);
    v.push(Check::cond(
        "report.platform_info",
        Fault::Malformed,
        reserved == 0,
        "reserved PLATFORM_INFO bits are zero",
        || format!("PLATFORM_INFO {pi:#x} sets reserved bits {reserved:#x}"),
    ));
    v.push(match r.guest_policy().check_reserved() {
        Ok(()) => Check::pass(
            "report.policy",
            Fault::Malformed,
            "reserved policy bits valid",
        ),
        Err(e) => Check::fail("report.policy", Fault::Malformed, e.to_string()),
    });
    Some(r)
}

/// The product a report is judged as, and where that came from.
fn determine_product(
    r: &AttestationReport,
    certs: &CertSet,
    explicit: Option<Product>,
) -> Result<(Product, &'static str), String> {
    if let Some(p) = r.product() {
        if let Some(e) = explicit.filter(|e| *e != p) {
            return Err(format!(
                "report CPUID {:#04x}/{:#04x} is {p}, but {e} was requested",
                r.cpuid_fam_id, r.cpuid_mod_id
            ));
        }
        return Ok((p, "report CPUID"));
    }
    if r.version >= 3 {
        return Err(format!(
            "report v{} CPUID family {:#04x} model {:#04x} is no known product",
            r.version, r.cpuid_fam_id, r.cpuid_mod_id
        ));
    }
    if let Some(p) = explicit {
        return Ok((p, "--product"));
    }
    let vek = match r.key_info.signing_key() {
        SigningKey::VLEK => certs.vlek.as_ref(),
        _ => certs.vcek.as_ref(),
    };
    if let Some(p) = vek.and_then(|c| c.extensions().product()) {
        return Ok((p, "VEK productName"));
    }
    for c in [&certs.ask, &certs.asvk, &certs.ark].into_iter().flatten() {
        if let Some((_, Some(p))) = c.role() {
            return Ok((p, "certificate chain CN"));
        }
    }
    if let Some((_, Some(p))) = vek.and_then(|c| c.issuer_cn()).and_then(CertRole::from_cn) {
        return Ok((p, "VEK issuer CN"));
    }
    if r.chip_id_is_short() {
        return Ok((Product::Turin, "8-byte CHIP_ID"));
    }
    Err(
        "a v2 report does not name its product and the chain does not either; pass the product"
            .into(),
    )
}

/// A chain verified once, reusable for every report its VEK signed.
#[derive(Clone, Debug)]
pub struct VerifiedChain {
    product: Product,
    signer: SigningKey,
    vek: Option<AmdCert>,
    verifier: Option<P384Verifier>,
    checks: Vec<Check>,
}

fn cert_for<'c>(
    given: &'c Option<AmdCert>,
    builtin: &'c Option<AmdCert>,
) -> (Option<&'c AmdCert>, bool) {
    match (given, builtin) {
        (Some(c), _) => (Some(c), true),
        (None, Some(c)) => (Some(c), false),
        (None, None) => (None, false),
    }
}

impl VerifiedChain {
    /// Verify ARK → ASK → VCEK (or ARK → ASVK → VLEK) for `product` against the trust
    /// store, at `opts.at`, with CRLs. Failures are recorded as checks; the chain is
    /// usable for reports only if [`VerifiedChain::ok`].
    pub fn build(
        certs: &CertSet,
        product: Product,
        signer: SigningKey,
        opts: &VerifyOptions<'_>,
    ) -> VerifiedChain {
        let mut checks = Vec::new();
        let vlek = signer == SigningKey::VLEK;
        let (inter_role, vek_cn) = if vlek {
            (CertRole::Asvk, "SEV-VLEK")
        } else {
            (CertRole::Ask, "SEV-VCEK")
        };
        let vek_given = if vlek { &certs.vlek } else { &certs.vcek };
        let fail_chain = |checks: Vec<Check>, vek: Option<AmdCert>| VerifiedChain {
            product,
            signer,
            vek,
            verifier: None,
            checks,
        };
        let Some(vek) = vek_given.clone() else {
            checks.push(Check::fail(
                "chain.vek_present",
                Fault::Malformed,
                format!(
                    "no {} certificate given (KDS: {})",
                    signer_name(signer),
                    if vlek {
                        kds::cert_chain_url(product, signer)
                    } else {
                        format!("{}/vcek/v1/{product}/<hwid>?...", kds::KDS_BASE)
                    }
                ),
            ));
            return fail_chain(checks, None);
        };
        let Some(root) = opts.trust.get(product) else {
            checks.push(Check::fail(
                "chain.root",
                Fault::Cryptography,
                format!("no trusted root for {product}"),
            ));
            return fail_chain(checks, Some(vek));
        };
        checks.push(Check::pass(
            "chain.root",
            Fault::Cryptography,
            match opts.trust.kind() {
                TrustKind::BuiltinAmd => Cow::Owned(format!("built-in AMD ARK-{product}")),
                TrustKind::Custom => Cow::Owned(format!(
                    "custom root {}",
                    root.ark.subject_cn().unwrap_or("?")
                )),
            },
        ));
        // The ARK: the pinned one; a given one must be the same key.
        let ark = &root.ark;
        if let Some(given) = &certs.ark {
            checks.push(Check::cond(
                "chain.ark_pinned",
                Fault::Cryptography,
                given.same_key(ark) && given.subject_cn() == ark.subject_cn(),
                "given ARK is the pinned root",
                || {
                    format!(
                        "given ARK {:?} is not the trusted {:?} (different key or name)",
                        given.subject_cn(),
                        ark.subject_cn()
                    )
                },
            ));
        } else {
            checks.push(Check::pass(
                "chain.ark_pinned",
                Fault::Cryptography,
                "using the trusted ARK",
            ));
        }
        checks.push(match ark.verify_signed_by(ark) {
            Ok(()) => Check::pass(
                "chain.ark_self_signed",
                Fault::Cryptography,
                "ARK self-signature",
            ),
            Err(e) => Check::fail("chain.ark_self_signed", Fault::Cryptography, e.to_string()),
        });
        let (inter, _given) = if vlek {
            cert_for(&certs.asvk, &root.asvk)
        } else {
            cert_for(&certs.ask, &root.ask)
        };
        let Some(inter) = inter else {
            checks.push(Check::fail(
                "chain.intermediate",
                Fault::Malformed,
                format!(
                    "no {} certificate given or trusted",
                    if vlek { "ASVK" } else { "ASK" }
                ),
            ));
            return fail_chain(checks, Some(vek));
        };
        checks.push(match inter.verify_signed_by(ark) {
            Ok(()) => Check::pass(
                "chain.intermediate",
                Fault::Cryptography,
                format!("{} signed by {}", inter.name(), ark.name()),
            ),
            Err(e) => Check::fail("chain.intermediate", Fault::Cryptography, e.to_string()),
        });
        checks.push(match vek.verify_signed_by(inter) {
            Ok(()) => Check::pass(
                "chain.vek",
                Fault::Cryptography,
                format!("{} signed by {}", vek.name(), inter.name()),
            ),
            Err(e) => Check::fail("chain.vek", Fault::Cryptography, e.to_string()),
        });
        // Names and shapes AMD certificates have.
        let want_inter = format!("{}{product}", if vlek { "SEV-VLEK-" } else { "SEV-" });
        let mut name_problems = Vec::new();
        if inter.role() != Some((inter_role, Some(product)))
            || inter.subject_cn() != Some(&want_inter)
        {
            name_problems.push(format!(
                "intermediate CN {:?}, expected {want_inter:?}",
                inter.subject_cn()
            ));
        }
        if inter.issuer_cn() != ark.subject_cn() {
            name_problems.push(format!(
                "intermediate issuer {:?} is not {:?}",
                inter.issuer_cn(),
                ark.subject_cn()
            ));
        }
        if vek.subject_cn() != Some(vek_cn) {
            name_problems.push(format!(
                "VEK CN {:?}, expected {vek_cn:?}",
                vek.subject_cn()
            ));
        }
        if vek.issuer_cn() != inter.subject_cn() {
            name_problems.push(format!(
                "VEK issuer {:?} is not {:?}",
                vek.issuer_cn(),
                inter.subject_cn()
            ));
        }
        if !inter.is_ca() {
            name_problems.push(format!("{} is not a CA (BasicConstraints)", inter.name()));
        }
        checks.push(Check::cond(
            "chain.names",
            Fault::Malformed,
            name_problems.is_empty(),
            Cow::Owned(format!("{} <- {} <- {vek_cn}", ark.name(), want_inter)),
            || name_problems.join("; "),
        ));
        let algs_ok = [ark, inter, &vek]
            .iter()
            .all(|c| c.signature_is_pss_sha384());
        let key_ok = matches!(vek.public_key(), PublicKey::P384(_));
        checks.push(Check::cond(
            "chain.algorithms",
            Fault::Malformed,
            algs_ok && key_ok,
            "RSASSA-PSS SHA-384 signatures, P-384 VEK key",
            || {
                format!(
                    "signature algorithms {}/{}/{} (RSASSA-PSS SHA-384 expected), VEK key P-384: {key_ok}",
                    ark.signature_algorithm(),
                    inter.signature_algorithm(),
                    vek.signature_algorithm()
                )
            },
        ));
        let expired = [ark, inter, &vek]
            .into_iter()
            .find(|c| !c.valid_at(opts.at));
        checks.push(Check::cond(
            "chain.validity",
            Fault::Cryptography,
            expired.is_none(),
            Cow::Owned(format!(
                "all valid at {}",
                crate::time::fmt_rfc3339(opts.at)
            )),
            || {
                let c = expired.unwrap_or(&vek);
                format!(
                    "{} is valid {} .. {}, not at {}",
                    c.name(),
                    crate::time::fmt_rfc3339(c.not_before()),
                    crate::time::fmt_rfc3339(c.not_after()),
                    crate::time::fmt_rfc3339(opts.at)
                )
            },
        ));
        // CRL: the one issued by this ARK.
        let crl = certs
            .crls
            .iter()
            .chain(opts.crls.iter())
            .find(|c| c.issuer_cn() == ark.subject_cn());
        match crl {
            None => checks.push(if opts.require_crl {
                Check::fail(
                    "crl",
                    Fault::Cryptography,
                    format!(
                        "no CRL from {} (KDS: {})",
                        ark.name(),
                        kds::crl_url(product, signer)
                    ),
                )
            } else {
                Check::skip("crl", Fault::Cryptography, "no CRL given")
            }),
            Some(crl) => {
                checks.push(match crl.verify_signed_by(ark) {
                    Ok(()) => {
                        Check::pass("crl.signature", Fault::Cryptography, "signed by the ARK")
                    }
                    Err(e) => Check::fail("crl.signature", Fault::Cryptography, e.to_string()),
                });
                checks.push(Check::cond(
                    "crl.current",
                    Fault::Cryptography,
                    crl.current_at(opts.at),
                    "current",
                    || {
                        format!(
                            "CRL covers {} .. {}, not {}",
                            crate::time::fmt_rfc3339(crl.this_update()),
                            crl.next_update()
                                .map(crate::time::fmt_rfc3339)
                                .unwrap_or_default(),
                            crate::time::fmt_rfc3339(opts.at)
                        )
                    },
                ));
                checks.push(Check::cond(
                    "crl.revocation",
                    Fault::Cryptography,
                    !crl.revokes(inter),
                    Cow::Owned(format!("{} not revoked", inter.name())),
                    || {
                        format!(
                            "{} serial {} is revoked",
                            inter.name(),
                            hex::encode(inter.serial())
                        )
                    },
                ));
            }
        }
        let verifier = match vek.p384_verifier() {
            Ok(k) => Some(k),
            Err(e) => {
                checks.push(Check::fail(
                    "chain.vek_key",
                    Fault::Malformed,
                    e.to_string(),
                ));
                None
            }
        };
        VerifiedChain {
            product,
            signer,
            vek: Some(vek),
            verifier,
            checks,
        }
    }

    /// Whether every chain check passed (reports can pass only then).
    pub fn ok(&self) -> bool {
        self.verifier.is_some()
            && self
                .checks
                .iter()
                .all(|c| c.outcome != crate::verdict::Outcome::Fail)
    }
    /// The chain checks.
    pub fn checks(&self) -> &[Check] {
        &self.checks
    }
    /// Product line.
    pub fn product(&self) -> Product {
        self.product
    }
    /// Which key kind the chain certifies.
    pub fn signer(&self) -> SigningKey {
        self.signer
    }
    /// The VCEK/VLEK certificate, if one was given.
    pub fn vek(&self) -> Option<&AmdCert> {
        self.vek.as_ref()
    }

    /// Verify one report against this chain: structure, product, TCB layout, chain
    /// checks (copied), binding, signature, policy.
    pub fn verify_report(&self, bytes: &[u8], policy: &Policy) -> Verdict {
        let mut v = Verdict {
            product: Some(self.product),
            signer: Some(signer_name(self.signer)),
            checks: Vec::with_capacity(24),
        };
        let Some(r) = parse_checks(&mut v, bytes) else {
            return v;
        };
        match r.product() {
            Some(p) if p != self.product => v.push(Check::fail(
                "report.product",
                Fault::Cryptography,
                format!("report CPUID says {p}, the chain is {}", self.product),
            )),
            None if r.version >= 3 => v.push(Check::fail(
                "report.product",
                Fault::Malformed,
                format!(
                    "CPUID family {:#04x} model {:#04x} is no known product",
                    r.cpuid_fam_id, r.cpuid_mod_id
                ),
            )),
            _ => v.push(Check::pass(
                "report.product",
                Fault::Malformed,
                self.product.name(),
            )),
        }
        self.finish(&mut v, &r, policy);
        v
    }

    fn finish(&self, v: &mut Verdict, r: &AttestationReport, policy: &Policy) {
        let product = self.product;
        let tcbs = match r.tcbs(product) {
            Ok(t) => {
                v.push(Check::pass(
                    "report.tcb",
                    Fault::Malformed,
                    "TCB fields decode",
                ));
                // The key that signs is for REPORTED_TCB, which the platform may lower
                // (SNP_CONFIG) but never raise above what it runs (go-sev-guest checks
                // the same: VCEK TCB <= CURRENT_TCB).
                v.push(Check::cond(
                    "report.tcb_order",
                    Fault::Malformed,
                    t.current.dominates(&t.reported),
                    "REPORTED_TCB <= CURRENT_TCB",
                    || {
                        format!(
                            "REPORTED_TCB {} exceeds CURRENT_TCB {}",
                            t.reported, t.current
                        )
                    },
                ));
                Some(t)
            }
            Err(e) => {
                v.push(Check::fail("report.tcb", Fault::Malformed, e.to_string()));
                None
            }
        };
        v.checks.extend(self.checks.iter().cloned());
        self.binding(v, r, tcbs.as_ref());
        self.signature(v, r);
        if let Some(t) = &tcbs {
            let step = self.vek.as_ref().and_then(|c| c.extensions().stepping());
            policy.check(v, r, product, t, step);
        } else if !policy.is_empty() {
            v.push(Check::fail(
                "policy",
                Fault::Malformed,
                "policy not checked: the TCB fields do not decode",
            ));
        }
    }

    fn binding(&self, v: &mut Verdict, r: &AttestationReport, tcbs: Option<&ReportTcbs>) {
        let Some(vek) = &self.vek else {
            v.push(Check::skip(
                "binding",
                Fault::Cryptography,
                "no VEK certificate to bind to",
            ));
            return;
        };
        let ext = vek.extensions();
        let key = r.key_info.signing_key();
        v.push(Check::cond(
            "binding.signer",
            Fault::Cryptography,
            key == self.signer,
            signer_name(self.signer),
            || {
                format!(
                    "report signed by {:?}, certificate is a {}",
                    key,
                    signer_name(self.signer)
                )
            },
        ));
        // AMD's VCEKs and VLEKs name their product line (`Milan-B0`, `Genoa-B1`,
        // `Turin-B0`); a missing or unrecognised productName binds to nothing.
        let ext_product = ext.product();
        v.push(Check::cond(
            "binding.product",
            Fault::Cryptography,
            ext_product == Some(self.product),
            self.product.name(),
            || match &ext.product_name {
                None => format!(
                    "VEK has no productName extension (a {} VEK names it)",
                    self.product
                ),
                Some(n) if ext_product.is_none() => {
                    format!("VEK productName {n:?} is not an AMD product name")
                }
                Some(n) => format!("VEK productName {n:?} is not {}", self.product),
            },
        ));
        match tcbs {
            None => v.push(Check::skip(
                "binding.tcb",
                Fault::Cryptography,
                "TCB does not decode",
            )),
            Some(t) => {
                let cert_tcb = ext.tcb(self.product);
                let ok = cert_tcb == Some(t.reported) && ext.nonzero_reserved_spl.is_empty();
                v.push(Check::cond(
                    "binding.tcb",
                    Fault::Cryptography,
                    ok,
                    "VEK SPLs equal REPORTED_TCB",
                    || match cert_tcb {
                        Some(c) => format!(
                            "VEK TCB {c} != REPORTED_TCB {}{}",
                            t.reported,
                            if ext.nonzero_reserved_spl.is_empty() {
                                String::new()
                            } else {
                                format!("; non-zero {:?}", ext.nonzero_reserved_spl)
                            }
                        ),
                        None => {
                            "VEK lacks an SPL extension (bl/tee/snp/ucode, fmc on Turin)".into()
                        }
                    },
                ));
            }
        }
        if self.signer == SigningKey::VLEK {
            v.push(Check::cond(
                "binding.hwid",
                Fault::Cryptography,
                ext.hw_id.is_none() && ext.csp_id.is_some(),
                "VLEK: csp_id, no hwID",
                || "VLEK must carry csp_id and no hwID".into(),
            ));
        } else if r.chip_id_masked() {
            v.push(Check::skip(
                "binding.hwid",
                Fault::Cryptography,
                "CHIP_ID masked (zero)",
            ));
        } else {
            let want = r.chip_id_for(self.product);
            let hw = ext.hw_id.as_deref();
            let rest_zero = r
                .chip_id
                .get(want.len()..)
                .is_none_or(|t| t.iter().all(|&b| b == 0));
            v.push(Check::cond(
                "binding.hwid",
                Fault::Cryptography,
                hw == Some(want) && rest_zero,
                if want.len() == 8 {
                    "hwID = CHIP_ID[0..8]"
                } else {
                    "hwID = CHIP_ID"
                },
                || match hw {
                    Some(h) => format!(
                        "VCEK hwID {} != CHIP_ID {}",
                        hex::encode(h),
                        hex::encode(r.chip_id)
                    ),
                    None => "VCEK has no hwID extension".into(),
                },
            ));
        }
    }

    fn signature(&self, v: &mut Verdict, r: &AttestationReport) {
        let Some(verifier) = &self.verifier else {
            v.push(Check::fail(
                "report.signature",
                Fault::Cryptography,
                "no usable VEK key",
            ));
            return;
        };
        let sig = r.signature.to_be().map_err(|e| e.to_string());
        let res = sig.clone().and_then(|(rr, ss)| {
            verifier
                .verify(r.signed_bytes(), &P384Signature { r: rr, s: ss })
                .map_err(|e| e.to_string())
        });
        // ECDSA accepts (r, s) and (r, n - s) alike, and the firmware does not normalize
        // s: a high-S signature is genuine but shows the report bytes are malleable, so
        // the detail says so (never use a report's hash or signature as its identity).
        let high_s = sig.is_ok_and(|(_, s)| softsev_crypto::ecdsa::p384_is_high_s(&s));
        let who = if self.signer == SigningKey::VLEK {
            "signed by the VLEK"
        } else {
            "signed by the VCEK"
        };
        v.push(match res {
            Ok(()) => Check::pass(
                "report.signature",
                Fault::Cryptography,
                if high_s {
                    format!("{who} (high-S form: the signature is malleable; do not use it to identify the report)")
                } else {
                    who.to_string()
                },
            ),
            Err(e) => Check::fail(
                "report.signature",
                Fault::Cryptography,
                format!(
                    "{e} (key: {})",
                    self.vek.as_ref().map_or("none", |c| c.name())
                ),
            ),
        });
    }
}

/// Verify one report with the certificates that came with it.
pub fn verify(bytes: &[u8], certs: &CertSet, opts: &VerifyOptions<'_>) -> Verdict {
    let mut v = Verdict::default();
    let Some(r) = parse_checks(&mut v, bytes) else {
        return v;
    };
    let product = match determine_product(&r, certs, opts.product) {
        Ok((p, src)) => {
            v.push(Check::pass(
                "report.product",
                Fault::Malformed,
                Cow::Owned(format!("{p} (from {src})")),
            ));
            p
        }
        Err(e) => {
            v.push(Check::fail("report.product", Fault::Malformed, e));
            return v;
        }
    };
    v.product = Some(product);
    let signer = match r.key_info.signing_key() {
        SigningKey::VLEK => SigningKey::VLEK,
        _ => SigningKey::VCEK,
    };
    v.signer = Some(signer_name(signer));
    let chain = VerifiedChain::build(certs, product, signer, opts);
    chain.finish(&mut v, &r, &opts.policy);
    v
}

/// Verify many reports signed under one chain, in parallel on every core. The chain
/// is built once per signer kind present.
pub fn verify_batch(
    reports: &[Vec<u8>],
    certs: &CertSet,
    opts: &VerifyOptions<'_>,
) -> Vec<Verdict> {
    let first = reports
        .iter()
        .find_map(|b| AttestationReport::parse(b).ok());
    let product = first
        .as_ref()
        .and_then(|r| determine_product(r, certs, opts.product).ok())
        .map(|(p, _)| p);
    let Some(product) = product else {
        return reports.par_iter().map(|b| verify(b, certs, opts)).collect();
    };
    let vcek = certs
        .vcek
        .as_ref()
        .map(|_| VerifiedChain::build(certs, product, SigningKey::VCEK, opts));
    let vlek = certs
        .vlek
        .as_ref()
        .map(|_| VerifiedChain::build(certs, product, SigningKey::VLEK, opts));
    reports
        .par_iter()
        .map(|b| {
            let key = b.get(0x48..0x4C).map(|k| {
                softsev_abi::report::KeyInfo(u32::from_le_bytes([k[0], k[1], k[2], k[3]]))
                    .signing_key()
            });
            let chain = match key {
                Some(SigningKey::VLEK) => vlek.as_ref(),
                _ => vcek.as_ref(),
            };
            match chain {
                Some(c) => c.verify_report(b, &opts.policy),
                None => verify(b, certs, opts),
            }
        })
        .collect()
}

/// Verify many reports against one already-verified chain, in parallel.
pub fn verify_batch_with(
    chain: &VerifiedChain,
    reports: &[Vec<u8>],
    policy: &Policy,
) -> Vec<Verdict> {
    reports
        .par_iter()
        .map(|b| chain.verify_report(b, policy))
        .collect()
}
