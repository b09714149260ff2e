//! Integration tests of softsev-os: one test binary for the crate (each file a module).
//! The tests that mount run as root in a child process started with
//! `unshare --mount --propagation private` (so nothing they mount is visible outside,
//! and the machine is left as found); without root or `/dev/fuse` they skip, and fail
//! under `SOFTSEV_REQUIRE_INTEROP=1`.

mod fuse_ns;
