//! The exactly-once table of one document: client ids interned into slots, each with the last
//! applied sequence number and the revision it produced.
//!
//! History entries refer to their author by slot (a `u32`), so recording an op costs no
//! reference-count traffic, and a lookup compares pointers before bytes (sessions hand in the
//! same `Arc<str>` for every op).
//!
//! Invariants:
//! - `index[id] == s` exactly when `slots[s]` is live with id `id`.
//! - A slot is only freed when its client's last revision is at or before the oldest retained
//!   revision, so no retained history entry ever refers to a freed or reused slot.
//! - `last`, when set, is a live slot: it is cleared whenever slots are freed. Its id is held
//!   by the table, so a pointer-equal id is that client (the allocation cannot be reused).

use std::cell::Cell;
use std::hash::{Hash, Hasher};

use hashbrown::{Equivalent, HashMap};
use serde::{Deserialize, Serialize};

use crate::document::ClientId;

/// Exactly-once state of one client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    /// Last applied sequence number.
    pub seq: u64,
    /// Revision that op produced.
    pub rev: u64,
}

#[derive(Clone, Debug)]
struct Slot {
    /// The client; kept in a freed slot until it is reused (nothing refers to it then).
    id: ClientId,
    rec: ClientRecord,
}

/// A lookup key that compares by pointer first, then by content.
struct ById<'a>(&'a ClientId);

impl Hash for ById<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        (**self.0).hash(h)
    }
}

impl Equivalent<ClientId> for ById<'_> {
    fn equivalent(&self, key: &ClientId) -> bool {
        std::sync::Arc::ptr_eq(self.0, key) || **self.0 == **key
    }
}

/// See the module documentation.
#[derive(Clone, Debug, Default)]
pub(crate) struct Clients {
    index: HashMap<ClientId, u32, ahash::RandomState>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// The slot found last: a client typing sends op after op, and comparing one pointer
    /// skips hashing its id (a tenth of the engine's cost per op).
    last: Cell<Option<u32>>,
}

impl Clients {
    /// Number of known clients.
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// The slot of `id`, if known.
    #[inline]
    pub(crate) fn find(&self, id: &ClientId) -> Option<u32> {
        if let Some(s) = self.last.get() {
            if std::sync::Arc::ptr_eq(&self.slots[s as usize].id, id) {
                return Some(s);
            }
        }
        let found = self.index.get(&ById(id)).copied();
        if found.is_some() {
            self.last.set(found);
        }
        found
    }

    /// The slot of `id` given as a string, if known.
    pub(crate) fn find_str(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    /// The record in `slot`.
    #[inline]
    pub(crate) fn record(&self, slot: u32) -> ClientRecord {
        self.slots[slot as usize].rec
    }

    /// Updates the record in `slot`.
    #[inline]
    pub(crate) fn set(&mut self, slot: u32, rec: ClientRecord) {
        self.slots[slot as usize].rec = rec;
    }

    /// The id in `slot` (slots referred to by retained history are always live).
    pub(crate) fn id(&self, slot: u32) -> &ClientId {
        &self.slots[slot as usize].id
    }

    /// Adds a client and returns its slot.
    pub(crate) fn insert(&mut self, id: &ClientId, rec: ClientRecord) -> u32 {
        let slot = Slot {
            id: id.clone(),
            rec,
        };
        let s = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = slot;
                s
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(id.clone(), s);
        s
    }

    /// When more than `max` clients are known, forgets the least recently active quarter of
    /// those whose last op is at or before `oldest_rev` (no retained history refers to them).
    pub(crate) fn trim(&mut self, max: usize, oldest_rev: u64) {
        if self.index.len() <= max {
            return;
        }
        let mut old: Vec<(u64, u32)> = self
            .index
            .values()
            .map(|&s| (self.slots[s as usize].rec.rev, s))
            .filter(|(rev, _)| *rev <= oldest_rev)
            .collect();
        old.sort_unstable();
        let forget = (self.index.len() / 4).max(1).min(old.len());
        self.last.set(None);
        for &(_, s) in &old[..forget] {
            self.index.remove(&self.slots[s as usize].id);
            self.free.push(s);
        }
    }

    /// Every `(id, record)`, for snapshots.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&ClientId, ClientRecord)> {
        self.index
            .iter()
            .map(|(id, &s)| (id, self.slots[s as usize].rec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intern_find_and_trim() {
        let mut c = Clients::default();
        let ids: Vec<ClientId> = (0..10).map(|i| ClientId::from(format!("c{i}"))).collect();
        for (i, id) in ids.iter().enumerate() {
            c.insert(
                id,
                ClientRecord {
                    seq: 1,
                    rev: i as u64 + 1,
                },
            );
        }
        // Found by pointer and by content.
        assert_eq!(c.find(&ids[3]), Some(3));
        assert_eq!(c.find(&ClientId::from("c3")), Some(3));
        assert_eq!(c.find_str("c9"), Some(9));
        // Only clients whose last op left the window may go; the last one found included.
        assert_eq!(c.find(&ids[0]), Some(0));
        assert_eq!(c.find(&ids[0]), Some(0), "found again by pointer");
        c.trim(4, 2);
        assert_eq!(c.len(), 8);
        assert!(c.find_str("c0").is_none() && c.find_str("c1").is_none());
        assert_eq!(
            c.find(&ids[0]),
            None,
            "a freed slot is not found through the cache"
        );
        c.trim(4, 100);
        assert_eq!(c.len(), 6);
        // Freed slots are reused.
        let s = c.insert(&ClientId::from("new"), ClientRecord { seq: 1, rev: 99 });
        assert!(s < 10);
        assert_eq!(&**c.id(s), "new");
    }
}
