//! Audit anchors: every signed checkpoint of the audit chain is also appended to a file outside
//! the store (`audit-anchor.jsonl` in the data directory by default, `[audit] anchor_file` to
//! put it on other storage) and written to the log. The chain can then no longer be cut short
//! unnoticed: deleting its tail, or all of it, leaves anchored checkpoints that the chain no
//! longer holds, and `coedit audit verify` (which reads the anchor file) reports them.
//!
//! Line format (JSON, one per checkpoint, versioned): `{"v":1,"seq":N,"time_ms":T,
//! "hash":"<SM3 of the checkpoint record's stored value, hex>","signer":"<SM3 of the SM2
//! public key, hex>","sig":"<the checkpoint's SM2 signature, hex>"}`.
//!
//! Invariants:
//! - A line is appended (and synced) only after the store's flush that made its checkpoint
//!   durable, so a crash never leaves an anchor for a checkpoint the store does not have.
//! - Reading tolerates only a torn last line (no newline); any other bad line is an error.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::info;

/// Default file name of the anchor file in the data directory.
pub const ANCHOR_FILE: &str = "audit-anchor.jsonl";
/// Version of the anchor line format.
pub const ANCHOR_FORMAT: u8 = 1;

/// One anchored checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anchor {
    /// Line format version.
    pub v: u8,
    /// The checkpoint's position in the chain.
    pub seq: u64,
    /// Its time, ms since the Unix epoch.
    pub time_ms: u64,
    /// SM3 of the checkpoint record's stored value (hex).
    pub hash: String,
    /// SM3 fingerprint of the signing key (hex).
    pub signer: String,
    /// The signature (hex).
    pub sig: String,
}

/// An anchor file failure.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AnchorError {
    /// Reading or writing failed.
    #[error("audit anchor file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A line is not an anchor.
    #[error("audit anchor file {path}, line {line}: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Reads every anchor of the file at `path` (none if it does not exist).
pub fn read(path: &Path) -> Result<Vec<Anchor>, AnchorError> {
    let text = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(AnchorError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut out = Vec::new();
    for (i, line) in text[..complete].split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let damaged = |reason: String| AnchorError::Damaged {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        let a: Anchor = serde_json::from_slice(line).map_err(|e| damaged(e.to_string()))?;
        if a.v != ANCHOR_FORMAT {
            return Err(damaged(format!("unknown anchor format {}", a.v)));
        }
        if out.last().is_some_and(|p: &Anchor| p.seq >= a.seq) {
            return Err(damaged(format!("checkpoint {} out of order", a.seq)));
        }
        out.push(a);
    }
    Ok(out)
}

/// The appending end of an anchor file.
pub struct AnchorLog {
    path: Option<PathBuf>,
    file: Mutex<Option<File>>,
}

impl std::fmt::Debug for AnchorLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AnchorLog({:?})", self.path)
    }
}

impl AnchorLog {
    /// An anchor log that writes nothing (in-memory stores, audit off).
    pub fn disabled() -> Self {
        AnchorLog {
            path: None,
            file: Mutex::new(None),
        }
    }

    /// Opens (or creates) the anchor file at `path` for appending; a torn last line is cut
    /// off first.
    pub fn open(path: &Path) -> Result<Self, AnchorError> {
        let io = |source| AnchorError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        let bytes = std::fs::read(path).map_err(io)?;
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if complete < bytes.len() {
            file.set_len(complete as u64).map_err(io)?;
        }
        Ok(AnchorLog {
            path: Some(path.to_path_buf()),
            file: Mutex::new(Some(file)),
        })
    }

    /// The file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Appends `anchors` and syncs them; logs each one too.
    pub fn append(&self, anchors: &[Anchor]) -> Result<(), AnchorError> {
        let (Some(path), false) = (&self.path, anchors.is_empty()) else {
            return Ok(());
        };
        let io = |source| AnchorError::Io {
            path: path.clone(),
            source,
        };
        let mut text = String::new();
        for a in anchors {
            text.push_str(&serde_json::to_string(a).expect("anchors serialize"));
            text.push('\n');
            info!(seq = a.seq, hash = %a.hash, "audit checkpoint anchored");
        }
        let mut guard = self
            .file
            .lock()
            .map_err(|_| io(std::io::Error::other("anchor file lock poisoned")))?;
        if let Some(f) = guard.as_mut() {
            f.write_all(text.as_bytes()).map_err(io)?;
            f.sync_data().map_err(io)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor(seq: u64) -> Anchor {
        Anchor {
            v: ANCHOR_FORMAT,
            seq,
            time_ms: seq * 10,
            hash: format!("{seq:064x}"),
            signer: "ab".repeat(32),
            sig: "cd".repeat(64),
        }
    }

    #[test]
    fn anchors_round_trip_and_a_torn_line_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ANCHOR_FILE);
        assert!(read(&path).unwrap().is_empty());
        let log = AnchorLog::open(&path).unwrap();
        log.append(&[anchor(11), anchor(17)]).unwrap();
        drop(log);
        assert_eq!(read(&path).unwrap(), vec![anchor(11), anchor(17)]);
        // A torn last line is ignored by readers and cut off before the next append.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"v":1,"seq":30,"ti"#).unwrap();
        drop(f);
        assert_eq!(read(&path).unwrap().len(), 2);
        AnchorLog::open(&path)
            .unwrap()
            .append(&[anchor(40)])
            .unwrap();
        assert_eq!(
            read(&path).unwrap(),
            vec![anchor(11), anchor(17), anchor(40)]
        );
        // A damaged complete line is an error naming it.
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replacen("\"seq\":17", "\"seq\":1x", 1);
        std::fs::write(&path, text).unwrap();
        match read(&path) {
            Err(AnchorError::Damaged { line: 2, .. }) => {}
            other => panic!("{other:?}"),
        }
    }
}
