//! The coalescer: durable ops in, document changes out, at most one per document per interval
//! (pure: the caller gives the time).
//!
//! Invariants:
//! - A change covers consecutive revisions: from the first revision noted since the last
//!   change of the document to the last one noted.
//! - Per document, two changes are at least `interval` apart; the first change after a quiet
//!   spell is due at once (leading edge), later ones when the interval since the previous one
//!   is over (so a document typed into all day yields one change per interval, never one per
//!   keystroke).
//! - A change starting at revision 1 is marked `created`.
//! - Memory: a document is forgotten once it has nothing pending and its interval is over.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use coedit_protocol::DocKind;

use super::MAX_AUTHORS;

/// A document change ready to be told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Storage id.
    pub doc: Arc<str>,
    /// The document's kind.
    pub kind: DocKind,
    /// First revision covered.
    pub from: u64,
    /// Last revision covered.
    pub to: u64,
    /// Authors (token subjects) in order of first appearance, at most [`MAX_AUTHORS`].
    pub authors: Vec<Arc<str>>,
    /// Authors beyond those listed.
    pub more_authors: u32,
    /// The author of the last revision.
    pub last_author: Option<Arc<str>>,
}

impl Change {
    /// A change starting (and ending) at `rev`.
    fn start(doc: &Arc<str>, kind: DocKind, rev: u64) -> Change {
        Change {
            doc: doc.clone(),
            kind,
            from: rev,
            to: rev,
            authors: Vec::new(),
            more_authors: 0,
            last_author: None,
        }
    }

    /// Whether the change starts the document (revision 1).
    pub fn created(&self) -> bool {
        self.from == 1
    }
}

/// Most authors beyond the listed ones that are told apart (counted in `more_authors`).
pub const MAX_EXTRA_AUTHORS: usize = 4096;

#[derive(Debug)]
struct DocState {
    pending: Option<Change>,
    /// Authors of the pending change beyond the listed ones.
    extra: HashSet<Arc<str>>,
    /// When its last change was taken.
    last_ms: Option<u64>,
}

/// The coalescer. See the module documentation.
#[derive(Debug)]
pub struct Coalescer {
    interval_ms: u64,
    docs: HashMap<Arc<str>, DocState>,
}

impl Coalescer {
    /// A coalescer yielding at most one change per document per `interval_ms`.
    pub fn new(interval_ms: u64) -> Self {
        Coalescer {
            interval_ms,
            docs: HashMap::new(),
        }
    }

    /// Notes that revision `rev` of `doc` is durable.
    pub fn note(&mut self, doc: &Arc<str>, kind: DocKind, rev: u64, subject: Option<&Arc<str>>) {
        let state = self.docs.entry(doc.clone()).or_insert(DocState {
            pending: None,
            extra: HashSet::new(),
            last_ms: None,
        });
        let change = state
            .pending
            .get_or_insert_with(|| Change::start(doc, kind, rev));
        if rev < change.from {
            // A document deleted and written again from revision 1 before its change was told
            // (its deletion took the change first, so this only happens if a caller skipped
            // that): start over rather than claim a range backwards.
            *change = Change::start(doc, kind, rev);
            state.extra.clear();
        }
        change.to = change.to.max(rev);
        if let Some(s) = subject {
            if !change.authors.iter().any(|a| a == s) {
                if change.authors.len() < MAX_AUTHORS {
                    change.authors.push(s.clone());
                } else if state.extra.len() < MAX_EXTRA_AUTHORS {
                    state.extra.insert(s.clone());
                    change.more_authors = state.extra.len() as u32;
                }
            }
        }
        change.last_author = subject.cloned();
    }

    /// The changes due at `now_ms`, in no particular order across documents.
    pub fn due(&mut self, now_ms: u64) -> Vec<Change> {
        self.due_if(now_ms, |_| true)
    }

    /// The changes due at `now_ms` of the documents `ready` accepts; the others stay pending
    /// (cluster mode: a document whose lease is not fresh keeps its change until its owner
    /// renews the lease or steps down).
    pub fn due_if(&mut self, now_ms: u64, ready: impl Fn(&str) -> bool) -> Vec<Change> {
        let interval = self.interval_ms;
        let mut out = Vec::new();
        self.docs.retain(|doc, s| {
            let open = s
                .last_ms
                .is_none_or(|t| now_ms.saturating_sub(t) >= interval);
            if open && s.pending.is_some() && !ready(doc) {
                return true;
            }
            if open {
                if let Some(c) = s.pending.take() {
                    s.extra.clear();
                    out.push(c);
                    s.last_ms = Some(now_ms);
                    return true;
                }
                // Nothing pending and the interval is over: forget the document.
                return false;
            }
            true
        });
        out
    }

    /// Takes every pending change whatever the interval (at shutdown: written before the last
    /// flush, so the next start does not have to recover them without their authors).
    pub fn drain(&mut self) -> Vec<Change> {
        let out = self
            .docs
            .values_mut()
            .filter_map(|s| s.pending.take())
            .collect();
        self.docs.clear();
        out
    }

    /// Takes `doc`'s pending change whatever the interval (before its deletion), and forgets
    /// the document.
    pub fn take(&mut self, doc: &str) -> Option<Change> {
        self.docs.remove(doc).and_then(|s| s.pending)
    }

