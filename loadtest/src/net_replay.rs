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

pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) async fn send(ws: &mut Ws, msg: &ClientMsg) -> Result<()> {
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

pub(crate) async fn recv(ws: &mut Ws) -> Result<ServerMsg> {
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

/// Says hello as a new client without a token; returns the client id the server assigned.
pub(crate) async fn hello(ws: &mut Ws) -> Result<String> {
    let hello = ClientMsg::Hello {
        v: PROTOCOL_VERSION,
        client: None,
        token: None,
        user: None,
    };
    send(ws, &hello).await?;
    match recv(ws).await? {
        ServerMsg::Welcome { client, .. } => Ok(client),
        other => bail!("expected welcome, got {other:?}"),
    }
}

/// Connects, says hello and joins `doc` (with `rev`); returns the connection, the client id
/// the server assigned, and the join's answer.
async fn open(url: &str, doc: &str, rev: Option<u64>) -> Result<(Ws, String, ServerMsg)> {
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
    let id = hello(&mut ws).await?;
    send(
        &mut ws,
        &ClientMsg::Join {
            doc: doc.into(),
            rev,
        },
    )
    .await?;
    let answer = recv(&mut ws).await?;
    Ok((ws, id, answer))
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
        ServerMsg::Error { code, msg, .. } if code == coedit_protocol::ErrorCode::RateLimited => {
            bail!(
                "server refused an op: {} {msg} (a replay sends as fast as the server \
                 acknowledges: raise [session] max_ops_per_s and op_burst on the server)",
                code.as_u16()
            )
        }
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
        bail!("{name} is a concurrent trace: replay it with replay_concurrent");
    }
    let start = Instant::now();
    let (mut ws, id, answer) = open(url, doc, None).await?;
    let mut ot = match answer {
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
    let text = server_text(url, doc).await?;
    Ok(NetReplayReport {
        trace: name.to_string(),
        patches: trace.patches().count(),
        ops_sent: sent,
        matches_end: text == trace.end_content,
        ms: start.elapsed().as_secs_f64() * 1e3,
    })
}

/// An op an agent has integrated but its author had not seen yet: whose it is and which of
/// that agent's txns.
struct Unseen {
    agent: usize,
    txn_seq: u64,
    op: Op,
}

/// One agent of a concurrent trace: a client whose *view* is what the trace says its author
/// had seen, with the ops it has integrated but not yet seen kept in order after the view.
struct Agent {
    ws: Ws,
    ot: OtClient,
    view: jumprope::JumpRope,
    unseen: std::collections::VecDeque<Unseen>,
    /// Per agent, how many of its txns this agent has seen.
    seen: Vec<u64>,
    /// Txns this agent has typed.
    typed: u64,
}

/// Why a concurrent trace could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ConcurrentReplayError {
    /// The trace's causal order needs an agent to see a later op before an earlier one the
    /// server ordered first: no server-ordered history reproduces it (with plain text OT).
    #[error("txn {txn}: agent {agent} must see agent {needed}'s txn {needed_seq} before an op of agent {blocker} that the server ordered first but the trace says it had not seen; this causal order cannot be reproduced through a server-ordered history")]
    NotServerOrderable {
        /// Txn index in the trace.
        txn: usize,
        /// The typing agent.
        agent: usize,
        /// Agent of the op it needs.
        needed: usize,
        /// That agent's txn sequence number.
        needed_seq: u64,
        /// Agent of the op in the way.
        blocker: usize,
    },
}

/// Replays a concurrent trace: one client per agent; before typing a txn, the agent has seen
/// exactly the txns in its causal past. Each txn travels as its own op and is acknowledged
/// before the next txn is typed, so the server orders txns as the trace does and a replay is
/// deterministic. The server's final text must equal `endContent`.
pub async fn replay_concurrent(
    url: &str,
    doc: &str,
    name: &str,
    trace: &Trace,
) -> Result<NetReplayReport> {
    let start = Instant::now();
    let n = trace
        .num_agents
        .unwrap_or(0)
        .max(trace.txns.iter().map(|t| t.agent + 1).max().unwrap_or(0));
    // Per txn: its agent-local sequence number, and the version vector of its causal past.
    let mut seq_of = Vec::with_capacity(trace.txns.len());
    let mut vv: Vec<Vec<u64>> = Vec::with_capacity(trace.txns.len());
    let mut counts = vec![0u64; n];
    for t in &trace.txns {
        let mut v = vec![0u64; n];
        for &p in &t.parents {
            let (pa, ps) = (trace.txns[p].agent, seq_of[p]);
            for (x, y) in v.iter_mut().zip(&vv[p]) {
                *x = (*x).max(*y);
            }
            v[pa] = v[pa].max(ps + 1);
        }
        seq_of.push(counts[t.agent]);
        counts[t.agent] += 1;
        vv.push(v);
    }
    let mut agents = Vec::with_capacity(n);
    let mut ids = std::collections::HashMap::new();
    for a in 0..n {
        let (ws, id, answer) = open(url, doc, Some(0)).await?;
        match answer {
            ServerMsg::Ops { ops, .. } if ops.is_empty() => {}
            other => bail!("{doc} must be a new document, got {other:?}"),
        }
        ids.insert(id.clone(), a);
        agents.push(Agent {
            ws,
            ot: OtClient::new(id, 0),
            view: jumprope::JumpRope::new(),
            unseen: Default::default(),
            seen: vec![0; n],
            typed: 0,
        });
    }
    // (agent, ot seq) → that agent's txn sequence number, as ops are sent; and per agent the
    // txn sequence numbers sent, ascending.
    let mut txn_of_op: std::collections::HashMap<(usize, u64), u64> = Default::default();
    let mut sent_seqs: Vec<Vec<u64>> = vec![Vec::new(); n];
    let mut sent = 0u64;
    for (i, t) in trace.txns.iter().enumerate() {
        let a = t.agent;
        // Wait until the agent's previous op is acknowledged and it can see its causal past.
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            let ag = &mut agents[a];
            while let Some(f) = ag.unseen.front() {
                if f.txn_seq >= vv[i][f.agent] {
                    break;
                }
                let f = ag.unseen.pop_front().ok_or_else(|| anyhow!("queue"))?;
                f.op.apply_rope(&mut ag.view)?;
                ag.seen[f.agent] += 1;
            }
            let missing = (0..n).find(|&b| {
                b != a && ag.seen[b] < sent_seqs[b].partition_point(|s| *s < vv[i][b]) as u64
            });
            if ag.ot.is_synchronized() && missing.is_none() {
                break;
            }
            if let (Some(b), Some(blocker)) = (missing, ag.unseen.front()) {
                if ag
                    .unseen
                    .iter()
                    .any(|u| u.agent == b && u.txn_seq < vv[i][b])
                {
                    return Err(ConcurrentReplayError::NotServerOrderable {
                        txn: i,
                        agent: a,
                        needed: b,
                        needed_seq: ag.seen[b],
                        blocker: blocker.agent,
                    }
                    .into());
                }
            }
            if Instant::now() > deadline {
                bail!("{name}: txn {i}: agent {a} waited too long for its causal past");
            }
            pump_all(&mut agents, &ids, &txn_of_op).await?;
        }
        // The txn, in the context of what its author saw.
        let ag = &mut agents[a];
        let mut x = Op::noop();
        for p in &t.patches {
            x = x.compose(&Op::splice(p.0, p.1, &p.2));
        }
        x.apply_rope(&mut ag.view)
            .with_context(|| format!("{name}: txn {i} does not fit its author's view"))?;
        // Carry it past what the agent has integrated but not seen, and them past it.
        let mut local = x;
        for u in ag.unseen.iter_mut() {
            let l2 = local.transform(&u.op, coedit_protocol::Side::Left);
            u.op = u.op.transform(&local, coedit_protocol::Side::Right);
            local = l2;
        }
        let seq = seq_of[i];
        ag.typed += 1;
        if let Some(out) = ag.ot.local(local) {
            txn_of_op.insert((a, out.seq), seq);
            sent_seqs[a].push(seq);
            send_op(&mut ag.ws, doc, out, &mut sent).await?;
        }
        // The server orders txns as the trace does: each is applied before the next is typed.
        // That makes a replay deterministic (ops of different agents would otherwise race).
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        while !agents[a].ot.is_synchronized() {
            if Instant::now() > deadline {
                bail!("{name}: txn {i} was not acknowledged");
            }
            pump_all(&mut agents, &ids, &txn_of_op).await?;
        }
    }
    // Drain: every agent synchronized.
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    while agents.iter().any(|a| !a.ot.is_synchronized()) {
        if Instant::now() > deadline {
            bail!("{name}: agents did not synchronize");
        }
        pump_all(&mut agents, &ids, &txn_of_op).await?;
    }
    for a in &mut agents {
        let _ = a.ws.close(None).await;
    }
    let text = server_text(url, doc).await?;
    Ok(NetReplayReport {
        trace: name.to_string(),
        patches: trace.patches().count(),
        ops_sent: sent,
        matches_end: text == trace.end_content,
        ms: start.elapsed().as_secs_f64() * 1e3,
    })
}

