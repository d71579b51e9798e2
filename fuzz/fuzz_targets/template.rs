#![no_main]
//! libFuzzer entry for [`volley_fuzz::template`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| volley_fuzz::template(data));
