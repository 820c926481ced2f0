//! Loading editing traces (`../shared/data/traces/`): gzipped JSON, sequential or concurrent.
//!
//! Positions and delete counts are Unicode scalar values; a patch `[pos, del, ins]` deletes
//! `del` characters at `pos`, then inserts `ins` (like JavaScript `splice`).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use anyhow::{Context, Result};
use flate2::read::GzDecoder;
use serde::Deserialize;

/// One patch: position, characters deleted, text inserted.
#[derive(Clone, Debug, Deserialize)]
pub struct Patch(pub usize, pub usize, pub String);

/// One transaction of a trace.
#[derive(Clone, Debug, Deserialize)]
pub struct Txn {
    /// Patches, applied one after another.
    pub patches: Vec<Patch>,
    /// Txns (by index) the author had seen (concurrent traces only).
    #[serde(default)]
    pub parents: Vec<usize>,
    /// Author (concurrent traces only).
    #[serde(default)]
    pub agent: usize,
}

/// A whole trace.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trace {
    /// Text before the first patch.
    #[serde(default)]
    pub start_content: String,
    /// Text after the last patch.
    pub end_content: String,
    /// Transactions in (causal) order.
    pub txns: Vec<Txn>,
    /// `"concurrent"` for concurrent traces.
    #[serde(default)]
    pub kind: Option<String>,
    /// Number of agents (concurrent traces only).
    #[serde(default)]
    pub num_agents: Option<usize>,
}

impl Trace {
    /// Reads a trace from a `.json.gz` (or plain `.json`) file.
    pub fn load(path: &Path) -> Result<Trace> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut json = Vec::new();
        if path.extension().is_some_and(|e| e == "gz") {
            GzDecoder::new(BufReader::new(file)).read_to_end(&mut json)
        } else {
            BufReader::new(file).read_to_end(&mut json)
        }
        .with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&json).with_context(|| format!("parsing {}", path.display()))
    }

    /// True for a concurrent trace.
    pub fn is_concurrent(&self) -> bool {
        self.kind.as_deref() == Some("concurrent")
    }

    /// Every patch in order.
    pub fn patches(&self) -> impl Iterator<Item = &Patch> {
        self.txns.iter().flat_map(|t| t.patches.iter())
    }

    /// A short name for reports: the file name without `.json.gz`.
    pub fn name(path: &Path) -> String {
        let f = path.file_name().map(|f| f.to_string_lossy().into_owned());
        let f = f.unwrap_or_default();
        f.trim_end_matches(".gz")
            .trim_end_matches(".json")
            .to_string()
    }
}
