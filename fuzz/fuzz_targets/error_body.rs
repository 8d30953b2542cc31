#![no_main]
//! `cargo fuzz run error_body`: see `icr_app_fuzz::targets::error_body`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| icr_app_fuzz::targets::error_body(data));