/// Handles one message for an agent.
fn handle_agent_msg(
    ag: &mut Agent,
    m: Message,
    ids: &std::collections::HashMap<String, usize>,
    txn_of_op: &std::collections::HashMap<(usize, u64), u64>,
) -> Result<()> {
    let Some(msg) = decode(m)? else {
        return Ok(());
    };
    let next = match msg {
        ServerMsg::Ops { ops, .. } => {
            let mut next = None;
            for r in ops {
                match ag.ot.on_server_op(r.rev, &r.client, r.seq, &r.op)? {
                    ServerOpOutcome::Apply(op) => {
                        let agent = *ids
                            .get(&r.client)
                            .ok_or_else(|| anyhow!("unknown author {}", r.client))?;
                        let txn_seq = *txn_of_op
                            .get(&(agent, r.seq))
                            .ok_or_else(|| anyhow!("unknown op"))?;
                        ag.unseen.push_back(Unseen { agent, txn_seq, op });
                    }
                    ServerOpOutcome::OwnAck(n) => next = n.or(next),
                    ServerOpOutcome::Stale => {}
                }
            }
            next
        }
        ServerMsg::Ack { seq, rev, .. } => ag.ot.on_ack(seq, rev)?,
        ServerMsg::Error { code, msg, .. } => {
            bail!("server refused an op: {} {msg}", code.as_u16())
        }
        _ => None,
    };
    if let Some(out) = next {
        bail!("an agent composed two txns into one op (seq {})", out.seq);
    }
    Ok(())
}

