//! Relying-party verification of AMD SEV-SNP attestation reports: report parsing
//! (versions 2, 3, 5; Milan, Genoa, Turin), AMD certificate chains ARK → ASK → VCEK and
//! ARK → ASVK → VLEK against pinned built-in or custom roots, CRLs, validity at an
//! injectable time, report-to-certificate binding (TCB, hwID, product), policy
//! checks in the breadth of go-sev-guest's `validate`, and structured verdicts.
//! Legacy SEV ([`sev`]): the ARK → ASK → CEK → PEK → PDH chain with OCA → PEK under
//! AMD's built-in CA per generation, the 0xD0 attestation report, and the guest owner's
//! session, measurement and secret operations, byte-compatible with sevctl.
//!
//! This crate depends only on `softsev-abi` and `softsev-crypto`: it judges what the
//! firmware model produces as any relying party would, without sharing its code.
//! Notes: shared/spec/snp-attestation.md §1, §3.1, §6, §7.

#![forbid(unsafe_code)]

pub mod cert;
pub mod certset;
pub mod fuzz;
pub mod input;
pub mod kds;
pub mod policy;
pub mod sev;
pub mod show;
pub mod table;
pub mod time;
pub mod trust;
pub mod verdict;
pub mod verify;

pub use cert::{AmdCert, AmdCrl, CertError, CertRole};
pub use certset::{CertSet, CertSetError};
pub use policy::Policy;
pub use softsev_abi::report::AttestationReport;
pub use table::{CertTable, CertTableGuid};
pub use trust::{TrustKind, TrustStore};
pub use verdict::{Check, Fault, Outcome, Verdict};
pub use verify::{
    Clock, FixedClock, SystemClock, VerifiedChain, VerifyOptions, verify, verify_batch,
    verify_batch_with,
};

/// Every error of this crate (verification failures are not errors: they are failed
/// checks in a [`Verdict`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A report does not parse.
    #[error(transparent)]
    Report(#[from] softsev_abi::report::ReportError),
    /// A certificate or CRL does not parse.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// Certificates cannot be loaded.
    #[error(transparent)]
    CertSet(#[from] CertSetError),
    /// Roots cannot be loaded.
    #[error(transparent)]
    Trust(#[from] trust::TrustError),
    /// A certificate table does not parse.
    #[error(transparent)]
    Table(#[from] table::TableError),
    /// A KDS fetch failed.
    #[error(transparent)]
    Fetch(#[from] kds::FetchError),
}
