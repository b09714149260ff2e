//! QMP as QEMU speaks it, for an SEV / SEV-ES guest (shared/spec/sev-legacy.md §8.2;
//! QEMU `monitor/qmp.c`, `qapi/qmp-dispatch.c`, `qapi/qobject-input-visitor.c`,
//! `target/i386/sev.c`, `monitor/hmp-cmds-target.c`).
//!
//! * [`json`]: QEMU's JSON on the wire (member order, escapes) and its input streamer.
//! * [`Session`]: one monitor's protocol state — the greeting, capability negotiation,
//!   request checking, argument checking as the QAPI visitor words it, every command,
//!   events — over a [`QmpGuest`], so the protocol does not depend on the host.
//! * [`hmp`]: `human-monitor-command` with `xp`/`x` (QEMU's `memory_dump` format),
//!   `info status`, `info sev`.
//! * [`server`]: the Unix socket (`-qmp unix:PATH,server=on,wait=off`), one client at
//!   a time (QEMU accepts one client per monitor chardev too; it allows several
//!   monitors, softsev serves one).
//!
//! The implementation of [`QmpGuest`] is [`crate::sev_run::SevVm`]: the guest launched
//! through the host's SevLauncher on the firmware model; the monitor keeps no SEV state
//! of its own.
//!
//! Commands: `qmp_capabilities`, `query-status`, `query-sev`,
//! `query-sev-capabilities`, `query-sev-launch-measure`, `sev-inject-launch-secret`,
//! `query-sev-attestation-report`, `cont`, `stop`, `quit`, `human-monitor-command`,
//! `query-version`, `query-commands`, and migration (`qapi/migration.json`):
//! `migrate-set-parameters`, `query-migrate-parameters`, `migrate`, `query-migrate`,
//! `migrate_cancel`, `migrate-incoming`, with `MIGRATION` events. A `migrate` runs to
//! its end inside the command (the monitor answers when the stream is complete; the
//! `MIGRATION` events and `query-migrate` then tell how it went), so `migrate_cancel`
//! has nothing in flight to cancel and, as in QEMU without a migration, succeeds.

pub mod hmp;
pub mod json;
pub mod server;
mod session;

pub use json::QValue;
pub use session::{QmpVersion, Session};

use serde::Serialize;

/// QEMU's `QapiErrorClass` values QMP sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ErrorClass {
    /// `GenericError`.
    GenericError,
    /// `CommandNotFound`.
    CommandNotFound,
    /// `DeviceNotActive`.
    DeviceNotActive,
    /// `DeviceNotFound`.
    DeviceNotFound,
    /// `KVMMissingCap`.
    KvmMissingCap,
}

impl ErrorClass {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorClass::GenericError => "GenericError",
            ErrorClass::CommandNotFound => "CommandNotFound",
            ErrorClass::DeviceNotActive => "DeviceNotActive",
            ErrorClass::DeviceNotFound => "DeviceNotFound",
            ErrorClass::KvmMissingCap => "KVMMissingCap",
        }
    }
}

/// A QMP error: `{"error": {"class": …, "desc": …}}`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{desc}")]
pub struct QmpError {
    /// The class.
    pub class: ErrorClass,
    /// The human-readable description (QEMU's words).
    pub desc: String,
}

impl QmpError {
    /// A `GenericError` (QEMU `error_setg`).
    pub fn generic(desc: impl Into<String>) -> Self {
        QmpError {
            class: ErrorClass::GenericError,
            desc: desc.into(),
        }
    }

    /// A `CommandNotFound`.
    pub fn not_found(desc: impl Into<String>) -> Self {
        QmpError {
            class: ErrorClass::CommandNotFound,
            desc: desc.into(),
        }
    }
}

