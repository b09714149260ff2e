//! Model of the AMD secure processor (ASP) firmware for SEV-SNP.
//!
//! * [`Firmware`]: the SNP ABI command interface — a command id and a command buffer
//!   in SoC memory, as Linux's PSP driver issues them — with the platform state
//!   machine (INIT/SHUTDOWN, PLATFORM_STATUS, DF_FLUSH, CONFIG, COMMIT, VLEK_LOAD,
//!   FEATURE_INFO), ASID bookkeeping, guest contexts (GCTX_CREATE, ACTIVATE,
//!   DECOMMISSION, GUEST_STATUS), launch (LAUNCH_START/UPDATE/FINISH with the launch
//!   digest, secrets and CPUID pages, ID block checks), PAGE_RECLAIM, PAGE_UNSMASH and
//!   DBG_DECRYPT/ENCRYPT. Firmware and microcode updates raise the TCB
//!   ([`Firmware::download_firmware`], [`Firmware::load_microcode`]).
//! * [`identity`]: the chip (product personality, CHIP_ID, secrets), the AMD key
//!   hierarchy (ARK/ASK/ASVK, VCEK per TCB, VLEK), certificates and CRLs in AMD's
//!   exact shape, the GHCB certificate table and MSG_KEY_REQ derived keys.

#![forbid(unsafe_code)]

pub mod cpuid;
#[doc(hidden)]
pub mod fuzz;
mod fw;
pub mod guest;
pub mod guest_msg;
pub mod identity;
mod launch;
mod pages;
mod platform;
mod request;

pub use fw::{
    AsidState, Firmware, FirmwareConfig, FirmwareImage, FwResult, FwVersion, PlatformState,
};
pub use guest::{GuestInfo, GuestState};
pub use launch::{SECRETS_PAGE_VERSION, TSC_FACTOR};
pub use platform::{
    FEATURE_INFO_0_EAX, FEATURE_INFO_0_EBX, FEATURE_INFO_0_ECX, FEATURE_INFO_1_EAX,
};
