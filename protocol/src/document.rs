//! The server-side state of one document: text, revision, a bounded window of recent ops, and
//! per-client exactly-once state.
//!
//! Invariants:
//! - `history` holds the ops that produced revisions `rev - history.len() + 1 ..= rev`, in order;
//!   `history.len() <= window`.
//! - Every op in `history` fits the document at the revision before it; `text` is the result of
//!   applying all of them.
//! - A `(client, seq)` pair is applied at most once: the client table holds each client's last
//!   applied sequence number and the revision it produced (see `clients.rs`).
//! - A refused submit changes nothing.
//!
//! The text lives in a `jumprope::JumpRope`: on the automerge-paper trace it replays about three
//! times faster than `ropey` on this machine (see `docs/PERFORMANCE.md`), it indexes by Unicode
//! scalar value natively, and it is `Send`.

use std::collections::VecDeque;
use std::sync::Arc;

use jumprope::JumpRope;
use serde::{Deserialize, Serialize};

pub use crate::clients::ClientRecord;
use crate::clients::Clients;
use crate::error::{DocError, OtError};
use crate::op::{char_len, Component, Op, OpBuilder, Side};

/// Default number of recent ops kept for transforming late ops and catching up joins.
pub const DEFAULT_HISTORY_WINDOW: usize = 1024;
/// Default maximum document length, in characters.
pub const DEFAULT_MAX_CHARS: usize = 8 * 1024 * 1024;
/// Default number of clients whose exactly-once state is kept; the least recently active are
/// forgotten past this.
pub const DEFAULT_MAX_CLIENTS: usize = 4096;

/// Identifies a client across reconnects (the exactly-once key together with a sequence number).
pub type ClientId = Arc<str>;

/// Limits of one document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentConfig {
    /// Ops kept in memory for transforming late ops and catching up joins (at least 1: a
    /// window of 0 counts as 1).
    pub history_window: usize,
    /// Maximum document length in characters.
    pub max_chars: usize,
    /// Maximum number of clients whose exactly-once state is kept.
    pub max_clients: usize,
    /// Seed for the rope's skip-list layout; `None` draws one from the OS. Benchmarks set it
    /// so that the document and a bare rope they compare against have the same layout.
    #[serde(default)]
    pub rope_seed: Option<u64>,
}

impl Default for DocumentConfig {
    fn default() -> Self {
        DocumentConfig {
            history_window: DEFAULT_HISTORY_WINDOW,
            max_chars: DEFAULT_MAX_CHARS,
            max_clients: DEFAULT_MAX_CLIENTS,
            rope_seed: None,
        }
    }
}

/// One applied op with its author, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
struct HistoryEntry {
    /// The op as applied (after transformation).
    op: Op,
    /// The author's slot in the client table.
    client: u32,
    /// The author's sequence number for it.
    seq: u64,
    /// Document length before the op, in characters.
    len_before: usize,
}

/// A retained op with its author.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppliedOp<'a> {
    /// The op as applied (after transformation).
    pub op: &'a Op,
    /// The client that submitted it.
    pub client: &'a ClientId,
    /// The client's sequence number for it.
    pub seq: u64,
}

/// The result of a successful submit.
#[derive(Debug, PartialEq, Eq)]
pub struct Submitted<'a> {
    /// The revision the op produced (for a duplicate: the revision it produced the first time).
    pub rev: u64,
    /// The op as applied, if still retained (always for a fresh op).
    pub op: Option<&'a Op>,
    /// True when `(client, seq)` had already been applied and nothing changed now.
    pub duplicate: bool,
}

/// Everything needed to restore a document: text, revision and exactly-once state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentSnapshot {
    /// Revision of the text.
    pub rev: u64,
    /// The full text.
    pub text: String,
    /// Exactly-once state: client id, last applied sequence number, revision it produced.
    pub clients: Vec<(String, u64, u64)>,
}

/// The server-side state of one document. See the module documentation.
#[derive(Clone, Debug)]
pub struct Document {
    text: JumpRope,
    rev: u64,
    history: VecDeque<HistoryEntry>,
    clients: Clients,
    config: DocumentConfig,
    /// Undo tail: when `Some(base)`, `undo[i]` reverts revision `base + 1 + i`.
    undo_base: Option<u64>,
    undo: VecDeque<Op>,
}

