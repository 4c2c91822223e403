//! Fuzz target `restart_events`: see `lameduck_tests::fuzz::restart_events`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lameduck_tests::fuzz::restart_events(data));
