use thiserror::Error;

/// Failures of a cryptographic operation. Messages never contain key material.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CryptoError {
    /// A key could not be parsed or is not on the expected curve / of the expected size.
    #[error("invalid {what} key: {why}")]
    InvalidKey {
        /// Which key kind ("P-384 private", "RSA public", ...).
        what: &'static str,
        /// Why it was rejected.
        why: String,
    },
    /// A signature did not verify.
    #[error("{0} signature does not verify")]
    BadSignature(&'static str),
    /// AEAD decryption failed: wrong key, nonce, AAD, or tampered ciphertext/tag.
    #[error("AES-GCM authentication failed")]
    AeadAuth,
    /// An input had the wrong length.
    #[error("{what} must be {expected} bytes, got {got}")]
    BadLength {
        /// What was measured.
        what: &'static str,
        /// Required length.
        expected: usize,
        /// Actual length.
        got: usize,
    },
    /// The underlying library refused the operation.
    #[error("crypto backend failure in {0}")]
    Backend(&'static str),
}
