//! Test support shared by softsev's test suites (a dev-dependency only).
//!
//! * [`fixtures`] / [`fixture_dir`]: `../shared/fixtures` beside the workspace, or `None`
//!   with a `SKIP:` line when it is absent (tests then return early).
//! * [`tool`]: an outside tool (sev-snp-measure, snpguest, openssl, …) on `PATH`, or
//!   `None` with `SKIP: <tool> not installed (run scripts/install-interop-tools.sh)` —
//!   unless `SOFTSEV_REQUIRE_INTEROP=1`, then the test panics (CI sets it).
//! * [`on_path`]: the same lookup without messages.

#![forbid(unsafe_code)]

use std::path::PathBuf;

/// The workspace root (where `Cargo.toml` with `[workspace]` lives).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// `../shared/fixtures` beside the workspace, if present; prints a `SKIP:` line if not.
pub fn fixtures() -> Option<PathBuf> {
    fixture_dir("")
}

/// A subdirectory of the fixtures (e.g. `"measurement"`), if present; prints a `SKIP:`
/// line if not.
pub fn fixture_dir(sub: &str) -> Option<PathBuf> {
    let p = workspace_root().join("../shared/fixtures").join(sub);
    if p.is_dir() {
        Some(p)
    } else {
        println!("SKIP: fixtures not found at {}", p.display());
        None
    }
}

/// `name` on `PATH`, without messages.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Whether interop tests must not skip (`SOFTSEV_REQUIRE_INTEROP=1`).
pub fn interop_required() -> bool {
    std::env::var("SOFTSEV_REQUIRE_INTEROP").as_deref() == Ok("1")
}

/// `name` on `PATH`; when absent prints the SKIP line and returns `None`, or panics if
/// [`interop_required`].
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = on_path(name);
    if found.is_none() {
        if interop_required() {
            panic!("{name} not installed and SOFTSEV_REQUIRE_INTEROP=1");
        }
        println!("SKIP: {name} not installed (run scripts/install-interop-tools.sh)");
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sh_and_not_nonsense() {
        assert!(on_path("sh").is_some());
        assert!(on_path("no-such-tool-softsev").is_none());
        assert!(workspace_root().join("Cargo.toml").is_file());
    }
}
