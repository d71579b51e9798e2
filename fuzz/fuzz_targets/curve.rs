#![no_main]
//! libFuzzer entry for [`volley_fuzz::curve`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| volley_fuzz::curve(data));
