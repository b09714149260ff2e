//! Model of the AMD secure processor (ASP) firmware for SEV-SNP, with the legacy
//! SEV / SEV-ES API beside it on the same chip (docs/firmware-sev.md).
//!
//! * [`Firmware`]: the SNP ABI and legacy SEV command interface — a command id and a command buffer
//!   in SoC memory, as Linux's PSP driver issues them ([`Firmware::command`]), or a
//!   typed buffer that names its command ([`Firmware::call`]). [`Firmware::builder`]
//!   assembles SoC, chip and firmware.
//! * [`state`]: what the firmware keeps between commands — the platform state machines
//!   (SNP's UNINIT/INIT and legacy SEV's UNINIT/INIT/WORKING), the ASID table shared by
//!   both, and the SNP guest table keyed by [`GuestHandle`]; the legacy side (identity
//!   store, TMR, guests by [`SevHandle`]) is kept in the crate-private `sev_ctx`.
//! * [`guest_ctx`]: guest contexts as per-state data (INIT → LAUNCH → RUNNING), with
//!   the one [`LaunchRecord`] LAUNCH_FINISH writes.
//! * `cmd`: the command handlers by group — platform (INIT/SHUTDOWN, PLATFORM_STATUS,
//!   DF_FLUSH, CONFIG, COMMIT, VLEK_LOAD, FEATURE_INFO), guest contexts (GCTX_CREATE,
//!   ACTIVATE, DECOMMISSION, GUEST_STATUS), launch (LAUNCH_START/UPDATE/FINISH with the
//!   launch digest, secrets and CPUID pages, ID block checks), pages (PAGE_RECLAIM,
//!   PAGE_UNSMASH), debug (DBG_DECRYPT/ENCRYPT) and guest requests; the legacy SEV
//!   commands (INIT … PDH_CERT_EXPORT, GET_ID, ACTIVATE … GUEST_STATUS, LAUNCH_*,
//!   ATTESTATION, DBG_*; SEND/RECEIVE/SWAP are not modelled yet). Firmware and
//!   microcode updates raise the TCB ([`Firmware::download_firmware`],
//!   [`Firmware::load_microcode`]).
//! * [`guest_msg`]: the guest-message handler behind SNP_GUEST_REQUEST.
//! * [`identity`]: the chip (product personality, CHIP_ID, secrets), the AMD key
//!   hierarchy (ARK/ASK/ASVK, VCEK per TCB, VLEK), certificates and CRLs in AMD's
//!   exact shape, the GHCB certificate table and MSG_KEY_REQ derived keys; the legacy SEV
//!   identity (CUK, CEK, OCA/PEK/PDH, SEV certificates, AMD-format ARK/ASK).
//!
//! # Errors
//!
//! Inside the model a command handler fails either with the status the real firmware
//! returns for that input, or with a fault of the model itself (a SoC access only a
//! model bug can make fail, a key the chip should be able to derive). The mailbox
//! ([`Firmware::command`]) is the one place where the second becomes a status: it is
//! logged with `tracing` at error level, naming the command and the fault, and the
//! caller gets the status real firmware could give there (INVALID_ADDRESS for a memory
//! access, HWERROR_PLATFORM for the chip's keys and cryptography). No status is made up
//! silently.

#![forbid(unsafe_code)]

mod builder;
mod cmd;
pub mod cpuid;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod fw;
pub mod guest_ctx;
pub mod guest_msg;
pub mod identity;
mod sev_ctx;
pub mod state;

pub use builder::{DEFAULT_SOC_BYTES, FirmwareBuilder};
pub use cmd::{
    APIC_ID_LIMIT, FEATURE_INFO_0_EAX, FEATURE_INFO_0_EBX, FEATURE_INFO_0_ECX, FEATURE_INFO_1_EAX,
    MAX_APIC_IDS, SECRETS_PAGE_VERSION, TSC_FACTOR,
};
pub use fw::{Firmware, FirmwareConfig, FwResult};
pub use guest_ctx::{GuestInfo, GuestState, LaunchRecord};
pub use sev_ctx::VmsaIntegrityError;
pub use state::{
    AsidState, FirmwareImage, FwVersion, GuestHandle, PlatformState, SevHandle, SevPlatformState,
};
