//! Integration tests of the device models (each module beside this file).

mod guest_platform;
mod guest_sev_guest;
mod guest_tsm;
mod host_params;
mod host_sev;
mod kds_http;
