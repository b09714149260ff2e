#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = softsev_firmware::fuzzing::fuzz_guest_request(data);
});
