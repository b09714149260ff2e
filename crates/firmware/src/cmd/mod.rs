//! The firmware's command handlers, one file per command group (SNP ABI chapter 8;
//! AMD SEV firmware `sev_mcmd.c`): `dispatch` reads the typed buffer a command id
//! names and calls the handler, which returns a status or a model fault (see the
//! crate docs, "Errors").
//!
//! * `platform`: SNP_INIT(_EX), SNP_SHUTDOWN(_EX), SNP_PLATFORM_STATUS, SNP_DF_FLUSH,
//!   SNP_CONFIG, SNP_COMMIT, SNP_VLEK_LOAD, SNP_FEATURE_INFO;
//! * `guest`: SNP_GCTX_CREATE, SNP_ACTIVATE(_EX), SNP_DECOMMISSION, SNP_GUEST_STATUS;
//! * `launch`: SNP_LAUNCH_START, SNP_LAUNCH_UPDATE, SNP_LAUNCH_FINISH;
//! * `pages`: SNP_PAGE_RECLAIM, SNP_PAGE_UNSMASH;
//! * `dbg`: SNP_DBG_DECRYPT, SNP_DBG_ENCRYPT;
//! * `request`: SNP_GUEST_REQUEST;
//! * `sev_platform`, `sev_guest`, `sev_launch`: the legacy SEV API (INIT … PDH_CERT_EXPORT,
//!   GET_ID, ACTIVATE … GUEST_STATUS, LAUNCH_*, ATTESTATION, DBG_*; sev-legacy.md);
//! * `sev_migrate`: SEND_* and RECEIVE_* (sev-legacy.md §5.1–§5.5);
//! * `sev_swap`: SWAP_OUT, SWAP_IN (§5.6).

mod dbg;
pub(crate) mod dispatch;
mod guest;
mod launch;
mod pages;
mod platform;
mod request;
mod sev_guest;
mod sev_launch;
mod sev_migrate;
mod sev_platform;
mod sev_swap;

pub use guest::{APIC_ID_LIMIT, MAX_APIC_IDS};
pub use launch::{SECRETS_PAGE_VERSION, TSC_FACTOR};
pub use platform::{
    FEATURE_INFO_0_EAX, FEATURE_INFO_0_EBX, FEATURE_INFO_0_ECX, FEATURE_INFO_1_EAX,
};
