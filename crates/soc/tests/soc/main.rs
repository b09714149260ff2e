//! Integration tests of softsev-soc: one test binary for the crate (each file a module),
//! so the workspace links one binary per crate instead of one per file.

mod access;
mod common;
mod fuzz_replay;
mod invariants;
mod memory;
mod rmp;
