//! [`GatedStore`]: a `MemoryStore` for the actor tests that logs every write and flush in the
//! order the store saw them, and whose `flush` can be held and let through one at a time, so a
//! test decides exactly when a group commit completes.
//!
//! Invariants:
//! - Every write through the `Store` trait is logged before it returns; a flush is logged when
//!   it starts (what it covers: everything logged before) and when it ends.
//! - A held flush blocks its (blocking) thread at most [`WAIT_LIMIT`], so a failed test can
//!   never hang the runtime's shutdown.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use coedit_protocol::DocumentSnapshot;

use super::WAIT_LIMIT;
use crate::security::crypto::MasterKeyring;
use crate::storage::{Fenced, LogRecord, MemoryStore, Store, StoreError, StoredDoc, Versions};

/// One thing the store saw, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StoreEvent {
    /// An op record of `doc` at `rev`.
    Op { doc: String, rev: u64 },
    /// A snapshot of `doc` at `rev`.
    Snapshot { doc: String, rev: u64 },
    /// A compaction of `doc` at or before `rev`.
    Compact { doc: String, rev: u64 },
    /// An audit record.
    Audit { seq: u64 },
    /// Flush number `n` (from 1) started: it covers every write logged before it.
    FlushStart(usize),
    /// Flush number `n` returned.
    FlushEnd(usize),
}

#[derive(Default)]
struct GateState {
    events: Vec<StoreEvent>,
    /// Flushes that may still complete; `None`: any number.
    permits: Option<usize>,
    started: usize,
    finished: usize,
    /// Flushes blocked at the gate now.
    waiting: usize,
    /// Loads are held until released.
    loads_held: bool,
    /// What the next `take_fenced` reports (as a cluster store would after a refused write).
    fenced: Vec<Fenced>,
    /// Loads running now, and the most at once so far.
    loading: usize,
    max_loading: usize,
}

/// The store wrapper. See the module documentation.
pub(crate) struct GatedStore {
    inner: MemoryStore,
    state: Mutex<GateState>,
    changed: Condvar,
}

