//! Integration tests of softsev-firmware: one test binary for the crate (each file a module),
//! so the workspace links one binary per crate instead of one per file.

mod cpuid;
mod fw_fuzz;
mod fw_guest_request;
mod fw_launch;
mod fw_pages;
mod fw_platform;
mod fw_state_table;
mod fwcommon;
mod guest_msg;
mod guest_msg_dispatch;
mod guest_msg_fuzz;
mod guest_msg_keys;
mod guest_msg_report;
mod identity_chain;
mod identity_derive;
mod identity_fuzz;
mod identity_roots;
mod sev_certs;
mod sev_fuzz;
mod sev_launch;
mod sev_migrate;
mod sev_platform;
mod sev_sevctl;
mod sev_state_table;
mod sevcommon;
