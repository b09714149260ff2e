//! Integration tests of softsev-host: one test binary for the crate (each file a module),
//! so the workspace links one binary per crate instead of one per file.

mod common;
mod fuzz_ghcb;
mod ghcb;
mod guest_boot;
mod kvm_selftests;
mod seam;
mod sev_launch;
mod sev_legacy;
mod sev_migrate;
