//! Fuzz target `core_ops`: see `lameduck_testkit::fuzz::core_ops`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lameduck_testkit::fuzz::core_ops(data));
