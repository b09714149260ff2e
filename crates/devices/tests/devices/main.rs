//! Integration tests of the device models (each module beside this file).
