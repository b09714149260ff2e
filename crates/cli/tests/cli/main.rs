//! Integration tests of softsev-cli: one test binary for the crate (each file a module),
//! so the workspace links one binary per crate instead of one per file.

mod exec_cli;
mod id_block_cli;
mod kds_cli;
mod measure_cli;
mod measure_interop;
mod measure_snpguest;
mod migrate_cli;
mod run_cli;
mod run_sev_cli;
mod sev_cli;
mod sev_sevctl_es;
mod verify_cli;
