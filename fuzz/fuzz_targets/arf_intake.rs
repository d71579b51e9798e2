#![no_main]
//! libFuzzer entry for [`volley_fuzz::arf_intake`] (the ARF intake).

libfuzzer_sys::fuzz_target!(|data: &[u8]| volley_fuzz::arf_intake(data));