impl Default for Document {
    fn default() -> Self {
        Document::new(DocumentConfig::default())
    }
}

impl Document {
    /// An empty document at revision 0.
    pub fn new(config: DocumentConfig) -> Self {
        Document {
            text: config
                .rope_seed
                .map_or_else(JumpRope::new, JumpRope::new_from_seed),
            rev: 0,
            // Grows as ops arrive: a full window costs ~80 KiB, and most open documents are
            // quiet (1,000 of them preallocated 80 MB in the 10,000-connection load run).
            history: VecDeque::new(),
            clients: Clients::default(),
            config,
            undo_base: None,
            undo: VecDeque::new(),
        }
    }

    /// Restores a document from a snapshot. The history window starts empty: ops based on
    /// revisions before `snapshot.rev` need a resync until the store replays the log.
    pub fn from_snapshot(snapshot: DocumentSnapshot, config: DocumentConfig) -> Self {
        let mut doc = Document::new(config);
        doc.text.insert(0, &snapshot.text);
        doc.rev = snapshot.rev;
        for (c, seq, rev) in snapshot.clients {
            doc.clients
                .insert(&ClientId::from(c), ClientRecord { seq, rev });
        }
        doc
    }

    /// A snapshot of the current state.
    pub fn snapshot(&self) -> DocumentSnapshot {
        let mut clients: Vec<(String, u64, u64)> = self
            .clients
            .iter()
            .map(|(c, r)| (c.to_string(), r.seq, r.rev))
            .collect();
        clients.sort();
        DocumentSnapshot {
            rev: self.rev,
            text: self.text.to_string(),
            clients,
        }
    }

    /// Current revision (number of ops applied since creation).
    pub fn rev(&self) -> u64 {
        self.rev
    }

    /// Current length in characters.
    pub fn len_chars(&self) -> usize {
        self.text.len_chars()
    }

    /// The current text.
    pub fn text(&self) -> String {
        self.text.to_string()
    }

    /// The limits in force.
    pub fn config(&self) -> &DocumentConfig {
        &self.config
    }

    /// Number of clients whose exactly-once state is kept.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// Exactly-once state of a client, if known.
    pub fn client(&self, client: &str) -> Option<ClientRecord> {
        self.clients
            .find_str(client)
            .map(|s| self.clients.record(s))
    }

    fn applied<'a>(&'a self, e: &'a HistoryEntry) -> AppliedOp<'a> {
        AppliedOp {
            op: &e.op,
            client: self.clients.id(e.client),
            seq: e.seq,
        }
    }

    /// Oldest revision an op may be based on, or a join may catch up from.
    pub fn oldest_rev(&self) -> u64 {
        self.rev - self.history.len() as u64
    }

    /// The retained ops after revision `from`, as `(rev, entry)`; `RevisionTooOld` when some of
    /// them are no longer retained, `FutureRevision` when `from` is ahead of the document.
    pub fn ops_since(
        &self,
        from: u64,
    ) -> Result<impl ExactSizeIterator<Item = (u64, AppliedOp<'_>)>, DocError> {
        let start = self.window_index(from)?;
        Ok(self
            .history
            .range(start..)
            .enumerate()
            .map(move |(i, e)| (from + 1 + i as u64, self.applied(e))))
    }

    /// Document length in characters at a retained revision.
    pub fn len_at(&self, rev: u64) -> Result<usize, DocError> {
        let start = self.window_index(rev)?;
        Ok(self
            .history
            .get(start)
            .map_or(self.text.len_chars(), |e| e.len_before))
    }

    /// Refuses an op that reaches `reach` characters (its retains and deletes as received,
    /// trailing retain included: see `wire::op_reach`) when the document at `base_rev` is
    /// shorter. Revisions outside the window are left to [`Document::submit`] to judge.
    pub fn check_reach(&self, base_rev: u64, reach: usize) -> Result<(), DocError> {
        match self.len_at(base_rev) {
            Ok(len) if reach > len => Err(OtError::RetainPastEnd { end: reach, len }.into()),
            _ => Ok(()),
        }
    }

