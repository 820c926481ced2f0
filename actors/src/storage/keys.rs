//! Per-document data keys for encryption at rest: created on a document's first write,
//! wrapped (SM4-GCM) by the master key ring, cached unwrapped in memory, re-wrapped when the
//! master key rotates, destroyed when the document is deleted (crypto-shredding).
//!
//! Key records live in the `keys` tree under the document id:
//! `[format u8 = 1][generation u32 BE][master version u32 BE][wrapped key: nonce ‖ ct ‖ tag]`.
//! A destroyed key leaves a tombstone, the same header with master version 0 and no key, so
//! the next key of a re-created document gets a new generation and records sealed under the
//! old one can never be opened again. The wrapped key is bound (associated data) to the
//! document id and generation: a key record copied to another document does not unwrap.
//!
//! Invariants:
//! - Only the store's writer creates, destroys and re-wraps keys (one at a time); readers only
//!   read existing keys.
//! - A document has at most one live generation; records name the generation that sealed them.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::security::crypto::{CryptoError, MasterKeyring, SymKey};
use crate::storage::{Kv, StoreError, Tree};

/// Version of the key record format.
const KEY_RECORD_FORMAT: u8 = 1;
/// Bytes before the wrapped key.
const KEY_HEADER_LEN: usize = 9;
/// Master version recorded in a tombstone.
const DESTROYED: u32 = 0;
/// Domain separation for a wrapped key's associated data.
const WRAP_DOMAIN: &[u8] = b"coedit/data-key/v1\0";

/// A document's live data key.
#[derive(Clone, Debug)]
pub struct DataKey {
    /// Generation (named in every record it seals).
    pub generation: u32,
    /// The key.
    pub key: SymKey,
}

/// What the `keys` tree says about a document.
enum KeyRecord {
    Live {
        generation: u32,
        master: u32,
        wrapped: Vec<u8>,
    },
    Destroyed {
        generation: u32,
    },
}

/// The data keys of a store. See the module documentation.
pub struct DataKeys {
    ring: RwLock<MasterKeyring>,
    cache: RwLock<HashMap<String, DataKey>>,
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Backend("data key lock poisoned".into())
}

fn wrap_aad(doc: &str, generation: u32) -> Vec<u8> {
    let mut aad = WRAP_DOMAIN.to_vec();
    aad.extend_from_slice(doc.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&generation.to_be_bytes());
    aad
}

impl KeyRecord {
    fn parse(doc: &str, v: &[u8]) -> Result<Self, StoreError> {
        let bad = |why: String| StoreError::Crypto {
            doc: doc.to_string(),
            source: CryptoError::Malformed {
                what: "data key record",
                why,
            },
        };
        if v.len() < KEY_HEADER_LEN {
            return Err(bad(format!("{} bytes", v.len())));
        }
        if v[0] != KEY_RECORD_FORMAT {
            return Err(bad(format!("unknown format {}", v[0])));
        }
        let generation = u32::from_be_bytes([v[1], v[2], v[3], v[4]]);
        let master = u32::from_be_bytes([v[5], v[6], v[7], v[8]]);
        Ok(if master == DESTROYED {
            KeyRecord::Destroyed { generation }
        } else {
            KeyRecord::Live {
                generation,
                master,
                wrapped: v[KEY_HEADER_LEN..].to_vec(),
            }
        })
    }

    fn encode(generation: u32, master: u32, wrapped: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(KEY_HEADER_LEN + wrapped.len());
        v.push(KEY_RECORD_FORMAT);
        v.extend_from_slice(&generation.to_be_bytes());
        v.extend_from_slice(&master.to_be_bytes());
        v.extend_from_slice(wrapped);
        v
    }
}

