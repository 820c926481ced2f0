//! The JetStream backend's write path: one flush's writes as they go to JetStream
//! ([`write_all`]: op records in revision order per document, stopping at the first refusal;
//! then everything else; the shared event cursors last), and the conditional create that makes the fence ([`create_one`]).
//! The invariants are the backend's (`js_kv.rs`).

use super::*;

/// One buffered write on its way to JetStream.
#[derive(Clone)]
pub(super) struct Outgoing {
    pub(super) bucket: kv::Store,
    pub(super) key: String,
    /// Its key space.
    pub(super) tree: Tree,
    /// Written with `create` (op records, a document's first data key): refused if the key
    /// exists with another value.
    pub(super) create: bool,
    pub(super) value: Option<Vec<u8>>,
    /// The store key (names the document of a refused op).
    pub(super) raw: Vec<u8>,
    /// A create's message id (`Nats-Msg-Id`), the same on every try: the stored message that
    /// carries it is this write (an earlier try whose acknowledgement was lost), one that does
    /// not is another writer's, even with the same bytes (another node applying the same op,
    /// resent by its client, at the same revision).
    pub(super) id: String,
    /// The JetStream context (a create is a conditional publish).
    pub(super) js: jetstream::Context,
}

/// The document a key of `ops` or `snapshots` belongs to.
pub(super) fn doc_of(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw.split(|&b| b == 0).next().unwrap_or(&[])).into_owned()
}

/// The revision of an op record's key (`doc \0 rev`, big-endian).
fn rev_of(raw: &[u8]) -> Option<u64> {
    let tail = raw.len().checked_sub(8).map(|i| &raw[i..])?;
    Some(u64::from_be_bytes(tail.try_into().ok()?))
}

/// One try at a flush's writes: returns the writes to send again and the documents found
/// fenced now, each with its first revision not written.
///
/// Op records go first (after the document's first data key, if this flush creates it), each
/// document's in revision order and one at a time, stopping at the document's first failure: a document never gets revision N+1 from this node unless its
/// revision N is this node's too (a refused N leaves the rest of its chain unwritten, a
/// failed one leaves it for the next try). Documents already `fenced` write nothing more.
/// Then everything else, in parallel, except a document's snapshots while any of its ops are
/// still to be sent (and never for a fenced document: its snapshot would describe a history
/// the store does not have), and the shared event cursors, written once all else is stored.
pub(super) async fn write_all(
    writes: Vec<Outgoing>,
    fenced: HashSet<String>,
) -> (Vec<Outgoing>, Vec<(String, u64)>) {
    let (ops, rest): (Vec<Outgoing>, Vec<Outgoing>) = writes
        .into_iter()
        .partition(|w| w.tree == Tree::Ops || w.create);
    let mut chains: BTreeMap<String, Vec<Outgoing>> = BTreeMap::new();
    for w in ops {
        chains.entry(doc_of(&w.raw)).or_default().push(w);
    }
    let results: Vec<(String, Vec<Outgoing>, Option<u64>)> =
        futures_util::stream::iter(chains.into_iter().map(|(doc, mut chain)| {
            let skip = fenced.contains(&doc);
            async move {
                if skip {
                    return (doc, Vec::new(), Some(0));
                }
                // A first data key before the records sealed under it, then revision order.
                chain.sort_by(|a, b| {
                    (a.tree == Tree::Ops, &a.raw).cmp(&(b.tree == Tree::Ops, &b.raw))
                });
                for (i, w) in chain.iter().enumerate() {
                    match write_one(w).await {
                        Ok(()) => {}
                        Err(StoreError::Fenced { .. }) => {
                            // The refused write and everything after it in the chain: the
                            // first op revision among them is the first not written.
                            let from = chain[i..]
                                .iter()
                                .filter(|w| w.tree == Tree::Ops)
                                .filter_map(|w| rev_of(&w.raw))
                                .min()
                                .unwrap_or(0);
                            return (doc, Vec::new(), Some(from));
                        }
                        Err(_) => return (doc, chain.split_off(i), None),
                    }
                }
                (doc, Vec::new(), None)
            }
        }))
        .buffer_unordered(READS_AT_ONCE)
        .collect()
        .await;
    let mut retry = Vec::new();
    let mut refused = Vec::new();
    let mut waiting: HashSet<String> = HashSet::new();
    let mut dead: HashSet<String> = fenced;
    for (doc, left, fenced_now) in results {
        if let Some(from) = fenced_now {
            if !dead.contains(&doc) {
                refused.push((doc.clone(), from));
            }
            dead.insert(doc);
        } else if !left.is_empty() {
            waiting.insert(doc);
            retry.extend(left);
        }
    }
    let (now, later): (Vec<Outgoing>, Vec<Outgoing>) = rest
        .into_iter()
        .filter(|w| w.tree != Tree::Snapshots || !dead.contains(&doc_of(&w.raw)))
        .partition(|w| w.tree != Tree::Snapshots || !waiting.contains(&doc_of(&w.raw)));
    retry.extend(later);
    // The shared event cursors last, once the event records they follow are stored: a crash
    // between leaves an event told twice (the next owner tells from the older cursor), never
    // a cursor past an event that was not stored.
    let (now, cursors): (Vec<Outgoing>, Vec<Outgoing>) =
        now.into_iter().partition(|w| !shared_key(w.tree, &w.raw));
    let failed = write_parallel(now).await;
    if failed.is_empty() {
        retry.extend(write_parallel(cursors).await);
    } else {
        retry.extend(failed);
        retry.extend(cursors);
    }
    (retry, refused)
}

