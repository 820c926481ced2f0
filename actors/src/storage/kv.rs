//! The ordered key-value backend under a [`super::RecordStore`]: its key spaces ([`Tree`])
//! and the operations the store needs ([`Kv`]). Backends: [`super::mem_kv`] and [`super::sled_kv`].

use super::*;

/// A key and its value.
pub type Pair = (Vec<u8>, Vec<u8>);

/// The key spaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tree {
    /// The op log.
    Ops,
    /// Snapshots.
    Snapshots,
    /// Store-wide metadata.
    Meta,
    /// Wrapped data keys.
    Keys,
    /// The audit chain.
    Audit,
    /// The events outbox (see `crate::events::outbox`).
    Events,
}

/// Number of key spaces.
pub(super) const TREES: usize = 6;

/// An ordered key-value backend.
pub trait Kv: Send + Sync + 'static {
    /// Writes a value (buffered).
    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    /// Writes a value whose key must not exist yet (buffered): a shared backend refuses it
    /// at the flush, fencing its document, if another writer wrote the key first.
    fn put_new(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.put(tree, key, value)
    }
    /// Reads a value.
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Deletes keys in `[from, to)`.
    fn delete_range(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<(), StoreError>;
    /// Pairs with keys in `[from, to)`, ascending.
    fn range(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<Vec<Pair>, StoreError>;
    /// The first pairs with keys in `[from, to)`, ascending: at most `max_count`, stopping
    /// after the pair that brings the values read to `max_bytes` or more.
    fn range_bounded(
        &self,
        tree: Tree,
        from: &[u8],
        to: &[u8],
        max_count: usize,
        max_bytes: usize,
    ) -> Result<Vec<Pair>, StoreError>;
    /// The first pair with a key in `[from, to)`.
    fn first_in(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<Option<Pair>, StoreError>;
    /// The first key in `[from, to)` (its value not read or copied).
    fn first_key_in(
        &self,
        tree: Tree,
        from: &[u8],
        to: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError>;
    /// The last pair with a key in `[from, to)`.
    fn last_in(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<Option<Pair>, StoreError>;
    /// Every key of a tree (for listing documents).
    fn keys(&self, tree: Tree) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Makes every write durable.
    fn flush(&self) -> Result<(), StoreError>;
    /// Whether the backend can be reached now, answered without waiting (a networked
    /// backend's connection state; local ones always can).
    fn reachable(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Documents whose writes another writer refused since the last call (a shared backend's
    /// conditional append; local ones never refuse).
    fn take_fenced(&self) -> Vec<super::Fenced> {
        Vec::new()
    }
    /// Lets `doc` be written again after it was fenced (its old actor is gone).
    fn unfence(&self, _doc: &str) {}
    /// Whether `doc` is fenced now.
    fn is_fenced(&self, _doc: &str) -> bool {
        false
    }
}

/// The position of a key space in a backend's array of trees.
pub(super) fn tree_index(t: Tree) -> usize {
    match t {
        Tree::Ops => 0,
        Tree::Snapshots => 1,
        Tree::Meta => 2,
        Tree::Keys => 3,
        Tree::Audit => 4,
        Tree::Events => 5,
    }
}
