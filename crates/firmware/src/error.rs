//! Errors inside the firmware model: the status a command returns versus a fault of
//! the model itself (STYLE rule 6; the split coconut-svsm makes in
//! `protocols/errors.rs`, `SvsmReqError { RequestError, FatalError }`).
//!
//! Command handlers return [`CmdResult`]. An [`FwError::Status`] is what the real
//! firmware writes back for the caller's input: a bad parameter, a page in the wrong
//! state, a guest in the wrong state. An [`FwError::Model`] means the model broke an
//! invariant of its own (a SoC access that only a model bug can make fail, a key the
//! chip should be able to derive, a response that cannot be sealed).
//!
//! The rule at the mailbox ([`crate::Firmware::command`], the only place where an
//! `FwError` becomes an [`FwStatus`]): a model fault is logged with `tracing` at
//! error level, naming the command and the fault, and the caller gets the status the
//! real firmware could give in that place ([`ModelFault::status`]: INVALID_ADDRESS
//! for a memory access, HWERROR_PLATFORM for the chip's keys and cryptography). No
//! status is ever made up to hide a fault without that log line, and each fault
//! variant names its status once, here.

use softsev_abi::{FwStatus, Spa};
use softsev_soc::SocError;

/// Result of a command handler inside the model.
pub(crate) type CmdResult<T = ()> = Result<T, FwError>;

/// Why a command handler failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FwError {
    /// The status the firmware returns for this input.
    #[error("firmware status {0}")]
    Status(FwStatus),
    /// The model itself failed.
    #[error(transparent)]
    Model(#[from] ModelFault),
}

impl From<FwStatus> for FwError {
    fn from(s: FwStatus) -> Self {
        FwError::Status(s)
    }
}

impl FwError {
    /// The status the mailbox reports: the status itself, or the one real firmware
    /// could give for a model fault.
    pub(crate) fn status(&self) -> FwStatus {
        match self {
            FwError::Status(s) => *s,
            FwError::Model(f) => f.status(),
        }
    }
}

/// A failure of the model, not of the caller's input.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ModelFault {
    /// A firmware memory or RMP access failed for a reason no host input can cause
    /// (the page was range- and state-checked before).
    #[error("SoC access at SPA {spa} failed: {source}")]
    Soc {
        /// The address accessed.
        spa: Spa,
        /// What the SoC said.
        source: SocError,
    },
    /// The chip could not produce a key it owns (VCEK of a TCB it runs at, a
    /// derived key, a signature).
    #[error("chip: {0}")]
    Chip(String),
    /// The guest-message handler failed inside the model (key derivation or signing,
    /// sealing the response).
    #[error("guest message: {0}")]
    GuestMsg(String),
}

impl ModelFault {
    /// The status real firmware could return in place of this fault.
    pub(crate) fn status(&self) -> FwStatus {
        match self {
            ModelFault::Soc { .. } => FwStatus::INVALID_ADDRESS,
            ModelFault::Chip(_) | ModelFault::GuestMsg(_) => FwStatus::HWERROR_PLATFORM,
        }
    }
}

/// Classify a SoC error on a firmware access at `spa`: an address outside memory is
/// the caller's (INVALID_ADDRESS), a missing or unusable guest key is INACTIVE, the
/// rest can only be a model fault.
pub(crate) fn soc_error(spa: Spa, e: SocError) -> FwError {
    match e {
        SocError::OutOfRange { .. } => FwError::Status(FwStatus::INVALID_ADDRESS),
        SocError::Key(_) => FwError::Status(FwStatus::INACTIVE),
        source => FwError::Model(ModelFault::Soc { spa, source }),
    }
}
