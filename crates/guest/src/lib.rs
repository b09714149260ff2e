//! The guest side of an SEV-SNP, SEV-ES or SEV virtual machine, modelled on how OVMF
//! and Linux boot on that hardware, behind a [`GuestPlatform`] trait that a host
//! implements per vCPU (shared/spec/host-interfaces.md §2–3, shared/spec/snp-attestation.md
//! §2–3, shared/spec/sev-legacy.md §3.5, §8).
//!
//! * [`ghcb`]: the GHCB client — MSR protocol, full-GHCB calls, page state change, AP
//!   creation, guest-request transport.
//! * [`memory`]: accepting memory (PSC + PVALIDATE, 2 MiB with 4 KiB fallback) and
//!   making it shared.
//! * [`ap`]: starting APs with SNP AP creation.
//! * [`hashes`]: the kernel-hashes check OVMF makes.
//! * [`boot`](mod@boot): the whole boot flow, [`boot()`](fn@boot) with a [`BootConfig`] → [`BootReport`].
//! * [`msg`]: guest messages through a VMPCK (reports, derived keys, the extended
//!   request's certificate table).
//! * [`sev_boot`](mod@sev_boot): the legacy SEV / SEV-ES boot flow,
//!   [`sev_boot()`](fn@sev_boot) with a [`SevBootConfig`] → [`SevBootReport`], and
//!   [`sev_ap_entry`] for the APs.
//! * [`vc`]: the SEV-ES #VC handler (CPUID by MSR protocol or full GHCB, IN/OUT,
//!   RDMSR/WRMSR, MMIO, the AP jump table).
//! * [`secret`]: the injected secret table (sevctl / `efi_secret` format) in the OVMF
//!   secret area.
//! * [`workload`]: a deterministic memory workload whose state lives in guest memory,
//!   and the check a guest makes after it was migrated or restored
//!   ([`workload_init`], [`workload_step`], [`verify_after_move`] → [`MoveCheck`]).
//!
//! The guest depends only on `softsev-abi` and `softsev-crypto`: it reaches the
//! firmware through the host, via the GHCB, as on real hardware.

#![forbid(unsafe_code)]

pub mod ap;
pub mod boot;
pub mod error;
pub mod fuzz;
pub mod ghcb;
pub mod hashes;
pub mod memory;
pub mod msg;
pub mod platform;
pub mod secret;
pub mod sev_boot;
pub mod vc;
pub mod workload;

pub use ap::{ApReport, ap_entry};
pub use boot::{AcceptMode, ApConfig, BootConfig, BootReport, Guest, Phase, SeqnoPlace, boot};
pub use error::GuestError;
pub use ghcb::{CertBuf, GhcbClient, GhcbStats};
pub use hashes::KernelBlobs;
pub use memory::{MemRange, RangeSet, Validated};
pub use msg::{KeyRequest, MsgClient, ReportRequest, SeqnoStore};
pub use platform::{CBit, Gpr, GuestFault, GuestPlatform, PageSize, VC_CPUID, VC_IOIO};
pub use secret::{SecretArea, SecretEntry, SecretTable, SecretTableError, parse_secret_area};
pub use sev_boot::{
    SecretAreaConfig, SecretStatus, SevApConfig, SevApReport, SevBootConfig, SevBootReport,
    SevGuest, SevMode, SevPhase, sev_ap_entry, sev_boot,
};
pub use vc::VcStats;
pub use workload::{
    MoveCheck, WorkloadConfig, WorkloadProgress, verify_after_move, workload_init, workload_step,
};
