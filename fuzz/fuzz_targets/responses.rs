#![no_main]
//! `cargo fuzz run responses`: see `icr_app_fuzz::targets::responses`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| icr_app_fuzz::targets::responses(data));
