//! In-process tests of the Yjs document actor (`YDocActor`) through the registry, with
//! recording sessions that keep the raw frames: updates are relayed and acknowledged only once
//! durable, viewers and bad updates change nothing, awareness is relayed and cleared, the kind
//! of a document is fixed, and a document reloads as stored.

use std::sync::{Arc, Mutex};

use actix::prelude::*;
use bytes::Bytes;
use coedit_protocol::yjs::frames::{decode_hocuspocus, decode_ywebsocket, HpInbound, SyncMsg};
use coedit_protocol::yjs::{Framing, YMessage};
use coedit_protocol::{DocKind, ErrorCode, Op};
use yrs::updates::decoder::Decode;
use yrs::{GetString, ReadTxn, StateVector, Text, Transact, Update, WriteTxn};

use super::{join, submit, wait_until, Peer, Rig, RECORDER_MAX_BYTES};
use crate::document::{DocActor, Shutdown};
use crate::errors::ActorError;
use crate::frame::Frame;
use crate::outbox::{Outbound, Outbox};
use crate::registry::{call_kind, KindActor, OpenDoc};
use crate::storage::Store;
use crate::ydoc::{YAwareness, YDocActor, YJoin, YLeave, YRead, YReadWhat, YSyncStep1, YUpdate};
use crate::SessionId;

/// Records raw frames (and close codes) sent to a Yjs session.
struct YRecorder {
    seen: Arc<Mutex<Vec<Frame>>>,
}

impl Actor for YRecorder {
    type Context = Context<Self>;
}

impl Handler<Outbound> for YRecorder {
    type Result = ();

    fn handle(&mut self, m: Outbound, _: &mut Self::Context) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.extend(m.frames.iter().cloned());
    }
}

/// A Yjs session stand-in.
struct YPeer {
    session: SessionId,
    framing: Framing,
    out: Outbox,
    seen: Arc<Mutex<Vec<Frame>>>,
}

impl YPeer {
    fn new(session: SessionId, framing: Framing) -> YPeer {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let addr = YRecorder { seen: seen.clone() }.start();
        YPeer {
            session,
            framing,
            out: Outbox::new(addr.recipient(), RECORDER_MAX_BYTES),
            seen,
        }
    }

    fn join(&self, readonly: bool) -> YJoin {
        YJoin {
            session: self.session,
            framing: self.framing.clone(),
            readonly,
            out: self.out.clone(),
        }
    }

    fn update(&self, u: &[u8]) -> YUpdate {
        YUpdate {
            session: self.session,
            client: Arc::from(format!("c{}", self.session)),
            update: Bytes::copy_from_slice(u),
            subject: None,
        }
    }

    /// Every message received, decoded (owned copies of the payloads).
    fn messages(&self) -> Vec<Received> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for f in seen.iter() {
            match f {
                Frame::Binary(b) => match &self.framing {
                    Framing::YWebsocket => {
                        for m in decode_ywebsocket(b).expect("the server's frame decodes") {
                            out.push(Received::from(m));
                        }
                    }
                    Framing::Hocuspocus(_) => {
                        if b.len() >= 3 && b[b.len() - 2] == 8 {
                            out.push(Received::Status(b[b.len() - 1]));
                            continue;
                        }
                        match decode_hocuspocus(b) {
                            Ok(HpInbound::Doc { msg, .. }) => out.push(Received::from(msg)),
                            other => panic!("unexpected frame {other:?}"),
                        }
                    }
                },
                Frame::Close(code, _) => out.push(Received::Close(*code)),
                Frame::Text(_) => panic!("Yjs sessions get binary frames"),
            }
        }
        out
    }

    fn updates(&self) -> Vec<Vec<u8>> {
        self.messages()
            .into_iter()
            .filter_map(|m| match m {
                Received::Update(u) => Some(u),
                _ => None,
            })
            .collect()
    }
}

/// A message a peer received.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Received {
    Step1,
    Step2(Vec<u8>),
    Update(Vec<u8>),
    Awareness(Vec<u8>),
    Status(u8),
    Other,
    Close(u16),
}

