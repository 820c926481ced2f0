//! [`YDocument`]: the server-side state of one Yjs document: a `yrs::Doc` and the revision,
//! the count of stored updates that changed it.
//!
//! Invariants:
//! - `apply` refuses before changing anything: an update over `max_update_bytes`, one that
//!   does not decode, one that could push the document past `max_doc_bytes`. An update that
//!   adds nothing (duplicates, an empty sync step 2) is `Unchanged` and takes no revision.
//! - yrs is only reached behind `catch_unwind`; if it fails while integrating (a panic, or an
//!   `UpdateError` after part of the update went in), the document is marked poisoned and the
//!   caller reloads it from the store, which never received that update.
//! - The document size is bounded by an upper bound kept without encoding: exact after a load
//!   or snapshot, plus the size of every update since; the exact size is measured only when
//!   that bound reaches the limit.

use yrs::types::ToJson;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{
    Any, Array, ArrayRef, GetString, Map, MapRef, Out, ReadTxn, StateVector, TextRef, Transact,
    Update, XmlFragmentRef,
};

use super::{guarded, YjsError};

/// Default largest update accepted, in bytes (a frame is bounded by the session's frame limit
/// too).
pub const DEFAULT_MAX_UPDATE_BYTES: usize = 1024 * 1024;
/// Default largest document, in bytes of its encoded state.
pub const DEFAULT_MAX_DOC_BYTES: usize = 32 * 1024 * 1024;

/// Largest document whose copy [`YDocument::would_change`] makes to check a deletion.
pub const SCRATCH_CHECK_MAX_BYTES: usize = 1024 * 1024;

/// Limits of a Yjs document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct YDocConfig {
    /// Largest update accepted, in bytes.
    pub max_update_bytes: usize,
    /// Largest document, in bytes of its encoded state.
    pub max_doc_bytes: usize,
}

impl Default for YDocConfig {
    fn default() -> Self {
        YDocConfig {
            max_update_bytes: DEFAULT_MAX_UPDATE_BYTES,
            max_doc_bytes: DEFAULT_MAX_DOC_BYTES,
        }
    }
}

/// What `apply` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum YApplied {
    /// The document changed; the update is revision `rev` and must be stored.
    Changed {
        /// Its revision.
        rev: u64,
    },
    /// The document already had everything in the update: nothing to store.
    Unchanged,
}

/// One Yjs document. See the module documentation.
pub struct YDocument {
    doc: yrs::Doc,
    rev: u64,
    size_bound: usize,
    poisoned: bool,
    config: YDocConfig,
}

impl std::fmt::Debug for YDocument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YDocument")
            .field("rev", &self.rev)
            .field("size_bound", &self.size_bound)
            .finish()
    }
}

/// Bytes each client entry of an update takes at least (struct count, client, clock).
const UPDATE_CLIENT_MIN_BYTES: usize = 3;

fn decode_update(update: &[u8]) -> Result<Update, YjsError> {
    super::check_leading_count(update, UPDATE_CLIENT_MIN_BYTES).map_err(YjsError::InvalidUpdate)?;
    guarded(|| Update::decode_v1(update))
        .ok_or_else(|| YjsError::InvalidUpdate("the update does not decode".into()))?
        .map_err(|e| YjsError::InvalidUpdate(e.to_string()))
}

impl YDocument {
    /// An empty document at revision 0.
    pub fn new(config: YDocConfig) -> Self {
        YDocument {
            doc: yrs::Doc::new(),
            rev: 0,
            size_bound: 0,
            poisoned: false,
            config,
        }
    }

    /// The document a snapshot holds (`state`, an update) at revision `rev`.
    pub fn from_snapshot(state: &[u8], rev: u64, config: YDocConfig) -> Result<Self, YjsError> {
        let mut d = YDocument::new(config);
        d.integrate(decode_update(state)?)?;
        d.rev = rev;
        d.size_bound = state.len();
        Ok(d)
    }

    fn integrate(&mut self, update: Update) -> Result<bool, YjsError> {
        let res = guarded(|| {
            let mut txn = self.doc.transact_mut();
            txn.apply_update(update).map(|()| {
                !txn.insert_set().is_empty()
                    || !txn.delete_set().is_empty()
                    || txn.has_missing_updates()
            })
        });
        match res {
            Some(Ok(changed)) => Ok(changed),
            Some(Err(e)) => {
                self.poisoned = true;
                Err(YjsError::InvalidUpdate(e.to_string()))
            }
            None => {
                self.poisoned = true;
                Err(YjsError::Poisoned)
            }
        }
    }

