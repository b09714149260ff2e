//! Integration tests of the device models (each module beside this file).

mod host_params;
mod host_sev;
mod kds_http;
