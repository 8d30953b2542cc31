#![no_main]
//! `cargo fuzz run time`: see `icr_app_fuzz::targets::time`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| icr_app_fuzz::targets::time(data));
