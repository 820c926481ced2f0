//! Fuzz harnesses (feature `fuzzing`): the bodies of the cargo-fuzz targets in `fuzz/`, kept
//! here so that the regression inputs in `fuzz/regressions/` replay through exactly the same
//! code under a plain `cargo test` (`protocol/tests/fuzz_regressions.rs`).
//!
//! Each harness takes arbitrary bytes, must never panic on them, and panics (with a message
//! naming the broken invariant) when the code under test misbehaves:
//! - [`decode_message`]: client and server frames, MessagePack and JSON. Decoding either fails
//!   with a typed error or yields a message that validates and survives a round trip through
//!   both encodings unchanged.
//! - [`op_apply`]: an op decoded from JSON, MessagePack or built from components, applied to a
//!   text. Canonical form, apply on a string and on a rope agree, invert undoes, and with a
//!   second op: transform converges (TP1) and compose equals applying in sequence.
//! - [`document_submit`]: a sequence of submits, resends, snapshot restores and undo-tail
//!   queries against a [`Document`], checked against a plain model (every text at every
//!   revision) and a replica fed through [`Document::apply_committed`] as the store replay does.
//!   A refused submit changes nothing.
//!
//! - [`yjs_update`] (in `fuzzing/yjs.rs`): the Yjs boundary: frames of both Yjs protocols,
//!   updates and awareness updates.
//!
//! [`seed_inputs`] gives a starting corpus for each target.

use arbitrary::{Result as ArbResult, Unstructured};

use crate::document::{ClientId, Document, DocumentConfig};
use crate::error::{DocError, OtError};
use crate::op::{char_len, transform_position, Component, Op, Side};
use crate::wire::{
    decode_json, decode_msgpack, encode_json, encode_msgpack, ClientMsg, OpMsg, RemoteOp,
    ServerMsg, PROTOCOL_VERSION,
};

mod yjs;
pub use yjs::yjs_update;

/// The fuzz targets, by the name of their file in `fuzz/fuzz_targets/`.
pub const TARGETS: [&str; 4] = [
    "decode_message",
    "op_apply",
    "document_submit",
    "yjs_update",
];

/// Runs the harness of `target` (one of [`TARGETS`]) on `data`.
///
/// # Panics
/// On an unknown target name, and when the harness finds a broken invariant.
pub fn run(target: &str, data: &[u8]) {
    match target {
        "decode_message" => decode_message(data),
        "op_apply" => op_apply(data),
        "document_submit" => document_submit(data),
        "yjs_update" => yjs_update(data),
        other => panic!("unknown fuzz target {other:?}"),
    }
}

/// Decodes `data` as every kind of frame the protocol reads.
pub fn decode_message(data: &[u8]) {
    if let Ok(msg) = ClientMsg::from_msgpack(data) {
        check_client_msg(&msg);
    }
    if let Ok(msg) = ServerMsg::from_msgpack(data) {
        check_server_msg(&msg);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(msg) = ClientMsg::from_json(text) {
            check_client_msg(&msg);
        }
        if let Ok(msg) = ServerMsg::from_json(text) {
            check_server_msg(&msg);
        }
    }
}

fn check_client_msg(msg: &ClientMsg) {
    let packed = encode_msgpack(msg);
    assert_eq!(
        ClientMsg::from_msgpack(&packed).as_ref(),
        Ok(msg),
        "MessagePack round trip"
    );
    assert_eq!(
        ClientMsg::from_json(&encode_json(msg)).as_ref(),
        Ok(msg),
        "JSON round trip"
    );
    if let ClientMsg::Op(m) = msg {
        if let Ok(op) = m.checked_op() {
            check_canonical(&op);
            let again = OpMsg::new(m.doc.clone(), m.rev, m.seq, &op);
            assert_eq!(
                again.checked_op().as_ref(),
                Ok(&op),
                "a checked op re-checks"
            );
        }
    }
}

fn check_server_msg(msg: &ServerMsg) {
    assert_eq!(
        ServerMsg::from_msgpack(&encode_msgpack(msg)).as_ref(),
        Ok(msg),
        "MessagePack round trip"
    );
    assert_eq!(
        ServerMsg::from_json(&encode_json(msg)).as_ref(),
        Ok(msg),
        "JSON round trip"
    );
    if let ServerMsg::Ops { ops, .. } = msg {
        for r in ops {
            check_canonical(&r.op);
        }
    }
}

