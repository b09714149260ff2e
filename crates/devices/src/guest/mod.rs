//! Guest-side device models (frontends.md §5.1, §5.2, §7.1): what an SNP guest's Linux
//! offers its user space, answered by the in-process guest of a
//! [`softsev_vmm::service::GuestService`].
//!
//! - [`SevGuestDevice`]: `/dev/sev-guest` (the sev-guest driver's ioctls).

pub mod sev_guest;

pub use sev_guest::SevGuestDevice;
