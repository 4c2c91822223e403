//! Fuzz target `activation_env`: see `lameduck_testkit::fuzz::activation_env`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lameduck_testkit::fuzz::activation_env(data));
