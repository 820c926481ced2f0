//! The store-wide records in the `meta` tree: the format version, the encryption mode (an
//! encrypted store never opens without keys, and encryption cannot be switched on over
//! plaintext documents), and the master key check values (a wrong key is refused at startup).

use super::*;

impl<K: Kv> RecordStore<K> {
    pub(super) fn check_format(&self) -> Result<(), StoreError> {
        let store = self;
        match store.kv.get(Tree::Meta, META_FORMAT_KEY)? {
            Some(v) if v.as_slice() == [RECORD_FORMAT] => {}
            Some(v) => {
                return Err(StoreError::Format {
                    found: v.first().copied().unwrap_or(0),
                })
            }
            None => {
                store
                    .kv
                    .put(Tree::Meta, META_FORMAT_KEY, &[RECORD_FORMAT])?;
                store.kv.flush()?;
            }
        }
        Ok(())
    }

    /// Records the encryption mode of a new store; refuses a mode that does not match.
    pub(super) fn check_crypto_mode(&self) -> Result<(), StoreError> {
        let want = if self.keys.is_some() {
            CRYPTO_SM4_GCM
        } else {
            CRYPTO_NONE
        };
        let found = self.kv.get(Tree::Meta, META_CRYPTO_KEY)?;
        let has_docs = || -> Result<bool, StoreError> {
            Ok(self.kv.first_in(Tree::Ops, &[], PAST_ALL_DOCS)?.is_some()
                || self
                    .kv
                    .first_in(Tree::Snapshots, &[], PAST_ALL_DOCS)?
                    .is_some())
        };
        match found.as_deref() {
            Some(f) if f == want => {}
            Some(CRYPTO_SM4_GCM) => {
                return Err(StoreError::Config(
                    "the store is encrypted (SM4-GCM): configure [crypto] mode = \"sm\" and the \
                     master key"
                        .into(),
                ))
            }
            Some(_) | None if self.keys.is_some() && has_docs()? => {
                return Err(StoreError::Config(
                    "the store holds unencrypted documents; encryption can only be enabled for \
                     a new data directory"
                        .into(),
                ))
            }
            _ => self.kv.put(Tree::Meta, META_CRYPTO_KEY, want)?,
        }
        if let Some(keys) = &self.keys {
            self.check_master_keys(&keys.ring_snapshot())?;
        }
        self.kv.flush()
    }

    /// Checks every version of `ring` against the key check value the store recorded for it
    /// (refusing a key file whose version N is another key than the one the store knows as
    /// N), and records the check values of versions seen for the first time (buffered). A
    /// store written before check values existed proves a version by unwrapping one data key
    /// wrapped with it.
    pub fn check_master_keys(&self, ring: &MasterKeyring) -> Result<(), StoreError> {
        let keys = self.keys.as_ref();
        for version in ring.versions() {
            let Some(kcv) = ring.check_value(version) else {
                continue;
            };
            let mut key = META_KCV_PREFIX.to_vec();
            key.extend_from_slice(&version.to_be_bytes());
            match self.kv.get(Tree::Meta, &key)? {
                Some(stored) if stored.as_slice() == kcv.as_slice() => continue,
                Some(stored) => {
                    return Err(StoreError::Config(format!(
                        "master key version {version} (check value {}) is not the key this \
                         store was encrypted with (its version {version} has check value {}): \
                         wrong key file or COEDIT_MASTER_KEY?",
                        hex::encode(kcv),
                        hex::encode(stored)
                    )))
                }
                None => {
                    if let Some(keys) = keys {
                        keys.prove_master_version(&self.kv, ring, version)?;
                    }
                    self.kv.put(Tree::Meta, &key, &kcv)?;
                }
            }
        }
        Ok(())
    }
}
