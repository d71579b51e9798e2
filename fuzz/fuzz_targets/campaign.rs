#![no_main]
//! libFuzzer entry for [`volley_fuzz::campaign`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| volley_fuzz::campaign(data));
