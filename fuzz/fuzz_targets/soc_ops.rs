//! Sequences of SoC operations (RMP instructions, host/guest/device/firmware accesses,
//! key slot changes) with the model's invariants checked after each input.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    softsev_soc::fuzz::fuzz_soc_ops(data);
});