impl DataKeys {
    /// Data keys wrapped by `ring`.
    pub fn new(ring: MasterKeyring) -> Self {
        DataKeys {
            ring: RwLock::new(ring),
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// A copy of the master key ring in use.
    pub fn ring_snapshot(&self) -> MasterKeyring {
        self.ring.read().map(|r| r.clone()).unwrap_or_default()
    }

    /// Proves that `version` of `ring` is the key that wrapped this store's data keys of that
    /// version, by unwrapping one of them (for stores written before key check values were
    /// recorded). Succeeds when no data key uses that version.
    pub fn prove_master_version<K: Kv>(
        &self,
        kv: &K,
        ring: &MasterKeyring,
        version: u32,
    ) -> Result<(), StoreError> {
        for doc_key in kv.keys(Tree::Keys)? {
            let doc = String::from_utf8_lossy(&doc_key).into_owned();
            if let Some(KeyRecord::Live {
                generation,
                master,
                wrapped,
            }) = self.read(kv, &doc)?
            {
                if master != version {
                    continue;
                }
                return ring
                    .unwrap(master, &wrap_aad(&doc, generation), &wrapped)
                    .map(|_| ())
                    .map_err(|e| {
                        StoreError::Config(format!(
                            "master key version {version} does not open the data key of \
                             document {doc:?} ({e}): wrong key file or COEDIT_MASTER_KEY?"
                        ))
                    });
            }
        }
        Ok(())
    }

    /// The master key versions in use by this process.
    pub fn master_versions(&self) -> Vec<u32> {
        self.ring.read().map(|r| r.versions()).unwrap_or_default()
    }

    fn crypto(doc: &str, source: CryptoError) -> StoreError {
        StoreError::Crypto {
            doc: doc.to_string(),
            source,
        }
    }

    fn read<K: Kv>(&self, kv: &K, doc: &str) -> Result<Option<KeyRecord>, StoreError> {
        kv.get(Tree::Keys, doc.as_bytes())?
            .map(|v| KeyRecord::parse(doc, &v))
            .transpose()
    }

    fn unwrap_live(
        &self,
        doc: &str,
        generation: u32,
        master: u32,
        wrapped: &[u8],
    ) -> Result<DataKey, StoreError> {
        let ring = self.ring.read().map_err(poisoned)?;
        let key = ring
            .unwrap(master, &wrap_aad(doc, generation), wrapped)
            .map_err(|e| Self::crypto(doc, e))?;
        Ok(DataKey { generation, key })
    }

    /// The live key of `doc`, if any (from the cache or the `keys` tree).
    fn live<K: Kv>(&self, kv: &K, doc: &str) -> Result<Option<DataKey>, StoreError> {
        if let Some(k) = self.cache.read().map_err(poisoned)?.get(doc) {
            return Ok(Some(k.clone()));
        }
        match self.read(kv, doc)? {
            Some(KeyRecord::Live {
                generation,
                master,
                wrapped,
            }) => {
                let k = self.unwrap_live(doc, generation, master, &wrapped)?;
                self.cache
                    .write()
                    .map_err(poisoned)?
                    .insert(doc.to_string(), k.clone());
                Ok(Some(k))
            }
            _ => Ok(None),
        }
    }

    /// The key that seals new records of `doc`, created and written (buffered) if the document
    /// has none. Writer only.
    pub fn for_writing<K: Kv>(&self, kv: &K, doc: &str) -> Result<DataKey, StoreError> {
        if let Some(k) = self.live(kv, doc)? {
            return Ok(k);
        }
        let generation = match self.read(kv, doc)? {
            Some(KeyRecord::Destroyed { generation }) => generation + 1,
            _ => 1,
        };
        let key = SymKey::generate().map_err(|e| Self::crypto(doc, e))?;
        let (master, wrapped) = self
            .ring
            .read()
            .map_err(poisoned)?
            .wrap(&wrap_aad(doc, generation), &key)
            .map_err(|e| Self::crypto(doc, e))?;
        let record = KeyRecord::encode(generation, master, &wrapped);
        if generation == 1 {
            // The document's first key: a shared store refuses it if another node wrote one
            // first (and fences the document), so records are never sealed under a key that
            // another writer's key replaced.
            kv.put_new(Tree::Keys, doc.as_bytes(), &record)?;
        } else {
            kv.put(Tree::Keys, doc.as_bytes(), &record)?;
        }
        let k = DataKey { generation, key };
        self.cache
            .write()
            .map_err(poisoned)?
            .insert(doc.to_string(), k.clone());
        Ok(k)
    }

    /// The key of `generation` for reading a record of `doc`.
    pub fn for_reading<K: Kv>(
        &self,
        kv: &K,
        doc: &str,
        generation: u32,
    ) -> Result<DataKey, StoreError> {
        match self.live(kv, doc)? {
            Some(k) if k.generation == generation => Ok(k),
            _ => Err(Self::crypto(
                doc,
                CryptoError::KeyDestroyed(doc.to_string()),
            )),
        }
    }

    /// Destroys the data key of `doc` (crypto-shredding): writes a tombstone over it. Returns
    /// whether a live key existed. Writer only.
    pub fn destroy<K: Kv>(&self, kv: &K, doc: &str) -> Result<bool, StoreError> {
        self.cache.write().map_err(poisoned)?.remove(doc);
        match self.read(kv, doc)? {
            Some(KeyRecord::Live { generation, .. }) => {
                kv.put(
                    Tree::Keys,
                    doc.as_bytes(),
                    &KeyRecord::encode(generation, DESTROYED, &[]),
                )?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Re-wraps every live data key under the current version of `new_ring` (which then
    /// replaces the ring in use); the data itself is not touched. Returns the number of keys
    /// re-wrapped. Writer only.
    pub fn rewrap_all<K: Kv>(&self, kv: &K, new_ring: MasterKeyring) -> Result<usize, StoreError> {
        let mut n = 0;
        for doc_key in kv.keys(Tree::Keys)? {
            let doc = String::from_utf8_lossy(&doc_key).into_owned();
            let Some(KeyRecord::Live {
                generation,
                master,
                wrapped,
            }) = self.read(kv, &doc)?
            else {
                continue;
            };
            let aad = wrap_aad(&doc, generation);
            let key = self.unwrap_live(&doc, generation, master, &wrapped)?.key;
            let (v, rewrapped) = new_ring
                .wrap(&aad, &key)
                .map_err(|e| Self::crypto(&doc, e))?;
            // Prove the new wrapping opens before replacing the old one.
            new_ring
                .unwrap(v, &aad, &rewrapped)
                .map_err(|e| Self::crypto(&doc, e))?;
            kv.put(
                Tree::Keys,
                &doc_key,
                &KeyRecord::encode(generation, v, &rewrapped),
            )?;
            n += 1;
        }
        *self.ring.write().map_err(poisoned)? = new_ring;
        Ok(n)
    }

    /// Forgets the cached key of `doc` (its document was fenced: the key another node wrote
    /// is read at the next use).
    pub fn forget(&self, doc: &str) {
        if let Ok(mut c) = self.cache.write() {
            c.remove(doc);
        }
    }

    /// Empties the cache of unwrapped keys (tests: the next read unwraps again).
    #[cfg(test)]
    pub(crate) fn forget_cached(&self) {
        self.cache.write().expect("cache lock").clear();
    }

    /// `(document, generation, master version)` of every live key, and every tombstone with
    /// master version 0 (for `coedit check` and tests).
    pub fn list<K: Kv>(kv: &K) -> Result<Vec<(String, u32, u32)>, StoreError> {
        let mut out = Vec::new();
        for doc_key in kv.keys(Tree::Keys)? {
            let doc = String::from_utf8_lossy(&doc_key).into_owned();
            let Some(v) = kv.get(Tree::Keys, &doc_key)? else {
                continue;
            };
            out.push(match KeyRecord::parse(&doc, &v)? {
                KeyRecord::Live {
                    generation, master, ..
                } => (doc, generation, master),
                KeyRecord::Destroyed { generation } => (doc, generation, DESTROYED),
            });
        }
        Ok(out)
    }
}
