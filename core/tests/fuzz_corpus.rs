//! The fuzz targets on stable Rust: every committed seed in `fuzz/corpus/<target>/` runs
//! through the same target body `cargo fuzz` runs (`fuzz/src/targets.rs`, included here), and
//! so do random and mutated inputs as proptest cases (`PROPTEST_CASES` sets how many; CI raises
//! it when cargo-fuzz cannot be had).

#[path = "../../fuzz/src/targets.rs"]
mod targets;

use std::path::{Path, PathBuf};

use proptest::prelude::*;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Every seed of `target`, sorted by name.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a directory entry").path();
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path.file_name().unwrap().to_string_lossy().into_owned(), data)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_seed_runs_clean() {
    for (target, run) in targets::TARGETS {
        let seeds = seeds(target);
        assert!(!seeds.is_empty(), "no seeds for {target}");
        for (name, data) in seeds {
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "fuzz/corpus/{target}/{name} failed");
        }
    }
}

/// A seed of some target with a few bytes changed, inserted or removed.
fn mutated() -> impl Strategy<Value = (usize, Vec<u8>)> {
    let all: Vec<Vec<Vec<u8>>> = targets::TARGETS
        .iter()
        .map(|(t, _)| seeds(t).into_iter().map(|(_, d)| d).collect())
        .collect();
    (
        0..targets::TARGETS.len(),
        any::<prop::sample::Index>(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 0..8),
    )
        .prop_map(move |(target, seed, edits)| {
            let seeds = &all[target];
            let mut data = seeds[seed.index(seeds.len())].clone();
            for (at, byte, kind) in edits {
                let i = at.index(data.len() + 1);
                match kind {
                    0 if i < data.len() => data[i] = byte,
                    1 => data.insert(i, byte),
                    _ if i < data.len() => {
                        data.remove(i);
                    }
                    _ => data.push(byte),
                }
            }
            (target, data)
        })
}

proptest! {
    #[test]
    fn random_inputs_run_clean(target in 0..targets::TARGETS.len(), data in prop::collection::vec(any::<u8>(), 0..512)) {
        (targets::TARGETS[target].1)(&data);
    }

    #[test]
    fn mutated_seeds_run_clean((target, data) in mutated()) {
        (targets::TARGETS[target].1)(&data);
    }
}