    /// Applies a client's update (see the module invariants).
    pub fn apply(&mut self, update: &[u8]) -> Result<YApplied, YjsError> {
        if self.poisoned {
            return Err(YjsError::Poisoned);
        }
        let max = self.config.max_update_bytes;
        if update.len() > max {
            return Err(YjsError::UpdateTooLarge {
                size: update.len(),
                max,
            });
        }
        let decoded = decode_update(update)?;
        if decoded.is_empty() {
            return Ok(YApplied::Unchanged);
        }
        let max = self.config.max_doc_bytes;
        if self.size_bound + update.len() > max {
            self.size_bound = self.encode_state().len();
            if self.size_bound + update.len() > max {
                return Err(YjsError::DocumentTooLarge { max });
            }
        }
        if !self.integrate(decoded)? {
            return Ok(YApplied::Unchanged);
        }
        self.rev += 1;
        self.size_bound += update.len();
        Ok(YApplied::Changed { rev: self.rev })
    }

    /// Whether `update` would change the document, without changing it (a viewer's update is
    /// acknowledged when it adds nothing, refused otherwise). New insertions are found from
    /// the update's state vector; deletions by applying it to a copy, which costs the size of
    /// the document: up to [`SCRATCH_CHECK_MAX_BYTES`]; a larger document counts any deletion
    /// as a change.
    pub fn would_change(&self, update: &[u8]) -> Result<bool, YjsError> {
        let decoded = decode_update(update)?;
        if decoded.is_empty() {
            return Ok(false);
        }
        let known = self.doc.transact().state_vector();
        // Any inserted block ending past what the document has from its client adds
        // something (it applies, or waits as pending for what comes before it).
        let adds = decoded
            .insertions(true)
            .iter()
            .any(|(client, ranges)| ranges.iter().any(|r| r.end > known.get(client)));
        if adds || decoded.delete_set().is_empty() {
            return Ok(adds);
        }
        if self.size_bound > SCRATCH_CHECK_MAX_BYTES {
            return Ok(true);
        }
        let mut copy =
            YDocument::from_snapshot(&self.encode_state(), self.rev, self.config.clone())?;
        Ok(copy.apply(update)? != YApplied::Unchanged)
    }

    /// Replays stored update `rev` (the next revision) while loading, without the limits: what
    /// was stored was accepted under the limits of its day.
    pub fn replay(&mut self, rev: u64, update: &[u8]) -> Result<(), YjsError> {
        if rev != self.rev + 1 {
            return Err(YjsError::InvalidUpdate(format!(
                "revision {rev} does not follow {}",
                self.rev
            )));
        }
        self.integrate(decode_update(update)?)?;
        self.rev = rev;
        self.size_bound += update.len();
        Ok(())
    }

    /// The current revision.
    pub fn rev(&self) -> u64 {
        self.rev
    }

    /// Whether the document holds updates waiting for what comes before them (an update that
    /// arrived before one it depends on). Its encoded state then carries them unintegrated,
    /// and may load into a different state than this one until the missing update arrives.
    pub fn has_pending(&self) -> bool {
        self.doc.transact().has_missing_updates()
    }

    /// Whether an integration failed half-way: reload the document from the store.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// The state vector, encoded (v1): a sync step 1.
    pub fn state_vector(&self) -> Vec<u8> {
        self.doc.transact().state_vector().encode_v1()
    }

    /// What a peer with state vector `sv` lacks, as an update (v1): a sync step 2.
    pub fn diff(&self, sv: &StateVector) -> Vec<u8> {
        self.doc.transact().encode_state_as_update_v1(sv)
    }

    /// The whole document as one update (v1): a snapshot, and `GET /api/docs/{id}/state`.
    pub fn encode_state(&self) -> Vec<u8> {
        self.diff(&StateVector::default())
    }

    /// An upper bound of the encoded state's size, in bytes.
    pub fn size_bound(&self) -> usize {
        self.size_bound
    }

