//! The sled backend: one sled tree per key space, opened with its background flusher off
//! (coedit flushes itself: a write is durable only after `flush`, sled 0.34's contract).

use super::kv::{tree_index, TREES};
use super::*;

/// Default of sled's page cache (sled's own default is 1 GiB, which the server would fill under
/// a heavy load); `[storage] cache_mb` overrides it.
pub const SLED_CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// How long an open waits for another holder of the data directory's lock to let go (the same
/// process reopening a store it just closed: sled's threads release it a moment later).
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Opens sled with its background flusher off (coedit flushes itself), waiting up to
/// [`LOCK_WAIT`] for the directory's lock; a lock held longer is named as another process.
pub(super) fn open_sled(dir: &Path, cache_bytes: Option<u64>) -> Result<sled::Db, StoreError> {
    let started = std::time::Instant::now();
    loop {
        let mut config = sled::Config::new().path(dir).flush_every_ms(None);
        if let Some(bytes) = cache_bytes {
            config = config.cache_capacity(bytes);
        }
        match config.open() {
            Ok(db) => return Ok(db),
            // sled reports a held lock as an `Other` error with this text.
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if started.elapsed() > LOCK_WAIT {
                    return Err(StoreError::Config(format!(
                        "another process (a running coedit?) is using the data directory {}",
                        dir.display()
                    )));
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(backend(e)),
        }
    }
}

/// sled backend: one sled tree per key space.
pub struct SledKv {
    db: sled::Db,
    trees: [sled::Tree; TREES],
}

impl SledKv {
    pub(super) fn new(db: sled::Db) -> Result<Self, StoreError> {
        let trees = [
            db.open_tree("ops").map_err(backend)?,
            db.open_tree("snapshots").map_err(backend)?,
            db.open_tree("meta").map_err(backend)?,
            db.open_tree("keys").map_err(backend)?,
            db.open_tree("audit").map_err(backend)?,
            db.open_tree("events").map_err(backend)?,
        ];
        Ok(SledKv { db, trees })
    }

    fn tree(&self, t: Tree) -> &sled::Tree {
        &self.trees[tree_index(t)]
    }

    /// Overwrites a raw value (for corruption tests and repair tools).
    pub fn put_raw(&self, t: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.tree(t).insert(key, value).map_err(backend)?;
        Ok(())
    }
}

impl Kv for SledKv {
    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.put_raw(tree, key, value)
    }

    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tree(tree)
            .get(key)
            .map_err(backend)?
            .map(|v| v.to_vec()))
    }

    fn delete_range(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<(), StoreError> {
        let t = self.tree(tree);
        for item in t.range(from..to) {
            let (k, _) = item.map_err(backend)?;
            t.remove(k).map_err(backend)?;
        }
        Ok(())
    }

    fn range(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<Vec<Pair>, StoreError> {
        self.tree(tree)
            .range(from..to)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(backend))
            .collect()
    }

    fn range_bounded(
        &self,
        tree: Tree,
        from: &[u8],
        to: &[u8],
        max_count: usize,
        max_bytes: usize,
    ) -> Result<Vec<Pair>, StoreError> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for r in self.tree(tree).range(from..to).take(max_count) {
            if bytes >= max_bytes {
                break;
            }
            let (k, v) = r.map_err(backend)?;
            bytes += v.len();
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn first_key_in(
        &self,
        tree: Tree,
        from: &[u8],
        to: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        match self.tree(tree).range(from..to).next() {
            Some(r) => Ok(Some(r.map_err(backend)?.0.to_vec())),
            None => Ok(None),
        }
    }

    fn first_in(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<Option<Pair>, StoreError> {
        match self.tree(tree).range(from..to).next() {
            Some(r) => {
                let (k, v) = r.map_err(backend)?;
                Ok(Some((k.to_vec(), v.to_vec())))
            }
            None => Ok(None),
        }
    }

    fn last_in(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<Option<Pair>, StoreError> {
        match self.tree(tree).range(from..to).next_back() {
            Some(r) => {
                let (k, v) = r.map_err(backend)?;
                Ok(Some((k.to_vec(), v.to_vec())))
            }
            None => Ok(None),
        }
    }

    fn keys(&self, tree: Tree) -> Result<Vec<Vec<u8>>, StoreError> {
        self.tree(tree)
            .iter()
            .keys()
            .map(|k| k.map(|k| k.to_vec()).map_err(backend))
            .collect()
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(backend)?;
        Ok(())
    }
}
