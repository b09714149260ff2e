//! Device models that let unmodified SEV / SNP tools run against softsev
//! (../shared/spec/frontends.md §5, §7). Each model is a [`softsev_vfs::VirtualFs`] the
//! OS adapter serves over FUSE inside a private mount namespace; every request goes the
//! real way through the guest model, the host and the firmware.
//!
//! - [`guest`]: `/dev/sev-guest`, configfs-tsm, the guest's MSR file and sysfs directory.
//! - [`host`]: `/dev/sev`, the host's MSR file and the kvm_amd module parameters.
//! - [`kds`]: AMD's Key Distribution Service URL scheme from the chip's seeded identity.
//! - [`msr`]: `/dev/cpu/N/msr`, answering from the guest's and the host's MSR sources.

pub mod guest;
pub mod host;
pub mod kds;
pub mod msr;
