#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    softsev_firmware::fuzzing::fuzz_sev_receive(data);
});