impl From<YMessage<'_>> for Received {
    fn from(m: YMessage<'_>) -> Self {
        match m {
            YMessage::Sync(SyncMsg::Step1(_)) => Received::Step1,
            YMessage::Sync(SyncMsg::Step2(u)) => Received::Step2(u.to_vec()),
            YMessage::Sync(SyncMsg::Update(u)) => Received::Update(u.to_vec()),
            YMessage::Awareness(u) => Received::Awareness(u.to_vec()),
            _ => Received::Other,
        }
    }
}

/// A client editing a `Y.Text`: each call returns the update of one insertion.
struct Client(yrs::Doc);

impl Client {
    fn new(id: u64) -> Client {
        Client(yrs::Doc::with_client_id(id))
    }

    fn type_text(&self, s: &str) -> Vec<u8> {
        let t = self.0.get_or_insert_text("text");
        let sv = self.0.transact().state_vector();
        let len = t.len(&self.0.transact());
        t.insert(&mut self.0.transact_mut(), len, s);
        self.0.transact().encode_state_as_update_v1(&sv)
    }
}

async fn open_y(rig: &Rig, id: &str) -> Addr<YDocActor> {
    let open = OpenDoc {
        kind: DocKind::Yjs,
        id: id.into(),
        name: id.into(),
        create: true,
    };
    let addr = rig
        .registry
        .send(open)
        .await
        .expect("registry")
        .expect("opens");
    YDocActor::addr_of(addr).expect("a Yjs document")
}

async fn content(doc: &Addr<YDocActor>) -> (u64, serde_json::Value) {
    let s = doc
        .send(YRead {
            what: YReadWhat::Content,
        })
        .await
        .expect("actor runs")
        .expect("read");
    (s.rev, s.content.expect("content"))
}

/// Invariant (durability): an update reaches the other subscribers, and its Hocuspocus author
/// hears `SyncStatus(1)`, only once the store flushed it; the author never gets it echoed.
#[actix::test]
async fn updates_are_relayed_and_acknowledged_only_once_durable() {
    let rig = Rig::new();
    let doc = open_y(&rig, "y").await;
    let h = YPeer::new(1, Framing::Hocuspocus(Arc::from("y")));
    let w = YPeer::new(2, Framing::YWebsocket);
    doc.send(h.join(false)).await.unwrap().unwrap();
    doc.send(w.join(false)).await.unwrap().unwrap();
    rig.settle_y(&doc).await;
    assert_eq!(w.messages(), vec![Received::Step1]);
    rig.store.hold();
    let u = Client::new(10).type_text("hello");
    doc.send(h.update(&u)).await.unwrap().unwrap();
    rig.all_written().await;
    assert!(w.updates().is_empty(), "nothing relayed before the flush");
    assert!(!h.messages().contains(&Received::Status(1)));
    rig.store.open();
    rig.settle_y(&doc).await;
    wait_until("the update relayed", || w.updates().len() == 1).await;
    assert_eq!(w.updates()[0], u);
    wait_until("SyncStatus(1)", || {
        h.messages().contains(&Received::Status(1))
    })
    .await;
    assert!(
        h.updates().is_empty(),
        "the author does not get its own update"
    );
    assert_eq!(content(&doc).await.1["text"], "hello");
}

impl Rig {
    /// [`Rig::settle`] for a Yjs document.
    async fn settle_y(&self, doc: &Addr<YDocActor>) {
        let _ = doc.send(YLeave { session: 0 }).await;
        self.writer
            .send(crate::store_actor::FlushNow)
            .await
            .expect("store actor runs");
        let _ = doc.send(YLeave { session: 0 }).await;
    }
}

