//! The outbox: the `events` tree of the store (format in `docs/STORAGE.md`, "Events").
//!
//! Keys (one letter, then):
//! - `E` seq (u64 BE): an event record `[format u8 = 1][crc32 of the JSON, u32 LE][JSON]`;
//! - `C` document: the document's event cursor, the last revision told (u64 BE);
//! - `I`: the store's event id prefix (8 hex digits), written once: its presence says the
//!   outbox was initialized;
//! - `W` sink: the sink's low-water mark: every event at or below it is settled for it;
//! - `S` sink `\0` seq: a settled event above the low-water mark (delivered or dead-lettered);
//! - `X` sink `\0` seq: a dead letter (the event's JSON, attempts, last error), kept until
//!   replayed;
//! - `D` sink: the sink is disabled (it answered 410), with when and why;
//! - `R` sink `\0` seq: an event replayed for the sink (below its low-water mark) and not yet
//!   settled again.
//!
//! Invariants:
//! - Events, cursors and the documents' own records go through the same store writer, so an
//!   event record and its cursor are durable with the same flush, and a deletion's event with
//!   the deletion.
//! - Sequence numbers grow by one per event and are never reused (the last one is read back at
//!   start-up; events are only removed from the low end).
//! - Event records carry no document content: ids, revisions, token subjects (the same
//!   metadata as the audit chain). They are checksummed, not sealed.

use std::collections::HashSet;

use coedit_protocol::DocKind;
use serde::{Deserialize, Serialize};

use super::{split_storage_id, Event, EventData, EventType, EventsError, Revs};
use crate::storage::{Pair, Store, StoreError};

/// Format byte of an event record.
pub const EVENT_RECORD_FORMAT: u8 = 1;
/// Bytes before an event record's JSON.
const RECORD_HEADER: usize = 5;
/// Most events read from the outbox at once.
pub const READ_BATCH: usize = 1024;

const EVENT: u8 = b'E';
const CURSOR: u8 = b'C';
const INIT: &[u8] = b"I";
const LOW_WATER: u8 = b'W';
const SETTLED: u8 = b'S';
const DEAD: u8 = b'X';
const DISABLED: u8 = b'D';
const REPLAY: u8 = b'R';

/// One mutation of the `events` tree, applied by the write pool in order with every other
/// write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TreeWrite {
    /// Put a value.
    Put(Vec<u8>, Vec<u8>),
    /// Delete keys in `[from, to)`.
    DeleteRange(Vec<u8>, Vec<u8>),
}

/// Applies mutations to the store (buffered).
pub fn apply(store: &dyn Store, writes: &[TreeWrite]) -> Result<(), StoreError> {
    for w in writes {
        match w {
            TreeWrite::Put(k, v) => store.events_put(k, v)?,
            TreeWrite::DeleteRange(a, b) => store.events_delete_range(a, b)?,
        }
    }
    Ok(())
}

fn event_key(seq: u64) -> Vec<u8> {
    let mut k = vec![EVENT];
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn cursor_key(doc: &str) -> Vec<u8> {
    let mut k = vec![CURSOR];
    k.extend_from_slice(doc.as_bytes());
    k
}

fn sink_key(tag: u8, sink: &str) -> Vec<u8> {
    let mut k = vec![tag];
    k.extend_from_slice(sink.as_bytes());
    k
}

fn sink_seq_key(tag: u8, sink: &str, seq: u64) -> Vec<u8> {
    let mut k = sink_key(tag, sink);
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn sink_seq_range(tag: u8, sink: &str) -> (Vec<u8>, Vec<u8>) {
    let mut a = sink_key(tag, sink);
    a.push(0);
    let mut b = sink_key(tag, sink);
    b.push(1);
    (a, b)
}

fn seq_of(key: &[u8]) -> Option<u64> {
    let tail = key.get(key.len().checked_sub(8)?..)?;
    Some(u64::from_be_bytes(tail.try_into().ok()?))
}

fn u64_value(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.try_into().ok()?))
}

