#![no_main]
//! libFuzzer entry for [`volley_fuzz::backoff`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| volley_fuzz::backoff(data));