/// QEMU's `RunState` names QMP reports (qapi/run-state.json).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RunState {
    /// `prelaunch`: started with `-S`, never run.
    Prelaunch,
    /// `running`.
    Running,
    /// `paused`: stopped by `stop`.
    Paused,
    /// `shutdown`: the guest or `quit` ended it.
    Shutdown,
    /// `inmigrate`: started with `-incoming`, waiting for the stream.
    InMigrate,
    /// `postmigrate`: the guest was migrated away (the source after `migrate`).
    PostMigrate,
}

impl RunState {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            RunState::Prelaunch => "prelaunch",
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::Shutdown => "shutdown",
            RunState::InMigrate => "inmigrate",
            RunState::PostMigrate => "postmigrate",
        }
    }
}

/// QEMU's `SevState` (qapi/misc-target.json), the guest's firmware state as QEMU
/// tracks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum SevState {
    /// `uninit`.
    Uninit,
    /// `launch-update`: after LAUNCH_START.
    LaunchUpdate,
    /// `launch-secret`: after LAUNCH_MEASURE.
    LaunchSecret,
    /// `running`: after LAUNCH_FINISH.
    Running,
    /// `send-update`.
    SendUpdate,
    /// `receive-update`.
    ReceiveUpdate,
}

impl SevState {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            SevState::Uninit => "uninit",
            SevState::LaunchUpdate => "launch-update",
            SevState::LaunchSecret => "launch-secret",
            SevState::Running => "running",
            SevState::SendUpdate => "send-update",
            SevState::ReceiveUpdate => "receive-update",
        }
    }

    /// QEMU's enum value (printed by "SEV: Not in correct state. (LSECRET) %x").
    pub const fn index(self) -> u32 {
        self as u32
    }
}

/// `SevInfo` for a legacy guest (`sev-type` "sev", members `policy`, `handle`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SevInfo {
    /// `enabled`.
    pub enabled: bool,
    /// `api-major` (PLATFORM_STATUS).
    pub api_major: u8,
    /// `api-minor`.
    pub api_minor: u8,
    /// `build-id`.
    pub build_id: u8,
    /// `state`.
    pub state: SevState,
    /// `policy`.
    pub policy: u32,
    /// `handle`.
    pub handle: u32,
}

/// `SevCapability`: the platform's PDH, its chain (PEK ‖ OCA ‖ CEK), chip id, C-bit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SevCapability {
    /// PDH certificate (0x824 bytes).
    pub pdh: Vec<u8>,
    /// PEK ‖ OCA ‖ CEK (3 × 0x824 bytes).
    pub cert_chain: Vec<u8>,
    /// GET_ID2 of CPU 0 (64 bytes).
    pub cpu0_id: Vec<u8>,
    /// Host CPUID 0x8000001F EBX\[5:0\].
    pub cbitpos: u32,
    /// QEMU hard-codes 1.
    pub reduced_phys_bits: u32,
}

