#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    softsev_firmware::cpuid::fuzz_cpuid_page(data);
});
