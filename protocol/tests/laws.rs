//! OT laws checked with proptest over random documents and ops (including astral-plane and
//! CJK characters): TP1, compose = sequential apply, invert undoes apply, transform_position
//! agrees with a marker carried through the op, and every result is canonical.
//!
//! Seeded: the seed is printed; `SEED=n` replays it. `PROPTEST_CASES` overrides the case count
//! (default 10,000 per law).

mod common;

use coedit_protocol::{op::char_len, transform_position, Op, OpBuilder, Side};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

const DEFAULT_CASES: u32 = 10_000;
/// Marker character that the generated documents never contain.
const MARKER: &str = "\u{E000}";

/// A runner with the shared seed and case count; prints the seed.
fn runner(law: &str) -> TestRunner {
    let seed = common::seed();
    let cases = common::cases("PROPTEST_CASES", DEFAULT_CASES);
    println!("law {law}: SEED={seed} cases={cases}");
    TestRunner::new(Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    })
}

fn doc() -> impl Strategy<Value = String> {
    "[ab😅é中 ]{0,24}"
}

/// Raw edit steps, fitted to a document length by [`fit`].
fn steps() -> impl Strategy<Value = Vec<(u8, usize, String)>> {
    prop::collection::vec((0u8..3, 1usize..6, "[xy🤖ü字]{1,3}"), 0..7)
}

/// Builds an op over a document of `len` characters from raw steps.
fn fit(len: usize, steps: &[(u8, usize, String)]) -> Op {
    let mut b = OpBuilder::new();
    let mut pos = 0;
    for (kind, n, text) in steps {
        match kind {
            0 => {
                let k = (*n).min(len - pos);
                b.retain(k);
                pos += k;
            }
            1 => {
                b.insert(text);
            }
            _ => {
                let k = (*n).min(len - pos);
                b.delete(k);
                pos += k;
            }
        }
    }
    b.build()
}

/// An op is canonical when re-parsing its JSON gives it back unchanged.
fn assert_canonical(op: &Op) -> Result<(), TestCaseError> {
    let back = Op::from_json(&op.to_json()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, op);
    for w in op.components().windows(2) {
        prop_assert!(std::mem::discriminant(&w[0]) != std::mem::discriminant(&w[1]));
    }
    Ok(())
}

#[test]
fn tp1() {
    runner("tp1")
        .run(&(doc(), steps(), steps()), |(d, sa, sb)| {
            let n = char_len(&d);
            let (a, b) = (fit(n, &sa), fit(n, &sb));
            let b2 = b.transform(&a, Side::Right);
            let a2 = a.transform(&b, Side::Left);
            assert_canonical(&a2)?;
            assert_canonical(&b2)?;
            let left = b2.apply_str(&a.apply_str(&d).unwrap()).unwrap();
            let right = a2.apply_str(&b.apply_str(&d).unwrap()).unwrap();
            prop_assert_eq!(left, right);
            Ok(())
        })
        .unwrap();
}

#[test]
fn compose_agrees_with_sequential_apply() {
    runner("compose")
        .run(&(doc(), steps(), steps()), |(d, sa, sb)| {
            let a = fit(char_len(&d), &sa);
            let mid = a.apply_str(&d).unwrap();
            let b = fit(char_len(&mid), &sb);
            let ab = a.compose(&b);
            assert_canonical(&ab)?;
            prop_assert_eq!(ab.apply_str(&d).unwrap(), b.apply_str(&mid).unwrap());
            Ok(())
        })
        .unwrap();
}

#[test]
fn invert_undoes_apply() {
    runner("invert")
        .run(&(doc(), steps()), |(d, sa)| {
            let a = fit(char_len(&d), &sa);
            let after = a.apply_str(&d).unwrap();
            let inv = a.invert(&d).unwrap();
            assert_canonical(&inv)?;
            prop_assert_eq!(inv.apply_str(&after).unwrap(), d.clone());
            prop_assert!(a.compose(&inv).apply_str(&d).unwrap() == d);
            Ok(())
        })
        .unwrap();
}

#[test]
fn transform_position_agrees_with_marker() {
    runner("transform_position")
        .run(&(doc(), steps(), 0usize..30), |(d, sa, c)| {
            let n = char_len(&d);
            let cursor = c.min(n);
            let a = fit(n, &sa);
            // Insert a marker at the cursor; carry the op past it with the marker winning ties
            // (text typed at the cursor lands after it, as transform_position says).
            let mark = Op::insert_at(cursor, MARKER);
            let a2 = a.transform(&mark, Side::Right);
            let out = a2.apply_str(&mark.apply_str(&d).unwrap()).unwrap();
            let at = out.chars().position(|ch| ch.to_string() == MARKER).unwrap();
            prop_assert_eq!(transform_position(cursor, &a), at);
            Ok(())
        })
        .unwrap();
}

#[test]
fn apply_rejects_ops_that_do_not_fit() {
    runner("fit")
        .run(&(doc(), steps(), 1usize..4), |(d, sa, extra)| {
            let n = char_len(&d);
            let a = fit(n + extra, &sa);
            let fits = a.base_len() <= n;
            prop_assert_eq!(a.apply_str(&d).is_ok(), fits);
            let mut rope = jumprope::JumpRope::from(d.as_str());
            prop_assert_eq!(a.apply_rope(&mut rope).is_ok(), fits);
            if !fits {
                prop_assert_eq!(rope.to_string(), d);
            }
            Ok(())
        })
        .unwrap();
}