    /// The retained op that produced revision `rev`.
    pub fn op_at(&self, rev: u64) -> Option<AppliedOp<'_>> {
        if rev == 0 || rev > self.rev || rev <= self.oldest_rev() {
            return None;
        }
        let e = self.history.get((rev - self.oldest_rev() - 1) as usize)?;
        Some(self.applied(e))
    }

    /// Index into `history` of the first op after revision `base`.
    fn window_index(&self, base: u64) -> Result<usize, DocError> {
        window_index(self.rev, self.history.len(), base)
    }

    /// Submits `op`, written by `client` against revision `base_rev` under sequence number `seq`.
    ///
    /// Transforms the op against every op applied since `base_rev`, applies it and records it.
    /// A resend of an already-applied `(client, seq)` returns the original result and changes
    /// nothing; if the original op is still retained, the resend must transform to the same op
    /// or it is refused with `SeqReused`.
    pub fn submit(
        &mut self,
        client: &ClientId,
        seq: u64,
        base_rev: u64,
        op: Op,
    ) -> Result<Submitted<'_>, DocError> {
        let known = self.clients.find(client);
        if let Some(rec) = known.map(|s| self.clients.record(s)) {
            if seq == rec.seq {
                return self.duplicate(rec, base_rev, &op);
            }
            if seq < rec.seq {
                return Err(DocError::StaleSeq { seq, last: rec.seq });
            }
        }
        let len_before = self.text.len_chars();
        let (op, len_after) = if base_rev == self.rev {
            let len_after = op.fit_len(len_before)?;
            (op, len_after)
        } else {
            let start = self.window_index(base_rev)?;
            let len_at_base = self.history.get(start).map_or(len_before, |e| e.len_before);
            op.check_fits(len_at_base)?;
            let mut op = op;
            for e in self.history.range(start..) {
                op = op.transform(&e.op, Side::Left);
            }
            let len_after = op.fit_len(len_before)?;
            (op, len_after)
        };
        if len_after > self.config.max_chars && len_after > len_before {
            return Err(DocError::TooLarge {
                len: len_after,
                max: self.config.max_chars,
            });
        }
        self.push_undo(&op);
        op.apply_rope_unchecked(&mut self.text);
        self.rev += 1;
        let slot = self.record(known, client, seq);
        self.push_history(HistoryEntry {
            op,
            client: slot,
            seq,
            len_before,
        });
        Ok(Submitted {
            rev: self.rev,
            op: self.history.back().map(|e| &e.op),
            duplicate: false,
        })
    }

    /// Answers a resend of an applied op.
    fn duplicate(
        &self,
        rec: ClientRecord,
        base_rev: u64,
        op: &Op,
    ) -> Result<Submitted<'_>, DocError> {
        let original = self.op_at(rec.rev);
        if let (Some(original), Ok(start)) = (original, self.window_index(base_rev)) {
            let end = (rec.rev - self.oldest_rev() - 1) as usize;
            if start <= end {
                let mut resent = op.clone();
                for e in self.history.range(start..end) {
                    resent = resent.transform(&e.op, Side::Left);
                }
                if &resent != original.op {
                    return Err(DocError::SeqReused {
                        seq: rec.seq,
                        rev: rec.rev,
                    });
                }
            }
        }
        Ok(Submitted {
            rev: rec.rev,
            op: original.map(|e| e.op),
            duplicate: true,
        })
    }

    /// Appends an op that is already ordered and transformed (replaying a stored log). It must
    /// produce revision `rev == self.rev() + 1` and fit the document.
    pub fn apply_committed(
        &mut self,
        rev: u64,
        client: &ClientId,
        seq: u64,
        op: Op,
    ) -> Result<(), DocError> {
        if rev != self.rev + 1 {
            return Err(DocError::FutureRevision {
                base: rev.saturating_sub(1),
                current: self.rev,
            });
        }
        let len_before = self.text.len_chars();
        op.check_fits(len_before)?;
        self.push_undo(&op);
        op.apply_rope_unchecked(&mut self.text);
        self.rev = rev;
        let known = self.clients.find(client);
        let slot = self.record(known, client, seq);
        self.push_history(HistoryEntry {
            op,
            client: slot,
            seq,
            len_before,
        });
        Ok(())
    }

    /// Starts keeping the undo tail from the current revision: ops applied from now on can be
    /// rolled back by [`Document::text_at`] until [`Document::release_undo`] drops them. The
    /// server uses it to serve the last durable text while newer ops wait for their flush.
    pub fn track_undo(&mut self) {
        self.undo_base = Some(self.rev);
        self.undo.clear();
    }

    /// Drops the undo ops of revisions up to `rev` (they became durable).
    pub fn release_undo(&mut self, rev: u64) {
        if let Some(base) = self.undo_base.as_mut() {
            while *base < rev.min(self.rev) && self.undo.pop_front().is_some() {
                *base += 1;
            }
        }
    }

    /// The text at revision `rev`: the current text, or an earlier one within the undo tail.
    pub fn text_at(&self, rev: u64) -> Result<String, DocError> {
        if rev > self.rev {
            return Err(DocError::FutureRevision {
                base: rev,
                current: self.rev,
            });
        }
        let mut text = self.text.to_string();
        if rev == self.rev {
            return Ok(text);
        }
        match self.undo_base {
            Some(base) if rev >= base => {
                let skip = (rev - base) as usize;
                for undo in self.undo.iter().skip(skip).rev() {
                    text = undo.apply_str(&text)?;
                }
                Ok(text)
            }
            _ => Err(DocError::RevisionTooOld {
                base: rev,
                oldest: self.undo_base.unwrap_or(self.rev),
            }),
        }
    }

    /// Records the inverse of `op` (which fits) before it is applied, if tracking.
    fn push_undo(&mut self, op: &Op) {
        if self.undo_base.is_none() {
            return;
        }
        let mut b = OpBuilder::new();
        let mut pos = 0usize;
        for c in op.components() {
            match c {
                Component::Retain(n) => {
                    b.retain(*n);
                    pos += n;
                }
                Component::Insert(s) => {
                    b.delete(char_len(s));
                }
                Component::Delete(n) => {
                    for chunk in self.text.slice_substrings(pos..pos + n) {
                        b.insert(chunk);
                    }
                    pos += n;
                }
            }
        }
        self.undo.push_back(b.build());
    }

    /// Records that `client` (in `slot`, if known) had `seq` applied as the current revision,
    /// and returns its slot.
    fn record(&mut self, slot: Option<u32>, client: &ClientId, seq: u64) -> u32 {
        let rec = ClientRecord { seq, rev: self.rev };
        match slot {
            Some(s) => {
                self.clients.set(s, rec);
                s
            }
            None => {
                let oldest = self.oldest_rev();
                self.clients.trim(self.config.max_clients, oldest);
                self.clients.insert(client, rec)
            }
        }
    }

    /// Appends an applied op, dropping the oldest beyond the window. The newest op is always
    /// kept (a window of 0 counts as 1): [`Submitted::op`] of a fresh op refers to it.
    fn push_history(&mut self, entry: HistoryEntry) {
        if self.history.len() >= self.config.history_window.max(1) {
            self.history.pop_front();
        }
        self.history.push_back(entry);
    }
}

