//! The JetStream backend's read path: key listings (through an ephemeral consumer, retried
//! while its creation stalls on a dead server), range listings by subject filter merged with
//! the buffered writes, value reads in parallel from the stream leader ([`leader_get`]), and [`JsKv::read_retrying`], which asks a read
//! again through a leader election. The invariants are the backend's (`js_kv.rs`): reads see
//! buffered and flushing writes first.

use super::*;

impl JsKv {
    /// Every live KV key of `tree`'s bucket, as stored (`keys()` skips deleted ones, reading
    /// headers, not values).
    ///
    /// A listing reads through an ephemeral consumer, which the NATS meta leader places on one
    /// of the stream's peers, an unreachable one included (a server down: measured, about one
    /// creation in three then waits for the request timeout): the creation is given
    /// [`KEYS_TRY_TIMEOUT`] and asked again, within the call's [`NATS_CALL_TIMEOUT`].
    pub(super) fn kv_keys(&self, tree: Tree) -> Result<Vec<String>, StoreError> {
        self.read_retrying("listing keys", || {
            let bucket = self.buckets[tree_index(tree)].clone();
            async move {
                let keys = loop {
                    match tokio::time::timeout(KEYS_TRY_TIMEOUT, bucket.keys()).await {
                        Ok(Ok(keys)) => break keys,
                        Ok(Err(e)) => tracing::debug!(error = %e, "listing keys: trying again"),
                        Err(_) => {
                            tracing::debug!("listing keys: no consumer in time; trying again")
                        }
                    }
                    tokio::time::sleep(KEYS_RETRY_PAUSE).await;
                };
                keys.try_collect::<Vec<String>>()
                    .await
                    .map_err(|e| nats_err("listing keys", e))
            }
        })
    }

    /// The keys of `tree` in `[from, to)` that may hold a value, ascending: those JetStream has
    /// a subject for (a deleted key's marker included) and those buffered, with their KV keys.
    pub(super) fn candidates(
        &self,
        tree: Tree,
        from: &[u8],
        to: &[u8],
    ) -> Result<Vec<(Vec<u8>, String)>, StoreError> {
        if from >= to {
            return Ok(Vec::new());
        }
        let filter = self.filter(tree, from, to);
        let stream_name = format!("KV_{}", self.names[tree_index(tree)]);
        let prefix = format!("$KV.{}.", self.names[tree_index(tree)]);
        let subjects: Vec<String> = self.read_retrying("listing keys", || {
            let (js, stream_name, filter) = (self.js.clone(), stream_name.clone(), filter.clone());
            async move {
                let stream = js
                    .get_stream(&stream_name)
                    .await
                    .map_err(|e| nats_err("stream", e))?;
                let info = stream
                    .info_with_subjects(filter)
                    .await
                    .map_err(|e| nats_err("listing keys", e))?;
                info.map_ok(|(s, _)| s)
                    .try_collect::<Vec<String>>()
                    .await
                    .map_err(|e| nats_err("listing keys", e))
            }
        })?;
        let mut keys: BTreeMap<Vec<u8>, String> = subjects
            .iter()
            .filter_map(|s| s.strip_prefix(&prefix))
            .filter_map(|kv_key| {
                let k = self.decode(tree, kv_key)?;
                (k.as_slice() >= from && k.as_slice() < to).then(|| (k, kv_key.to_string()))
            })
            .collect();
        let t = tree_index(tree);
        for map in [&self.flushing, &self.pending] {
            for (mt, k) in map.lock().map_err(backend)?.keys() {
                if *mt == t && k.as_slice() >= from && k.as_slice() < to {
                    keys.entry(k.clone())
                        .or_insert_with(|| self.encode(tree, k));
                }
            }
        }
        Ok(keys.into_iter().collect())
    }