/// An op is canonical: rebuilding it from its components gives it back, and both encodings
/// decode to it.
fn check_canonical(op: &Op) {
    assert_eq!(
        Op::from_components(op.components().iter().cloned()).as_ref(),
        Ok(op),
        "canonical form is stable"
    );
    for pair in op.components().windows(2) {
        let same_kind = matches!(
            pair,
            [Component::Retain(_), Component::Retain(_)]
                | [Component::Insert(_), Component::Insert(_)]
                | [Component::Delete(_), Component::Delete(_)]
        );
        assert!(!same_kind, "adjacent components of one kind are merged");
    }
    assert!(
        !matches!(op.components().last(), Some(Component::Retain(_))),
        "no trailing retain"
    );
    assert_eq!(Op::from_json(&op.to_json()).as_ref(), Ok(op), "JSON shape");
    assert_eq!(
        decode_msgpack::<Op>(&encode_msgpack(op)).as_ref(),
        Ok(op),
        "MessagePack shape"
    );
}

/// Splits a chunk prefixed by its length (two bytes, little endian) off `data`.
fn chunk(data: &[u8]) -> (&[u8], &[u8]) {
    let (len, rest) = match data {
        [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), rest),
        _ => (0, &[][..]),
    };
    rest.split_at(len.min(rest.len()))
}

/// How [`op_apply`] reads its ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OpEncoding {
    /// Ops as JSON text (`[3, "hi", {"d": 2}]`).
    Json = 0,
    /// Ops as MessagePack.
    MsgPack = 1,
    /// Components drawn from the bytes, sized to the text (any other first byte).
    Structured = 2,
}

/// Builds an [`op_apply`] input from a text and two encoded ops.
pub fn op_apply_input(encoding: OpEncoding, doc: &str, a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = vec![encoding as u8];
    for part in [doc.as_bytes(), a] {
        let len = u16::try_from(part.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&part[..usize::from(len)]);
    }
    out.extend_from_slice(b);
    out
}

/// Decodes up to two ops and a text from `data` and checks the op algebra on them.
pub fn op_apply(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (doc, rest) = chunk(rest);
    let doc = String::from_utf8_lossy(doc);
    let (a, b) = match mode {
        0 | 1 => {
            let (a, b) = chunk(rest);
            let decode = |bytes: &[u8]| -> Option<Op> {
                if mode == 0 {
                    Op::from_json(std::str::from_utf8(bytes).ok()?).ok()
                } else {
                    decode_msgpack::<Op>(bytes).ok()
                }
            };
            (decode(a), decode(b))
        }
        _ => {
            let mut u = Unstructured::new(rest);
            let len = char_len(&doc);
            (
                arbitrary_op(&mut u, len).ok(),
                arbitrary_op(&mut u, len).ok(),
            )
        }
    };
    let Some(a) = a else { return };
    check_op_on(&a, &doc);
    if let Some(b) = b {
        check_op_on(&b, &doc);
        check_pair(&a, &b, &doc);
    }
}

/// An op of random components over a document of `len` characters: mostly fitting, sometimes
/// reaching past the end, sometimes with zero-length components (refused).
fn arbitrary_op(u: &mut Unstructured<'_>, len: usize) -> ArbResult<Op> {
    let n = u.int_in_range(0..=8)?;
    let mut comps = Vec::with_capacity(n);
    let mut left = len;
    for _ in 0..n {
        let overshoot = u.ratio(1, 16)?;
        let kind = u.int_in_range(0..=2)?;
        if kind == 2 || (left == 0 && !overshoot) {
            let s: &str = u.arbitrary()?;
            comps.push(Component::Insert(s.into()));
            continue;
        }
        let k = if overshoot {
            u.int_in_range(0..=left + 3)?
        } else {
            u.int_in_range(1..=left)?
        };
        left = left.saturating_sub(k);
        comps.push(if kind == 0 {
            Component::Retain(k)
        } else {
            Component::Delete(k)
        });
    }
    Op::from_components(comps).map_err(|_| arbitrary::Error::IncorrectFormat)
}

