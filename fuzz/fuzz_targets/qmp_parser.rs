#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    softsev_vmm::fuzz::fuzz_qmp(data);
});
