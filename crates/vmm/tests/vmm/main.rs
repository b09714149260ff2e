//! Integration tests of softsev-vmm: one test binary for the crate (each file a module),
//! so the workspace links one binary per crate instead of one per file.

mod config_qemu;
mod config_sev;
mod cpuid;
mod fuzz_replay;
mod migration_e2e;
mod plan_digest;
mod plan_interop;
mod qmp_migration;
mod qmp_protocol;
mod qmp_python;
mod run_e2e;
mod sev_plan;
mod sev_run;