/// Checks one op against one text.
fn check_op_on(op: &Op, doc: &str) {
    check_canonical(op);
    let len = char_len(doc);
    let mut rope = jumprope::JumpRope::from(doc);
    match op.apply_str(doc) {
        Ok(after) => {
            assert_eq!(
                op.fit_len(len),
                Ok(char_len(&after)),
                "fit_len is the result length"
            );
            assert_eq!(op.target_len(len), char_len(&after), "target_len");
            assert_eq!(
                op.len_delta(),
                char_len(&after) as isize - len as isize,
                "len_delta"
            );
            assert!(
                op.base_len() <= len,
                "an op that fits walks over at most the text"
            );
            assert_eq!(
                op.apply_rope(&mut rope),
                Ok(()),
                "rope applies what the string applies"
            );
            assert_eq!(rope.to_string(), after, "rope and string agree");
            let inverse = op.invert(doc).expect("an op that fits inverts");
            assert_eq!(
                inverse.apply_str(&after).as_deref(),
                Ok(doc),
                "invert undoes"
            );
            for cursor in [0, len / 2, len] {
                assert!(
                    transform_position(cursor, op) <= char_len(&after),
                    "a transformed cursor stays inside the text"
                );
            }
        }
        Err(e) => {
            assert!(
                matches!(
                    e,
                    OtError::RetainPastEnd { .. } | OtError::DeletePastEnd { .. }
                ),
                "a valid op fails to apply only by not fitting: {e:?}"
            );
            assert!(
                op.base_len() > len,
                "an op that does not fit walks past the end"
            );
            assert_eq!(op.apply_rope(&mut rope), Err(e), "rope refuses it too");
            assert_eq!(
                rope.to_string(),
                doc,
                "a refused op leaves the rope unchanged"
            );
        }
    }
}

/// Checks transform (TP1) and compose on two ops that both apply to `doc`.
fn check_pair(a: &Op, b: &Op, doc: &str) {
    let (Ok(after_a), Ok(after_b)) = (a.apply_str(doc), b.apply_str(doc)) else {
        return;
    };
    let a2 = a.transform(b, Side::Left);
    let b2 = b.transform(a, Side::Right);
    let ab = b2
        .apply_str(&after_a)
        .expect("b transformed by a applies after a");
    let ba = a2
        .apply_str(&after_b)
        .expect("a transformed by b applies after b");
    assert_eq!(ab, ba, "transform converges (TP1)");
    let composed = a.compose(&b2);
    check_canonical(&composed);
    assert_eq!(
        composed.apply_str(doc).as_deref(),
        Ok(ab.as_str()),
        "compose equals applying in sequence"
    );
    assert_eq!(a.compose(&Op::noop()), *a, "noop is a right identity");
    assert_eq!(Op::noop().compose(a), *a, "noop is a left identity");
    assert_eq!(
        a.transform(&Op::noop(), Side::Left),
        *a,
        "transform by noop"
    );
}

/// Number of distinct clients [`document_submit`] plays.
const FUZZ_CLIENTS: usize = 4;
/// Most actions one [`document_submit`] input runs.
const FUZZ_MAX_ACTIONS: usize = 256;
/// Largest document [`document_submit`] allows, in characters.
const FUZZ_MAX_CHARS: usize = 64;
/// Largest history window [`document_submit`] uses.
const FUZZ_MAX_WINDOW: usize = 12;

/// Plays a sequence of actions against a [`Document`], a replica and a model.
pub fn document_submit(data: &[u8]) {
    let mut u = Unstructured::new(data);
    if let Ok(mut h) = Harness::new(&mut u) {
        let _ = h.play(&mut u);
    }
}

/// The last op the model saw applied for one client.
#[derive(Clone, Debug)]
struct LastOp {
    seq: u64,
    base: u64,
    /// The op as sent (before transformation).
    op: Op,
    /// The revision it produced.
    rev: u64,
}

/// Every text the document had, and what it should retain.
struct Model {
    /// `texts[r]` is the text at revision `r`.
    texts: Vec<String>,
    /// Revision of the last restore from a snapshot (history restarts there).
    restored: u64,
    window: usize,
    clients: Vec<Option<LastOp>>,
    undo_base: Option<u64>,
}

