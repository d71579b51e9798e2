#![no_main]
//! libFuzzer entry for [`volley_fuzz::token`] (the token decoder).

libfuzzer_sys::fuzz_target!(|data: &[u8]| volley_fuzz::token(data));
