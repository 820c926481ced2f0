//! `replay --url`: a sequential trace typed by one client through a real server.
//!
//! Every patch becomes a local edit of an `OtClient`; with one op in flight, the edits typed
//! meanwhile compose into its buffer, as in an editor. When all are acknowledged, the server's
//! text must equal the trace's `endContent`.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use coedit_protocol::wire::{encode_msgpack, PROTOCOL_VERSION};
use coedit_protocol::{ClientMsg, Op, OpMsg, OtClient, Outgoing, ServerMsg, ServerOpOutcome};
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;

use crate::trace::Trace;

/// Bound on waiting for any single answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Patches typed between yields to the runtime (so acks are read and the buffer stays small).
const PATCHES_PER_YIELD: usize = 32;

/// One line of the report.
#[derive(Debug, Serialize)]
pub struct NetReplayReport {
    /// Trace name.
    pub trace: String,
    /// Patches typed.
    pub patches: usize,
    /// Ops sent (patches composed while one op was in flight travel together).
    pub ops_sent: u64,
    /// Whether the server's final text equals `endContent`.
    pub matches_end: bool,
    /// Wall time, milliseconds.
    pub ms: f64,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn send(ws: &mut Ws, msg: &ClientMsg) -> Result<()> {
    ws.send(Message::Binary(encode_msgpack(msg).into())).await?;
    Ok(())
}

fn decode(m: Message) -> Result<Option<ServerMsg>> {
    Ok(match m {
        Message::Binary(b) => Some(ServerMsg::from_msgpack(&b)?),
        Message::Text(t) => Some(ServerMsg::from_json(&t)?),
        Message::Close(c) => bail!("server closed the connection: {c:?}"),
        _ => None,
    })
}

async fn recv(ws: &mut Ws) -> Result<ServerMsg> {
    loop {
        let m = tokio::time::timeout(ANSWER_TIMEOUT, ws.next())
            .await
            .context("no answer from the server")?
            .ok_or_else(|| anyhow!("connection closed"))??;
        if let Some(msg) = decode(m)? {
            return Ok(msg);
        }
    }
}

/// Handles one server message; returns the next op to send, if one is released.
fn handle(ot: &mut OtClient, msg: ServerMsg) -> Result<Option<Outgoing>> {
    match msg {
        ServerMsg::Ops { ops, .. } => {
            let mut next = None;
            for r in ops {
                match ot.on_server_op(r.rev, &r.client, r.seq, &r.op)? {
                    ServerOpOutcome::OwnAck(n) => next = n.or(next),
                    ServerOpOutcome::Apply(_) => bail!("another client edited the replay document"),
                    ServerOpOutcome::Stale => {}
                }
            }
            Ok(next)
        }
        ServerMsg::Ack { seq, rev, .. } => Ok(ot.on_ack(seq, rev)?),
        ServerMsg::Error { code, msg, .. } => {
            bail!("server refused an op: {} {msg}", code.as_u16())
        }
        _ => Ok(None),
    }
}

async fn send_op(ws: &mut Ws, doc: &str, out: Outgoing, sent: &mut u64) -> Result<()> {
    *sent += 1;
    send(
        ws,
        &ClientMsg::Op(OpMsg::new(doc, out.base_rev, out.seq, &out.op)),
    )
    .await
}

/// Types `trace` into document `doc` (which must be new) through the server at `url`.
pub async fn replay_sequential(
    url: &str,
    doc: &str,
    name: &str,
    trace: &Trace,
) -> Result<NetReplayReport> {
    if trace.is_concurrent() {
        bail!("{name}: concurrent traces are not replayed over the network yet");
    }
    let start = Instant::now();
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
    send(
        &mut ws,
        &ClientMsg::Hello {
            v: PROTOCOL_VERSION,
            client: None,
            token: None,
        },
    )
    .await?;
    let id = match recv(&mut ws).await? {
        ServerMsg::Welcome { client, .. } => client,
        other => bail!("expected welcome, got {other:?}"),
    };
    send(
        &mut ws,
        &ClientMsg::Join {
            doc: doc.into(),
            rev: None,
        },
    )
    .await?;
    let mut ot = match recv(&mut ws).await? {
        ServerMsg::Snapshot { rev: 0, text, .. } if text.is_empty() => OtClient::new(id, 0),
        other => bail!("{doc} must be a new document, got {other:?}"),
    };
    let mut sent = 0u64;
    let start_op = Op::insert_at(0, &trace.start_content);
    let ops = std::iter::once(start_op).chain(trace.patches().map(|p| Op::splice(p.0, p.1, &p.2)));
    for (i, op) in ops.enumerate() {
        if i % PATCHES_PER_YIELD == 0 {
            tokio::task::yield_now().await;
        }
        if let Some(out) = ot.local(op) {
            send_op(&mut ws, doc, out, &mut sent).await?;
        }
        // Take whatever has arrived, without waiting.
        while let Some(m) = ws.next().now_or_never() {
            let m = m.ok_or_else(|| anyhow!("connection closed"))??;
            if let Some(msg) = decode(m)? {
                if let Some(out) = handle(&mut ot, msg)? {
                    send_op(&mut ws, doc, out, &mut sent).await?;
                }
            }
        }
    }
    while !ot.is_synchronized() {
        let msg = recv(&mut ws).await?;
        if let Some(out) = handle(&mut ot, msg)? {
            send_op(&mut ws, doc, out, &mut sent).await?;
        }
    }
    let _ = ws.close(None).await;
    let base = url
        .strip_prefix("ws://")
        .and_then(|r| r.split('/').next())
        .ok_or_else(|| anyhow!("--url must be ws://host:port/…"))?;
    let url = format!("http://{base}/api/docs/{doc}");
    let v: serde_json::Value = tokio::task::spawn_blocking(move || -> Result<serde_json::Value> {
        Ok(ureq::get(&url).call()?.body_mut().read_json()?)
    })
    .await??;
    Ok(NetReplayReport {
        trace: name.to_string(),
        patches: trace.patches().count(),
        ops_sent: sent,
        matches_end: v["text"].as_str() == Some(trace.end_content.as_str()),
        ms: start.elapsed().as_secs_f64() * 1e3,
    })
}
