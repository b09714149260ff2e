//! Integration tests of softsev-guest: one test binary for the crate (each file a module),
//! so the workspace links one binary per crate instead of one per file.

mod boot;
mod common;
mod fuzz_replay;
mod ghcb;
mod msg;
mod sev;
mod workload;