    /// Documents remembered (pending, or within their interval).
    pub fn tracked(&self) -> usize {
        self.docs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn a_burst_becomes_one_change_per_interval() {
        let mut c = Coalescer::new(1000);
        let (d, alice, bob) = (id("t:a"), id("alice"), id("bob"));
        for rev in 1..=3 {
            c.note(&d, DocKind::Text, rev, Some(&alice));
        }
        let first = c.due(0);
        assert_eq!(
            first.len(),
            1,
            "the first change after quiet is due at once"
        );
        assert_eq!((first[0].from, first[0].to), (1, 3));
        assert!(first[0].created());
        // Typing goes on: nothing until the interval is over.
        for rev in 4..=10 {
            c.note(
                &d,
                DocKind::Text,
                rev,
                Some(if rev % 2 == 0 { &bob } else { &alice }),
            );
            assert!(c.due(rev * 90).is_empty(), "at {} ms", rev * 90);
        }
        let second = c.due(1000);
        assert_eq!(second.len(), 1);
        let ch = &second[0];
        assert_eq!((ch.from, ch.to), (4, 10));
        assert!(!ch.created());
        assert_eq!(ch.authors, vec![bob.clone(), alice.clone()]);
        assert_eq!(ch.last_author.as_deref(), Some("bob"));
        // Quiet: nothing due, then the document is forgotten.
        assert!(c.due(1500).is_empty());
        assert_eq!(c.tracked(), 1);
        assert!(c.due(2000).is_empty());
        assert_eq!(c.tracked(), 0);
    }

    #[test]
    fn documents_are_independent_and_ranges_consecutive() {
        let mut c = Coalescer::new(500);
        let (a, b) = (id("a"), id("b"));
        c.note(&a, DocKind::Text, 5, None);
        c.note(&b, DocKind::Yjs, 1, None);
        let mut got = c.due(10);
        got.sort_by(|x, y| x.doc.cmp(&y.doc));
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].from, got[0].to, got[0].kind), (5, 5, DocKind::Text));
        assert_eq!((got[1].from, got[1].to, got[1].kind), (1, 1, DocKind::Yjs));
        assert!(got[1].authors.is_empty() && got[1].last_author.is_none());
        c.note(&a, DocKind::Text, 6, None);
        c.note(&a, DocKind::Text, 7, None);
        assert!(c.due(400).is_empty());
        let next = c.due(510);
        assert_eq!((next[0].from, next[0].to), (6, 7));
    }

    #[test]
    fn a_document_not_ready_keeps_its_change() {
        let mut c = Coalescer::new(100);
        let (a, b) = (id("a"), id("b"));
        c.note(&a, DocKind::Text, 1, None);
        c.note(&b, DocKind::Text, 1, None);
        let got = c.due_if(0, |d| d == "b");
        assert_eq!(got.len(), 1);
        assert_eq!(&*got[0].doc, "b");
        // Held, not forgotten, and it keeps growing; once ready it comes whole.
        c.note(&a, DocKind::Text, 2, None);
        assert!(c.due_if(500, |d| d != "a").is_empty());
        assert_eq!(c.tracked(), 1, "b is forgotten, a is held");
        let a_change = c.due(600).pop().expect("a's change once ready");
        assert_eq!((a_change.from, a_change.to), (1, 2));
        // A held change is still taken whole by a deletion or a step-down.
        c.note(&a, DocKind::Text, 3, None);
        assert!(c.due_if(800, |_| false).is_empty());
        assert_eq!(c.take("a").map(|x| (x.from, x.to)), Some((3, 3)));
    }

    #[test]
    fn authors_are_bounded() {
        let mut c = Coalescer::new(0);
        let d = id("d");
        let subjects: Vec<Arc<str>> = (0..MAX_AUTHORS + 5).map(|i| id(&format!("u{i}"))).collect();
        for (i, s) in subjects.iter().enumerate() {
            c.note(&d, DocKind::Text, i as u64 + 1, Some(s));
            c.note(&d, DocKind::Text, i as u64 + 1, Some(s));
        }
        let ch = c.due(0).pop().expect("a change");
        assert_eq!(ch.authors.len(), MAX_AUTHORS);
        assert_eq!(ch.more_authors, 5);
    }

    #[test]
    fn a_deletion_takes_the_pending_change() {
        let mut c = Coalescer::new(1000);
        let d = id("d");
        c.note(&d, DocKind::Text, 1, None);
        let _ = c.due(0);
        c.note(&d, DocKind::Text, 2, None);
        let taken = c.take("d").expect("pending");
        assert_eq!((taken.from, taken.to), (2, 2));
        assert_eq!(c.tracked(), 0);
        // Written again from revision 1: a new document, due at once.
        c.note(&d, DocKind::Yjs, 1, None);
        let again = c.due(10);
        assert!(again[0].created());
        assert_eq!(c.take("d"), None);
        c.note(&id("e"), DocKind::Text, 4, None);
        let _ = c.due(20);
        c.note(&id("e"), DocKind::Text, 5, None);
        assert!(c.due(30).is_empty(), "within its interval");
        let all = c.drain();
        assert_eq!((all.len(), all[0].from, all[0].to), (1, 5, 5));
        assert_eq!(c.tracked(), 0);
    }
}
