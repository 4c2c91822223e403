//! Fuzz target `restart_events`: see `lameduck_testkit::fuzz::restart_events`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lameduck_testkit::fuzz::restart_events(data));
