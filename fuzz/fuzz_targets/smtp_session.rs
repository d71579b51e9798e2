#![no_main]
//! libFuzzer entry for [`volley_fuzz::smtp_session`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| volley_fuzz::smtp_session(data));
