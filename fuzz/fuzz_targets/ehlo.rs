#![no_main]
//! libFuzzer entry for [`volley_fuzz::ehlo`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| volley_fuzz::ehlo(data));
