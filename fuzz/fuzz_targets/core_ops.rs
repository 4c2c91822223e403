//! Fuzz target `core_ops`: see `lameduck_tests::fuzz::core_ops`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lameduck_tests::fuzz::core_ops(data));
