//! Host-side device models (frontends.md §5.3, §7.1 item 3 `--host`): what snphost and
//! sevctl open on an SEV host.
//!
//! - [`SevDevice`] — `/dev/sev`, the ccp driver's `SEV_ISSUE_CMD` ioctl over the
//!   [`softsev_host::SoftHost`]'s PSP driver and firmware (the same chip the guest runs
//!   on).
//! - [`HostMsrs`] — the host MSRs `snphost ok` reads through `/dev/cpu/N/msr` (SYSCFG,
//!   RMP_BASE, RMP_END), an [`crate::msr::MsrSource`].
//! - [`ModuleParams`] — `/sys/module/kvm_amd/parameters/{sev,sev_es,sev_snp}`.

mod msr;
mod params;
mod sev;

pub use msr::{HostMsrs, MSR_AMD64_RMP_BASE, MSR_AMD64_RMP_END, MSR_AMD64_SYSCFG};
pub use params::ModuleParams;
pub use sev::{SEV_ISSUE_CMD, SEV_MAX, SevDevice, SevEvent, SevIoctlCmd, SevIssueCmd, SevObserver};
