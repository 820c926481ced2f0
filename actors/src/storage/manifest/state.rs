//! The manifest's folded state: per document its acknowledged mark (write sequence number
//! and revision, or deleted), the audit chain's durable length; and what a comparison with
//! the store finds ([`Loss`]). Records fold in write-sequence order, not file order.

use super::*;

/// What the manifest says about a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Mark {
    /// Highest durable revision (0 for a deleted document).
    rev: u64,
    /// Write sequence number of the last record that changed it.
    wseq: u64,
    deleted: bool,
}

/// The folded state of a manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ManifestState {
    pub(super) docs: HashMap<String, Mark>,
    /// Highest write sequence number seen.
    pub wseq: u64,
    /// Highest write sequence number covered by a recorded flush.
    pub flushed: u64,
    /// Audit chain length made durable.
    pub audit: u64,
}

impl ManifestState {
    pub(super) fn apply(&mut self, e: &Entry) {
        match e {
            Entry::Base {
                wseq,
                flushed,
                audit,
                docs,
                deleted,
                ..
            } => {
                *self = ManifestState::default();
                self.wseq = *wseq;
                self.flushed = *flushed;
                self.audit = *audit;
                for (doc, rev, w) in docs {
                    self.mark(doc, *rev, *w);
                }
                for (doc, w) in deleted {
                    self.delete(doc, *w);
                }
            }
            Entry::Flush {
                flushed,
                docs,
                audit,
            } => {
                self.flushed = self.flushed.max(*flushed);
                self.wseq = self.wseq.max(*flushed);
                self.audit = self.audit.max(*audit);
                for (doc, rev, w) in docs {
                    self.mark(doc, *rev, *w);
                }
            }
            Entry::Delete { wseq, doc } => self.delete(doc, *wseq),
        }
    }

    pub(super) fn mark(&mut self, doc: &str, rev: u64, wseq: u64) {
        self.wseq = self.wseq.max(wseq);
        match self.docs.get_mut(doc) {
            // A write issued before the document's deletion: stale.
            Some(m) if m.deleted && m.wseq > wseq => {}
            Some(m) if m.deleted => {
                *m = Mark {
                    rev,
                    wseq,
                    deleted: false,
                }
            }
            Some(m) => {
                m.rev = m.rev.max(rev);
                m.wseq = m.wseq.max(wseq);
            }
            None => {
                self.docs.insert(
                    doc.to_string(),
                    Mark {
                        rev,
                        wseq,
                        deleted: false,
                    },
                );
            }
        }
    }

    pub(super) fn delete(&mut self, doc: &str, wseq: u64) {
        self.wseq = self.wseq.max(wseq);
        match self.docs.get_mut(doc) {
            Some(m) if m.wseq > wseq => {}
            _ => {
                self.docs.insert(
                    doc.to_string(),
                    Mark {
                        rev: 0,
                        wseq,
                        deleted: true,
                    },
                );
            }
        }
    }

    /// The highest acknowledged revision of a live document, if the manifest knows it.
    pub fn expected_rev(&self, doc: &str) -> Option<u64> {
        self.docs
            .get(doc)
            .filter(|m| !m.deleted && m.rev > 0)
            .map(|m| m.rev)
    }

    /// Live documents and their highest acknowledged revisions, sorted.
    pub fn documents(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self
            .docs
            .iter()
            .filter(|(_, m)| !m.deleted && m.rev > 0)
            .map(|(d, m)| (d.clone(), m.rev))
            .collect();
        v.sort();
        v
    }

    /// The state as one `Base` record (tombstones kept only while older marks may still
    /// arrive).
    pub(super) fn base(&self, id: &str) -> Entry {
        let mut docs: Vec<(String, u64, u64)> = Vec::new();
        let mut deleted: Vec<(String, u64)> = Vec::new();
        for (d, m) in &self.docs {
            if m.deleted {
                if m.wseq > self.flushed {
                    deleted.push((d.clone(), m.wseq));
                }
            } else {
                docs.push((d.clone(), m.rev, m.wseq));
            }
        }
        docs.sort();
        deleted.sort();
        Entry::Base {
            format: MANIFEST_FORMAT,
            id: id.to_string(),
            wseq: self.wseq,
            flushed: self.flushed,
            audit: self.audit,
            docs,
            deleted,
        }
    }
}

/// A document whose stored state is behind what was acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loss {
    /// The document.
    pub doc: String,
    /// The revision the store has.
    pub have: u64,
    /// The highest acknowledged revision.
    pub expected: u64,
}

impl Loss {
    /// The loss as a store error.
    pub fn into_error(self) -> StoreError {
        StoreError::Lost {
            doc: self.doc,
            have: self.have,
            expected: self.expected,
        }
    }
}
