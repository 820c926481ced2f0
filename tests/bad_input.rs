//! The bad-input suite against the real binary: 28 kinds of malformed, hostile or abusive
//! input, each with its expected typed error or close code (among them every size limit: frame,
//! op, document, documents per session, op rate). After each: the server is up, a
//! bystander session is undisturbed, and the document is unchanged.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::Result;
use coedit_protocol::wire::{encode_msgpack, MAX_OP_COMPONENTS};
use coedit_protocol::{ClientMsg, Op, OpMsg, ServerMsg, PROTOCOL_VERSION};
use common::{
    connect_and_join, connect_raw, http, http_raw, metric, read_msg, server_doc, start_server_with,
    Incoming, Server, TestClient,
};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

/// Name, client id for `hello`, frames sent, expected answers.
type Case<'a> = (&'a str, Option<&'a str>, Vec<Message>, Vec<&'a str>);

/// Silence after which everything a request produced has arrived.
const QUIET: Duration = Duration::from_millis(300);
/// The suite's server: a small history window (so stale revisions are reachable), small
/// document and documents-per-session limits, and a rate limit low enough to flood.
const CONFIG: &str = "[document]\nhistory_window = 4\nmax_chars = 10\n\
    [session]\nmax_docs = 2\nmax_ops_per_s = 20.0\nop_burst = 30.0\n";
/// What the document holds after the setup: six ops by the bystander.
const TEXT: &str = "abcdef";
const REV: u64 = 6;

fn bin(m: &ClientMsg) -> Message {
    Message::Binary(encode_msgpack(m).into())
}