/// Handles whatever has arrived for every agent; if nothing had, waits for the next message
/// of any agent (bounded) and handles it.
async fn pump_all(
    agents: &mut [Agent],
    ids: &std::collections::HashMap<String, usize>,
    txn_of_op: &std::collections::HashMap<(usize, u64), u64>,
) -> Result<()> {
    let mut any = false;
    for ag in agents.iter_mut() {
        while let Some(m) = ag.ws.next().now_or_never() {
            any = true;
            let m = m.ok_or_else(|| anyhow!("connection closed"))??;
            handle_agent_msg(ag, m, ids, txn_of_op)?;
        }
    }
    if any {
        return Ok(());
    }
    let next = futures_util::future::select_all(
        agents
            .iter_mut()
            .enumerate()
            .map(|(i, a)| Box::pin(async move { (i, a.ws.next().await) })),
    );
    let ((i, m), _, _) = tokio::time::timeout(ANSWER_TIMEOUT, next)
        .await
        .context("no message from the server")?;
    let m = m.ok_or_else(|| anyhow!("connection closed"))??;
    handle_agent_msg(&mut agents[i], m, ids, txn_of_op)
}

/// The server's text of `doc`, over REST.
async fn server_text(url: &str, doc: &str) -> Result<String> {
    let (base, _, _) = crate::run::http_base(url)?;
    let doc = doc.to_string();
    let (_, text) =
        tokio::task::spawn_blocking(move || crate::run::server_doc(&base, &doc, None)).await??;
    Ok(text)
}