/// Invariant (viewers): a viewer syncs, but an update of its that would change the document is
/// refused (`ReadOnly`), never applied nor relayed; one that adds nothing is acknowledged.
#[actix::test]
async fn a_viewers_changes_are_refused_and_its_no_ops_acknowledged() {
    let rig = Rig::new();
    let doc = open_y(&rig, "v").await;
    let editor = YPeer::new(1, Framing::YWebsocket);
    let viewer = YPeer::new(2, Framing::Hocuspocus(Arc::from("v")));
    doc.send(editor.join(false)).await.unwrap().unwrap();
    doc.send(viewer.join(true)).await.unwrap().unwrap();
    let c = Client::new(5);
    doc.send(editor.update(&c.type_text("ab")))
        .await
        .unwrap()
        .unwrap();
    rig.settle_y(&doc).await;
    let vc = Client::new(6);
    let r = doc.send(viewer.update(&vc.type_text("x"))).await.unwrap();
    assert_eq!(r.map_err(|e| e.code()), Err(ErrorCode::ReadOnly));
    // The viewer re-sending what it received adds nothing: acknowledged.
    let known =
        c.0.transact()
            .encode_state_as_update_v1(&StateVector::default());
    doc.send(viewer.update(&known)).await.unwrap().unwrap();
    rig.settle_y(&doc).await;
    let (rev, text) = content(&doc).await;
    assert_eq!((rev, text["text"].as_str()), (1, Some("ab")));
    assert!(editor.updates().is_empty());
    wait_until("the no-op acknowledged", || {
        viewer.messages().contains(&Received::Status(1))
    })
    .await;
}

/// Invariant (bad input): an update that does not decode is `InvalidUpdate` and changes
/// nothing; the document and the session go on.
#[actix::test]
async fn an_invalid_update_changes_nothing() {
    let rig = Rig::new();
    let doc = open_y(&rig, "bad").await;
    let p = YPeer::new(1, Framing::YWebsocket);
    doc.send(p.join(false)).await.unwrap().unwrap();
    for garbage in [&b"\x05\x01"[..], &[0xff; 40][..], &b""[..]] {
        let r = doc.send(p.update(garbage)).await.unwrap();
        if !garbage.is_empty() {
            assert_eq!(r.map_err(|e| e.code()), Err(ErrorCode::InvalidUpdate));
        }
    }
    let c = Client::new(3);
    doc.send(p.update(&c.type_text("ok")))
        .await
        .unwrap()
        .unwrap();
    rig.settle_y(&doc).await;
    assert_eq!(content(&doc).await, (1, serde_json::json!({"text": "ok"})));
}

/// Invariant (awareness): an awareness update is relayed to every subscriber (its sender
/// too); when its session leaves, its state is cleared for the others; a malformed one is
/// refused.
#[actix::test]
async fn awareness_is_relayed_and_cleared_when_its_session_leaves() {
    let rig = Rig::new();
    let doc = open_y(&rig, "aw").await;
    let a = YPeer::new(1, Framing::YWebsocket);
    let b = YPeer::new(2, Framing::YWebsocket);
    doc.send(a.join(false)).await.unwrap().unwrap();
    doc.send(b.join(false)).await.unwrap().unwrap();
    // One entry: client 77, clock 1, state {"u":1}.
    let update = [1, 77, 1, 7, b'{', b'"', b'u', b'"', b':', b'1', b'}'];
    doc.send(YAwareness {
        session: 1,
        update: Bytes::copy_from_slice(&update),
    })
    .await
    .unwrap()
    .unwrap();
    let bad = doc
        .send(YAwareness {
            session: 1,
            update: Bytes::from_static(&[9, 9]),
        })
        .await
        .unwrap();
    assert_eq!(bad.map_err(|e| e.code()), Err(ErrorCode::InvalidUpdate));
    doc.send(YLeave { session: 1 }).await.unwrap();
    let _ = doc.send(YLeave { session: 0 }).await;
    let aw: Vec<Vec<u8>> = b
        .messages()
        .into_iter()
        .filter_map(|m| match m {
            Received::Awareness(u) => Some(u),
            _ => None,
        })
        .collect();
    assert_eq!(aw.len(), 2, "{aw:?}");
    assert_eq!(aw[0], update);
    // The clearing: client 77, clock 2, "null".
    assert_eq!(aw[1], [1, 77, 2, 4, b'n', b'u', b'l', b'l']);
    // The sender heard its own update (once: nothing after it left).
    let echoed = a
        .messages()
        .into_iter()
        .filter(|m| matches!(m, Received::Awareness(_)))
        .count();
    assert_eq!(echoed, 1);
}

