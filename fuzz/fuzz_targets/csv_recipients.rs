#![no_main]
//! libFuzzer entry for [`volley_fuzz::csv_recipients`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| volley_fuzz::csv_recipients(data));
