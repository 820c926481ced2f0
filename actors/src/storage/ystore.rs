//! Yjs documents in the store: the same trees, keys, record codec, sealing and checks as
//! text, with two record kinds of their own (`docs/STORAGE.md`): [`KIND_YUPDATE`] in `ops`
//! (one stored update per revision) and [`KIND_YSTATE`] in `snapshots` (the whole document as
//! one update at a revision).
//!
//! Invariants:
//! - A document's kind is the kind of its records (the header's kind byte, authenticated with
//!   the record in an encrypted store): every record of a document has the same kind, and
//!   reading one as the other kind is `Corrupt`.
//! - Loading verifies as for text: every record decodes, revisions are contiguous after the
//!   snapshot, and every update replays.

use coedit_protocol::yjs::{YDocConfig, YDocument};
use coedit_protocol::DocKind;

use super::*;

/// Record kind: one stored Yjs update.
pub const KIND_YUPDATE: u8 = 3;
/// Record kind: a Yjs state snapshot.
pub const KIND_YSTATE: u8 = 4;

/// One accepted Yjs update as stored in the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct YUpdateRecord {
    /// The revision it produced.
    pub rev: u64,
    /// Who sent it: the session's client id (or `rest`).
    pub client: String,
    /// The update (Yjs v1 encoding).
    #[serde(with = "serde_bytes")]
    pub update: Vec<u8>,
}

/// A Yjs document's whole state at a revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct YStateRecord {
    /// The revision.
    pub rev: u64,
    /// The state as one update (Yjs v1 encoding).
    #[serde(with = "serde_bytes")]
    pub state: Vec<u8>,
}

/// What `load_y` finds for a document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredY {
    /// The latest snapshot, if any.
    pub snapshot: Option<YStateRecord>,
    /// The updates after it, consecutive.
    pub updates: Vec<YUpdateRecord>,
}

impl StoredY {
    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none() && self.updates.is_empty()
    }

    /// Rebuilds the document: the snapshot, then every update replayed. A record that does not
    /// replay is reported as corruption at its revision.
    pub fn into_document(self, doc: &str, config: YDocConfig) -> Result<YDocument, StoreError> {
        let mut d = match self.snapshot {
            Some(s) => YDocument::from_snapshot(&s.state, s.rev, config)
                .map_err(|e| corrupt(doc, s.rev, format!("snapshot does not load: {e}")))?,
            None => YDocument::new(config),
        };
        for r in self.updates {
            d.replay(r.rev, &r.update)
                .map_err(|e| corrupt(doc, r.rev, format!("update does not replay: {e}")))?;
        }
        Ok(d)
    }
}

/// The kind of a stored record from its header's kind byte.
fn kind_of(doc: &str, rev: u64, value: &[u8]) -> Result<DocKind, StoreError> {
    match value.get(1) {
        Some(&(KIND_OP | KIND_SNAPSHOT)) => Ok(DocKind::Text),
        Some(&(KIND_YUPDATE | KIND_YSTATE)) => Ok(DocKind::Yjs),
        Some(k) => Err(corrupt(doc, rev, format!("unknown record kind {k}"))),
        None => Err(corrupt(doc, rev, "truncated record")),
    }
}

impl<K: Kv> RecordStore<K> {
    /// The kind of `doc`'s records: its latest snapshot's, else its first op's.
    pub(super) fn stored_kind(&self, doc: &str) -> Result<Option<DocKind>, StoreError> {
        let (p, end) = (prefix(doc), Self::end(doc));
        let found = match self.kv.last_in(Tree::Snapshots, &p, &end)? {
            Some(kv) => Some(kv),
            None => self.kv.first_in(Tree::Ops, &p, &end)?,
        };
        found
            .map(|(k, v)| kind_of(doc, key_rev(doc, &k).unwrap_or(0), &v))
            .transpose()
    }