/// An op message in JSON with raw components (so malformed ones can be written).
fn op_json(rev: u64, seq: u64, comps: &str) -> Message {
    Message::Text(
        format!(r#"{{"op":{{"doc":"bad","rev":{rev},"seq":{seq},"op":{comps}}}}}"#).into(),
    )
}

/// Sends `frames` on a fresh connection after hello (as `client`) and join, and returns what
/// came back, then a ping's answer if the connection is still open.
async fn after_join(
    url: &str,
    client: Option<&str>,
    frames: Vec<Message>,
) -> Result<Vec<Incoming>> {
    let mut ws = connect_raw(url).await?;
    let hello = ClientMsg::Hello {
        v: PROTOCOL_VERSION,
        client: client.map(str::to_string),
        token: None,
        user: None,
    };
    ws.send(bin(&hello)).await?;
    ws.send(bin(&ClientMsg::Join {
        doc: "bad".into(),
        rev: None,
    }))
    .await?;
    read_msg(&mut ws, QUIET).await?;
    read_msg(&mut ws, QUIET).await?;
    for f in frames {
        ws.send(f).await?;
    }
    let mut out = Vec::new();
    loop {
        match read_msg(&mut ws, QUIET).await? {
            Incoming::Timeout => break,
            i @ Incoming::Closed(_) => {
                out.push(i);
                break;
            }
            Incoming::Msg(ServerMsg::Presence { .. }) => {}
            i => out.push(i),
        }
    }
    if !matches!(out.last(), Some(Incoming::Closed(_))) {
        ws.send(bin(&ClientMsg::Ping { t: 7 })).await?;
        out.push(read_msg(&mut ws, QUIET).await?);
    }
    Ok(out)
}

fn codes(v: &[Incoming]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in v {
        let s = match i {
            Incoming::Msg(ServerMsg::Error { code, .. }) => format!("err{}", code.as_u16()),
            Incoming::Msg(ServerMsg::Pong { t }) => format!("pong{t}"),
            Incoming::Msg(ServerMsg::Ack { .. }) => "ack".into(),
            Incoming::Msg(ServerMsg::Snapshot { doc, .. }) => format!("snapshot:{doc}"),
            Incoming::Closed(c) => format!("close{}", c.unwrap_or(0)),
            other => format!("{other:?}"),
        };
        out.push(s);
    }
    out
}

/// The invariants checked after every case.
async fn still_fine(srv: &Server, bystander: &mut TestClient, name: &str) -> Result<()> {
    assert_eq!(
        server_doc(srv.addr, "bad"),
        (TEXT.to_string(), REV),
        "{name}: document changed"
    );
    let (status, _, _) = http_raw(srv.addr, "/healthz");
    assert_eq!(status, 200, "{name}: server down");
    bystander.pump(Duration::from_millis(20)).await?;
    assert!(bystander.ws.is_some(), "{name}: bystander disconnected");
    assert!(
        bystander.errors.is_empty(),
        "{name}: bystander got {:?}",
        bystander.errors
    );
    assert_eq!(bystander.text, TEXT, "{name}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_typed_errors_and_changes_nothing() -> Result<()> {
    let srv = start_server_with(CONFIG);
    let url = srv.ws_url();
    let mut a = TestClient::join(&url, "bad", None, true).await?;
    for (i, c) in TEXT.chars().enumerate() {
        a.edit(Op::insert_at(i, &c.to_string())).await?;
        a.settle().await?;
    }
    let a_id = a.id();
    let invalid_utf8 = Message::Frame(Frame::message(
        vec![0xff, 0xfe],
        OpCode::Data(Data::Text),
        true,
    ));
    // Alternating retains and inserts: one more component than an op may have.
    let too_many_components = (0..=MAX_OP_COMPONENTS)
        .map(|i| if i % 2 == 0 { "1" } else { r#""x""# })
        .collect::<Vec<_>>()
        .join(",");
    let too_many_components = format!("[{too_many_components}]");
    let mut cases: Vec<Case> = vec![
        (
            "garbage msgpack",
            None,
            vec![Message::Binary(vec![0xc1, 0xff, 0x00].into())],
            vec!["err1001", "pong7"],
        ),
        (
            "truncated msgpack",
            None,
            vec![Message::Binary(
                encode_msgpack(&ClientMsg::Ping { t: 1 })[..3]
                    .to_vec()
                    .into(),
            )],
            vec!["err1001", "pong7"],
        ),
        (
            "unknown kind",
            None,
            vec![Message::Text(r#"{"shout":{"doc":"bad"}}"#.into())],
            vec!["err1001", "pong7"],
        ),
        (
            "JSON with wrong types",
            None,
            vec![Message::Text(
                r#"{"op":{"doc":"bad","rev":"x","seq":1,"op":[]}}"#.into(),
            )],
            vec!["err1001", "pong7"],
        ),
        (
            "malformed doc id",
            None,
            vec![bin(&ClientMsg::Join {
                doc: "a b".into(),
                rev: None,
            })],
            vec!["err1005", "pong7"],
        ),
        (
            "retain past end",
            None,
            vec![op_json(REV, 1, r#"[10,"x"]"#)],
            vec!["err2002", "pong7"],
        ),
        (
            "delete past end",
            None,
            vec![op_json(REV, 1, r#"[2,{"d":50}]"#)],
            vec!["err2002", "pong7"],
        ),
        (
            // Canonically an empty op; once accepted as an empty revision.
            "trailing retain past end",
            None,
            vec![op_json(REV, 1, "[99999]")],
            vec!["err2002", "pong7"],
        ),
        (
            "negative count",
            None,
            vec![op_json(REV, 1, r#"[-3,"x"]"#)],
            vec!["err1001", "pong7"],
        ),
        (
            "overflowing count",
            None,
            vec![op_json(REV, 1, r#"[18446744073709551616,"x"]"#)],
            vec!["err1001", "pong7"],
        ),
        (
            "count above 2^32-1",
            None,
            vec![op_json(REV, 1, r#"[4294967296,"x"]"#)],
            vec!["err1001", "pong7"],
        ),
        (
            "empty components",
            None,
            vec![op_json(REV, 1, r#"["",{"d":0}]"#)],
            vec!["err2001", "pong7"],
        ),
        (
            "stale base revision outside the window",
            None,
            vec![op_json(0, 1, r#"["x"]"#)],
            vec!["err3002", "pong7"],
        ),
        (
            "future revision",
            None,
            vec![op_json(99, 1, r#"["x"]"#)],
            vec!["err3001", "pong7"],
        ),
        (
            "resend of an applied seq with a different op",
            Some(&a_id),
            vec![op_json(REV - 1, REV, r#"[5,"zzz"]"#)],
            vec!["err3003", "pong7"],
        ),
        (
            "presence outside the document",
            None,
            vec![bin(&ClientMsg::Presence {
                doc: "bad".into(),
                rev: REV,
                sel: vec![(2, 100)],
            })],
            vec!["err2004", "pong7"],
        ),
        (
            "op on a document not joined",
            None,
            vec![bin(&ClientMsg::Op(OpMsg::new(
                "other",
                0,
                1,
                &Op::insert_at(0, "x"),
            )))],
            vec!["err1007", "pong7"],
        ),
        (
            "second hello",
            None,
            vec![bin(&ClientMsg::Hello {
                v: 1,
                client: None,
                token: None,
                user: None,
            })],
            vec!["err1001", "pong7"],
        ),
        (
            "op above the component limit",
            None,
            vec![op_json(REV, 1, &too_many_components)],
            vec!["err2003", "pong7"],
        ),
        (
            "op growing the document past its size limit",
            None,
            vec![op_json(REV, 1, r#"[6,"12345"]"#)],
            vec!["err3005", "pong7"],
        ),
        (
            "more documents than a session may join",
            None,
            ["second", "third"]
                .iter()
                .map(|d| {
                    bin(&ClientMsg::Join {
                        doc: d.to_string(),
                        rev: None,
                    })
                })
                .collect(),
            vec!["snapshot:second", "err4004", "pong7"],
        ),
        (
            "invalid UTF-8 in a text frame",
            None,
            vec![invalid_utf8],
            vec!["close1007"],
        ),
        (
            "oversized frame",
            None,
            vec![Message::Binary(vec![0x90; 2 * 1024 * 1024].into())],
            vec!["close1009"],
        ),
    ];
    // A flood of (unfitting) ops: the first `op_burst` get their own error, the rest are
    // refused by the rate limit; none is applied.
    let flood: Vec<Message> = (1..=60)
        .map(|seq| op_json(REV, seq, r#"[99,"x"]"#))
        .collect();
    let mut flood_want = vec!["err2002"; 30];
    flood_want.extend(vec!["err4001"; 30]);
    flood_want.push("pong7");
    cases.push(("flood beyond the rate limit", None, flood, flood_want));
    let mut kinds = 0;
    for (name, client, frames, want) in cases {
        let got = codes(&after_join(&url, client, frames).await?);
        if name.starts_with("flood") {
            // One token may be refilled while the flood is read.
            let limited = got.iter().filter(|c| *c == "err4001").count();
            assert!((28..=30).contains(&limited), "{name}: {got:?}");
            assert_eq!(got.len(), want.len(), "{name}: {got:?}");
        } else {
            assert_eq!(got, want, "{name}");
        }
        still_fine(&srv, &mut a, name).await?;
        kinds += 1;
    }
    // Before hello, and an unsupported version.
    let mut ws = connect_raw(&url).await?;
    ws.send(bin(&ClientMsg::Op(OpMsg::new(
        "bad",
        REV,
        1,
        &Op::insert_at(0, "x"),
    ))))
    .await?;
    ws.send(bin(&ClientMsg::Join {
        doc: "bad".into(),
        rev: None,
    }))
    .await?;
    ws.send(bin(&ClientMsg::Hello {
        v: 99,
        client: None,
        token: None,
        user: None,
    }))
    .await?;
    let mut got = Vec::new();
    while let Ok(i @ (Incoming::Msg(_) | Incoming::Closed(_))) = read_msg(&mut ws, QUIET).await {
        let closed = matches!(i, Incoming::Closed(_));
        got.push(i);
        if closed {
            break;
        }
    }
    assert_eq!(
        codes(&got),
        vec!["err1004", "err1004", "err1003", "close1002"]
    );
    still_fine(&srv, &mut a, "before hello / unsupported version").await?;
    kinds += 3;

    // The same limits hold for REST edits: a typed error in a JSON body, nothing applied.
    for (body, status, code) in [
        (
            format!(r#"{{"base_rev":{REV},"op":{too_many_components}}}"#),
            413,
            2003,
        ),
        (
            format!(r#"{{"base_rev":{REV},"op":[6,"12345"]}}"#),
            413,
            3005,
        ),
        (format!(r#"{{"base_rev":{REV},"op":[-1,"x"]}}"#), 400, 1001),
        (format!(r#"{{"base_rev":{REV},"op":[7,"x"]}}"#), 409, 2002),
    ] {
        let (got, v) = http(srv.addr, "POST", "/api/docs/bad/ops", Some(&body))?;
        assert_eq!(
            (got, v["error"]["code"].as_u64()),
            (status, Some(code)),
            "{v}"
        );
        still_fine(&srv, &mut a, "REST limits").await?;
    }

    // Abrupt TCP close in the middle of a frame.
    abrupt_close_mid_frame(&srv);
    still_fine(&srv, &mut a, "abrupt close").await?;
    kinds += 1;
    assert!(kinds >= 27, "{kinds} kinds");

    // The bystander can still edit.
    a.edit(Op::insert_at(6, "!")).await?;
    a.settle().await?;
    assert_eq!(server_doc(srv.addr, "bad"), (format!("{TEXT}!"), REV + 1));
    Ok(())
}

/// A raw WebSocket upgrade, then half a frame, then the socket is dropped.
fn abrupt_close_mid_frame(srv: &Server) {
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        srv.addr
    )
    .unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"));
    // A masked binary frame announcing 200 bytes, of which 10 arrive.
    let mut frame = vec![0x82, 0x80 | 126, 0, 200, 1, 2, 3, 4];
    frame.extend([0x55; 10]);
    s.write_all(&frame).unwrap();
    drop(s);
}

/// Thousands of join/leave cycles on one connection and hundreds of connections opened and
/// dropped leave nothing behind: connection and queue gauges back to zero, memory flat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_leave_and_connect_cycles_do_not_leak() -> Result<()> {
    let srv = start_server_with("");
    let mut ws = connect_raw(&srv.ws_url()).await?;
    ws.send(bin(&ClientMsg::Hello {
        v: PROTOCOL_VERSION,
        client: None,
        token: None,
        user: None,
    }))
    .await?;
    read_msg(&mut ws, QUIET).await?;
    for _ in 0..200 {
        join_and_leave(&mut ws).await?;
    }
    drain(&mut ws).await?;
    let rss_before = srv.rss_kib().expect("rss");
    for _ in 0..3000 {
        join_and_leave(&mut ws).await?;
    }
    drain(&mut ws).await?;
    for _ in 0..300 {
        let mut c = connect_raw(&srv.ws_url()).await?;
        c.send(bin(&ClientMsg::Hello {
            v: PROTOCOL_VERSION,
            client: None,
            token: None,
            user: None,
        }))
        .await?;
        c.send(bin(&ClientMsg::Join {
            doc: "cycle".into(),
            rev: None,
        }))
        .await?;
        read_msg(&mut c, QUIET).await?;
    }
    drop(ws);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(srv.addr, "coedit_connections") != 0.0
        || metric(srv.addr, "coedit_outbound_queue_frames") != 0.0
    {
        assert!(Instant::now() < deadline, "gauges did not return to zero");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_after = srv.rss_kib().expect("rss");
    assert!(
        rss_after < rss_before + 32 * 1024,
        "memory grew from {rss_before} KiB to {rss_after} KiB"
    );
    assert_eq!(metric(srv.addr, "coedit_open_documents"), 1.0);
    Ok(())
}

/// One join and one leave of the document `cycle`.
async fn join_and_leave(ws: &mut common::Ws) -> Result<()> {
    ws.send(bin(&ClientMsg::Join {
        doc: "cycle".into(),
        rev: None,
    }))
    .await?;
    ws.send(bin(&ClientMsg::Leave {
        doc: "cycle".into(),
    }))
    .await?;
    Ok(())
}

/// Reads until the connection is quiet.
async fn drain(ws: &mut common::Ws) -> Result<()> {
    while let Incoming::Msg(_) = read_msg(ws, QUIET).await? {}
    Ok(())
}

/// What bounds the slow reader's queue in [`slow_reader`], and the most the queues (the slow
/// reader's and the writer's) may hold at any sample.
enum QueueBound {
    /// `outbound_capacity` frames.
    Frames(usize),
    /// `max_outbound_bytes` bytes (the frame bound out of reach).
    Bytes(usize),
}

/// A client that stops reading while others write is disconnected with 1013 once its queue is
/// full (so what the server holds for it is bounded by the queue); the client resumes by
/// revision and misses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_is_disconnected_and_resumes() -> Result<()> {
    slow_reader(QueueBound::Frames(256)).await
}

/// The same with the frame bound out of reach (a million frames): the byte bound (1 MiB)
/// disconnects the slow reader, whatever the number of frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_is_bounded_in_bytes() -> Result<()> {
    slow_reader(QueueBound::Bytes(1024 * 1024)).await
}

async fn slow_reader(bound: QueueBound) -> Result<()> {
    let limits = match bound {
        QueueBound::Frames(n) => format!("outbound_capacity = {n}\n"),
        QueueBound::Bytes(n) => {
            format!("outbound_capacity = 1000000\nmax_outbound_bytes = {n}\n")
        }
    };
    let srv = start_server_with(&format!(
        "[session]\n{limits}max_ops_per_s = 100000.0\nop_burst = 100000.0\n\
         [storage]\ndurability = \"relaxed\"\n[document]\nfanout_tick_ms = 0\n",
    ));
    let url = srv.ws_url();
    let mut slow = TestClient::join(&url, "slow", None, true).await?;
    // A writer that reads everything (on its own task) and does not wait for acknowledgements:
    // op `seq` is based on revision `seq - 1` (it is the only writer).
    let (mut sink, mut stream) = connect_and_join(&url, "slow", None).await?.split();
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
    // The slow client reads nothing while 16,000 ops of 4 KiB (64 MiB, far beyond what the
    // kernel's socket buffers hold) are broadcast, one frame each (relaxed durability, no
    // coalescing tick); each op replaces the whole document.
    const OPS: u64 = 16_000;
    const CHUNK: usize = 4096;
    let mut max_queued = 0.0f64;
    for seq in 1..=OPS {
        let text = ((b'a' + (seq % 26) as u8) as char)
            .to_string()
            .repeat(CHUNK);
        let op = if seq == 1 {
            Op::insert_at(0, &text)
        } else {
            Op::from_json(&format!(r#"[{{"d":{CHUNK}}},"{text}"]"#))?
        };
        sink.send(bin(&ClientMsg::Op(OpMsg::new("slow", seq - 1, seq, &op))))
            .await?;
        if seq % 128 == 0 {
            // The writer keeps pace with the server (a well-behaved client), so only the
            // slow reader falls behind.
            let applied = "coedit_ops_total{result=\"applied\"}";
            let pace = Instant::now() + Duration::from_secs(60);
            while metric(srv.addr, applied) < seq as f64 {
                anyhow::ensure!(
                    Instant::now() < pace,
                    "op {seq} not applied within 60 s (was the writer cut as a slow consumer?)"
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let gauge = match bound {
                QueueBound::Frames(_) => "coedit_outbound_queue_frames",
                QueueBound::Bytes(_) => "coedit_outbound_queue_bytes",
            };
            max_queued = max_queued.max(metric(srv.addr, gauge));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(srv.addr, "coedit_ops_total{result=\"applied\"}") < OPS as f64 {
        assert!(
            Instant::now() < deadline,
            "the writer's ops were not all applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Exactly the slow client was disconnected; what the server holds for sessions stayed
    // within the two queues' bounds the whole time (for bytes: each bound plus one frame).
    assert_eq!(
        metric(srv.addr, "coedit_slow_consumer_disconnects_total"),
        1.0
    );
    let most = match bound {
        QueueBound::Frames(n) => 2 * n,
        QueueBound::Bytes(n) => 2 * (n + 2 * CHUNK),
    };
    assert!(
        max_queued <= most as f64,
        "{max_queued} queued (bound {most})"
    );
    drop(sink);
    reader.abort();
    // The slow client finds the close (1013) after what was queued, then resumes.
    let closed = slow.pump(Duration::from_secs(5)).await?;
    assert_eq!(closed, Some(Some(1013)));
    slow.reconnect().await?;
    // The catch-up from the log comes in several `ops` messages.
    let deadline = Instant::now() + Duration::from_secs(30);
    while slow.ot.rev() < OPS {
        assert!(slow.ws.is_some(), "disconnected again at {}", slow.ot.rev());
        assert!(
            Instant::now() < deadline,
            "caught up only to {}",
            slow.ot.rev()
        );
        slow.pump(Duration::from_millis(50)).await?;
    }
    let (text, rev) = server_doc(srv.addr, "slow");
    assert_eq!((slow.text.len(), slow.ot.rev()), (text.len(), rev));
    assert_eq!(slow.text, text);
    Ok(())
}