impl Model {
    fn rev(&self) -> u64 {
        self.texts.len() as u64 - 1
    }

    fn text(&self) -> &str {
        &self.texts[self.texts.len() - 1]
    }

    fn oldest_rev(&self) -> u64 {
        self.restored
            .max(self.rev().saturating_sub(self.window.max(1) as u64))
    }

    /// The op written against `base`, transformed against every op applied since, as read back
    /// from the document's retained history (each retained op checked against the model's
    /// texts); `None` when `base` is not retained.
    fn transformed(&self, op: &Op, base: u64, doc: &Document) -> Option<Op> {
        let ops = doc.ops_since(base).ok()?;
        let mut out = op.clone();
        let mut text = self.texts[base as usize].clone();
        for (r, applied) in ops {
            text = applied
                .op
                .apply_str(&text)
                .expect("a retained op fits its revision");
            assert_eq!(
                text, self.texts[r as usize],
                "retained op {r} produces its text"
            );
            out = out.transform(applied.op, Side::Left);
        }
        Some(out)
    }
}

/// The document under test, a replica fed the applied ops, and the model.
struct Harness {
    config: DocumentConfig,
    doc: Document,
    replica: Document,
    model: Model,
    ids: Vec<ClientId>,
    /// True when the exactly-once table may forget clients (fewer slots than clients).
    trims: bool,
}

impl Harness {
    fn new(u: &mut Unstructured<'_>) -> ArbResult<Self> {
        let config = DocumentConfig {
            history_window: u.int_in_range(0..=FUZZ_MAX_WINDOW)?,
            max_chars: u.int_in_range(0..=FUZZ_MAX_CHARS)?,
            max_clients: u.int_in_range(1..=FUZZ_CLIENTS + 1)?,
            rope_seed: Some(0),
        };
        Ok(Harness {
            doc: Document::new(config.clone()),
            replica: Document::new(config.clone()),
            model: Model {
                texts: vec![String::new()],
                restored: 0,
                window: config.history_window,
                clients: vec![None; FUZZ_CLIENTS],
                undo_base: None,
            },
            ids: (0..FUZZ_CLIENTS)
                .map(|i| ClientId::from(format!("c{i}")))
                .collect(),
            trims: config.max_clients < FUZZ_CLIENTS,
            config,
        })
    }

    fn play(&mut self, u: &mut Unstructured<'_>) -> ArbResult<()> {
        for _ in 0..FUZZ_MAX_ACTIONS {
            if u.is_empty() {
                break;
            }
            let rev = self.model.rev();
            match u.int_in_range(0..=9)? {
                0..=5 => {
                    let c = u.choose_index(FUZZ_CLIENTS)?;
                    let base = match u.int_in_range(0..=7)? {
                        0 => rev + u.int_in_range(1..=3)?,
                        1 => u.int_in_range(0..=rev)?,
                        _ => rev - u.int_in_range(0..=rev.min(3))?,
                    };
                    let len = self
                        .model
                        .texts
                        .get(base as usize)
                        .map_or(0, |t| char_len(t));
                    let op = arbitrary_op(u, len).unwrap_or_default();
                    let last = self.model.clients[c].as_ref().map_or(0, |l| l.seq);
                    let seq = match u.int_in_range(0..=5)? {
                        0 => last,
                        1 => last.saturating_sub(1),
                        2 => last + u.int_in_range(2..=5)?,
                        _ => last + 1,
                    };
                    self.submit(c, seq, base, op);
                }
                6 => {
                    let c = u.choose_index(FUZZ_CLIENTS)?;
                    if let Some(l) = self.model.clients[c].clone() {
                        self.submit(c, l.seq, l.base, l.op);
                    }
                }
                7 => {
                    let snapshot = self.doc.snapshot();
                    self.doc = Document::from_snapshot(snapshot.clone(), self.config.clone());
                    assert_eq!(self.doc.snapshot(), snapshot, "a snapshot restores exactly");
                    self.model.restored = rev;
                    self.model.undo_base = None;
                }
                8 => {
                    if u.ratio(1, 2)? {
                        self.doc.track_undo();
                        self.model.undo_base = Some(rev);
                    } else {
                        let to = u.int_in_range(0..=rev + 1)?;
                        self.doc.release_undo(to);
                        if let Some(base) = self.model.undo_base.as_mut() {
                            *base = (*base).max(to.min(rev));
                        }
                    }
                }
                _ => {
                    let at = u.int_in_range(0..=rev + 1)?;
                    check_views(&self.doc, &self.model, at);
                }
            }
            let (doc, model) = (&self.doc, &self.model);
            assert_eq!(doc.rev(), model.rev(), "revision");
            assert_eq!(doc.text(), model.text(), "text");
            assert_eq!(
                self.replica.text(),
                doc.text(),
                "the replayed replica agrees"
            );
            assert_eq!(
                doc.oldest_rev(),
                model.oldest_rev(),
                "oldest retained revision"
            );
        }
        Ok(())
    }