/// The record of `ev` and, for document changes, its document's new cursor.
pub fn event_writes(ev: &Event, cursor: Option<(&str, u64)>) -> Vec<TreeWrite> {
    let json = ev.json.as_bytes();
    let mut v = Vec::with_capacity(RECORD_HEADER + json.len());
    v.push(EVENT_RECORD_FORMAT);
    v.extend_from_slice(&crc32fast::hash(json).to_le_bytes());
    v.extend_from_slice(json);
    let mut w = vec![TreeWrite::Put(event_key(ev.seq), v)];
    if let Some((doc, rev)) = cursor {
        w.push(TreeWrite::Put(cursor_key(doc), rev.to_be_bytes().to_vec()));
    }
    w
}

/// Removes a document's cursor (with its deletion).
pub fn cursor_delete(doc: &str) -> TreeWrite {
    let k = cursor_key(doc);
    let mut end = k.clone();
    end.push(0);
    TreeWrite::DeleteRange(k, end)
}

fn decode_event(key: &[u8], value: &[u8]) -> Result<Event, EventsError> {
    let seq = seq_of(key).ok_or_else(|| EventsError::Record("bad event key".into()))?;
    if value.len() < RECORD_HEADER || value[0] != EVENT_RECORD_FORMAT {
        return Err(EventsError::Record(format!(
            "event {seq}: unknown format or truncated"
        )));
    }
    let crc = u32::from_le_bytes([value[1], value[2], value[3], value[4]]);
    let json = &value[RECORD_HEADER..];
    if crc32fast::hash(json) != crc {
        return Err(EventsError::Record(format!(
            "event {seq}: checksum mismatch"
        )));
    }
    let json =
        std::str::from_utf8(json).map_err(|e| EventsError::Record(format!("event {seq}: {e}")))?;
    Event::from_json(seq, json)
}

/// The outbox's identity and its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxState {
    /// Event id prefix of this store.
    pub prefix: String,
    /// The last event's sequence number (0: none yet).
    pub last_seq: u64,
}

/// Reads the outbox's prefix and last sequence number; `None` if it was never initialized.
pub fn state(store: &dyn Store) -> Result<Option<OutboxState>, EventsError> {
    let Some(prefix) = store.events_get(INIT)? else {
        return Ok(None);
    };
    let prefix = String::from_utf8(prefix).map_err(|e| EventsError::Record(e.to_string()))?;
    let last_seq = store
        .events_last(&[EVENT], &[EVENT + 1])?
        .and_then(|(k, _)| seq_of(&k))
        .unwrap_or(0);
    Ok(Some(OutboxState { prefix, last_seq }))
}

/// What start-up found.
#[derive(Debug, PartialEq, Eq)]
pub struct CatchUp {
    /// The outbox's state after the catch-up.
    pub state: OutboxState,
    /// Events written for durable revisions nobody was told about (after a crash).
    pub recovered: Vec<Event>,
    /// Documents whose cursor was set without an event (the outbox's first start: history
    /// before it is not told).
    pub baselined: usize,
}

