#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    softsev_vmm::migration::fuzz_stream(data);
});
