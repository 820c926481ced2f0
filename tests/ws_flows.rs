//! Protocol flows over real WebSockets against the real binary: join (snapshot and catch-up),
//! op → ack and remote op, exactly-once resend, presence transform and cleanup, REST edits
//! reaching WebSocket clients, idle unload and reload, graceful shutdown (bad input:
//! `bad_input.rs`).

mod common;

use std::time::Duration;

use coedit_protocol::wire::{encode_json, encode_msgpack};
use coedit_protocol::{ClientMsg, ErrorCode, Op, OpMsg, ServerMsg, PROTOCOL_VERSION};
use common::{
    connect_and_join, connect_raw, http, read_msg, server_doc, start_server, start_server_with,
    Incoming, TestClient,
};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

/// Silence after which a test takes it that nothing more is coming (only where a test collects
/// everything a request produced; specific expectations wait with `pump_until`).
const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn join_gets_snapshot_or_catch_up() -> anyhow::Result<()> {
    let srv = start_server();
    let mut a = TestClient::join(&srv.ws_url(), "flows", None, true).await?;
    a.edit(Op::insert_at(0, "hello")).await?;
    a.settle().await?;
    a.edit(Op::insert_at(5, " wörld 😅")).await?;
    a.settle().await?;
    assert_eq!(a.ot.rev(), 2);

    // No revision: a snapshot.
    let b = TestClient::join(&srv.ws_url(), "flows", None, false).await?;
    assert_eq!((b.text.as_str(), b.ot.rev()), ("hello wörld 😅", 2));

    // A known revision: exactly the missed ops.
    let mut ws = connect_raw(&srv.ws_url()).await?;
    for m in [
        ClientMsg::Hello {
            v: PROTOCOL_VERSION,
            client: None,
            token: None,
            user: None,
        },
        ClientMsg::Join {
            doc: "flows".into(),
            rev: Some(1),
        },
    ] {
        ws.send(Message::Text(encode_json(&m).into())).await?;
    }
    let mut got = Vec::new();
    while let Incoming::Msg(m) = read_msg(&mut ws, QUIET).await? {
        got.push(m);
    }
    assert!(matches!(&got[0], ServerMsg::Welcome { .. }));
    match &got[1] {
        ServerMsg::Ops { ops, .. } => {
            assert_eq!(ops.len(), 1);
            assert_eq!(
                (ops[0].rev, &ops[0].op),
                (2, &Op::insert_at(5, " wörld 😅"))
            );
        }
        other => panic!("expected catch-up ops, got {other:?}"),
    }
    Ok(())
}

/// Joins with `rev` on a fresh connection and returns the join's answer.
async fn join_answer(url: &str, doc: &str, rev: u64) -> anyhow::Result<ServerMsg> {
    let mut ws = connect_and_join(url, doc, Some(rev)).await?;
    read_msg(&mut ws, QUIET).await?;
    match read_msg(&mut ws, QUIET).await? {
        Incoming::Msg(m) => Ok(m),
        other => anyhow::bail!("no answer to join: {other:?}"),
    }
}

