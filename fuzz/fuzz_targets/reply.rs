#![no_main]
//! libFuzzer entry for [`volley_fuzz::reply`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| volley_fuzz::reply(data));
