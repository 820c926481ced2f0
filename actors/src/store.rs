//! Where documents live while no actor holds them: the `Store` trait and its in-memory
//! implementation.
//!
//! Invariant: `load` returns the last snapshot `save` stored for that document.

use std::collections::HashMap;
use std::sync::Mutex;

use coedit_protocol::DocumentSnapshot;
use thiserror::Error;

/// A store failure.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backing storage failed.
    #[error("storage failure: {0}")]
    Backend(String),
}

/// Persistent home of documents.
pub trait Store: Send + Sync + 'static {
    /// The latest saved state of `doc`, or `None` for a new document.
    fn load(&self, doc: &str) -> Result<Option<DocumentSnapshot>, StoreError>;
    /// Saves the state of `doc`.
    fn save(&self, doc: &str, snapshot: &DocumentSnapshot) -> Result<(), StoreError>;
}

/// A store in process memory: documents survive unloading, not a restart.
#[derive(Debug, Default)]
pub struct MemoryStore {
    docs: Mutex<HashMap<String, DocumentSnapshot>>,
}

impl Store for MemoryStore {
    fn load(&self, doc: &str) -> Result<Option<DocumentSnapshot>, StoreError> {
        let docs = self
            .docs
            .lock()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(docs.get(doc).cloned())
    }

    fn save(&self, doc: &str, snapshot: &DocumentSnapshot) -> Result<(), StoreError> {
        let mut docs = self
            .docs
            .lock()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        docs.insert(doc.to_string(), snapshot.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_returns_last_save() {
        let s = MemoryStore::default();
        assert!(s.load("a").unwrap().is_none());
        let snap = DocumentSnapshot {
            rev: 2,
            text: "hi".into(),
            clients: vec![("c".into(), 1, 2)],
        };
        s.save("a", &snap).unwrap();
        assert_eq!(s.load("a").unwrap(), Some(snap));
    }
}
