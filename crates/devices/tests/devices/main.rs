//! Integration tests of the device models (each module beside this file).

mod guest_sev_guest;
