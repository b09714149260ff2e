#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    softsev_attest::fuzz::fuzz_sev_certs(data);
});
