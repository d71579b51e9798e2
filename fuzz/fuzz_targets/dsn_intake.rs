#![no_main]
//! libFuzzer entry for [`volley_fuzz::dsn_intake`] (the DSN intake).

libfuzzer_sys::fuzz_target!(|data: &[u8]| volley_fuzz::dsn_intake(data));
