//! Fuzz target `handover_state`: see `lameduck_tests::fuzz::handover_state`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lameduck_tests::fuzz::handover_state(data));