    pub(super) fn decode_y_update(
        &self,
        doc: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<YUpdateRecord, StoreError> {
        self.decode_keyed(doc, key, value, KIND_YUPDATE, true, |r: &YUpdateRecord| {
            r.rev
        })
    }

    pub(super) fn decode_y_state(
        &self,
        doc: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<YStateRecord, StoreError> {
        self.decode_keyed(doc, key, value, KIND_YSTATE, false, |s: &YStateRecord| {
            s.rev
        })
    }

    /// The newest Yjs snapshot at or before `at_most`.
    pub(super) fn latest_y_state(
        &self,
        doc: &str,
        at_most: u64,
    ) -> Result<Option<YStateRecord>, StoreError> {
        let to = if at_most == u64::MAX {
            Self::end(doc)
        } else {
            key(doc, at_most + 1)
        };
        match self.kv.last_in(Tree::Snapshots, &prefix(doc), &to)? {
            Some((k, v)) => Ok(Some(self.decode_y_state(doc, &k, &v)?)),
            None => Ok(None),
        }
    }

    /// The stored updates with revisions `from + 1 ..= to`, contiguous.
    pub(super) fn y_updates(
        &self,
        doc: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<YUpdateRecord>, StoreError> {
        let end = if to == u64::MAX {
            Self::end(doc)
        } else {
            key(doc, to + 1)
        };
        let updates = self
            .kv
            .range(Tree::Ops, &key(doc, from.saturating_add(1)), &end)?
            .iter()
            .map(|(k, v)| self.decode_y_update(doc, k, v))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, r) in updates.iter().enumerate() {
            let want = from + 1 + i as u64;
            if r.rev != want {
                return Err(corrupt(
                    doc,
                    want,
                    format!("missing update (next stored is {})", r.rev),
                ));
            }
        }
        Ok(updates)
    }

    /// Loads the Yjs document.
    pub(super) fn load_yjs(&self, doc: &str) -> Result<StoredY, StoreError> {
        let snapshot = self.latest_y_state(doc, u64::MAX)?;
        let after = snapshot.as_ref().map_or(0, |s| s.rev);
        let updates = self.y_updates(doc, after, u64::MAX)?;
        Ok(StoredY { snapshot, updates })
    }

    /// The Yjs document at revision `rev`, if retained.
    pub(super) fn yjs_at(&self, doc: &str, rev: u64) -> Result<Option<YDocument>, StoreError> {
        let snapshot = self.latest_y_state(doc, rev)?;
        let base = snapshot.as_ref().map_or(0, |s| s.rev);
        let updates = self.y_updates(doc, base, rev)?;
        if base + updates.len() as u64 != rev {
            return Ok(None);
        }
        let config = YDocConfig {
            max_update_bytes: usize::MAX,
            max_doc_bytes: usize::MAX,
        };
        StoredY { snapshot, updates }
            .into_document(doc, config)
            .map(Some)
    }
}

/// Verifies a whole Yjs document offline (`coedit check`): every record decodes, revisions are
/// contiguous from the oldest retained point, every update replays, and every snapshot equals
/// the replay at its revision (state vector and content; not compared while an update waits
/// for a missing one). Returns the number of updates and
/// snapshots checked.
pub fn check_yjs_document<K: Kv>(
    store: &RecordStore<K>,
    doc: &str,
) -> Result<(usize, usize), StoreError> {
    let (p, end) = (prefix(doc), RecordStore::<K>::end(doc));
    let snapshots = store
        .kv
        .range(Tree::Snapshots, &p, &end)?
        .iter()
        .map(|(k, v)| store.decode_y_state(doc, k, v))
        .collect::<Result<Vec<_>, _>>()?;
    let first = store.first_op_rev(doc)?.unwrap_or(1);
    let start = snapshots
        .iter()
        .rev()
        .find(|s| s.rev + 1 >= first && s.rev < first)
        .cloned();
    if start.is_none() && first != 1 {
        return Err(corrupt(
            doc,
            first,
            "no snapshot before the first retained update",
        ));
    }
    let base = start.as_ref().map_or(0, |s| s.rev);
    let updates = store.y_updates(doc, base, u64::MAX)?;
    let config = YDocConfig {
        max_update_bytes: usize::MAX,
        max_doc_bytes: usize::MAX,
    };
    let load = |s: &YStateRecord| {
        YDocument::from_snapshot(&s.state, s.rev, config.clone())
            .map_err(|e| corrupt(doc, s.rev, format!("snapshot does not load: {e}")))
    };
    let mut d = match &start {
        Some(s) => load(s)?,
        None => YDocument::new(config.clone()),
    };
    let count = updates.len();
    let mut by_rev = snapshots.iter().map(|s| (s.rev, s)).collect::<Vec<_>>();
    by_rev.sort_by_key(|(r, _)| *r);
    for r in updates {
        d.replay(r.rev, &r.update)
            .map_err(|e| corrupt(doc, r.rev, format!("update does not replay: {e}")))?;
        if let Ok(i) = by_rev.binary_search_by_key(&r.rev, |(r, _)| *r) {
            let s = load(by_rev[i].1)?;
            // Decoded: the encoding lists clients in hash-map order.
            let sv = |d: &YDocument| {
                use yrs::updates::decoder::Decode;
                yrs::StateVector::decode_v1(&d.state_vector()).ok()
            };
            // Comparable only when no update waits for a missing one: the snapshot then holds
            // those unintegrated (found by fuzzing), which must not make an intact store
            // "corrupt".
            let comparable = !s.has_pending() && !d.has_pending();
            if comparable && (sv(&s) != sv(&d) || s.content() != d.content()) {
                return Err(corrupt(
                    doc,
                    r.rev,
                    "snapshot differs from the replay of the log",
                ));
            }
        }
    }
    if let Some((last, _)) = by_rev.last() {
        if *last > d.rev() {
            return Err(corrupt(
                doc,
                d.rev() + 1,
                format!("snapshot at {last} is past the last update"),
            ));
        }
    }
    Ok((count, snapshots.len()))
}
