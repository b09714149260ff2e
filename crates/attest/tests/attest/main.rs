//! Integration tests of softsev-attest: one test binary for the crate (each file a module),
//! so the workspace links one binary per crate instead of one per file.

mod firmware_reports;
mod fixtures;
mod fuzz_corpus;
mod interop_sevctl;
mod interop_snpguest;
mod own_firmware;
mod probe_regressions;
mod sev_chain;
mod sev_firmware;
mod sev_owner;
