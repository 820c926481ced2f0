//! Replays the fuzz corpus under a plain `cargo test` (no nightly, no libFuzzer): every input in
//! `fuzz/regressions/<target>/` (inputs that once crashed or hung a target, kept after the fix),
//! the built-in seeds, and a bounded batch of random inputs per target through the same
//! harnesses the cargo-fuzz targets call (`coedit_protocol::fuzzing`).
//!
//! Random batch: seeded, the seed is printed and `SEED=n` replays it; `FUZZ_CASES` sets the
//! number of inputs per target.

mod common;

use std::path::{Path, PathBuf};

use coedit_protocol::fuzzing::{self, TARGETS};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Random inputs per target when `FUZZ_CASES` is not set.
const DEFAULT_CASES: usize = 20_000;
/// Longest random input, in bytes.
const MAX_INPUT_BYTES: usize = 2_048;

fn regressions_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target)
}

#[test]
fn regression_inputs_replay() {
    let mut total = 0;
    for target in TARGETS {
        let dir = regressions_dir(target);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").path())
            .filter(|p| {
                // Inputs only: not `.gitkeep` (it keeps an empty folder in git) nor notes.
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or(".");
                p.is_file() && !name.starts_with('.') && !name.ends_with(".md")
            });
        for path in entries {
            let data = std::fs::read(&path).expect("regression input");
            eprintln!("{target}: {}", path.display());
            fuzzing::run(target, &data);
            total += 1;
        }
    }
    eprintln!("{total} regression inputs replayed");
}

#[test]
fn seeds_replay() {
    for target in TARGETS {
        let seeds = fuzzing::seed_inputs(target);
        assert!(seeds.len() >= 8, "{target}: {} seeds", seeds.len());
        for s in &seeds {
            fuzzing::run(target, s);
        }
    }
}

#[test]
fn random_inputs() {
    let seed = common::seed();
    let cases = common::cases("FUZZ_CASES", DEFAULT_CASES);
    eprintln!("random fuzz inputs: SEED={seed} FUZZ_CASES={cases}");
    let mut rng = SmallRng::seed_from_u64(seed);
    for target in TARGETS {
        let seeds = fuzzing::seed_inputs(target);
        for i in 0..cases {
            // Half fresh bytes, half a seed with a few bytes changed: the mutations reach past
            // the first decoding error far more often than noise does.
            let data = if i % 2 == 0 {
                let len = rng.random_range(0..MAX_INPUT_BYTES);
                (0..len).map(|_| rng.random()).collect::<Vec<u8>>()
            } else {
                let mut s = seeds[rng.random_range(0..seeds.len())].clone();
                for _ in 0..rng.random_range(1..4) {
                    if !s.is_empty() {
                        let at = rng.random_range(0..s.len());
                        s[at] = rng.random();
                    }
                }
                s
            };
            let outcome = std::panic::catch_unwind(|| fuzzing::run(target, &data));
            if outcome.is_err() {
                panic!(
                    "{target} failed on case {i} (SEED={seed}); input: {:02x?}",
                    data
                );
            }
        }
    }
}
