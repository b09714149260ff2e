//! softsev's OS adapter (frontends.md §7.1): what lets unmodified SEV / SNP tools reach
//! softsev's device models.
//!
//! - [`fuse`]: any [`softsev_vfs::VirtualFs`] served over FUSE at a file or directory,
//!   restricted ioctls included, with an optional event log;
//! - [`memory`]: the caller's buffers through `process_vm_readv` / `process_vm_writev`;
//! - [`ns`]: the private mount namespace (overlaid `/dev`, sysfs grafts, `/etc/hosts`);
//! - [`log`]: the JSON-lines event log of `softsev exec --events`;
//! - [`cpuid`]: the CPUID table handed to the preloaded `softsev-cpuid` library;
//! - [`elf`]: whether a program is dynamically linked (the preload reaches only those).
//!
//! This crate and `softsev-cpuid` are the only ones where `unsafe` is not forbidden
//! (DESIGN.md): everything goes through `fuser` and `nix`'s safe wrappers except
//! bringing up the loopback interface of a private network namespace
//! (`ns::loopback_up`, two `SIOC[GS]IFFLAGS` ioctls nix does not wrap), the one item
//! with `#[allow(unsafe_code)]`.

pub mod cpuid;
pub mod elf;
pub mod fuse;
pub mod log;
pub mod memory;
pub mod ns;

pub use fuse::{IoctlDecoder, ServeError, ServeOptions, Served, serve};
pub use memory::ProcessMemory;
pub use ns::{Graft, NEEDS_ROOT, NsError, PrivateWorld, WorldSpec, require_root};
