//! The in-memory backend: one ordered map per key space behind a mutex (tests, trials; the
//! memory storage mode). Same record format as on disk, no persistence.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Mutex;

use super::kv::{tree_index, TREES};
use super::*;

/// In-memory backend: ordered maps behind a mutex.
#[derive(Default)]
pub struct MemKv {
    trees: Mutex<[BTreeMap<Vec<u8>, Vec<u8>>; TREES]>,
}

impl MemKv {
    fn with<R>(
        &self,
        t: Tree,
        f: impl FnOnce(&mut BTreeMap<Vec<u8>, Vec<u8>>) -> R,
    ) -> Result<R, StoreError> {
        let mut trees = self.trees.lock().map_err(backend)?;
        Ok(f(&mut trees[tree_index(t)]))
    }

    /// Overwrites a raw value (for corruption tests).
    pub fn put_raw(&self, t: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.with(t, |m| {
            m.insert(key.to_vec(), value.to_vec());
        })
    }
}

impl Kv for MemKv {
    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.put_raw(tree, key, value)
    }

    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(tree, |m| m.get(key).cloned())
    }

    fn delete_range(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<(), StoreError> {
        self.with(tree, |m| {
            let keys: Vec<Vec<u8>> = m
                .range::<[u8], _>((Bound::Included(from), Bound::Excluded(to)))
                .map(|(k, _)| k.clone())
                .collect();
            for k in keys {
                m.remove(&k);
            }
        })
    }

    fn range(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<Vec<Pair>, StoreError> {
        self.with(tree, |m| {
            m.range::<[u8], _>((Bound::Included(from), Bound::Excluded(to)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
    }

    fn range_bounded(
        &self,
        tree: Tree,
        from: &[u8],
        to: &[u8],
        max_count: usize,
        max_bytes: usize,
    ) -> Result<Vec<Pair>, StoreError> {
        self.with(tree, |m| {
            let mut bytes = 0;
            m.range::<[u8], _>((Bound::Included(from), Bound::Excluded(to)))
                .take(max_count)
                .take_while(|(_, v)| {
                    let go = bytes < max_bytes;
                    bytes += v.len();
                    go
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
    }

    fn first_key_in(
        &self,
        tree: Tree,
        from: &[u8],
        to: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(tree, |m| {
            m.range::<[u8], _>((Bound::Included(from), Bound::Excluded(to)))
                .next()
                .map(|(k, _)| k.clone())
        })
    }

    fn first_in(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<Option<Pair>, StoreError> {
        self.with(tree, |m| {
            m.range::<[u8], _>((Bound::Included(from), Bound::Excluded(to)))
                .next()
                .map(|(k, v)| (k.clone(), v.clone()))
        })
    }

    fn last_in(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<Option<Pair>, StoreError> {
        self.with(tree, |m| {
            m.range::<[u8], _>((Bound::Included(from), Bound::Excluded(to)))
                .next_back()
                .map(|(k, v)| (k.clone(), v.clone()))
        })
    }

    fn keys(&self, tree: Tree) -> Result<Vec<Vec<u8>>, StoreError> {
        self.with(tree, |m| m.keys().cloned().collect())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
