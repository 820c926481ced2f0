//! Writes the starting corpus of each fuzz target into `DIR/<target>/` (default `fuzz/seeds`):
//! the built-in seeds of `coedit_protocol::fuzzing::seed_inputs`, plus, for `op_apply`, the
//! apply and transform conformance vectors from `../shared/data/ot/` when they are there.
//!
//! `cargo run -p coedit-protocol --features fuzzing --example fuzz_seeds -- [DIR] [OT_DIR]`

use std::path::PathBuf;

use coedit_protocol::fuzzing::{op_apply_input, seed_inputs, OpEncoding, TARGETS};
use coedit_protocol::Op;

/// Conformance vectors taken per file (the corpus only needs variety, not all of them).
const VECTORS_PER_FILE: usize = 400;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| String::from("fuzz/seeds")));
    let ot = PathBuf::from(
        args.next()
            .unwrap_or_else(|| String::from("../shared/data/ot")),
    );
    for target in TARGETS {
        let out = dir.join(target);
        std::fs::create_dir_all(&out)?;
        let mut seeds = seed_inputs(target);
        if target == "op_apply" {
            seeds.extend(vector_seeds(&ot));
        }
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(out.join(format!("seed-{i:04}")), s)?;
        }
        println!("{}: {} seeds", out.display(), seeds.len());
    }
    Ok(())
}

/// `op_apply` inputs from the apply (`str`, `op`) and transform (`op`, `otherOp`) vectors.
fn vector_seeds(ot: &std::path::Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (file, a_key, b_key) in [
        ("apply.json", "op", "op"),
        ("transform.json", "op", "otherOp"),
    ] {
        let Ok(text) = std::fs::read_to_string(ot.join(file)) else {
            eprintln!("{}: not found, skipped", ot.join(file).display());
            continue;
        };
        for line in text.lines().take(VECTORS_PER_FILE) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let (a, b) = (v[a_key].to_string(), v[b_key].to_string());
            // Transform vectors carry no text: one long enough for both ops.
            let doc = v["str"].as_str().map_or_else(
                || {
                    let len = [&a, &b]
                        .iter()
                        .filter_map(|o| Op::from_json(o).ok())
                        .map(|o| o.base_len())
                        .max()
                        .unwrap_or(0);
                    "abcdé😅中".chars().cycle().take(len).collect()
                },
                String::from,
            );
            out.push(op_apply_input(
                OpEncoding::Json,
                &doc,
                a.as_bytes(),
                b.as_bytes(),
            ));
        }
    }
    out
}
