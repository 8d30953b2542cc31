#![no_main]
//! `cargo fuzz run keys`: see `icr_app_fuzz::targets::keys`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| icr_app_fuzz::targets::keys(data));