/// Writes `writes` in parallel; returns those that failed.
async fn write_parallel(writes: Vec<Outgoing>) -> Vec<Outgoing> {
    futures_util::stream::iter(writes.into_iter().map(|w| async move {
        let r = write_one(&w).await;
        (w, r)
    }))
    .buffer_unordered(READS_AT_ONCE)
    .filter_map(|(w, r)| async move { r.is_err().then_some(w) })
    .collect()
    .await
}

/// Writes one buffered write (see [`Kv::flush`]).
async fn write_one(w: &Outgoing) -> Result<(), StoreError> {
    match &w.value {
        Some(v) if w.create => create_one(w, v).await,
        Some(v) => w
            .bucket
            .put(&w.key, v.clone().into())
            .await
            .map(|_| ())
            .map_err(|e| nats_err("writing", e)),
        None => w
            .bucket
            .purge(&w.key)
            .await
            .map_err(|e| nats_err("deleting", e)),
    }
}

/// Tries of a create whose key is being deleted and recreated under it.
const CREATE_TRIES: usize = 3;

/// A create: a publish to the key's subject expecting no message there yet
/// (`Nats-Expected-Last-Subject-Sequence`, as `kv::Store::create` does: 0, or the sequence of
/// a deletion marker, since a deleted key may be created again), carrying the write's id.
/// Refused because the key holds a value: ours if the stored message carries our id (an
/// earlier try was stored and its acknowledgement lost), else another writer's (`Fenced`).
async fn create_one(w: &Outgoing, v: &[u8]) -> Result<(), StoreError> {
    use async_nats::jetstream::context::PublishErrorKind;
    let prefix = w.bucket.put_prefix.as_ref().unwrap_or(&w.bucket.prefix);
    let subject = format!("{prefix}{}", w.key);
    let mut expected = 0;
    for _ in 0..CREATE_TRIES {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            "Nats-Expected-Last-Subject-Sequence",
            expected.to_string().as_str(),
        );
        headers.insert("Nats-Msg-Id", w.id.as_str());
        let sent =
            w.js.publish_with_headers(subject.clone(), headers, v.to_vec().into())
                .await
                .map_err(|e| nats_err("writing", e))?;
        match sent.await {
            // Stored now, or a duplicate of our own earlier try (its id): ours either way.
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {}
            Err(e) => return Err(nats_err("writing", e)),
        }
        let there = w
            .bucket
            .stream
            .get_last_raw_message_by_subject(&format!("{}{}", w.bucket.prefix, w.key))
            .await
            .map_err(|e| nats_err("reading", e))?;
        if there.headers.get("Nats-Msg-Id").map(|h| h.as_str()) == Some(w.id.as_str()) {
            return Ok(());
        }
        if !super::read::is_deletion(&there) {
            return Err(StoreError::Fenced {
                doc: String::from_utf8_lossy(w.raw.split(|&b| b == 0).next().unwrap_or(&[]))
                    .into_owned(),
            });
        }
        expected = there.sequence;
    }
    Err(nats_err(
        "writing",
        "the key kept changing while it was created",
    ))
}

/// 8 random bytes, hex.
pub(super) fn random_tag() -> Result<String, StoreError> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(backend)?;
    Ok(hex::encode(b))
}
