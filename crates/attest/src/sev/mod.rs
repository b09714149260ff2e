//! Legacy SEV (and SEV-ES) as the guest owner and the relying party see it: the
//! platform certificate chain ARK → ASK → CEK → PEK → PDH with OCA → PEK, the legacy
//! attestation report (0xD0 bytes, signed by the PEK), the launch measurement, the
//! launch session (GODH, session blob, TEK/TIK) and LAUNCH_SECRET packets, all
//! byte-compatible with sevctl's files.
//!
//! Spec: shared/spec/sev-legacy.md §2 (certificates), §3.2–§3.5 (session, measurement,
//! secret), §4 (report), §9 (sevctl); host-interfaces.md §4.5–§4.11.
//!
//! * [`ca`]: the AMD CA (ARK, ASK) per product generation, built in or custom, and
//!   generation detection as sevctl does it.
//! * [`chain`]: chain verification with one named check per link ([`SevVerdict`]).
//! * [`report`]: the legacy attestation report against the PEK.
//! * [`owner`]: the guest owner's operations: session from a PDH, measurement build and
//!   check, secret packets; and the platform-side opening of a session (for tests and
//!   simulators).
//! * [`issue`]: making certificates: an OCA as `sevctl generate` does, signing a PEK,
//!   and custom AMD-format CAs for test platforms (§2.6).

pub mod ca;
pub mod chain;
pub mod issue;
pub mod owner;
pub mod report;

pub use ca::{CaSource, SevCa, SevGeneration};
pub use chain::{CaChoice, SevChainOptions, SevVerdict, verify_sev_chain};
pub use report::{SevReportExpect, verify_report_with_pek};

/// Every error of the legacy SEV module (verification failures are checks in a
/// [`SevVerdict`], not errors).
#[derive(Debug, thiserror::Error)]
pub enum SevError {
    /// A certificate does not decode.
    #[error(transparent)]
    Cert(#[from] softsev_abi::sev_cert::SevCertError),
    /// An input has the wrong size or shape.
    #[error("{0}")]
    Format(String),
    /// A key is not usable.
    #[error(transparent)]
    Crypto(#[from] softsev_crypto::CryptoError),
}