#[tokio::test]
async fn join_behind_memory_catches_up_from_log_or_gets_snapshot() -> anyhow::Result<()> {
    // Two ops in memory; the whole log on disk.
    let srv = start_server_with("[document]\nhistory_window = 2\n");
    let mut a = TestClient::join(&srv.ws_url(), "w", None, true).await?;
    for i in 0..5 {
        a.edit(Op::insert_at(i, "x")).await?;
        a.settle().await?;
    }
    match join_answer(&srv.ws_url(), "w", 1).await? {
        ServerMsg::Ops { ops, .. } => {
            assert_eq!(
                ops.iter().map(|o| o.rev).collect::<Vec<_>>(),
                vec![2, 3, 4, 5]
            );
        }
        other => panic!("expected catch-up from the log, got {other:?}"),
    }
    // Snapshot every 2 ops, keep no ops before the latest snapshot: revision 1 is gone.
    let srv = start_server_with(
        "[document]\nhistory_window = 2\n[storage]\nsnapshot_every_ops = 2\nretain_ops = 0\n",
    );
    let mut a = TestClient::join(&srv.ws_url(), "w", None, true).await?;
    for i in 0..5 {
        a.edit(Op::insert_at(i, "x")).await?;
        a.settle().await?;
    }
    match join_answer(&srv.ws_url(), "w", 1).await? {
        ServerMsg::Snapshot { rev, text, .. } => assert_eq!((rev, text.as_str()), (5, "xxxxx")),
        other => panic!("expected a snapshot, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn op_is_acked_to_author_and_sent_to_others() -> anyhow::Result<()> {
    let srv = start_server();
    let mut a = TestClient::join(&srv.ws_url(), "ack", None, true).await?;
    let mut b = TestClient::join(&srv.ws_url(), "ack", None, false).await?;
    a.edit(Op::insert_at(0, "中文 text")).await?;
    a.settle().await?;
    assert_eq!(a.own_acks, vec![(1, 1)]);
    assert!(a.ot.is_synchronized());
    b.pump_until(|c| c.text == "中文 text").await?;
    assert!(b.own_acks.is_empty());
    // Concurrent edits at the same place converge.
    a.edit(Op::insert_at(0, "A")).await?;
    b.edit(Op::insert_at(0, "B")).await?;
    a.settle().await?;
    b.settle().await?;
    let (text, rev) = server_doc(srv.addr, "ack");
    a.pump_until(|c| c.ot.rev() == rev).await?;
    b.pump_until(|c| c.ot.rev() == rev).await?;
    assert_eq!(
        (a.text.as_str(), b.text.as_str()),
        (text.as_str(), text.as_str())
    );
    assert_eq!(rev, 3);
    Ok(())
}

#[tokio::test]
async fn resend_after_reconnect_is_applied_exactly_once() -> anyhow::Result<()> {
    let srv = start_server();
    let mut a = TestClient::join(&srv.ws_url(), "once", None, true).await?;
    a.edit(Op::insert_at(0, "base ")).await?;
    a.settle().await?;
    // Send an op and drop the connection before reading anything: it may or may not have
    // been applied; the client cannot know.
    a.edit(Op::insert_at(5, "X")).await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    a.disconnect();
    a.reconnect().await?;
    a.settle().await?;
    let (text, rev) = server_doc(srv.addr, "once");
    assert_eq!(text, "base X");
    assert_eq!(rev, 2);
    assert_eq!(a.text, text);

    // The same op message twice on one connection: the second is answered with the first
    // revision, and nothing changes.
    let mut ws = connect_raw(&srv.ws_url()).await?;
    let op = ClientMsg::Op(OpMsg::new("once", 2, 1, &Op::insert_at(0, ">")));
    for m in [
        ClientMsg::Hello {
            v: PROTOCOL_VERSION,
            client: Some("dup-client".into()),
            token: None,
            user: None,
        },
        ClientMsg::Join {
            doc: "once".into(),
            rev: Some(2),
        },
        op.clone(),
        op.clone(),
    ] {
        ws.send(Message::Binary(encode_msgpack(&m).into())).await?;
    }
    let mut acks = Vec::new();
    while let Incoming::Msg(m) = read_msg(&mut ws, QUIET).await? {
        match m {
            ServerMsg::Ops { ops, .. } => acks.extend(
                ops.iter()
                    .filter(|o| o.client == "dup-client")
                    .map(|o| o.rev),
            ),
            ServerMsg::Ack { rev, .. } => acks.push(rev),
            _ => {}
        }
    }
    assert_eq!(acks, vec![3, 3]);
    assert_eq!(server_doc(srv.addr, "once"), (">base X".to_string(), 3));
    // A different op under the same seq is refused.
    let other = ClientMsg::Op(OpMsg::new("once", 2, 1, &Op::insert_at(0, "?")));
    ws.send(Message::Binary(encode_msgpack(&other).into()))
        .await?;
    match read_msg(&mut ws, QUIET).await? {
        Incoming::Msg(ServerMsg::Error { code, seq, .. }) => {
            assert_eq!((code, seq), (ErrorCode::SeqReused, Some(1)))
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(server_doc(srv.addr, "once"), (">base X".to_string(), 3));
    Ok(())
}

#[tokio::test]
async fn presence_is_transformed_broadcast_and_cleared() -> anyhow::Result<()> {
    let srv = start_server();
    let mut a = TestClient::join(&srv.ws_url(), "pres", None, true).await?;
    a.edit(Op::insert_at(0, "0123456789")).await?;
    a.settle().await?;
    let mut b = TestClient::join(&srv.ws_url(), "pres", None, false).await?;
    let mut c = TestClient::join(&srv.ws_url(), "pres", None, true).await?;
    a.select(vec![(5, 7)]).await?;
    let a_id = a.id();
    b.pump_until(|c| c.presence.contains_key(&a_id)).await?;
    assert_eq!(b.presence.get(&a_id), Some(&vec![(5, 7)]));
    // B types before A's selection: the stored selection moves with the text.
    b.edit(Op::insert_at(0, "ab")).await?;
    b.settle().await?;
    // A late joiner sees the transformed selection.
    let mut d = TestClient::join(&srv.ws_url(), "pres", None, true).await?;
    d.pump_until(|c| c.presence.contains_key(&a_id)).await?;
    assert_eq!(d.presence.get(&a_id), Some(&vec![(7, 9)]));
    // A selection outside the document is refused.
    c.select(vec![(0, 999)]).await?;
    c.pump_until(|c| !c.errors.is_empty()).await?;
    assert_eq!(
        c.errors.last().map(|e| e.0),
        Some(ErrorCode::InvalidSelection)
    );
    // A drops: the others see its presence cleared.
    a.disconnect();
    b.pump_until(|c| c.presence.get(&a_id) == Some(&vec![]))
        .await?;
    Ok(())
}

#[tokio::test]
async fn rest_edit_reaches_websocket_clients() -> anyhow::Result<()> {
    let srv = start_server();
    let mut a = TestClient::join(&srv.ws_url(), "rest", None, true).await?;
    a.edit(Op::insert_at(0, "hello")).await?;
    a.settle().await?;
    // Written against revision 0: transformed past A's insert.
    let (status, v) = http(
        srv.addr,
        "POST",
        "/api/docs/rest/ops",
        Some(r#"{"base_rev":0,"op":["> "]}"#),
    )?;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["rev"], 2);
    a.pump_until(|c| c.ot.rev() == 2).await?;
    let (text, _) = server_doc(srv.addr, "rest");
    assert_eq!(a.text, text);
    assert!(text == "> hello" || text == "hello> ", "{text}");
    // Ops listing and errors as JSON with statuses.
    let (status, v) = http(srv.addr, "GET", "/api/docs/rest/ops?from=1", None)?;
    assert_eq!(
        (status, v["ops"].as_array().map(|a| a.len())),
        (200, Some(1))
    );
    let (status, v) = http(
        srv.addr,
        "POST",
        "/api/docs/rest/ops",
        Some(r#"{"base_rev":2,"op":[99,{"d":1}]}"#),
    )?;
    assert_eq!((status, v["error"]["code"].as_u64()), (409, Some(2002)));
    let (status, v) = http(
        srv.addr,
        "POST",
        "/api/docs/rest/ops",
        Some(r#"{"base_rev":2,"op":[0]}"#),
    )?;
    assert_eq!((status, v["error"]["code"].as_u64()), (400, Some(2001)));
    let (status, _) = http(srv.addr, "POST", "/api/docs/rest/ops", Some("not json"))?;
    assert_eq!(status, 400);
    let (status, v) = http(srv.addr, "GET", "/api/docs/a%2Fb", None)?;
    assert_eq!((status, v["error"]["code"].as_u64()), (400, Some(1005)));
    let (status, _) = http(srv.addr, "GET", "/api/docs/rest/ops?from=9", None)?;
    assert_eq!(status, 409);
    assert_eq!(server_doc(srv.addr, "rest"), (text, 2));
    Ok(())
}

#[tokio::test]
async fn idle_documents_unload_and_reload() -> anyhow::Result<()> {
    let srv = start_server_with("[document]\nidle_timeout_s = 1\n");
    let mut a = TestClient::join(&srv.ws_url(), "idle", None, true).await?;
    a.edit(Op::insert_at(0, "persist me")).await?;
    a.settle().await?;
    let open =
        || http(srv.addr, "GET", "/healthz", None).map(|(_, v)| v["open_documents"].as_u64());
    assert_eq!(open()?, Some(1));
    a.disconnect();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(open()?, Some(0), "the idle document did not unload");
    let b = TestClient::join(&srv.ws_url(), "idle", None, false).await?;
    assert_eq!((b.text.as_str(), b.ot.rev()), ("persist me", 1));
    Ok(())
}

#[tokio::test]
async fn sigterm_tells_clients_to_reconnect_and_exits_zero() -> anyhow::Result<()> {
    let mut srv = start_server();
    let mut a = TestClient::join(&srv.ws_url(), "bye", None, true).await?;
    a.edit(Op::insert_at(0, "x")).await?;
    a.settle().await?;
    let status = tokio::task::spawn_blocking(move || {
        let s = srv.terminate();
        (s, srv)
    });
    let closed = a.pump(Duration::from_secs(5)).await?;
    let (status, _srv) = status.await?;
    assert_eq!(closed, Some(Some(1012)));
    assert!(status?.success());
    Ok(())
}