    /// Every root type as JSON: a `Y.Text` as its string, a `Y.Map` as an object, a `Y.Array`
    /// as an array, a `Y.XmlFragment` as its XML string. The server never declares root types
    /// (updates do not carry them), so each is recognised by its content; an empty root is
    /// `null`.
    pub fn content(&self) -> serde_json::Value {
        let txn = self.doc.transact();
        let mut out = serde_json::Map::new();
        for (name, value) in txn.root_refs() {
            let any = guarded(|| match value {
                Out::UndefinedRef(ptr) => {
                    let text = TextRef::from(ptr).get_string(&txn);
                    if !text.is_empty() {
                        return Any::from(text);
                    }
                    let items: Vec<Out> = ArrayRef::from(ptr).iter(&txn).collect();
                    if items
                        .iter()
                        .any(|o| matches!(o, Out::YXmlElement(_) | Out::YXmlText(_)))
                    {
                        return Any::from(XmlFragmentRef::from(ptr).get_string(&txn));
                    }
                    if !items.is_empty() {
                        return ArrayRef::from(ptr).to_json(&txn);
                    }
                    let map = MapRef::from(ptr);
                    if map.len(&txn) > 0 {
                        return map.to_json(&txn);
                    }
                    Any::Null
                }
                other => other.to_json(&txn),
            })
            .unwrap_or(Any::Null);
            let json = serde_json::to_value(&any).unwrap_or(serde_json::Value::Null);
            out.insert(name.to_string(), json);
        }
        serde_json::Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use yrs::{Doc, Text, WriteTxn, XmlElementPrelim, XmlFragment, XmlTextPrelim};

    /// A client document with a text, a map, an array and an XML fragment.
    fn client() -> Doc {
        let doc = Doc::with_client_id(7);
        {
            let mut txn = doc.transact_mut();
            txn.get_or_insert_text("text").push(&mut txn, "hello");
            txn.get_or_insert_map("map").insert(&mut txn, "k", 1);
            txn.get_or_insert_array("list").push_back(&mut txn, "a");
            let xml = txn.get_or_insert_xml_fragment("prosemirror");
            let p = xml.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
            p.push_back(&mut txn, XmlTextPrelim::new("rich"));
        }
        doc
    }

    fn full(doc: &Doc) -> Vec<u8> {
        doc.transact()
            .encode_state_as_update_v1(&StateVector::default())
    }

    #[test]
    fn apply_snapshot_content() {
        let c = client();
        let mut d = YDocument::new(YDocConfig::default());
        assert_eq!(d.apply(&full(&c)).unwrap(), YApplied::Changed { rev: 1 });
        // The same update again adds nothing.
        assert_eq!(d.apply(&full(&c)).unwrap(), YApplied::Unchanged);
        assert_eq!(d.rev(), 1);
        let content = d.content();
        assert_eq!(content["text"], json!("hello"));
        assert_eq!(content["map"], json!({"k": 1}));
        assert_eq!(content["list"], json!(["a"]));
        assert_eq!(content["prosemirror"], json!("<paragraph>rich</paragraph>"));
        // A snapshot restores the same content and revision.
        let s = YDocument::from_snapshot(&d.encode_state(), 1, YDocConfig::default()).unwrap();
        assert_eq!(s.content(), content);
        assert_eq!(s.rev(), 1);
        // A sync step 2 against the client's state vector is empty of structs.
        let sv = c.transact().state_vector();
        let diff = Update::decode_v1(&d.diff(&sv)).unwrap();
        assert!(diff.is_empty());
    }

    #[test]
    fn refusals_change_nothing() {
        let config = YDocConfig {
            max_update_bytes: 64,
            max_doc_bytes: 200,
        };
        let mut d = YDocument::new(config);
        assert!(matches!(
            d.apply(&[0xff; 65]),
            Err(YjsError::UpdateTooLarge { size: 65, max: 64 })
        ));
        assert!(matches!(
            d.apply(&[3, 1, 2]),
            Err(YjsError::InvalidUpdate(_))
        ));
        // Updates of 40 to 60 bytes, until the document would pass 200 bytes.
        let c = Doc::with_client_id(9);
        let t = c.get_or_insert_text("t");
        let mut refused = false;
        for i in 0..20 {
            let sv = c.transact().state_vector();
            t.push(&mut c.transact_mut(), &format!("chunk {i:02} of text, "));
            let u = c.transact().encode_state_as_update_v1(&sv);
            match d.apply(&u) {
                Ok(_) => {}
                Err(YjsError::DocumentTooLarge { max: 200 }) => {
                    refused = true;
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(refused);
        assert!(d.encode_state().len() <= 200);
        let rev = d.rev();
        assert!(rev > 0 && !d.is_poisoned());
        // Every truncation of a valid update is refused or applied, never a panic.
        let u = full(&client());
        for n in 0..u.len() {
            let mut d = YDocument::new(YDocConfig::default());
            let _ = d.apply(&u[..n]);
        }
    }

    #[test]
    fn would_change_says_what_apply_would() {
        let c = client();
        let mut d = YDocument::new(YDocConfig::default());
        let all = full(&c);
        assert!(d.would_change(&all).unwrap());
        d.apply(&all).unwrap();
        assert!(!d.would_change(&all).unwrap());
        // A deletion of known content changes the document; repeating a known one does not.
        let sv = c.transact().state_vector();
        let t = c.get_or_insert_text("text");
        t.remove_range(&mut c.transact_mut(), 0, 2);
        let del = c.transact().encode_state_as_update_v1(&sv);
        assert!(d.would_change(&del).unwrap());
        d.apply(&del).unwrap();
        assert!(!d.would_change(&full(&c)).unwrap());
        assert_eq!(d.rev(), 2);
        assert!(d.would_change(&[3, 1, 2]).is_err());
        // An update that does not start at the client's clock 0 (the second of a client whose
        // first never arrived) adds something too.
        let sv = c.transact().state_vector();
        t.insert(&mut c.transact_mut(), 0, "more");
        let later = c.transact().encode_state_as_update_v1(&sv);
        let fresh = YDocument::new(YDocConfig::default());
        assert!(fresh.would_change(&later).unwrap());
    }

    #[test]
    fn replay_is_in_order() {
        let c = client();
        let mut d = YDocument::new(YDocConfig::default());
        assert!(d.replay(2, &full(&c)).is_err());
        d.replay(1, &full(&c)).unwrap();
        assert_eq!(d.rev(), 1);
        assert_eq!(d.content()["text"], json!("hello"));
    }
}