    /// The values of `keys` (buffered first), `None` for deleted ones, in order.
    pub(super) fn values(
        &self,
        tree: Tree,
        keys: &[(Vec<u8>, String)],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut out: Vec<Option<Option<Vec<u8>>>> = Vec::with_capacity(keys.len());
        let mut remote = Vec::new();
        for (i, (k, kv_key)) in keys.iter().enumerate() {
            let b = self.buffered(tree, k)?;
            if b.is_none() {
                remote.push((i, kv_key.clone()));
            }
            out.push(b);
        }
        let fetched: Vec<(usize, Option<Vec<u8>>)> = self.read_retrying("reading", || {
            let (bucket, remote) = (self.buckets[tree_index(tree)].clone(), remote.clone());
            async move {
                futures_util::stream::iter(remote.into_iter().map(|(i, k)| {
                    let bucket = bucket.clone();
                    async move { leader_get(&bucket, &k).await.map(|v| (i, v)) }
                }))
                .buffered(READS_AT_ONCE)
                .try_collect::<Vec<_>>()
                .await
            }
        })?;
        for (i, v) in fetched {
            out[i] = Some(v);
        }
        Ok(out.into_iter().map(Option::flatten).collect())
    }

    /// Every pair of `tree` in `[from, to)`, ascending, buffered writes included.
    pub(super) fn list(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<Vec<Pair>, StoreError> {
        let keys = self.candidates(tree, from, to)?;
        let values = self.values(tree, &keys)?;
        Ok(keys
            .into_iter()
            .zip(values)
            .filter_map(|((k, _), v)| Some((k, v?)))
            .collect())
    }

    /// The first (or, `last`, the last) pair of `tree` in `[from, to)`, reading values one key
    /// at a time from that end until a live one.
    pub(super) fn edge(
        &self,
        tree: Tree,
        from: &[u8],
        to: &[u8],
        last: bool,
    ) -> Result<Option<Pair>, StoreError> {
        let mut keys = self.candidates(tree, from, to)?;
        if last {
            keys.reverse();
        }
        for chunk in keys.chunks(8) {
            for ((k, _), v) in chunk.iter().zip(self.values(tree, chunk)?) {
                if let Some(v) = v {
                    return Ok(Some((k.clone(), v)));
                }
            }
        }
        Ok(None)
    }

    /// Runs the read `make` builds, and again while NATS fails it (`StoreError::Backend`: no
    /// answer, a leader election, a server away), until [`READ_RETRY_FOR`] has passed.
    pub(super) fn read_retrying<T, F, Fut>(&self, what: &str, make: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let deadline = std::time::Instant::now() + READ_RETRY_FOR;
        loop {
            match self.run(make()).and_then(|r| r) {
                Err(StoreError::Backend(e)) if std::time::Instant::now() < deadline => {
                    tracing::debug!(what, error = %e, "NATS JetStream read failed; trying again");
                    std::thread::sleep(READ_RETRY_PAUSE);
                }
                r => return r,
            }
        }
    }
}

/// A key's value as the stream's leader has it (`STREAM.MSG.GET`), `None` if it has none or a
/// deletion marker. Not the KV `get`: that is a direct get (the buckets allow it), answered by
/// any replica, and a follower that has not applied the latest writes answers without them —
/// a node loading a document so missed its last acknowledged record (the cluster test, after a
/// nats-server was killed: a new owner loaded revision 69 of 70 and the log read back lacked
/// the acknowledged revision 70).
pub(super) async fn leader_get(
    bucket: &kv::Store,
    kv_key: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    use async_nats::jetstream::stream::LastRawMessageErrorKind;
    let subject = format!("{}{}", bucket.prefix, kv_key);
    match bucket
        .stream
        .get_last_raw_message_by_subject(&subject)
        .await
    {
        Ok(m) => Ok((!is_deletion(&m)).then(|| m.payload.to_vec())),
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(nats_err("reading", e)),
    }
}

/// Whether a key's last message is a deletion marker (`KV-Operation: DEL` or `PURGE`).
pub(super) fn is_deletion(m: &async_nats::jetstream::message::StreamMessage) -> bool {
    matches!(
        m.headers.get("KV-Operation").map(|h| h.as_str()),
        Some("DEL" | "PURGE")
    )
}
