//! Chip identity and the key hierarchy of the AMD secure processor model
//! (docs/firmware-identity.md):
//!
//! * [`Chip`]: a product personality (Milan, Genoa, Turin), a CHIP_ID and a chip-unique
//!   secret, created from a seed (reproducible) or randomly. It derives the VCEK for any
//!   TCB (cached per TCB) and holds a loaded VLEK.
//! * [`AmdRoot`]: the simulated AMD side — ARK, ASK and ASVK (RSA-4096) with their
//!   certificates and CRLs, shared by every chip of a product, cached per process.
//! * [`cert`]: X.509 certificates and CRLs in AMD's exact shape.
//! * [`table`]: the GHCB extended-request certificate table.
//! * [`derive`](mod@derive): MSG_KEY_REQ derived keys.
//! * [`sev`](mod@sev): the legacy SEV identity (CEK, OCA, PEK, PDH), SEV certificates,
//!   the AMD-format ARK/ASK and the firmware's certificate rules.

pub mod amd;
pub mod cert;
pub mod chip;
pub mod derive;
pub mod sev;
pub mod table;

pub use amd::{AmdRoot, DEFAULT_ROOT_SEED};
pub use cert::{AmdKeyRole, VekKind};
pub use chip::{CertChain, Chip, Vcek, Vlek, WrappedVlek};
pub use derive::{DerivedKeyRequest, GuestFieldSelect, KeyRoot, LaunchKey, derive_key};
pub use table::{CertTable, CertTableBlob, CertTableError, CertTableGuid};

use softsev_abi::Product;

/// Failures in the identity layer. Messages name the object and the value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IdentityError {
    /// A cryptographic primitive failed (key generation, signing, verification).
    #[error("crypto: {0}")]
    Crypto(#[from] softsev_crypto::CryptoError),
    /// DER encoding or decoding failed.
    #[error("DER: {0}")]
    Der(#[from] der::Error),
    /// PEM text could not be encoded or decoded.
    #[error("PEM: {0}")]
    Pem(String),
    /// PEM armour had the wrong label.
    #[error("PEM label {got:?} where {expected:?} was expected")]
    PemLabel {
        /// What was asked for.
        expected: String,
        /// What the text said.
        got: String,
    },
    /// A TCB_VERSION cannot exist on this product.
    #[error("TCB {tcb:?} is not valid on {product}: {why}")]
    BadTcb {
        /// The product.
        product: Product,
        /// The TCB components.
        tcb: softsev_abi::TcbVersion,
        /// Why it was rejected.
        why: String,
    },
    /// A structure did not have the expected shape.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// A wrapped VLEK does not belong to this chip or was tampered with.
    #[error("wrapped VLEK for {product} rejected: {why}")]
    VlekRejected {
        /// The chip's product.
        product: Product,
        /// Why.
        why: &'static str,
    },
    /// No VLEK has been loaded.
    #[error("no VLEK is loaded on this {0} chip")]
    NoVlek(Product),
    /// A MSG_KEY_REQ field holds a value the model cannot represent.
    #[error("key request {field} = {value:#x} is not valid")]
    BadKeyRequest {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
}
