#![no_main]
//! `cargo fuzz run webhook`: see `icr_app_fuzz::targets::webhook`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| icr_app_fuzz::targets::webhook(data));