/// What the monitor needs of the guest and its host: the SEV operations QEMU's
/// `target/i386/sev.c` performs for QMP, guest memory for the debug read, and the
/// run-state transitions. Errors carry QEMU's messages (see [`fw_error_to_str`]).
pub trait QmpGuest: Send {
    /// `query-sev` (QEMU `sev_get_info`).
    fn sev_info(&self) -> SevInfo;
    /// `query-sev-capabilities` (PDH_CERT_EXPORT, GET_ID2, host CPUID).
    fn capabilities(&mut self) -> Result<SevCapability, QmpError>;
    /// The LAUNCH_MEASURE blob (measure ‖ mnonce, 48 bytes) once the guest is in
    /// launch-secret or later; `None` before.
    fn launch_measure(&self) -> Option<Vec<u8>>;
    /// The OVMF secret area `{base, size}` from the firmware's footer table (GUID
    /// 4c2eb361-…, §8.3), if the firmware has one.
    fn secret_area(&self) -> Option<(u32, u32)>;
    /// KVM_SEV_LAUNCH_SECRET of `secret` (the encrypted payload) at `gpa` with the
    /// 52-byte packet header; `guest_len = trans_len = secret.len()`.
    fn inject_secret(&mut self, header: &[u8], secret: &[u8], gpa: u64) -> Result<(), QmpError>;
    /// KVM_SEV_GET_ATTESTATION_REPORT with `mnonce` (length query, then the call).
    fn attestation_report(&mut self, mnonce: &[u8; 16]) -> Result<Vec<u8>, QmpError>;
    /// Read guest-physical memory as QEMU's monitor reads it: through the SEV debug
    /// path (DBG_DECRYPT) when the policy allows debugging, else the raw bytes the
    /// host sees (ciphertext for private pages). `false`: no memory there.
    fn read_phys(&mut self, gpa: u64, buf: &mut [u8]) -> bool;
    /// Translate a guest-virtual address of vCPU `cpu` for `x` (`None`: unmapped or
    /// the vCPU's state is not visible to the host, as for SEV-ES).
    fn translate(&mut self, cpu: u32, vaddr: u64) -> Option<u64>;
    /// The vCPUs start (QEMU `vm_start`); the first start of an SEV guest issues
    /// LAUNCH_FINISH (`sev_vm_state_change`).
    fn start(&mut self) -> Result<(), QmpError>;
    /// The vCPUs stop (`stop`).
    fn stop(&mut self);
    /// `quit`: the VM is torn down.
    fn quit(&mut self);
    /// Whether the guest has shut down by itself since the last call (then the
    /// monitor emits SHUTDOWN with `guest: true`).
    fn take_guest_shutdown(&mut self) -> bool {
        false
    }
    /// A migration blocker (QEMU `migrate_add_blocker`): `migrate` fails with this
    /// text. SEV-SNP guests have [`crate::migration::SNP_MIGRATION_BLOCKER`].
    fn migration_blocker(&self) -> Option<String> {
        None
    }
    /// `migrate`: send the guest to `uri` with `params`, reporting each status change
    /// through `status`; returns the final statistics. On failure the guest keeps
    /// running here (SEND_CANCEL) and the error is the migration's `error-desc`.
    fn migrate_out(
        &mut self,
        uri: &crate::migration::MigrationUri,
        params: &crate::migration::MigrationParameters,
        status: &mut dyn FnMut(crate::migration::MigrationStatus),
    ) -> Result<crate::migration::MigrationInfo, QmpError> {
        let _ = (uri, params, status);
        Err(QmpError::generic(
            "migration is not available for this guest in softsev",
        ))
    }
    /// `-incoming URI` / `migrate-incoming`: receive the guest from `uri`. On failure
    /// no guest is runnable here.
    fn migrate_in(
        &mut self,
        uri: &crate::migration::MigrationUri,
        status: &mut dyn FnMut(crate::migration::MigrationStatus),
    ) -> Result<crate::migration::MigrationInfo, QmpError> {
        let _ = (uri, status);
        Err(QmpError::generic(
            "incoming migration is not available for this guest in softsev",
        ))
    }
}

/// QEMU's `fw_error_to_str` (target/i386/sev.c `sev_fw_errlist`).
pub fn fw_error_to_str(code: u32) -> &'static str {
    const LIST: [&str; 0x28] = [
        "",
        "Platform state is invalid",
        "Guest state is invalid",
        "Platform configuration is invalid",
        "Buffer too small",
        "Platform is already owned",
        "Certificate is invalid",
        "Policy is not allowed",
        "Guest is not active",
        "Invalid address",
        "Bad signature",
        "Bad measurement",
        "ASID is already owned",
        "Invalid ASID",
        "WBINVD is required",
        "DF_FLUSH is required",
        "Guest handle is invalid",
        "Invalid command",
        "Guest is active",
        "Hardware error",
        "Hardware unsafe",
        "Feature not supported",
        "Invalid parameter",
        "Required firmware resource depleted",
        "Part-specific integrity check failure",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
    ];
    match LIST.get(code as usize) {
        Some(s) if code == 0 || !s.is_empty() => s,
        _ => "unknown error",
    }
}
