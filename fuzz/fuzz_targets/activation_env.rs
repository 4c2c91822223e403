//! Fuzz target `activation_env`: see `lameduck_tests::fuzz::activation_env`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lameduck_tests::fuzz::activation_env(data));
