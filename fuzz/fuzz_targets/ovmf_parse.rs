//! Fuzz the OVMF footer-table / SEV-metadata parser and the measurement paths behind it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    softsev_measure::ovmf::fuzz_parse(data);
});
