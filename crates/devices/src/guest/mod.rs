//! Guest-side device models (frontends.md §5.1, §5.2, §7.1): what an SNP guest's Linux
//! offers its user space, answered by the in-process guest of a
//! [`softsev_vmm::service::GuestService`].
//!
//! - `/dev/sev-guest` (the sev-guest driver's ioctls): [`SevGuestDevice`].
//! - `/sys/kernel/config/tsm` (configfs-tsm report items): [`TsmReports`].
//! - `/sys/devices/platform/sev-guest`: [`PlatformDir`].
//! - SEV_STATUS for `/dev/cpu/N/msr` ([`crate::msr::MsrFile`]): [`GuestMsrs`].

pub mod platform;
pub mod sev_guest;
pub mod tsm;

pub use platform::{GuestMsrs, PlatformDir};
pub use sev_guest::{EventSink, SevGuestDevice};
pub use tsm::TsmReports;
