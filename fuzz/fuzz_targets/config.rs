#![no_main]
//! libFuzzer entry for [`volley_fuzz::config`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| volley_fuzz::config(data));
