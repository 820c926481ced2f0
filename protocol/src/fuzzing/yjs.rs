//! Fuzz harness of the Yjs boundary ([`yjs_update`]): arbitrary bytes as a y-websocket frame,
//! a Hocuspocus frame, a Yjs update and an awareness update. Nothing may panic; a frame that
//! decodes re-encodes to the same messages; a refused update or awareness update changes
//! nothing; an accepted update survives a snapshot round trip with the same content (when no
//! update waits for a missing one).

use crate::yjs::frames::{decode_hocuspocus, decode_ywebsocket, HpInbound, SyncMsg};
use crate::yjs::{AwarenessTable, Framing, YApplied, YDocConfig, YDocument, YMessage};
use yrs::updates::encoder::Encode;

/// Limits small enough that the fuzzer reaches them.
fn config() -> YDocConfig {
    YDocConfig {
        max_update_bytes: 1024,
        max_doc_bytes: 4096,
    }
}

/// Re-encodes a decoded message in `framing` (`None` for the Hocuspocus-only ones).
fn reencode(framing: &Framing, m: &YMessage<'_>) -> Option<Vec<u8>> {
    match m {
        YMessage::Sync(SyncMsg::Step1(sv)) => Some(framing.sync_step1(&sv.encode_v1())),
        YMessage::Sync(SyncMsg::Step2(u)) => Some(framing.sync_step2(u)),
        YMessage::Sync(SyncMsg::Update(u)) => Some(framing.update(u)),
        YMessage::Awareness(u) => Some(framing.awareness(u)),
        _ => None,
    }
}

/// Applies `update` to a document holding `base`: a refusal changes nothing, an acceptance
/// survives a snapshot round trip.
fn apply_checked(base: &YDocument, update: &[u8]) {
    let mut d = YDocument::from_snapshot(&base.encode_state(), base.rev(), config())
        .expect("a snapshot of a valid document loads");
    let before = (d.encode_state(), d.rev());
    let would = d.would_change(update);
    match d.apply(update) {
        Ok(applied) if would.is_ok() => {
            let changed = applied != YApplied::Unchanged;
            assert_eq!(would, Ok(changed), "would_change disagrees with apply");
        }
        _ => {}
    }
    let mut d = YDocument::from_snapshot(&before.0, before.1, config()).expect("reloads");
    match d.apply(update) {
        Ok(YApplied::Changed { rev }) => {
            assert_eq!(rev, before.1 + 1, "one revision per change");
            // The content survives a snapshot round trip, unless an update waits for a
            // missing one (the snapshot then carries it unintegrated, and it may integrate
            // when loaded: see `YDocument::has_pending`).
            let again = YDocument::from_snapshot(&d.encode_state(), rev, config())
                .expect("the state of an accepted update loads");
            if !d.has_pending() && !again.has_pending() {
                assert_eq!(
                    again.content(),
                    d.content(),
                    "content after a snapshot round trip"
                );
            }
        }
        Ok(YApplied::Unchanged) => assert_eq!(d.rev(), before.1),
        Err(_) if d.is_poisoned() => {}
        Err(_) => {
            assert_eq!(
                (d.encode_state(), d.rev()),
                before,
                "a refused update changed the document"
            )
        }
    }
}

/// The harness. See the module documentation.
pub fn yjs_update(data: &[u8]) {
    // A document with some content for updates to land on (built once).
    static BASE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let state = BASE.get_or_init(|| {
        let mut d = YDocument::new(config());
        for seed in super::yjs_seed_updates() {
            let _ = d.apply(&seed);
        }
        d.encode_state()
    });
    let base = YDocument::from_snapshot(state, 1, config()).expect("the base loads");
    if let Ok(msgs) = decode_ywebsocket(data) {
        for m in &msgs {
            if let Some(bytes) = reencode(&Framing::YWebsocket, m) {
                let again = decode_ywebsocket(&bytes).expect("a re-encoded message decodes");
                assert_eq!(
                    &again[..],
                    std::slice::from_ref(m),
                    "y-websocket round trip"
                );
            }
            if let YMessage::Sync(SyncMsg::Update(u) | SyncMsg::Step2(u)) = m {
                apply_checked(&base, u);
            }
        }
    }
    if let Ok(HpInbound::Doc { address, msg }) = decode_hocuspocus(data) {
        let framing = Framing::Hocuspocus(address.into());
        if let Some(bytes) = reencode(&framing, &msg) {
            match decode_hocuspocus(&bytes) {
                Ok(HpInbound::Doc { address: a, msg: m }) => {
                    assert_eq!((a, m), (address, msg.clone()), "Hocuspocus round trip")
                }
                other => panic!("a re-encoded Hocuspocus message decodes as {other:?}"),
            }
        }
    }
    apply_checked(&base, data);
    let mut table = AwarenessTable::<u8>::new();
    let before = table.encode_all();
    if table.apply(1, data).is_err() {
        assert_eq!(
            table.encode_all(),
            before,
            "a refused awareness update changed the table"
        );
    }
}