/// Opens the outbox at start-up, before any writer runs: on its first start records the
/// prefix and sets every existing document's cursor to its current revision (history is not
/// told); later, emits `document.changed` (and `document.created` from revision 1) for every
/// document whose stored revision is past its cursor: changes that became durable but were not
/// yet told when the process stopped. With `tell` false (no sink takes document changes),
/// cursors only follow the documents. Flushes what it wrote.
///
/// With `shared` (cluster mode: the cursors are the cluster's, one per document, and other
/// nodes tell their own revisions), it tells nothing and moves no cursor: a revision past a
/// cursor may be a live node's change not yet told, and the node that next takes the
/// document's lease tells what is left ([`recovered_data`], `docs/EVENTS.md`). The first start
/// only sets the cursor of documents that have none (history from before events is not told).
pub fn catch_up(
    store: &dyn Store,
    now_ms: u64,
    tell: bool,
    shared: bool,
) -> Result<CatchUp, EventsError> {
    let mut recovered = Vec::new();
    let mut baselined = 0;
    let (mut st, first) = match state(store)? {
        Some(s) => (s, false),
        None => {
            let mut b = [0u8; 4];
            getrandom::fill(&mut b).map_err(|e| EventsError::Record(e.to_string()))?;
            let prefix = hex::encode(b);
            store.events_put(INIT, prefix.as_bytes())?;
            (
                OutboxState {
                    prefix,
                    last_seq: 0,
                },
                true,
            )
        }
    };
    if shared {
        if first {
            for doc in store.documents()? {
                if cursor_of(store, &doc)?.is_none() {
                    let last = store.last_rev(&doc)?;
                    store.events_put(&cursor_key(&doc), &last.to_be_bytes())?;
                    baselined += 1;
                }
            }
        }
        store.flush()?;
        return Ok(CatchUp {
            state: st,
            recovered,
            baselined,
        });
    }
    let mut live = HashSet::new();
    for doc in store.documents()? {
        let last = store.last_rev(&doc)?;
        let cursor = cursor_of(store, &doc)?.unwrap_or(0);
        live.insert(doc.clone());
        if last == cursor {
            continue;
        }
        if first || !tell || last < cursor {
            // First start (history is not told), changes not told, or a store accepted as
            // rolled back.
            store.events_put(&cursor_key(&doc), &last.to_be_bytes())?;
            baselined += 1;
            continue;
        }
        let kind = store.kind(&doc)?;
        let data = recovered_data(&doc, kind, cursor, last);
        let n = data.len();
        for (i, (t, d)) in data.into_iter().enumerate() {
            st.last_seq += 1;
            let ev = Event::new(&st.prefix, st.last_seq, t, now_ms, d);
            let cursor = (i + 1 == n).then_some((doc.as_str(), last));
            apply(store, &event_writes(&ev, cursor))?;
            recovered.push(ev);
        }
    }
    // Cursors of documents that are gone (deleted with the process stopping in between).
    for (k, _) in store.events_range(&[CURSOR], &[CURSOR + 1], usize::MAX)? {
        let doc = String::from_utf8_lossy(&k[1..]).into_owned();
        if !live.contains(&doc) {
            apply(store, &[cursor_delete(&doc)])?;
        }
    }
    store.flush()?;
    Ok(CatchUp {
        state: st,
        recovered,
        baselined,
    })
}

/// Document `doc`'s event cursor: the last revision told (`None`: never set).
pub fn cursor_of(store: &dyn Store, doc: &str) -> Result<Option<u64>, EventsError> {
    Ok(store
        .events_get(&cursor_key(doc))?
        .and_then(|v| u64_value(&v)))
}

/// Sets document `doc`'s event cursor to `rev` without telling anything.
pub fn cursor_put(doc: &str, rev: u64) -> TreeWrite {
    TreeWrite::Put(cursor_key(doc), rev.to_be_bytes().to_vec())
}

/// The events telling revisions `cursor + 1 ..= last` of `doc` that became durable and were
/// never told (their authors unknown, so `recovered`): `document.created` too when the cursor
/// is 0. The caller numbers them and moves the cursor to `last` with the last one.
pub fn recovered_data(
    doc: &str,
    kind: Option<DocKind>,
    cursor: u64,
    last: u64,
) -> Vec<(EventType, EventData)> {
    let (tenant, name) = split_storage_id(doc);
    let data = |t: EventType, revs: Revs| EventData {
        tenant: tenant.clone(),
        document: Some(name.clone()),
        kind: kind.map(|k| k.to_string()),
        revs: Some(revs),
        authors: (t == EventType::Changed).then(Vec::new),
        recovered: true,
        ..EventData::default()
    };
    let mut out = Vec::new();
    if cursor >= last {
        return out;
    }
    if cursor == 0 {
        let t = EventType::Created;
        out.push((t, data(t, Revs { from: 1, to: 1 })));
    }
    let t = EventType::Changed;
    out.push((
        t,
        data(
            t,
            Revs {
                from: cursor + 1,
                to: last,
            },
        ),
    ));
    out
}

