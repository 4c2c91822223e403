//! Fuzz target `handover_state`: see `lameduck_testkit::fuzz::handover_state`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lameduck_testkit::fuzz::handover_state(data));
