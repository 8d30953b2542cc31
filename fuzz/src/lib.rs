//! Fuzz targets for `icr-app-core`. The bodies live in [`targets`], which
//! `core/tests/fuzz_corpus.rs` also includes (by path) to run the seed corpora on stable Rust.

pub mod targets;