/// Events after `after`, at most `max`, in order. A record that does not decode is an error
/// naming it (never skipped silently).
pub fn read_after(store: &dyn Store, after: u64, max: usize) -> Result<Vec<Event>, EventsError> {
    let from = event_key(after.saturating_add(1));
    store
        .events_range(&from, &[EVENT + 1], max)?
        .into_iter()
        .map(|(k, v)| decode_event(&k, &v))
        .collect()
}

/// Reads every event record (the offline check): how many there are and how many dead letters,
/// or the first record that does not decode.
pub fn check(store: &dyn Store) -> Result<(u64, usize), EventsError> {
    let (mut after, mut n) = (0, 0u64);
    loop {
        let evs = read_after(store, after, READ_BATCH)?;
        let Some(last) = evs.last() else {
            break;
        };
        after = last.seq;
        n += evs.len() as u64;
    }
    Ok((n, dead_letters(store, None, usize::MAX)?.len()))
}

/// Event `seq`, if it is still in the outbox.
pub fn read_one(store: &dyn Store, seq: u64) -> Result<Option<Event>, EventsError> {
    let k = event_key(seq);
    store
        .events_get(&k)?
        .map(|v| decode_event(&k, &v))
        .transpose()
}

/// How an event was settled for a sink.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settled {
    /// `delivered` or `dead`.
    pub outcome: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last status, if the sink answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
}

/// A dead letter: an event a sink never took.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The sink.
    pub sink: String,
    /// The event's sequence number.
    pub seq: u64,
    /// The event's id.
    pub id: String,
    /// The event's type.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// Attempts made.
    pub attempts: u32,
    /// The last status, if the sink answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The last error.
    pub error: String,
    /// When it was given up, ms since the Unix epoch.
    pub at_ms: u64,
    /// The event, as it would be sent.
    pub event: serde_json::Value,
}

/// The writes that settle `seq` for `sink` (and keep a dead letter).
pub fn settle_writes(
    sink: &str,
    seq: u64,
    s: &Settled,
    dead: Option<&DeadLetter>,
) -> Vec<TreeWrite> {
    let mut w = vec![
        TreeWrite::Put(
            sink_seq_key(SETTLED, sink, seq),
            serde_json::to_vec(s).unwrap_or_default(),
        ),
        delete_one(REPLAY, sink, seq),
    ];
    if let Some(d) = dead {
        w.push(TreeWrite::Put(
            sink_seq_key(DEAD, sink, seq),
            serde_json::to_vec(d).unwrap_or_default(),
        ));
    }
    w
}

fn delete_one(tag: u8, sink: &str, seq: u64) -> TreeWrite {
    let k = sink_seq_key(tag, sink, seq);
    let mut end = k.clone();
    end.push(0);
    TreeWrite::DeleteRange(k, end)
}

/// The writes that make `seq` pending again for `sink` (a replay): its settle mark and dead
/// letter go, a replay mark keeps it pending across a restart.
pub fn replay_writes(sink: &str, seq: u64) -> Vec<TreeWrite> {
    vec![
        delete_one(SETTLED, sink, seq),
        delete_one(DEAD, sink, seq),
        TreeWrite::Put(sink_seq_key(REPLAY, sink, seq), Vec::new()),
    ]
}

