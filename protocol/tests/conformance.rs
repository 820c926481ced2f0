//! Runs every line of the text-unicode conformance vectors (`apply.json`, `compose.json`,
//! `transform.json`) and requires an exact match, component for component.
//!
//! The vectors live in `../shared/data/ot/` beside the repository; `COEDIT_OT_VECTORS=DIR`
//! points the test at another directory of the same format. A missing file fails the test.

use std::path::PathBuf;

use coedit_protocol::{Op, Side};
use serde_json::Value;

fn vectors_dir() -> PathBuf {
    match std::env::var_os("COEDIT_OT_VECTORS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/ot"),
    }
}

/// The lines of one vector file, parsed; panics (fails the test) if the file is missing.
fn lines(name: &str) -> Vec<(usize, Value)> {
    let path = vectors_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let v = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{name}:{}: bad JSON: {e}", i + 1));
            (i + 1, v)
        })
        .collect()
}

fn op(v: &Value) -> Op {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("invalid op {v}: {e}"))
}

fn json(o: &Op) -> Value {
    serde_json::to_value(o).unwrap()
}

/// Runs `check` on every line and fails listing the first mismatches and their count.
fn run(name: &str, check: impl Fn(&Value) -> Result<(), String>) {
    let all = lines(name);
    assert!(!all.is_empty(), "{name} has no vectors");
    let failures: Vec<String> = all
        .iter()
        .filter_map(|(n, v)| check(v).err().map(|e| format!("{name}:{n}: {e}")))
        .collect();
    println!("{name}: {} vectors, {} failures", all.len(), failures.len());
    assert!(
        failures.is_empty(),
        "{} of {} failed; first: {:#?}",
        failures.len(),
        all.len(),
        &failures[..failures.len().min(5)]
    );
}

#[test]
fn apply_vectors() {
    run("apply.json", |v| {
        let s = v["str"].as_str().ok_or("no str")?;
        let expected = v["result"].as_str().ok_or("no result")?;
        let o = op(&v["op"]);
        let got = o.apply_str(s).map_err(|e| e.to_string())?;
        if got != expected {
            return Err(format!("apply_str: got {got:?}, want {expected:?}"));
        }
        let mut rope = jumprope::JumpRope::from(s);
        o.apply_rope(&mut rope).map_err(|e| e.to_string())?;
        if rope.to_string() != expected {
            return Err(format!(
                "apply_rope: got {:?}, want {expected:?}",
                rope.to_string()
            ));
        }
        Ok(())
    });
}

#[test]
fn compose_vectors() {
    run("compose.json", |v| {
        let got = json(&op(&v["op1"]).compose(&op(&v["op2"])));
        if got != v["result"] {
            return Err(format!("got {got}, want {}", v["result"]));
        }
        Ok(())
    });
}

#[test]
fn transform_vectors() {
    run("transform.json", |v| {
        let side = match v["side"].as_str() {
            Some("left") => Side::Left,
            Some("right") => Side::Right,
            other => return Err(format!("bad side {other:?}")),
        };
        let got = json(&op(&v["op"]).transform(&op(&v["otherOp"]), side));
        if got != v["result"] {
            return Err(format!("got {got}, want {}", v["result"]));
        }
        Ok(())
    });
}
