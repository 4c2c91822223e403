//! Fuzz target `supervisor_events`: see `lameduck_testkit::fuzz::supervisor_events`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lameduck_testkit::fuzz::supervisor_events(data));