/// Index into a history of `len` ops ending at revision `rev` of the first op after revision
/// `base`: `FutureRevision` past the head, `RevisionTooOld` before the window.
fn window_index(rev: u64, len: usize, base: u64) -> Result<usize, DocError> {
    if base > rev {
        return Err(DocError::FutureRevision { base, current: rev });
    }
    let oldest = rev - len as u64;
    if base < oldest {
        return Err(DocError::RevisionTooOld { base, oldest });
    }
    Ok((base - oldest) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn id(s: &str) -> ClientId {
        ClientId::from(s)
    }

    #[test]
    fn submit_transforms_against_concurrent_ops() {
        let mut d = Document::default();
        let (a, b) = (id("a"), id("b"));
        d.submit(&a, 1, 0, Op::insert_at(0, "hello")).unwrap();
        d.submit(&a, 2, 1, Op::insert_at(5, " world")).unwrap();
        // b wrote against revision 1 ("hello"): insert "!" at the end.
        let r = d.submit(&b, 1, 1, Op::insert_at(5, "!")).unwrap();
        assert_eq!(r.rev, 3);
        assert_eq!(r.op, Some(&Op::insert_at(5, "!")));
        assert_eq!(d.text(), "hello! world");
        // b deletes "hello" against revision 1; a's later insert is kept.
        let r = d.submit(&b, 2, 1, Op::delete_at(0, 5)).unwrap();
        assert_eq!(r.op, Some(&Op::delete_at(0, 5)));
        assert_eq!(d.text(), "! world");
    }

    #[test]
    fn a_zero_window_still_returns_the_fresh_op() {
        // Found by the document_submit fuzz target: with `history_window = 0` a fresh op came
        // back as `None`, and the server stored and broadcast an empty op in its place.
        let mut d = Document::new(DocumentConfig {
            history_window: 0,
            ..DocumentConfig::default()
        });
        let r = d.submit(&id("a"), 1, 0, Op::insert_at(0, "x")).unwrap();
        assert_eq!(r.op, Some(&Op::insert_at(0, "x")));
        let r = d.submit(&id("a"), 2, 1, Op::insert_at(1, "y")).unwrap();
        assert_eq!(r.op, Some(&Op::insert_at(1, "y")));
        assert_eq!(d.oldest_rev(), 1);
        assert_eq!(d.text(), "xy");
    }

    #[test]
    fn resend_is_applied_exactly_once() {
        let mut d = Document::default();
        let a = id("a");
        let first = d.submit(&a, 1, 0, Op::insert_at(0, "x")).unwrap().rev;
        d.submit(&id("b"), 1, 1, Op::insert_at(0, "y")).unwrap();
        let again = d.submit(&a, 1, 0, Op::insert_at(0, "x")).unwrap();
        assert!(again.duplicate);
        assert_eq!(again.rev, first);
        assert_eq!(d.text(), "yx");
        assert_eq!(d.rev(), 2);
        // Same seq, different op: refused, nothing changes.
        assert_eq!(
            d.submit(&a, 1, 0, Op::insert_at(0, "z")),
            Err(DocError::SeqReused { seq: 1, rev: 1 })
        );
        assert_eq!(
            d.submit(&a, 0, 0, Op::insert_at(0, "z")),
            Err(DocError::StaleSeq { seq: 0, last: 1 })
        );
        assert_eq!(d.text(), "yx");
        assert_eq!(d.rev(), 2);
    }

    #[test]
    fn refusals_change_nothing() {
        let config = DocumentConfig {
            history_window: 2,
            max_chars: 6,
            ..DocumentConfig::default()
        };
        let mut d = Document::new(config);
        let a = id("a");
        for (i, s) in ["a", "b", "c"].iter().enumerate() {
            d.submit(&a, i as u64 + 1, i as u64, Op::insert_at(i, s))
                .unwrap();
        }
        let before = d.snapshot();
        let b = id("b");
        assert_eq!(
            d.submit(&b, 1, 9, Op::noop()),
            Err(DocError::FutureRevision {
                base: 9,
                current: 3
            })
        );
        assert_eq!(
            d.submit(&b, 1, 0, Op::noop()),
            Err(DocError::RevisionTooOld { base: 0, oldest: 1 })
        );
        assert_eq!(
            d.submit(&b, 1, 3, Op::delete_at(1, 5)),
            Err(DocError::Ot(OtError::DeletePastEnd { end: 6, len: 3 }))
        );
        // Fits at revision 3 but not at revision 1 ("ab"): refused even though "abc" is longer.
        assert_eq!(
            d.submit(&b, 1, 1, Op::insert_at(3, "z")),
            Err(DocError::Ot(OtError::RetainPastEnd { end: 3, len: 1 }))
        );
        assert_eq!(
            d.submit(&b, 1, 3, Op::insert_at(3, "defg")),
            Err(DocError::TooLarge { len: 7, max: 6 })
        );
        assert_eq!(d.snapshot(), before);
        assert_eq!(d.oldest_rev(), 1);
    }

    #[test]
    fn ops_since_and_window() {
        let config = DocumentConfig {
            history_window: 3,
            ..DocumentConfig::default()
        };
        let mut d = Document::new(config);
        let a = id("a");
        for i in 0..5u64 {
            d.submit(&a, i + 1, i, Op::insert_at(i as usize, "x"))
                .unwrap();
        }
        let revs: Vec<u64> = d.ops_since(3).unwrap().map(|(r, _)| r).collect();
        assert_eq!(revs, vec![4, 5]);
        assert_eq!(d.ops_since(5).unwrap().len(), 0);
        assert!(matches!(
            d.ops_since(1),
            Err(DocError::RevisionTooOld { .. })
        ));
        assert!(matches!(
            d.ops_since(6),
            Err(DocError::FutureRevision { .. })
        ));
        assert_eq!(d.op_at(5).unwrap().op, &Op::insert_at(4, "x"));
        assert!(d.op_at(2).is_none());
        assert_eq!(d.len_at(2).unwrap(), 2);
        assert_eq!(d.len_at(5).unwrap(), 5);
        assert!(d.len_at(1).is_err());
    }

    #[test]
    fn snapshot_round_trip_keeps_exactly_once_state() {
        let mut d = Document::default();
        let a = id("a");
        d.submit(&a, 7, 0, Op::insert_at(0, "中😅")).unwrap();
        let snap = d.snapshot();
        let mut e = Document::from_snapshot(snap.clone(), DocumentConfig::default());
        assert_eq!(e.snapshot(), snap);
        assert_eq!(e.len_chars(), 2);
        // The resend after a restart is still recognized.
        let r = e.submit(&a, 7, 0, Op::insert_at(0, "中😅")).unwrap();
        assert!(r.duplicate);
        assert_eq!(e.text(), "中😅");
        e.apply_committed(2, &a, 8, Op::insert_at(2, "!")).unwrap();
        assert!(e.apply_committed(5, &a, 9, Op::noop()).is_err());
        assert_eq!(e.text(), "中😅!");
    }

    #[test]
    fn undo_tail_serves_earlier_texts() {
        let mut d = Document::default();
        let a = id("a");
        d.submit(&a, 1, 0, Op::insert_at(0, "héllo wörld")).unwrap();
        assert!(d.text_at(0).is_err());
        d.track_undo();
        d.submit(&a, 2, 1, Op::splice(1, 4, "EY😅")).unwrap();
        d.submit(&a, 3, 2, Op::delete_at(0, 3)).unwrap();
        d.apply_committed(4, &a, 4, Op::insert_at(0, "中")).unwrap();
        assert_eq!(d.text(), "中😅 wörld");
        assert_eq!(d.text_at(1).unwrap(), "héllo wörld");
        assert_eq!(d.text_at(2).unwrap(), "hEY😅 wörld");
        assert_eq!(d.text_at(3).unwrap(), "😅 wörld");
        assert_eq!(d.text_at(4).unwrap(), "中😅 wörld");
        d.release_undo(2);
        assert!(d.text_at(1).is_err());
        assert_eq!(d.text_at(2).unwrap(), "hEY😅 wörld");
        d.release_undo(99);
        assert_eq!(d.text_at(4).unwrap(), "中😅 wörld");
        assert!(d.text_at(3).is_err());
        assert!(d.text_at(5).is_err());
    }

    #[test]
    fn client_table_is_bounded() {
        let config = DocumentConfig {
            max_clients: 8,
            history_window: 4,
            ..DocumentConfig::default()
        };
        let mut d = Document::new(config);
        for i in 0..100u64 {
            d.submit(&id(&format!("c{i}")), 1, i, Op::insert_at(0, "x"))
                .unwrap();
            assert!(d.client_count() <= 9);
            // Authors of retained ops are never forgotten.
            for (_, e) in d.ops_since(d.oldest_rev()).unwrap() {
                assert!(d.client(e.client).is_some());
            }
        }
        assert!(d.client("c99").is_some());
        assert!(d.client("c0").is_none());
        // A forgotten client's very old resend cannot be placed: it is refused, not re-applied.
        assert!(matches!(
            d.submit(&id("c0"), 1, 0, Op::insert_at(0, "x")),
            Err(DocError::RevisionTooOld { .. })
        ));
    }

    #[test]
    fn a_trailing_retain_past_the_end_does_not_fit() {
        let mut d = Document::new(DocumentConfig::default());
        let a = id("a");
        // `[99999]` on an empty document: the canonical op is empty, the reach is not.
        assert_eq!(
            d.check_reach(0, 99_999).unwrap_err().code(),
            ErrorCode::OpDoesNotFit
        );
        d.submit(&a, 1, 0, Op::insert_at(0, "hello")).unwrap();
        assert!(d.check_reach(1, 5).is_ok());
        assert!(d.check_reach(1, 6).is_err());
        // Against an older revision, its own length counts.
        assert!(d.check_reach(0, 1).is_err());
        assert!(d.check_reach(0, 0).is_ok());
        // Outside the window: left to submit.
        assert!(d.check_reach(7, 1_000_000).is_ok());
    }
}
