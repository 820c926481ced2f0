//! [`RecordStore`]: the [`Store`] over any [`Kv`] backend (documents, history, deletion,
//! audit storage), and its constructors for memory and sled.

use super::codec::check_contiguous;
use super::sled_kv::open_sled;
use super::*;

/// The `Store` over any ordered key-value backend.
pub struct RecordStore<K: Kv> {
    pub(super) kv: K,
    /// Data keys, in an encrypted store.
    pub(super) keys: Option<DataKeys>,
}

/// The on-disk store.
pub type SledStore = RecordStore<SledKv>;
/// The in-memory store (tests, trials): same format, no persistence.
pub type MemoryStore = RecordStore<MemKv>;

impl MemoryStore {
    /// An empty in-memory store.
    pub fn new() -> Self {
        RecordStore {
            kv: MemKv::default(),
            keys: None,
        }
    }

    /// An empty in-memory store that seals records under data keys wrapped by `ring`.
    pub fn encrypted(ring: MasterKeyring) -> Self {
        RecordStore {
            kv: MemKv::default(),
            keys: Some(DataKeys::new(ring)),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl SledStore {
    /// Opens (or creates) an unencrypted store in `dir`, checking its format version.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, None)
    }

    /// Opens (or creates) the store in `dir`; with a master key ring, an encrypted one. An
    /// encrypted store refuses to open without keys, and encryption cannot be switched on for
    /// a store that already holds plaintext documents.
    pub fn open_with(dir: &Path, ring: Option<MasterKeyring>) -> Result<Self, StoreError> {
        Self::open_cached(dir, ring, SLED_CACHE_BYTES)
    }

    /// [`SledStore::open_with`] with a page cache of `cache_bytes` instead of
    /// [`SLED_CACHE_BYTES`].
    pub fn open_cached(
        dir: &Path,
        ring: Option<MasterKeyring>,
        cache_bytes: u64,
    ) -> Result<Self, StoreError> {
        let db = open_sled(dir, Some(cache_bytes))?;
        let kv = SledKv::new(db)?;
        let store = RecordStore {
            kv,
            keys: ring.map(DataKeys::new),
        };
        store.check_format()?;
        store.check_crypto_mode()?;
        Ok(store)
    }
}

impl SledStore {
    /// Opens the store in `dir` to read its audit log only (no keys needed, whatever the
    /// encryption mode). Used by `coedit audit`; never write documents through it.
    pub fn open_audit_reader(dir: &Path) -> Result<Self, StoreError> {
        if !dir.join("db").exists() && !dir.join("conf").exists() {
            return Err(StoreError::Config(format!("no store in {}", dir.display())));
        }
        let db = open_sled(dir, None)?;
        let store = RecordStore {
            kv: SledKv::new(db)?,
            keys: None,
        };
        store.check_format()?;
        Ok(store)
    }
}

impl<K: Kv> RecordStore<K> {
    /// The backend.
    pub fn kv(&self) -> &K {
        &self.kv
    }

    pub(super) fn end(doc: &str) -> Vec<u8> {
        let mut k = prefix(doc);
        k.extend_from_slice(&[0xff; 9]);
        k
    }

    pub(super) fn latest_snapshot(
        &self,
        doc: &str,
        at_most: u64,
    ) -> Result<Option<DocumentSnapshot>, StoreError> {
        let to = key(doc, at_most.saturating_add(1));
        let to = if at_most == u64::MAX {
            Self::end(doc)
        } else {
            to
        };
        match self.kv.last_in(Tree::Snapshots, &prefix(doc), &to)? {
            Some((k, v)) => Ok(Some(self.decode_snapshot(doc, &k, &v)?)),
            None => Ok(None),
        }
    }
}

impl<K: Kv> Store for RecordStore<K> {
    fn kind(&self, doc: &str) -> Result<Option<DocKind>, StoreError> {
        self.stored_kind(doc)
    }

    fn load_y(&self, doc: &str) -> Result<StoredY, StoreError> {
        self.load_yjs(doc)
    }

    fn append_y(&self, doc: &str, records: &[YUpdateRecord]) -> Result<(), StoreError> {
        for r in records {
            let k = key(doc, r.rev);
            self.kv.put(
                Tree::Ops,
                &k,
                &self.encode(doc, &k, ystore::KIND_YUPDATE, r)?,
            )?;
        }
        Ok(())
    }

    fn put_y_state(&self, doc: &str, state: &YStateRecord) -> Result<(), StoreError> {
        let k = key(doc, state.rev);
        let v = self.encode(doc, &k, ystore::KIND_YSTATE, state)?;
        self.kv.put(Tree::Snapshots, &k, &v)
    }

    fn y_at(&self, doc: &str, rev: u64) -> Result<Option<YDocument>, StoreError> {
        self.yjs_at(doc, rev)
    }

    fn load(&self, doc: &str) -> Result<StoredDoc, StoreError> {
        let snapshot = self.latest_snapshot(doc, u64::MAX)?;
        let after = snapshot.as_ref().map_or(0, |s| s.rev);
        let ops = self.ops(doc, after, u64::MAX)?;
        Ok(StoredDoc { snapshot, ops })
    }

    fn append(&self, doc: &str, records: &[LogRecord]) -> Result<(), StoreError> {
        for r in records {
            let k = key(doc, r.rev);
            self.kv
                .put(Tree::Ops, &k, &self.encode(doc, &k, KIND_OP, r)?)?;
        }
        Ok(())
    }

    fn put_snapshot(&self, doc: &str, snapshot: &DocumentSnapshot) -> Result<(), StoreError> {
        let k = key(doc, snapshot.rev);
        let v = self.encode(doc, &k, KIND_SNAPSHOT, snapshot)?;
        self.kv.put(Tree::Snapshots, &k, &v)
    }

    fn compact(&self, doc: &str, rev: u64) -> Result<(), StoreError> {
        // By key alone: the same for both kinds of document.
        let to = key(doc, rev.saturating_add(1));
        let Some(keep) = self
            .kv
            .last_in(Tree::Snapshots, &prefix(doc), &to)?
            .and_then(|(k, _)| key_rev(doc, &k))
        else {
            return Ok(());
        };
        self.kv
            .delete_range(Tree::Snapshots, &prefix(doc), &key(doc, keep))?;
        self.kv
            .delete_range(Tree::Ops, &prefix(doc), &key(doc, keep.min(rev) + 1))
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.kv.flush()
    }

    fn take_fenced(&self) -> Vec<super::Fenced> {
        self.kv.take_fenced()
    }

    fn unfence(&self, doc: &str) {
        if let Some(keys) = &self.keys {
            keys.forget(doc);
        }
        self.kv.unfence(doc)
    }

    fn is_fenced(&self, doc: &str) -> bool {
        self.kv.is_fenced(doc)
    }

    fn versions(&self, doc: &str) -> Result<Versions, StoreError> {
        let (p, end) = (prefix(doc), Self::end(doc));
        let snapshots: Vec<u64> = self
            .kv
            .range(Tree::Snapshots, &p, &end)?
            .iter()
            .filter_map(|(k, _)| key_rev(doc, k))
            .collect();
        let first_op = self.first_op_rev(doc)?;
        let last_op = match self.kv.last_in(Tree::Ops, &p, &end)? {
            Some((k, _)) => key_rev(doc, &k).unwrap_or(0),
            None => 0,
        };
        let last_rev = last_op.max(snapshots.last().copied().unwrap_or(0));
        Ok(Versions {
            snapshots,
            first_op,
            last_rev,
        })
    }

    fn ops(&self, doc: &str, from: u64, to: u64) -> Result<Vec<LogRecord>, StoreError> {
        let end = if to == u64::MAX {
            Self::end(doc)
        } else {
            key(doc, to + 1)
        };
        let ops = self
            .kv
            .range(Tree::Ops, &key(doc, from.saturating_add(1)), &end)?
            .iter()
            .map(|(k, v)| self.decode_op(doc, k, v))
            .collect::<Result<Vec<_>, _>>()?;
        check_contiguous(doc, from, &ops)?;
        Ok(ops)
    }

    fn ops_page(
        &self,
        doc: &str,
        from: u64,
        to: u64,
        max_count: usize,
        max_bytes: usize,
    ) -> Result<Vec<LogRecord>, StoreError> {
        let end = if to == u64::MAX {
            Self::end(doc)
        } else {
            key(doc, to.saturating_add(1))
        };
        let ops = self
            .kv
            .range_bounded(
                Tree::Ops,
                &key(doc, from.saturating_add(1)),
                &end,
                max_count.max(1),
                max_bytes,
            )?
            .iter()
            .map(|(k, v)| self.decode_op(doc, k, v))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(first) = ops.first() {
            check_contiguous(doc, first.rev - 1, &ops)?;
        }
        Ok(ops)
    }

    fn first_op(&self, doc: &str) -> Result<Option<u64>, StoreError> {
        self.first_op_rev(doc)
    }

    fn text_at(&self, doc: &str, rev: u64) -> Result<Option<String>, StoreError> {
        let snapshot = self.latest_snapshot(doc, rev)?;
        let base = snapshot.as_ref().map_or(0, |s| s.rev);
        let ops = self.ops(doc, base, rev)?;
        if base + ops.len() as u64 != rev {
            return Ok(None);
        }
        let mut text = snapshot.map(|s| s.text).unwrap_or_default();
        for r in ops {
            text =
                r.op.apply_str(&text)
                    .map_err(|e| corrupt(doc, r.rev, format!("op does not replay: {e}")))?;
        }
        Ok(Some(text))
    }

    fn list_documents(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        // Keys are `doc \0 rev`: every key of `doc` sorts before `doc \1`, and document ids
        // never hold 0x00, 0x01 or 0xff.
        let mut from = prefix.as_bytes().to_vec();
        if let Some(a) = after {
            let mut past = a.as_bytes().to_vec();
            past.push(1);
            from = from.max(past);
        }
        let mut to = prefix.as_bytes().to_vec();
        to.push(0xff);
        let mut out = Vec::new();
        while out.len() < limit && from < to {
            let mut next: Option<Vec<u8>> = None;
            for tree in [Tree::Ops, Tree::Snapshots] {
                if let Some(k) = self.kv.first_key_in(tree, &from, &to)? {
                    let doc = k.split(|&b| b == 0).next().unwrap_or_default().to_vec();
                    if next.as_ref().is_none_or(|n| doc < *n) {
                        next = Some(doc);
                    }
                }
            }
            let Some(doc) = next else { break };
            from = doc.clone();
            from.push(1);
            out.push(String::from_utf8_lossy(&doc).into_owned());
        }
        Ok(out)
    }

    fn documents(&self) -> Result<Vec<String>, StoreError> {
        let mut docs = std::collections::BTreeSet::new();
        for tree in [Tree::Ops, Tree::Snapshots] {
            for k in self.kv.keys(tree)? {
                if let Some(i) = k.iter().position(|&b| b == 0) {
                    docs.insert(String::from_utf8_lossy(&k[..i]).into_owned());
                }
            }
        }
        Ok(docs.into_iter().collect())
    }

    fn delete(&self, doc: &str) -> Result<(), StoreError> {
        let (p, end) = (prefix(doc), Self::end(doc));
        if let Some(keys) = &self.keys {
            keys.destroy(&self.kv, doc)?;
        }
        self.kv.delete_range(Tree::Ops, &p, &end)?;
        self.kv.delete_range(Tree::Snapshots, &p, &end)
    }

    fn encrypted(&self) -> bool {
        self.keys.is_some()
    }

    fn check_readable(&self) -> Result<(), StoreError> {
        self.kv.reachable()?;
        self.kv.get(Tree::Meta, META_FORMAT_KEY).map(|_| ())
    }

    fn rotate_master_key(&self, ring: MasterKeyring) -> Result<usize, StoreError> {
        match &self.keys {
            Some(keys) => {
                self.check_master_keys(&ring)?;
                keys.rewrap_all(&self.kv, ring)
            }
            None => Err(StoreError::Config(
                "the store is not encrypted: there are no data keys to re-wrap".into(),
            )),
        }
    }

    fn audit_put(&self, seq: u64, value: &[u8]) -> Result<(), StoreError> {
        self.kv.put(Tree::Audit, &seq.to_be_bytes(), value)
    }

    fn audit_last(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        Ok(self
            .kv
            .last_in(Tree::Audit, &[], &[0xff; 9])?
            .map(|(k, v)| (audit_seq(&k), v)))
    }

    fn audit_all(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        Ok(self
            .kv
            .range(Tree::Audit, &[], &[0xff; 9])?
            .into_iter()
            .map(|(k, v)| (audit_seq(&k), v))
            .collect())
    }

    fn last_rev(&self, doc: &str) -> Result<u64, StoreError> {
        let (p, end) = (prefix(doc), Self::end(doc));
        let mut last = 0;
        for tree in [Tree::Ops, Tree::Snapshots] {
            if let Some((k, _)) = self.kv.last_in(tree, &p, &end)? {
                last = last.max(key_rev(doc, &k).unwrap_or(0));
            }
        }
        Ok(last)
    }

    fn manifest_id(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .kv
            .get(Tree::Meta, META_MANIFEST_KEY)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn set_manifest_id(&self, id: &str) -> Result<(), StoreError> {
        self.kv.put(Tree::Meta, META_MANIFEST_KEY, id.as_bytes())
    }

    fn events_put(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.kv.put(Tree::Events, key, value)
    }

    fn events_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.kv.get(Tree::Events, key)
    }

    fn events_range(&self, from: &[u8], to: &[u8], max: usize) -> Result<Vec<Pair>, StoreError> {
        self.kv
            .range_bounded(Tree::Events, from, to, max, usize::MAX)
    }

    fn events_last(&self, from: &[u8], to: &[u8]) -> Result<Option<Pair>, StoreError> {
        self.kv.last_in(Tree::Events, from, to)
    }

    fn events_delete_range(&self, from: &[u8], to: &[u8]) -> Result<(), StoreError> {
        self.kv.delete_range(Tree::Events, from, to)
    }
}

/// The sequence number in an audit key (`u64::MAX` for a malformed key, which the verifier
/// then reports as out of order).
fn audit_seq(key: &[u8]) -> u64 {
    key.try_into().map(u64::from_be_bytes).unwrap_or(u64::MAX)
}

impl<K: Kv> RecordStore<K> {
    pub(super) fn first_op_rev(&self, doc: &str) -> Result<Option<u64>, StoreError> {
        let (p, end) = (prefix(doc), Self::end(doc));
        Ok(self
            .kv
            .first_in(Tree::Ops, &p, &end)?
            .and_then(|(k, _)| key_rev(doc, &k)))
    }
}
