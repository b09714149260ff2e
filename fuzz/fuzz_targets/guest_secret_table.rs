#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    softsev_guest::fuzz::fuzz_secret_table(data);
});