    /// Submits one op and checks the outcome against the model.
    fn submit(&mut self, c: usize, seq: u64, base: u64, op: Op) {
        let id = &self.ids[c];
        let before = self.doc.snapshot();
        let known = self.doc.client(id);
        if !self.trims {
            assert_eq!(
                known.map(|r| (r.seq, r.rev)),
                self.model.clients[c].as_ref().map(|l| (l.seq, l.rev)),
                "exactly-once state (no client forgotten)"
            );
        }
        let rev = self.model.rev();
        let expected = self.model.transformed(&op, base, &self.doc);
        let fits_base = self
            .model
            .texts
            .get(base as usize)
            .is_some_and(|t| op.check_fits(char_len(t)).is_ok());
        match self.doc.submit(id, seq, base, op.clone()) {
            Ok(s) if s.duplicate => {
                let rec = known.expect("a duplicate comes from a known client");
                assert_eq!(seq, rec.seq, "a duplicate repeats the last seq");
                assert_eq!(s.rev, rec.rev, "a duplicate answers the original revision");
                assert_eq!(self.doc.snapshot(), before, "a duplicate changes nothing");
            }
            Ok(s) => {
                assert!(
                    known.is_none_or(|r| seq > r.seq),
                    "a fresh op has a fresh seq"
                );
                assert_eq!(s.rev, rev + 1, "a fresh op makes the next revision");
                let applied = s.op.expect("a fresh op is returned").clone();
                assert_eq!(
                    Some(&applied),
                    expected.as_ref(),
                    "the op is transformed against what followed its base"
                );
                let next = applied
                    .apply_str(self.model.text())
                    .expect("the applied op fits the text before it");
                let (len, max) = (char_len(&next), self.config.max_chars);
                assert!(
                    len <= max || len <= char_len(self.model.text()),
                    "the size limit holds unless the op shrinks the text"
                );
                self.replica
                    .apply_committed(s.rev, id, seq, applied.clone())
                    .expect("the replica replays the applied op");
                assert!(
                    matches!(
                        self.replica.apply_committed(s.rev, id, seq, applied),
                        Err(DocError::FutureRevision { .. })
                    ),
                    "a replayed revision applies once"
                );
                self.model.texts.push(next);
                self.model.clients[c] = Some(LastOp {
                    seq,
                    base,
                    op,
                    rev: rev + 1,
                });
            }
            Err(e) => {
                assert_eq!(
                    self.doc.snapshot(),
                    before,
                    "a refused submit changes nothing: {e:?}"
                );
                self.check_refusal(&e, c, known.map(|r| r.seq), seq, base, &op, fits_base);
            }
        }
    }

    /// Checks that a refusal has its reason.
    #[allow(clippy::too_many_arguments)]
    fn check_refusal(
        &self,
        e: &DocError,
        c: usize,
        known_seq: Option<u64>,
        seq: u64,
        base: u64,
        op: &Op,
        fits_base: bool,
    ) {
        let rev = self.model.rev();
        match e {
            DocError::FutureRevision { .. } => assert!(base > rev, "{e:?}"),
            DocError::RevisionTooOld { .. } => assert!(base < self.model.oldest_rev(), "{e:?}"),
            DocError::StaleSeq { last, .. } => {
                assert!(known_seq == Some(*last) && seq < *last, "{e:?}")
            }
            DocError::SeqReused { .. } => {
                assert_eq!(known_seq, Some(seq), "{e:?}");
                let exact = self.model.clients[c]
                    .as_ref()
                    .is_some_and(|l| l.seq == seq && l.base == base && l.op == *op);
                assert!(!exact, "an exact resend is never refused as reused");
            }
            DocError::TooLarge { len, max } => assert!(len > max, "{e:?}"),
            DocError::Ot(_) => assert!(!fits_base, "an op that fits its base is refused: {e:?}"),
        }
    }
}

