//! The one crypto provider of softsev.
//!
//! Every other crate reaches cryptography only through this crate, so the choice of
//! backend is made once, by measured speed (see `benches/crypto.rs` and the README):
//!
//! | primitive | backend | why |
//! |---|---|---|
//! | SHA-256, HMAC | `sha2` / `hmac` (RustCrypto, SHA-NI where the CPU has it) | 1.17 GB/s, equal to aws-lc-rs, above ring (0.95) |
//! | SHA-384 | `aws-lc-rs` | 340 MB/s vs 283 MB/s for `sha2` |
//! | AES-256-GCM | `ring` | ~5× the `aes-gcm` crate here |
//! | ECDSA P-384 | `aws-lc-rs` (fast, randomized nonce; `P384Verifier` keeps the point parsed) and `p384` (RFC 6979, deterministic) | aws-lc-rs is 3–6× faster; p384 gives same-bytes-for-same-inputs when a seed is in force |
//! | ECDSA P-384 over SHA-256 (SEV `ECDSA_SHA256`) | verify `aws-lc-rs`; sign `p384` (prehash, RFC 6979, hedged by the project RNG when randomized) | aws-lc-rs has no P-384/SHA-256 signer |
//! | RSA-PSS verify (SHA-256 / SHA-384) | `aws-lc-rs` | ~10× the `rsa` crate |
//! | SEV channel (`sev`): AES-128-CTR, P-384 ECDH | `aws-lc-rs` | CTR ~400× and ECDH ~15–25× RustCrypto `ctr`/`p384` in a dev build (`benches/sev.rs`); point validation by `p384` |
//! | SEV identity: secp256k1 GET_ID, CEK scalar | `k256`, `crypto-bigint` (via `p384`) | once per INIT |
//! | RNG | OS RNG, or ChaCha20 seeded from a user seed | deterministic mode |
//!
//! Secrets held here (`P384SigningKey`, `Aes256Gcm` keys, the SEV channel keys and ECDH
//! scalars of [`sev`]) are zeroized on drop and never printed by `Debug`.

#![forbid(unsafe_code)]

pub mod aead;
pub mod ct;
pub mod ecdsa;
mod error;
pub mod guest_msg_aead;
pub mod hash;
pub mod kdf;
pub mod rng;
pub mod rsa;
pub mod rsa_sign;
pub mod sev;
pub mod xex;

pub use error::CryptoError;
