//! Errors of the host: what a KVM ioctl returns (an errno, plus the firmware status for
//! `KVM_MEMORY_ENCRYPT_OP`), and why.

use softsev_abi::FwStatus;
pub use softsev_abi::kvm::Errno;
use thiserror::Error;

/// A failed ioctl: the errno KVM would return, the firmware status when the failure
/// came from the secure processor, and the reason in words.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{errno:?}: {reason}{}", fw.map(|s| format!(" (firmware status {s:?})")).unwrap_or_default())]
pub struct KvmError {
    /// The errno (the ioctl returns −errno).
    pub errno: Errno,
    /// Firmware status (copied to `kvm_sev_cmd.error`).
    pub fw: Option<FwStatus>,
    /// What was wrong.
    pub reason: String,
}

impl KvmError {
    /// An error without a firmware status.
    pub fn new(errno: Errno, reason: impl Into<String>) -> Self {
        Self {
            errno,
            fw: None,
            reason: reason.into(),
        }
    }

    /// `-EIO` with the firmware status of a failed command.
    pub fn fw(status: FwStatus, what: impl Into<String>) -> Self {
        Self {
            errno: Errno::EIO,
            fw: Some(status),
            reason: what.into(),
        }
    }

    /// `-EINVAL`.
    pub fn inval(reason: impl Into<String>) -> Self {
        Self::new(Errno::EINVAL, reason)
    }
}

/// Result of an ioctl.
pub type KvmResult<T = ()> = Result<T, KvmError>;

/// Shorthand: `Err(-EINVAL)` with a reason.
pub(crate) fn einval<T>(reason: impl Into<String>) -> KvmResult<T> {
    Err(KvmError::inval(reason))
}