impl GatedStore {
    /// An empty store whose flushes pass.
    pub(crate) fn new() -> Arc<GatedStore> {
        Arc::new(GatedStore {
            inner: MemoryStore::new(),
            state: Mutex::default(),
            changed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn log(&self, e: StoreEvent) {
        self.lock().events.push(e);
    }

    /// Forgets everything logged so far (what setting up the rig wrote).
    pub(crate) fn reset(&self) {
        *self.lock() = GateState::default();
    }

    /// From now on, flushes block until allowed.
    pub(crate) fn hold(&self) {
        self.lock().permits = Some(0);
    }

    /// Lets `n` more flushes complete.
    pub(crate) fn allow(&self, n: usize) {
        let mut s = self.lock();
        if let Some(p) = s.permits.as_mut() {
            *p += n;
        }
        drop(s);
        self.changed.notify_all();
    }

    /// From now on, loads block until [`Self::release_loads`].
    pub(crate) fn hold_loads(&self) {
        self.lock().loads_held = true;
    }

    /// Lets every load through again.
    pub(crate) fn release_loads(&self) {
        self.lock().loads_held = false;
        self.changed.notify_all();
    }

    /// `(loads running now, most loads running at once so far)`.
    pub(crate) fn loads(&self) -> (usize, usize) {
        let s = self.lock();
        (s.loading, s.max_loading)
    }

    /// Lets every flush through again.
    pub(crate) fn open(&self) {
        self.lock().permits = None;
        self.changed.notify_all();
    }

    /// Everything seen so far.
    /// The next `take_fenced` reports `doc` fenced from revision `from_rev` (the writes still
    /// go to the memory store: the tests look at what the store actor does about it).
    pub(crate) fn fence(&self, doc: &str, from_rev: u64) {
        self.lock().fenced.push(Fenced {
            doc: doc.into(),
            from_rev,
        });
    }

    pub(crate) fn events(&self) -> Vec<StoreEvent> {
        self.lock().events.clone()
    }

    /// Flushes started so far.
    pub(crate) fn flushes_started(&self) -> usize {
        self.lock().started
    }

    /// Whether a flush is blocked at the gate now (and no permit lets it through).
    pub(crate) fn blocked(&self) -> bool {
        let s = self.lock();
        s.waiting > 0 && s.permits == Some(0)
    }

    /// Flushes completed so far.
    pub(crate) fn flushes_finished(&self) -> usize {
        self.lock().finished
    }

    /// The op revisions of `doc` written between the start of flush `n - 1` and the start of
    /// flush `n`: what flush `n` newly covers.
    pub(crate) fn newly_covered(&self, n: usize, doc: &str) -> Vec<u64> {
        let events = self.events();
        let start = |k: usize| events.iter().position(|e| *e == StoreEvent::FlushStart(k));
        let from = if n <= 1 { Some(0) } else { start(n - 1) };
        let (Some(from), Some(to)) = (from, start(n)) else {
            return Vec::new();
        };
        events[from..to]
            .iter()
            .filter_map(|e| match e {
                StoreEvent::Op { doc: d, rev } if d == doc => Some(*rev),
                _ => None,
            })
            .collect()
    }

    /// The op revisions of `doc` written, in order.
    pub(crate) fn written_ops(&self, doc: &str) -> Vec<u64> {
        self.events()
            .iter()
            .filter_map(|e| match e {
                StoreEvent::Op { doc: d, rev } if d == doc => Some(*rev),
                _ => None,
            })
            .collect()
    }
}

impl Store for GatedStore {
    fn load(&self, doc: &str) -> Result<StoredDoc, StoreError> {
        let mut s = self.lock();
        s.loading += 1;
        s.max_loading = s.max_loading.max(s.loading);
        while s.loads_held {
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        drop(s);
        let r = self.inner.load(doc);
        self.lock().loading -= 1;
        r
    }

    fn append(&self, doc: &str, records: &[LogRecord]) -> Result<(), StoreError> {
        self.inner.append(doc, records)?;
        for r in records {
            self.log(StoreEvent::Op {
                doc: doc.to_string(),
                rev: r.rev,
            });
        }
        Ok(())
    }

    fn put_snapshot(&self, doc: &str, snapshot: &DocumentSnapshot) -> Result<(), StoreError> {
        self.inner.put_snapshot(doc, snapshot)?;
        self.log(StoreEvent::Snapshot {
            doc: doc.to_string(),
            rev: snapshot.rev,
        });
        Ok(())
    }

    fn compact(&self, doc: &str, rev: u64) -> Result<(), StoreError> {
        self.inner.compact(doc, rev)?;
        self.log(StoreEvent::Compact {
            doc: doc.to_string(),
            rev,
        });
        Ok(())
    }

    /// Logs the start, waits while flushes are held (at most [`WAIT_LIMIT`]), flushes, logs
    /// the end.
    fn take_fenced(&self) -> Vec<Fenced> {
        std::mem::take(&mut self.lock().fenced)
    }

    fn flush(&self) -> Result<(), StoreError> {
        let mut s = self.lock();
        s.started += 1;
        let n = s.started;
        s.events.push(StoreEvent::FlushStart(n));
        let start = std::time::Instant::now();
        s.waiting += 1;
        while s.permits == Some(0) && start.elapsed() < WAIT_LIMIT {
            s = self
                .changed
                .wait_timeout(s, WAIT_LIMIT / 100)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        s.waiting -= 1;
        if let Some(p) = s.permits.as_mut() {
            *p = p.saturating_sub(1);
        }
        drop(s);
        self.inner.flush()?;
        let mut s = self.lock();
        s.finished += 1;
        s.events.push(StoreEvent::FlushEnd(n));
        Ok(())
    }

    fn versions(&self, doc: &str) -> Result<Versions, StoreError> {
        self.inner.versions(doc)
    }

    fn ops(&self, doc: &str, from: u64, to: u64) -> Result<Vec<LogRecord>, StoreError> {
        self.inner.ops(doc, from, to)
    }

    fn ops_page(
        &self,
        doc: &str,
        from: u64,
        to: u64,
        max_count: usize,
        max_bytes: usize,
    ) -> Result<Vec<LogRecord>, StoreError> {
        self.inner.ops_page(doc, from, to, max_count, max_bytes)
    }

    fn first_op(&self, doc: &str) -> Result<Option<u64>, StoreError> {
        self.inner.first_op(doc)
    }

    fn text_at(&self, doc: &str, rev: u64) -> Result<Option<String>, StoreError> {
        self.inner.text_at(doc, rev)
    }

    fn documents(&self) -> Result<Vec<String>, StoreError> {
        self.inner.documents()
    }

    fn list_documents(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.inner.list_documents(prefix, after, limit)
    }

    fn delete(&self, doc: &str) -> Result<(), StoreError> {
        self.inner.delete(doc)
    }

    fn encrypted(&self) -> bool {
        self.inner.encrypted()
    }

    fn check_readable(&self) -> Result<(), StoreError> {
        self.inner.check_readable()
    }

    fn rotate_master_key(&self, ring: MasterKeyring) -> Result<usize, StoreError> {
        self.inner.rotate_master_key(ring)
    }

    fn audit_put(&self, seq: u64, value: &[u8]) -> Result<(), StoreError> {
        self.inner.audit_put(seq, value)?;
        self.log(StoreEvent::Audit { seq });
        Ok(())
    }

    fn audit_last(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        self.inner.audit_last()
    }

    fn audit_all(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.inner.audit_all()
    }

    fn last_rev(&self, doc: &str) -> Result<u64, StoreError> {
        self.inner.last_rev(doc)
    }

    fn manifest_id(&self) -> Result<Option<String>, StoreError> {
        self.inner.manifest_id()
    }

    fn set_manifest_id(&self, id: &str) -> Result<(), StoreError> {
        self.inner.set_manifest_id(id)
    }

    fn events_put(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.inner.events_put(key, value)
    }

    fn events_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.events_get(key)
    }

    fn events_range(
        &self,
        from: &[u8],
        to: &[u8],
        max: usize,
    ) -> Result<Vec<crate::storage::Pair>, StoreError> {
        self.inner.events_range(from, to, max)
    }

    fn events_last(
        &self,
        from: &[u8],
        to: &[u8],
    ) -> Result<Option<crate::storage::Pair>, StoreError> {
        self.inner.events_last(from, to)
    }

    fn events_delete_range(&self, from: &[u8], to: &[u8]) -> Result<(), StoreError> {
        self.inner.events_delete_range(from, to)
    }

    fn kind(&self, doc: &str) -> Result<Option<coedit_protocol::DocKind>, StoreError> {
        self.inner.kind(doc)
    }

    fn load_y(&self, doc: &str) -> Result<crate::storage::StoredY, StoreError> {
        self.inner.load_y(doc)
    }

    fn append_y(
        &self,
        doc: &str,
        records: &[crate::storage::YUpdateRecord],
    ) -> Result<(), StoreError> {
        self.inner.append_y(doc, records)?;
        for r in records {
            self.log(StoreEvent::Op {
                doc: doc.to_string(),
                rev: r.rev,
            });
        }
        Ok(())
    }

    fn put_y_state(
        &self,
        doc: &str,
        state: &crate::storage::YStateRecord,
    ) -> Result<(), StoreError> {
        self.inner.put_y_state(doc, state)
    }

    fn y_at(
        &self,
        doc: &str,
        rev: u64,
    ) -> Result<Option<coedit_protocol::yjs::YDocument>, StoreError> {
        self.inner.y_at(doc, rev)
    }
}
