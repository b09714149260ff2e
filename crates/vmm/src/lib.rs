//! softsev's launcher library: what QEMU does for an SEV-SNP guest, as data.
//!
//! * [`config`]: QEMU's command line (`-machine q35,confidential-guest-support=…
//!   -object sev-snp-guest,… -smp -m -cpu -bios -kernel -initrd -append`) and the same
//!   options as TOML, validated with QEMU's, KVM's and the firmware's rules into a
//!   [`Config`].
//! * [`cpu`]: QEMU CPU models → CPUID signature (VMSA RDX) and SNP product.
//! * [`cpuid`]: the CPUID page QEMU builds for an SNP guest.
//! * [`plan`]: the launch plan — memory layout, LAUNCH_START parameters, the ordered
//!   LAUNCH_UPDATE ranges (firmware image, OVMF SEV metadata sections), the per-vCPU
//!   VMSAs, LAUNCH_FINISH parameters and the expected launch digest
//!   (shared/spec/snp-launch.md §2.3, §4, §5, §8). An executor replays it against a
//!   KVM-shaped host.
//! * [`sev_plan`]: the launch plan of a `sev-guest` (SEV / SEV-ES): KVM init, LAUNCH_START,
//!   LAUNCH_UPDATE_DATA ranges, SEV-ES VMSAs, the secret area, the expected LD.
//! * [`bootgen`]: the generated kernel, initrd and command line of a default run.
//! * [`service`]: a booted SNP guest serving guest-message requests in-process (the
//!   guest behind `softsev exec`'s `/dev/sev-guest` and configfs-tsm).
//! * [`qmp`]: the QMP monitor as QEMU speaks it (`-qmp`, `-S`), for SEV / SEV-ES
//!   guests, over a host-independent [`qmp::QmpGuest`].

#![forbid(unsafe_code)]

pub mod bootgen;
pub mod config;
pub mod cpu;
pub mod cpuid;
pub mod error;
pub mod fuzz;
pub mod keyval;
pub mod outputs;
pub mod plan;
pub mod qmp;
pub mod run;
pub mod service;
pub mod sev_plan;
pub mod sev_run;

pub use config::{Blob, Config, from_toml, from_toml_file, parse_args};
pub use cpu::CpuModel;
pub use error::{ConfigError, PlanError};
pub use plan::LaunchPlan;