/// The writes that move `sink`'s low-water mark to `seq` (settle marks at or below it go).
pub fn low_water_writes(sink: &str, seq: u64) -> Vec<TreeWrite> {
    let (from, _) = sink_seq_range(SETTLED, sink);
    let mut to = sink_key(SETTLED, sink);
    to.push(0);
    to.extend_from_slice(&seq.saturating_add(1).to_be_bytes());
    vec![
        TreeWrite::Put(sink_key(LOW_WATER, sink), seq.to_be_bytes().to_vec()),
        TreeWrite::DeleteRange(from, to),
    ]
}

/// The writes that delete events at or below `seq` (every sink's low-water mark is past them).
pub fn trim_writes(seq: u64) -> Vec<TreeWrite> {
    vec![TreeWrite::DeleteRange(
        event_key(0),
        event_key(seq.saturating_add(1)),
    )]
}

/// The write that disables (`Some(why)`) or enables (`None`) a sink.
pub fn disabled_write(sink: &str, why: Option<&str>) -> TreeWrite {
    let k = sink_key(DISABLED, sink);
    match why {
        Some(w) => TreeWrite::Put(k, w.as_bytes().to_vec()),
        None => {
            let mut end = k.clone();
            end.push(0);
            TreeWrite::DeleteRange(k, end)
        }
    }
}

/// What a sink's delivery state is at start-up.
#[derive(Debug, Default)]
pub struct SinkState {
    /// The low-water mark (`None`: a sink never seen, which starts at the outbox's end).
    pub low_water: Option<u64>,
    /// Events above it already settled.
    pub settled: HashSet<u64>,
    /// Why the sink is disabled, if it is.
    pub disabled: Option<String>,
    /// Events replayed and not settled again, ascending.
    pub replays: Vec<u64>,
}

/// Reads a sink's delivery state.
pub fn sink_state(store: &dyn Store, sink: &str) -> Result<SinkState, EventsError> {
    let low_water = store
        .events_get(&sink_key(LOW_WATER, sink))?
        .and_then(|v| u64_value(&v));
    let (a, b) = sink_seq_range(SETTLED, sink);
    let settled = store
        .events_range(&a, &b, usize::MAX)?
        .into_iter()
        .filter_map(|(k, _)| seq_of(&k))
        .collect();
    let disabled = store
        .events_get(&sink_key(DISABLED, sink))?
        .map(|v| String::from_utf8_lossy(&v).into_owned());
    let (a, b) = sink_seq_range(REPLAY, sink);
    let replays = store
        .events_range(&a, &b, usize::MAX)?
        .into_iter()
        .filter_map(|(k, _)| seq_of(&k))
        .collect();
    Ok(SinkState {
        low_water,
        settled,
        disabled,
        replays,
    })
}

/// Dead letters of `sink` (every sink: `None`), oldest first, at most `max`.
pub fn dead_letters(
    store: &dyn Store,
    sink: Option<&str>,
    max: usize,
) -> Result<Vec<DeadLetter>, EventsError> {
    let (a, b) = match sink {
        Some(s) => sink_seq_range(DEAD, s),
        None => (vec![DEAD], vec![DEAD + 1]),
    };
    let pairs: Vec<Pair> = store.events_range(&a, &b, max)?;
    pairs
        .into_iter()
        .map(|(_, v)| serde_json::from_slice(&v).map_err(|e| EventsError::Record(e.to_string())))
        .collect()
}

/// The dead letters of event `seq`, every sink.
pub fn dead_letters_of(store: &dyn Store, seq: u64) -> Result<Vec<DeadLetter>, EventsError> {
    Ok(dead_letters(store, None, usize::MAX)?
        .into_iter()
        .filter(|d| d.seq == seq)
        .collect())
}

/// Event `seq`: from the outbox, or (trimmed from it) from a dead letter's copy.
pub fn find_event(store: &dyn Store, seq: u64) -> Result<Option<Event>, EventsError> {
    if let Some(e) = read_one(store, seq)? {
        return Ok(Some(e));
    }
    dead_letters_of(store, seq)?
        .first()
        .map(|d| Event::from_json(seq, &d.event.to_string()))
        .transpose()
}

