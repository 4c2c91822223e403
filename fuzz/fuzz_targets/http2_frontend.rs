//! Fuzz target `http2_frontend`: see `lameduck_testkit::fuzz::http2_frontend`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lameduck_testkit::fuzz::http2_frontend(data));