/// Checks the read views of the document at `rev`: the undo tail and the retained ops.
fn check_views(doc: &Document, model: &Model, rev: u64) {
    match doc.text_at(rev) {
        Ok(text) => {
            assert_eq!(text, model.texts[rev as usize], "text_at({rev})");
            assert!(
                rev == model.rev() || model.undo_base.is_some_and(|b| rev >= b),
                "text_at({rev}) only within the undo tail"
            );
        }
        Err(DocError::FutureRevision { .. }) => assert!(rev > model.rev()),
        Err(DocError::RevisionTooOld { .. }) => {
            assert!(model.undo_base.is_none_or(|b| rev < b) && rev < model.rev())
        }
        Err(e) => panic!("text_at({rev}): {e:?}"),
    }
    match doc.ops_since(rev) {
        Ok(ops) => {
            assert!(rev >= model.oldest_rev() && rev <= model.rev());
            assert_eq!(
                ops.len() as u64,
                model.rev() - rev,
                "ops_since({rev}) length"
            );
            let mut text = model.texts[rev as usize].clone();
            for (next, (r, applied)) in (rev + 1..).zip(ops) {
                assert_eq!(r, next, "ops_since numbers consecutive revisions");
                text = applied.op.apply_str(&text).expect("a retained op fits");
                assert_eq!(
                    text, model.texts[r as usize],
                    "retained op {r} leads to its text"
                );
            }
            if let Ok(len) = doc.len_at(rev) {
                assert_eq!(len, char_len(&model.texts[rev as usize]), "len_at({rev})");
            }
        }
        Err(DocError::FutureRevision { .. }) => assert!(rev > model.rev()),
        Err(DocError::RevisionTooOld { .. }) => assert!(rev < model.oldest_rev()),
        Err(e) => panic!("ops_since({rev}): {e:?}"),
    }
}

/// A starting corpus for `target`: typical valid inputs the fuzzer mutates from.
pub fn seed_inputs(target: &str) -> Vec<Vec<u8>> {
    match target {
        "decode_message" => message_seeds(),
        "op_apply" => op_seeds(),
        "yjs_update" => yjs_seeds(),
        _ => (0u8..16)
            .map(|i| {
                (0..512u32)
                    .map(|j| (j * 31 + u32::from(i) * 7) as u8)
                    .collect()
            })
            .collect(),
    }
}

/// Updates of a client typing into a `Y.Text`, a `Y.Map` and a `Y.XmlFragment`.
fn yjs_seed_updates() -> Vec<Vec<u8>> {
    use yrs::{Map, ReadTxn, Text, Transact, WriteTxn, XmlElementPrelim, XmlFragment};
    let doc = yrs::Doc::with_client_id(42);
    let mut out = Vec::new();
    for i in 0..4u32 {
        let sv = doc.transact().state_vector();
        {
            let mut txn = doc.transact_mut();
            let t = txn.get_or_insert_text("text");
            t.insert(&mut txn, 0, &format!("é{i}😅"));
            txn.get_or_insert_map("map")
                .insert(&mut txn, format!("k{i}"), i);
            let x = txn.get_or_insert_xml_fragment("prosemirror");
            x.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
            if i == 2 {
                t.remove_range(&mut txn, 0, 2);
            }
        }
        out.push(doc.transact().encode_state_as_update_v1(&sv));
    }
    out
}

fn yjs_seeds() -> Vec<Vec<u8>> {
    use crate::yjs::Framing;
    let updates = yjs_seed_updates();
    let mut out = updates.clone();
    for (i, u) in updates.iter().enumerate() {
        out.push(Framing::YWebsocket.update(u));
        out.push(Framing::YWebsocket.sync_step2(u));
        out.push(Framing::Hocuspocus(format!("doc{i}").into()).update(u));
    }
    out.push(Framing::YWebsocket.sync_step1(&[1, 42, 3]));
    out.push(Framing::YWebsocket.awareness(&[1, 7, 1, 2, b'{', b'}']));
    out.push(vec![1, 7, 1, 2, b'{', b'}']);
    out
}