/// Whether `name` may name a sink: it is part of outbox keys, so `[A-Za-z0-9_-]`, 1 to 64.
pub fn valid_sink_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{LogRecord, MemoryStore};
    use coedit_protocol::Op;

    fn write(store: &MemoryStore, doc: &str, revs: std::ops::RangeInclusive<u64>) {
        for rev in revs {
            let r = LogRecord {
                rev,
                client: "c".into(),
                seq: rev,
                op: Op::insert_at(rev as usize - 1, "x"),
            };
            store.append(doc, &[r]).expect("append");
        }
        store.flush().expect("flush");
    }

    /// Invariant: a restart tells the changes that became durable untold (a document past its
    /// cursor, a new document from revision 1), except on a store other nodes write too
    /// (cluster mode), where such revisions may be a live node's: nothing is told and no
    /// cursor moves (the next owner of each document tells them); the first start there only
    /// sets the cursors of documents that have none.
    #[test]
    fn catch_up_tells_untold_changes_except_on_a_shared_store() {
        let store = MemoryStore::new();
        write(&store, "a", 1..=2);
        let first = catch_up(&store, 1, true, true).expect("first cluster start");
        assert!(first.recovered.is_empty(), "history is not told");
        assert_eq!(first.baselined, 1);
        assert_eq!(cursor_of(&store, "a").expect("cursor"), Some(2));
        write(&store, "a", 3..=4);
        write(&store, "b", 1..=2);
        let shared = catch_up(&store, 2, true, true).expect("cluster restart");
        assert!(shared.recovered.is_empty(), "{:?}", shared.recovered);
        assert_eq!(shared.baselined, 0);
        assert_eq!(
            cursor_of(&store, "a").expect("cursor"),
            Some(2),
            "not moved"
        );
        assert_eq!(cursor_of(&store, "b").expect("cursor"), None, "not set");
        // What the next owner of each tells.
        let revs = |v: Vec<(EventType, EventData)>| -> Vec<(EventType, u64, u64, bool)> {
            v.into_iter()
                .map(|(t, d)| {
                    let r = d.revs.expect("revs");
                    (t, r.from, r.to, d.recovered)
                })
                .collect()
        };
        assert_eq!(
            revs(recovered_data("b", Some(DocKind::Text), 0, 2)),
            vec![
                (EventType::Created, 1, 1, true),
                (EventType::Changed, 1, 2, true)
            ]
        );
        assert_eq!(
            revs(recovered_data("a", Some(DocKind::Text), 2, 4)),
            vec![(EventType::Changed, 3, 4, true)]
        );
        assert!(recovered_data("a", None, 4, 4).is_empty());
        assert!(recovered_data("a", None, 5, 4).is_empty());
        // A store of its own tells them at its restart ("b" and "c" as created).
        write(&store, "c", 1..=1);
        let own = catch_up(&store, 4, true, false).expect("restart");
        let mut kinds: Vec<(EventType, Option<String>)> = own
            .recovered
            .iter()
            .map(|e| (e.kind, e.doc.as_deref().map(String::from)))
            .collect();
        kinds.sort_by(|x, y| (&x.1, x.0).cmp(&(&y.1, y.0)));
        assert_eq!(
            kinds,
            vec![
                (EventType::Changed, Some("a".into())),
                (EventType::Created, Some("b".into())),
                (EventType::Changed, Some("b".into())),
                (EventType::Created, Some("c".into())),
                (EventType::Changed, Some("c".into())),
            ]
        );
        assert_eq!(cursor_of(&store, "b").expect("cursor"), Some(2));
        let again = catch_up(&store, 5, true, false).expect("restart");
        assert!(again.recovered.is_empty(), "the cursors followed");
    }
}
