#![no_main]
//! Fuzz the SNP_LAUNCH_FINISH ID block / ID auth checker.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = softsev_measure::id_block::fuzz_id_auth_parse(data);
});