fn message_seeds() -> Vec<Vec<u8>> {
    let op = Op::from_components([
        Component::Retain(3),
        Component::Insert("héllo 😅".into()),
        Component::Delete(2),
    ])
    .unwrap_or_default();
    let client = vec![
        ClientMsg::Hello {
            v: PROTOCOL_VERSION,
            client: Some("c1".into()),
            token: Some("a.b.c".into()),
            user: None,
        },
        ClientMsg::Join {
            doc: "acme:notes".into(),
            rev: Some(4),
        },
        ClientMsg::Op(OpMsg {
            t: Some(17),
            ..OpMsg::new("notes", 4, 1, &op)
        }),
        ClientMsg::Presence {
            doc: "notes".into(),
            rev: 5,
            sel: vec![(1, 4), (7, 7)],
        },
        ClientMsg::Leave {
            doc: "notes".into(),
        },
        ClientMsg::Ping { t: 9 },
        ClientMsg::Auth {
            token: "a.b.c".into(),
        },
    ];
    let server = vec![
        ServerMsg::Welcome {
            v: PROTOCOL_VERSION,
            client: "c1".into(),
            sub: Some("alice".into()),
            exp: Some(1_900_000_000),
            now: Some(1_899_999_000),
        },
        ServerMsg::Snapshot {
            doc: "notes".into(),
            rev: 3,
            text: "abc".into(),
            access: Some(crate::Access {
                role: crate::Role::Viewer,
                sub: Some("alice".into()),
            }),
        },
        ServerMsg::Authed {
            sub: Some("alice".into()),
            exp: Some(1_900_000_600),
            now: Some(1_900_000_000),
            roles: vec![crate::DocRole {
                doc: "notes".into(),
                role: crate::Role::Editor,
            }],
        },
        ServerMsg::Ops {
            doc: "notes".into(),
            ops: vec![RemoteOp {
                rev: 4,
                client: "c2".into(),
                seq: 2,
                op,
                t: None,
            }],
            access: None,
        },
        ServerMsg::error(crate::error::ErrorCode::StaleSeq, "stale"),
    ];
    let mut out = Vec::new();
    for m in &client {
        out.push(encode_msgpack(m));
        out.push(encode_json(m).into_bytes());
    }
    for m in &server {
        out.push(encode_msgpack(m));
        out.push(encode_json(m).into_bytes());
    }
    out
}

fn op_seeds() -> Vec<Vec<u8>> {
    let doc = "héllo wörld 😅 日本";
    let ops = [
        r#"[3, "abc", {"d": 2}]"#,
        r#"["😅", 4, {"d": 1}, "x"]"#,
        r#"[{"d": 5}]"#,
        r#"[16, "!"]"#,
    ];
    let mut out = Vec::new();
    for a in ops {
        for b in ops {
            out.push(op_apply_input(
                OpEncoding::Json,
                doc,
                a.as_bytes(),
                b.as_bytes(),
            ));
            if let (Ok(x), Ok(y)) = (decode_json::<Op>(a), decode_json::<Op>(b)) {
                out.push(op_apply_input(
                    OpEncoding::MsgPack,
                    doc,
                    &encode_msgpack(&x),
                    &encode_msgpack(&y),
                ));
            }
        }
    }
    out.push(op_apply_input(OpEncoding::Structured, doc, &[7; 40], &[]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_pass_every_harness() {
        for target in TARGETS {
            let seeds = seed_inputs(target);
            assert!(!seeds.is_empty(), "{target} has seeds");
            for s in seeds {
                run(target, &s);
            }
        }
    }

    #[test]
    fn chunk_reads_a_length_prefix() {
        assert_eq!(chunk(&[2, 0, b'a', b'b', b'c']), (&b"ab"[..], &b"c"[..]));
        assert_eq!(chunk(&[9, 0, b'a']), (&b"a"[..], &b""[..]));
        assert_eq!(chunk(&[1]), (&b""[..], &b""[..]));
    }
}