/// Invariant (one namespace): a text document is refused as Yjs and a Yjs document as text,
/// whether loading or open.
#[actix::test]
async fn the_kind_of_a_document_is_fixed() {
    let rig = Rig::new();
    let t = rig.open("t");
    let p = Peer::new(1, "p");
    join(&t, &p, None).await;
    submit(&t, p.submit(1, 0, Op::insert_at(0, "x")))
        .await
        .unwrap();
    rig.settle(&t).await;
    t.send(Shutdown).await.unwrap();
    let as_yjs = rig
        .registry
        .send(OpenDoc {
            kind: DocKind::Yjs,
            id: "t".into(),
            name: "t".into(),
            create: true,
        })
        .await
        .unwrap();
    assert!(
        matches!(
            as_yjs,
            Err(ActorError::WrongKind {
                kind: DocKind::Text,
                ..
            })
        ),
        "{as_yjs:?}"
    );
    let y = open_y(&rig, "y").await;
    let as_text = call_kind::<DocActor, _, _>(
        &rig.registry,
        OpenDoc {
            kind: DocKind::Text,
            id: "y".into(),
            name: "y".into(),
            create: true,
        },
        || crate::document::GetText { rev: None },
    )
    .await;
    assert!(matches!(
        as_text,
        Err(ActorError::WrongKind {
            kind: DocKind::Yjs,
            ..
        })
    ));
    drop(y);
}

/// Invariant (storage): a Yjs document reloads as stored: snapshot every N updates, the
/// updates after it replayed; a sync step 2 answers what a client lacks.
#[actix::test]
async fn a_document_reloads_from_its_snapshot_and_updates() {
    let rig = Rig::with(super::RigOptions {
        config: crate::document::DocActorConfig {
            snapshot_every: 2,
            ..super::test_config()
        },
        ..super::RigOptions::default()
    });
    let doc = open_y(&rig, "r").await;
    let p = YPeer::new(1, Framing::YWebsocket);
    doc.send(p.join(false)).await.unwrap().unwrap();
    let c = Client::new(4);
    for piece in ["a", "b", "c"] {
        doc.send(p.update(&c.type_text(piece)))
            .await
            .unwrap()
            .unwrap();
    }
    rig.settle_y(&doc).await;
    doc.send(Shutdown).await.unwrap();
    let loaded = rig.store.load_y("r").expect("loads");
    assert_eq!(loaded.snapshot.as_ref().map(|s| s.rev), Some(3));
    let doc = open_y(&rig, "r").await;
    assert_eq!(content(&doc).await, (3, serde_json::json!({"text": "abc"})));
    // A client that has only "a" gets the rest in step 2.
    let late = Client::new(9);
    let first = rig.store.y_at("r", 1).expect("reads").expect("retained");
    let sv = StateVector::decode_v1(&first.state_vector()).unwrap();
    let q = YPeer::new(2, Framing::YWebsocket);
    doc.send(q.join(false)).await.unwrap().unwrap();
    doc.send(YSyncStep1 { session: 2, sv })
        .await
        .unwrap()
        .unwrap();
    let _ = doc.send(YLeave { session: 0 }).await;
    let step2 = q
        .messages()
        .into_iter()
        .find_map(|m| match m {
            Received::Step2(u) => Some(u),
            _ => None,
        })
        .expect("a step 2");
    let mut txn = late.0.transact_mut();
    txn.apply_update(Update::decode_v1(&first.encode_state()).unwrap())
        .unwrap();
    txn.apply_update(Update::decode_v1(&step2).unwrap())
        .unwrap();
    let text = txn.get_or_insert_text("text").get_string(&txn);
    assert_eq!(text, "abc");
}
