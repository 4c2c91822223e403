//! Fuzz target `http_frontend`: see `lameduck_testkit::fuzz::http_frontend`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lameduck_testkit::fuzz::http_frontend(data));
