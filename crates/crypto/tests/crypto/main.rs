//! Integration tests of softsev-crypto: known-answer vectors from the specs and
//! genuine AMD certificates (shared/fixtures).

mod sev;
