//! Integration tests of softsev-abi: one test binary for the crate (each file a module).

mod sev;
