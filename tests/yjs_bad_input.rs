//! The Yjs bad-input suite against the real binary, on both Yjs endpoints (`/yjs/{doc}`,
//! y-websocket, and `/hocuspocus`): malformed lib0 framing, unknown message types, text frames,
//! updates yrs cannot decode, every Yjs size limit (update, document, frame), malformed
//! awareness updates, Hocuspocus channels used before `Auth` or under a bad address, the
//! pre-authorization budgets, and a flood past the rate limit. Each case has its exact typed
//! answer:
//!
//! - a frame that does not decode: close 1002, the reason starting with the error code;
//! - a refused update or awareness update on y-websocket: `[2 auth][0 permission denied]
//!   [varstring {"error":{"code":N,…}}]`, the connection open;
//! - the same on Hocuspocus: `SyncStatus(0)` (`[name][8][0]`) followed by a stateless message
//!   `[name][5][varstring {"error":{"code":N,…}}]`, the connection open;
//! - a Hocuspocus channel that is not authenticated: `[name][2 auth][1 permission denied]
//!   [varstring JSON]`.
//!
//! After each: the server is up, two bystanders on the same document (one per endpoint) got
//! nothing and still sync, the document (content and revision over REST) is unchanged, and the
//! case did not raise the server's peak memory by more than 32 MiB (a few bytes declaring 2^28
//! clients once cost 512 MiB). A flood past the rate limit is refused update by update and then
//! resynced (the server sends sync step 1, the client's step 2 gets everything applied); the
//! Hocuspocus statuses must answer a channel's updates in the order they were sent (clients
//! match them first-in first-out), also when some are refused. Faults that do not stop the
//! suite (memory, status order) are collected and asserted at its end.
//!
//! A second test: clients that never read are disconnected with 1013 while the others go on.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use coedit_protocol::yjs::frames::{decode_hocuspocus, decode_ywebsocket};
use coedit_protocol::yjs::Framing;
use common::{
    connect_raw, decode_yjs_server, hp_auth, http, http_bytes, http_raw, metric, read_raw,
    start_server_with, yjs_error_code, RawIncoming, Server, Ws, YServerMsg,
};
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use yrs::encoding::write::Write;
use yrs::types::ToJson;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, Map, MapRef, ReadTxn, StateVector, Text, TextRef, Transact, Update};

/// The suite's server: small Yjs limits, a small frame limit (above the update limit, so an
/// oversized update still fits a frame), a rate limit low enough to flood, and a short
/// authorization timeout.
const CONFIG: &str = "[yjs]\nmax_update_bytes = 4096\nmax_doc_bytes = 65536\n\
    [session]\nmax_ops_per_s = 5.0\nop_burst = 10.0\nmax_frame_bytes = 16384\n\
    hello_timeout_s = 3\n";
const MAX_UPDATE: usize = 4096;
const MAX_FRAME: usize = 16384;
/// The document every case targets; filled close to `max_doc_bytes`.
const DOC: &str = "bad";
/// Fill updates (each under the update limit) and characters in each.
const FILL_UPDATES: usize = 16;
const FILL_CHARS: usize = 3960;
/// Silence after which everything a request produced has arrived.
const QUIET: Duration = Duration::from_millis(300);
/// Bound on waiting for an answer that must come.
const ANSWER: Duration = Duration::from_secs(10);
/// A varuint of 2^28: a count of clients that five bytes declare.
const HUGE_COUNT: [u8; 5] = [0x80, 0x80, 0x80, 0x80, 0x01];
/// Most the server's resident memory may reach during the suite (its document is 64 KiB).
const MAX_PEAK_RSS_KIB: u64 = 128 * 1024;
/// Most one case may add to the server's peak resident memory (its frames are at most 16 KiB).
const MAX_CASE_GROWTH_KIB: u64 = 32 * 1024;
/// The shared types clients use.
const TEXT: &str = "text";
const MAP: &str = "map";

/// The two Yjs endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    /// y-websocket, `GET /yjs/{doc}`.
    Y,
    /// Hocuspocus, `GET /hocuspocus`.
    Hp,
}

/// A Yjs client: its own document and one connection (y-websocket, or one Hocuspocus channel).
struct Peer {
    ws: Ws,
    framing: Framing,
    doc: Doc,
    text: TextRef,
    map: MapRef,
    /// Updates and step 2s sent (on Hocuspocus each gets one `SyncStatus`).
    sent: usize,
    /// `SyncStatus` values received, in order.
    statuses: Vec<u64>,
    /// Error codes told (permission denied, stateless).
    errors: Vec<u64>,
    /// Sync step 1 messages received (each answered with step 2).
    step1s: usize,
    /// Updates received from others.
    updates: usize,
}

impl Peer {
    /// Connects to document `name` and syncs both ways: the server's step 1 is answered, its
    /// step 2 applied (and on Hocuspocus the status of the step 2 sent received).
    async fn connect(srv: &Server, proto: Proto, name: &str, doc: Doc) -> Result<Peer> {
        let (url, framing) = match proto {
            Proto::Y => (format!("ws://{}/yjs/{name}", srv.addr), Framing::YWebsocket),
            Proto::Hp => (
                format!("ws://{}/hocuspocus", srv.addr),
                Framing::Hocuspocus(name.into()),
            ),
        };
        let ws = connect_raw(&url).await?;
        let (text, map) = (doc.get_or_insert_text(TEXT), doc.get_or_insert_map(MAP));
        let mut p = Peer {
            ws,
            framing,
            doc,
            text,
            map,
            sent: 0,
            statuses: Vec::new(),
            errors: Vec::new(),
            step1s: 0,
            updates: 0,
        };
        if proto == Proto::Hp {
            p.send(hp_auth(name, "")).await?;
        }
        let sv = p.doc.transact().state_vector().encode_v1();
        p.send(p.framing.sync_step1(&sv)).await?;
        let (mut step1, mut step2) = (false, false);
        let deadline = Instant::now() + ANSWER;
        while !(step1 && step2 && p.statuses.len() == p.expected_statuses()) {
            ensure!(Instant::now() < deadline, "{name}: sync did not complete");
            match p.next(ANSWER).await? {
                Some(YServerMsg::SyncStep1(_)) => step1 = true,
                Some(YServerMsg::SyncStep2(_)) => step2 = true,
                Some(YServerMsg::Authenticated(s)) => ensure!(s == "read-write", "scope {s}"),
                Some(YServerMsg::SyncStatus(1)) | Some(YServerMsg::Awareness(_)) => {}
                other => bail!("{name}: {other:?} while syncing"),
            }
        }
        ensure!(p.errors.is_empty(), "{name}: errors {:?}", p.errors);
        Ok(p)
    }

    fn hocuspocus(&self) -> bool {
        matches!(self.framing, Framing::Hocuspocus(_))
    }

    fn expected_statuses(&self) -> usize {
        if self.hocuspocus() {
            self.sent
        } else {
            0
        }
    }

    async fn send(&mut self, frame: Vec<u8>) -> Result<()> {
        self.ws.send(Message::Binary(frame.into())).await?;
        Ok(())
    }

    /// Reads and handles one message: updates and step 2 applied, step 1 answered with
    /// step 2, statuses and errors recorded. `None` after `timeout` of silence; an error if the
    /// connection ends.
    async fn next(&mut self, timeout: Duration) -> Result<Option<YServerMsg>> {
        match read_raw(&mut self.ws, timeout).await {
            RawIncoming::Timeout => Ok(None),
            RawIncoming::Binary(b) => {
                let hp = self.hocuspocus();
                let (address, msg) = decode_yjs_server(&b, hp)?;
                if let (Framing::Hocuspocus(a), Some(got)) = (&self.framing, &address) {
                    ensure!(**a == **got, "message for channel {got:?} on {a:?}");
                }
                self.handle(&msg).await?;
                Ok(Some(msg))
            }
            other => bail!("connection ended: {other:?}"),
        }
    }

    async fn handle(&mut self, msg: &YServerMsg) -> Result<()> {
        match msg {
            YServerMsg::SyncStep1(sv) => {
                self.step1s += 1;
                let sv = StateVector::decode_v1(sv)?;
                let diff = self.doc.transact().encode_state_as_update_v1(&sv);
                self.sent += 1;
                self.send(self.framing.sync_step2(&diff)).await?;
            }
            YServerMsg::SyncStep2(u) | YServerMsg::Update(u) => {
                if matches!(msg, YServerMsg::Update(_)) {
                    self.updates += 1;
                }
                self.doc
                    .transact_mut()
                    .apply_update(Update::decode_v1(u)?)?;
            }
            YServerMsg::SyncStatus(s) => self.statuses.push(*s),
            YServerMsg::PermissionDenied(j) | YServerMsg::Stateless(j) => self
                .errors
                .push(yjs_error_code(j).ok_or_else(|| anyhow!("no error code in {j}"))?),
            _ => {}
        }
        Ok(())
    }

    /// Handles messages until `quiet` passes without one; returns them.
    async fn drain(&mut self, quiet: Duration) -> Result<Vec<YServerMsg>> {
        let mut out = Vec::new();
        while let Some(m) = self.next(quiet).await? {
            out.push(m);
        }
        Ok(out)
    }

    /// Handles everything queued for this client until the server closes the connection;
    /// returns the close code and reason.
    async fn read_until_closed(&mut self) -> Result<Option<(u16, String)>> {
        loop {
            match read_raw(&mut self.ws, ANSWER).await {
                RawIncoming::Binary(b) => {
                    let (_, msg) = decode_yjs_server(&b, self.hocuspocus())?;
                    self.handle(&msg).await?;
                }
                RawIncoming::Closed(c) => return Ok(c),
                other => bail!("{other:?} before the close"),
            }
        }
    }

    /// One local transaction, sent as one update.
    async fn edit(
        &mut self,
        f: impl FnOnce(&mut yrs::TransactionMut, &TextRef, &MapRef),
    ) -> Result<()> {
        let update = {
            let mut txn = self.doc.transact_mut();
            f(&mut txn, &self.text, &self.map);
            txn.encode_update_v1()
        };
        self.sent += 1;
        self.send(self.framing.update(&update)).await
    }

    /// Proves the connection works and nothing is missing: a step 1 is answered with a step 2
    /// that adds nothing; on Hocuspocus a ping is answered with a pong.
    async fn probe(&mut self) -> Result<()> {
        let sv = self.doc.transact().state_vector().encode_v1();
        self.send(self.framing.sync_step1(&sv)).await?;
        let before = self.content();
        match self.next(ANSWER).await? {
            Some(YServerMsg::SyncStep2(_)) => {}
            other => bail!("step 1 answered with {other:?}"),
        }
        ensure!(
            self.content() == before,
            "the probe's step 2 changed the replica"
        );
        if self.hocuspocus() {
            self.send(vec![9]).await?;
            match self.next(ANSWER).await? {
                Some(YServerMsg::Pong) => {}
                other => bail!("ping answered with {other:?}"),
            }
        }
        Ok(())
    }

    /// The replica's `(text, map)`.
    fn content(&self) -> (String, Value) {
        let txn = self.doc.transact();
        let map = serde_json::to_value(self.map.to_json(&txn)).unwrap_or(Value::Null);
        (self.text.get_string(&txn), map)
    }
}

/// The server's `((text, map), rev)` of a Yjs document, over REST (an absent or empty root
/// is an empty text or map).
fn server_ydoc(srv: &Server, doc: &str) -> ((String, Value), u64) {
    let (status, v) = http(srv.addr, "GET", &format!("/api/docs/{doc}"), None).expect("GET doc");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["kind"], "yjs", "{v}");
    let c = &v["content"];
    let text = c[TEXT].as_str().unwrap_or_default().to_string();
    let map = match &c[MAP] {
        Value::Null => json!({}),
        m => m.clone(),
    };
    ((text, map), v["rev"].as_u64().expect("rev"))
}

/// A self-contained update (a fresh client) inserting `chars` characters into the text.
fn fresh_insert(chars: usize) -> Vec<u8> {
    let doc = Doc::new();
    let text = doc.get_or_insert_text(TEXT);
    let mut txn = doc.transact_mut();
    text.push(&mut txn, &"z".repeat(chars));
    txn.encode_update_v1()
}

/// An awareness update of `entries` (client, clock, state), plus `extra` raw bytes.
fn awareness(count: u64, entries: &[(u64, u32, &str)], extra: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.write_var(count);
    for (client, clock, state) in entries {
        v.write_var(*client);
        v.write_var(*clock);
        v.write_string(state);
    }
    v.extend_from_slice(extra);
    v
}

/// A Hocuspocus frame on channel `address`: the address, then `rest` as is.
fn hp(address: &str, rest: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.write_string(address);
    v.extend_from_slice(rest);
    v
}

fn bin(b: Vec<u8>) -> Message {
    Message::Binary(b.into())
}

/// One case: name, endpoint, whether the connection joins [`DOC`] first (Hocuspocus: `Auth`;
/// y-websocket always joins), frames, whether the protocol's own decoder accepts each binary
/// frame (`None`: not checked), and the expected answers (then the probe's, if still open).
struct Case {
    name: &'static str,
    proto: Proto,
    join: bool,
    frames: Vec<Message>,
    decodes: Option<bool>,
    want: Vec<String>,
}

fn case(
    name: &'static str,
    proto: Proto,
    frames: Vec<Message>,
    decodes: Option<bool>,
    want: &[&str],
) -> Case {
    Case {
        name,
        proto,
        join: true,
        frames,
        decodes,
        want: want.iter().map(|s| s.to_string()).collect(),
    }
}

/// A short label of an answer: `denied:N`, `status0`, `stateless:N`, `step2`, `pong`,
/// `close1002:1001` (the code and the reason's first word); a Hocuspocus message on another
/// channel than [`DOC`] is prefixed with its address.
fn label(i: &RawIncoming, hp: bool) -> String {
    match i {
        RawIncoming::Binary(b) => {
            let (address, msg) = match decode_yjs_server(b, hp) {
                Ok(d) => d,
                Err(e) => return format!("undecodable {e}"),
            };
            let code =
                |j: &str| yjs_error_code(j).map_or(format!("no code in {j}"), |c| c.to_string());
            let s = match msg {
                YServerMsg::PermissionDenied(j) => format!("denied:{}", code(&j)),
                YServerMsg::Stateless(j) => format!("stateless:{}", code(&j)),
                YServerMsg::SyncStatus(n) => format!("status{n}"),
                YServerMsg::SyncStep1(_) => "step1".into(),
                YServerMsg::SyncStep2(_) => "step2".into(),
                YServerMsg::Update(_) => "update".into(),
                YServerMsg::Awareness(_) => "awareness".into(),
                YServerMsg::Authenticated(s) => format!("authenticated:{s}"),
                YServerMsg::Close(r) => format!("channel-close:{r}"),
                YServerMsg::Pong => "pong".into(),
            };
            match address {
                Some(a) if a != DOC => format!("{a}/{s}"),
                _ => s,
            }
        }
        RawIncoming::Text(t) => format!("text {t}"),
        RawIncoming::Closed(Some((code, reason))) => {
            format!(
                "close{code}:{}",
                reason.split_whitespace().next().unwrap_or("")
            )
        }
        RawIncoming::Closed(None) => "closed".into(),
        RawIncoming::Timeout => "timeout".into(),
    }
}

/// Opens a connection for a case: y-websocket joins [`DOC`] (its answer, sync step 1, read);
/// Hocuspocus authenticates [`DOC`] if `join`. Returns the server's state vector, if joined.
async fn open(srv: &Server, proto: Proto, join: bool) -> Result<(Ws, Option<Vec<u8>>)> {
    let hp = proto == Proto::Hp;
    let url = match proto {
        Proto::Y => format!("ws://{}/yjs/{DOC}", srv.addr),
        Proto::Hp => format!("ws://{}/hocuspocus", srv.addr),
    };
    let mut ws = connect_raw(&url).await?;
    if !join {
        return Ok((ws, None));
    }
    if hp {
        ws.send(bin(hp_auth(DOC, ""))).await?;
    }
    loop {
        let i = read_raw(&mut ws, ANSWER).await;
        let RawIncoming::Binary(b) = &i else {
            bail!("joining: {i:?}");
        };
        match decode_yjs_server(b, hp)?.1 {
            YServerMsg::SyncStep1(sv) => return Ok((ws, Some(sv))),
            YServerMsg::Authenticated(_) | YServerMsg::Awareness(_) => {}
            other => bail!("joining: {other:?}"),
        }
    }
}

/// Runs a case; returns the labels of the answers (all but the last expected one are waited
/// for, then until [`QUIET`]), then of the probe's answer if the connection is still open (Hocuspocus: a ping; y-websocket: sync step 1 with the server's
/// state vector, answered with step 2).
async fn run_case(srv: &Server, c: &Case) -> Result<Vec<String>> {
    let hp = c.proto == Proto::Hp;
    if let Some(ok) = c.decodes {
        for f in &c.frames {
            if let Message::Binary(b) = f {
                let decoded = if hp {
                    decode_hocuspocus(b).is_ok()
                } else {
                    decode_ywebsocket(b).is_ok()
                };
                assert_eq!(
                    decoded, ok,
                    "{}: the protocol decoder's verdict on {b:?}",
                    c.name
                );
            }
        }
    }
    let (mut ws, sv) = open(srv, c.proto, c.join).await?;
    for f in &c.frames {
        // The server may close before every frame is written.
        if ws.send(f.clone()).await.is_err() {
            break;
        }
    }
    // The answers expected before the probe's (or the close) must come; more may not.
    let mut out = Vec::new();
    loop {
        let wait = if out.len() + 1 < c.want.len() {
            ANSWER
        } else {
            QUIET
        };
        match read_raw(&mut ws, wait).await {
            RawIncoming::Timeout => break,
            i @ RawIncoming::Closed(_) => {
                out.push(label(&i, hp));
                return Ok(out);
            }
            i => out.push(label(&i, hp)),
        }
    }
    let probe = match (hp, sv) {
        (true, _) => vec![9],
        (false, Some(sv)) => Framing::YWebsocket.sync_step1(&sv),
        (false, None) => return Ok(out),
    };
    ws.send(bin(probe)).await?;
    out.push(label(&read_raw(&mut ws, ANSWER).await, hp));
    Ok(out)
}

/// The invariants checked after every case: the server is up, the document unchanged, each
/// bystander got nothing, still syncs and holds the document.
async fn still_fine(
    srv: &Server,
    base: &((String, Value), u64),
    bystanders: &mut [Peer],
    name: &str,
) -> Result<()> {
    let (status, _, _) = http_raw(srv.addr, "/healthz");
    assert_eq!(status, 200, "{name}: server down");
    let now = server_ydoc(srv, DOC);
    assert!(
        now == *base,
        "{name}: document changed to rev {} (was {})",
        now.1,
        base.1
    );
    for b in bystanders.iter_mut() {
        let stray = b.drain(Duration::from_millis(20)).await?;
        assert!(stray.is_empty(), "{name}: a bystander got {stray:?}");
        b.probe()
            .await
            .with_context(|| format!("{name}: bystander"))?;
        assert!(
            b.errors.is_empty(),
            "{name}: bystander got errors {:?}",
            b.errors
        );
        assert!(b.content() == base.0, "{name}: a bystander diverged");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yjs_bad_input_gets_typed_answers_and_changes_nothing() -> Result<()> {
    let srv = start_server_with(CONFIG);
    // A text document (for the wrong-kind cases) and the Yjs document, filled over REST close
    // to its size limit (each update under the update limit).
    let (status, v) = http(
        srv.addr,
        "POST",
        "/api/docs/plain/ops",
        Some(r#"{"base_rev":0,"op":["plain"]}"#),
    )?;
    assert_eq!(status, 200, "{v}");
    let filler = Doc::new();
    let (text, map) = (
        filler.get_or_insert_text(TEXT),
        filler.get_or_insert_map(MAP),
    );
    for i in 0..FILL_UPDATES {
        let update = {
            let mut txn = filler.transact_mut();
            let c = (b'a' + i as u8) as char;
            text.push(&mut txn, &c.to_string().repeat(FILL_CHARS));
            map.insert(&mut txn, format!("fill{i}"), c.to_string());
            txn.encode_update_v1()
        };
        assert!(update.len() <= MAX_UPDATE, "{}", update.len());
        let (status, body) = http_bytes(
            srv.addr,
            "POST",
            &format!("/api/docs/{DOC}/updates"),
            "application/octet-stream",
            &update,
        )?;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }
    let base = server_ydoc(&srv, DOC);
    assert_eq!(base.1, FILL_UPDATES as u64);
    assert_eq!(base.0 .0.len(), FILL_UPDATES * FILL_CHARS);
    let state_len = filler
        .transact()
        .encode_state_as_update_v1(&StateVector::default())
        .len();
    // An update that fits the update limit but not the document.
    let too_big_for_doc = fresh_insert(3000);
    assert!(too_big_for_doc.len() <= MAX_UPDATE);
    assert!(state_len + too_big_for_doc.len() > 65536, "{state_len}");
    // An update over the update limit that still fits a frame.
    let oversized = fresh_insert(5000);
    assert!(oversized.len() > MAX_UPDATE && oversized.len() + 16 < MAX_FRAME);

    let mut bystanders = vec![
        Peer::connect(&srv, Proto::Y, DOC, Doc::new()).await?,
        Peer::connect(&srv, Proto::Hp, DOC, Doc::new()).await?,
    ];
    still_fine(&srv, &base, &mut bystanders, "setup").await?;

    let y = Framing::YWebsocket;
    let h = Framing::Hocuspocus(DOC.into());
    let undecodable: &[(&'static str, &[u8])] = &[
        // One client, one struct, then nothing.
        (
            "an update yrs cannot decode: a struct cut short",
            &[1, 1, 1, 1],
        ),
        ("an update yrs cannot decode: a client count only", &[5]),
        (
            "an update yrs cannot decode: 2^32-1 clients declared",
            &[0xff, 0xff, 0xff, 0xff, 0x0f],
        ),
        (
            "an update yrs cannot decode: 2^28 clients declared",
            &HUGE_COUNT,
        ),
    ];
    let bad_awareness: Vec<(&'static str, Vec<u8>)> = vec![
        (
            "awareness: a count above the entry limit",
            awareness(200, &[], &[]),
        ),
        (
            "awareness: fewer entries than counted",
            awareness(2, &[(1, 1, "{}")], &[]),
        ),
        (
            "awareness: trailing bytes",
            awareness(1, &[(1, 1, "{}")], &[0]),
        ),
        (
            "awareness: 17 clients from one session",
            awareness(
                17,
                &(0..17).map(|c| (100 + c, 1, "{}")).collect::<Vec<_>>(),
                &[],
            ),
        ),
    ];
    // A valid update followed, in the same frame, by a truncated message: nothing applies.
    let valid_then_cut = [y.update(&fresh_insert(10)), vec![0, 2, 9]].concat();
    let step2_of_garbage = {
        let mut v = vec![0, 1];
        v.write_buf([1u8, 1, 1, 1]);
        v
    };
    let long_address = "x".repeat(300);

    let mut cases: Vec<Case> = Vec::new();
    for (proto, f) in [(Proto::Y, &y), (Proto::Hp, &h)] {
        let p = |rest: &[u8]| -> Message {
            match proto {
                Proto::Y => bin(rest.to_vec()),
                Proto::Hp => bin(hp(DOC, rest)),
            }
        };
        let close_1001 = &["close1002:1001"][..];
        cases.extend([
            case(
                "empty frame",
                proto,
                vec![bin(vec![])],
                Some(false),
                close_1001,
            ),
            case(
                "truncated varint",
                proto,
                vec![bin(vec![0x80])],
                Some(false),
                close_1001,
            ),
            case(
                "a length past the end of the frame",
                proto,
                vec![p(&[0, 2, 200, 1])],
                Some(false),
                close_1001,
            ),
            case(
                "unknown message type",
                proto,
                vec![p(&[6])],
                Some(false),
                close_1001,
            ),
            case(
                "unknown sync message type",
                proto,
                vec![p(&[0, 9, 0])],
                Some(false),
                close_1001,
            ),
            case(
                "a state vector that does not decode",
                proto,
                vec![p(&[0, 0, 3, 0xff, 0xff, 0xff])],
                Some(false),
                close_1001,
            ),
            case(
                "a text frame",
                proto,
                vec![Message::Text("{\"sync\":1}".into())],
                None,
                close_1001,
            ),
            case(
                "a frame larger than max_frame_bytes",
                proto,
                vec![bin(vec![0; MAX_FRAME + 1])],
                None,
                &["close1009:frame"],
            ),
        ]);
        let refused = |code: u16| -> Vec<String> {
            match proto {
                Proto::Y => vec![format!("denied:{code}"), "step2".into()],
                Proto::Hp => vec!["status0".into(), format!("stateless:{code}"), "pong".into()],
            }
        };
        for (name, u) in undecodable {
            cases.push(Case {
                want: refused(2005),
                ..case(name, proto, vec![bin(f.update(u))], Some(true), &[])
            });
        }
        cases.push(case(
            "a state vector declaring 2^28 clients",
            proto,
            vec![bin(f.sync_step1(&HUGE_COUNT))],
            Some(false),
            close_1001,
        ));
        let garbage_step2 = match proto {
            Proto::Y => step2_of_garbage.clone(),
            Proto::Hp => hp(DOC, &step2_of_garbage),
        };
        cases.push(Case {
            want: refused(2005),
            ..case(
                "a sync step 2 yrs cannot decode",
                proto,
                vec![bin(garbage_step2)],
                Some(true),
                &[],
            )
        });
        cases.push(Case {
            want: refused(2003),
            ..case(
                "an update over max_update_bytes",
                proto,
                vec![bin(f.update(&oversized))],
                Some(true),
                &[],
            )
        });
        cases.push(Case {
            want: refused(3005),
            ..case(
                "an update past max_doc_bytes",
                proto,
                vec![bin(f.update(&too_big_for_doc))],
                Some(true),
                &[],
            )
        });
        // An awareness refusal carries no sync status (statuses answer updates, one each).
        let refused_awareness = |code: u16| -> Vec<String> {
            match proto {
                Proto::Y => vec![format!("denied:{code}"), "step2".into()],
                Proto::Hp => vec![format!("stateless:{code}"), "pong".into()],
            }
        };
        for (name, a) in &bad_awareness {
            cases.push(Case {
                want: refused_awareness(2005),
                ..case(name, proto, vec![bin(f.awareness(a))], Some(true), &[])
            });
        }
    }
    cases.extend([
        case(
            "y-websocket: an auth message from a client",
            Proto::Y,
            vec![bin(vec![2, 0, 1, b'x'])],
            Some(false),
            &["close1002:1001"],
        ),
        case(
            "y-websocket: a valid update then a truncated message in one frame",
            Proto::Y,
            vec![bin(valid_then_cut)],
            Some(false),
            &["close1002:1001"],
        ),
        case(
            "Hocuspocus: an empty address",
            Proto::Hp,
            vec![bin(hp("", &[3]))],
            Some(false),
            &["close1002:1001"],
        ),
        case(
            "Hocuspocus: an address over 256 bytes",
            Proto::Hp,
            vec![bin(hp(&long_address, &[3]))],
            Some(false),
            &["close1002:1001"],
        ),
        case(
            "Hocuspocus: an address that is not UTF-8",
            Proto::Hp,
            vec![bin(vec![2, 0xff, 0xfe, 3])],
            Some(false),
            &["close1002:1001"],
        ),
        case(
            "Hocuspocus: a sync status from a client",
            Proto::Hp,
            vec![bin(hp(DOC, &[8, 1]))],
            Some(false),
            &["close1002:1001"],
        ),
        case(
            "Hocuspocus: an auth reply from a client",
            Proto::Hp,
            vec![bin(hp(
                DOC,
                &[
                    2, 2, 10, b'r', b'e', b'a', b'd', b'-', b'w', b'r', b'i', b't',
                ],
            ))],
            Some(false),
            &["close1002:1001"],
        ),
        case(
            "Hocuspocus: a token over 8 KiB",
            Proto::Hp,
            vec![bin(hp_auth("tok", &"t".repeat(9000)))],
            Some(false),
            &["close1002:1001"],
        ),
        Case {
            join: false,
            ..case(
                "Hocuspocus: sync, awareness and an update before Auth",
                Proto::Hp,
                vec![
                    bin(h.sync_step1(&[0])),
                    bin(h.awareness(&awareness(1, &[(7, 1, "{}")], &[]))),
                    bin(h.update(&fresh_insert(10))),
                ],
                Some(true),
                &["denied:5001", "denied:5001", "denied:5001", "pong"],
            )
        },
        case(
            "Hocuspocus: an update on a channel never authenticated",
            Proto::Hp,
            vec![bin(
                Framing::Hocuspocus("other".into()).update(&fresh_insert(10))
            )],
            Some(true),
            &["other/denied:5001", "pong"],
        ),
        case(
            "Hocuspocus: an update after closing the channel",
            Proto::Hp,
            vec![bin(hp(DOC, &[7])), bin(h.update(&fresh_insert(10)))],
            Some(true),
            &["denied:5001", "pong"],
        ),
        Case {
            join: false,
            ..case(
                "Hocuspocus: Auth under an invalid address",
                Proto::Hp,
                vec![bin(hp_auth("a b", ""))],
                Some(true),
                &["a b/denied:5005", "pong"],
            )
        },
        Case {
            join: false,
            ..case(
                "Hocuspocus: Auth for a text document",
                Proto::Hp,
                vec![bin(hp_auth("plain", ""))],
                Some(true),
                &["plain/denied:3006", "pong"],
            )
        },
        Case {
            join: false,
            ..case(
                "Hocuspocus: more than 64 KiB before any authorization",
                Proto::Hp,
                (0..5)
                    .map(|_| bin(h.awareness(&awareness(1, &[(7, 1, &"s".repeat(15_000))], &[]))))
                    .collect(),
                Some(true),
                &[
                    "denied:5001",
                    "denied:5001",
                    "denied:5001",
                    "denied:5001",
                    "close1008:more",
                ],
            )
        },
    ]);
    let mut kinds = 0;
    // Server faults that do not stop the suite, asserted at its end.
    let mut faults = Vec::new();
    for c in &cases {
        assert!(
            srv.reset_peak_rss(),
            "cannot reset the peak resident memory"
        );
        let peak_before = srv.peak_rss_kib().expect("peak rss");
        let got = run_case(&srv, c).await.with_context(|| c.name)?;
        assert_eq!(got, c.want, "{:?} {}", c.proto, c.name);
        still_fine(&srv, &base, &mut bystanders, c.name).await?;
        let peak = srv.peak_rss_kib().expect("peak rss");
        if peak > peak_before + MAX_CASE_GROWTH_KIB {
            faults.push(format!(
                "{:?} {}: the server's peak resident memory grew from {peak_before} KiB to \
                 {peak} KiB",
                c.proto, c.name
            ));
        }
        kinds += 1;
    }

    // y-websocket refusals before the session starts: close 4000 + the HTTP status, the error
    // code first in the reason.
    for (path, want) in [("a%20b", "close4400:1005"), ("plain", "close4409:3006")] {
        let mut ws = connect_raw(&format!("ws://{}/yjs/{path}", srv.addr)).await?;
        let got = label(&read_raw(&mut ws, ANSWER).await, false);
        assert_eq!(got, want, "/yjs/{path}");
        still_fine(&srv, &base, &mut bystanders, path).await?;
        kinds += 1;
    }

    // A Hocuspocus connection that authorizes nothing is closed after hello_timeout_s.
    let (mut ws, _) = open(&srv, Proto::Hp, false).await?;
    ws.send(bin(h.sync_step1(&[0]))).await?;
    assert_eq!(label(&read_raw(&mut ws, ANSWER).await, true), "denied:5001");
    let started = Instant::now();
    let closed = read_raw(&mut ws, Duration::from_secs(10)).await;
    assert_eq!(label(&closed, true), "close1008:no", "{closed:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    still_fine(&srv, &base, &mut bystanders, "authorization timeout").await?;
    kinds += 1;

    // Exact bytes of the answers, once each: y-websocket `[2][0][varstring JSON]`, Hocuspocus
    // `[name][8][0]` then `[name][5][varstring JSON]`.
    let (mut ws, _) = open(&srv, Proto::Y, true).await?;
    ws.send(bin(y.update(&[5]))).await?;
    let RawIncoming::Binary(b) = read_raw(&mut ws, ANSWER).await else {
        bail!("no answer");
    };
    assert_eq!(b[..2], [2, 0], "{b:?}");
    let (None, YServerMsg::PermissionDenied(j)) = decode_yjs_server(&b, false)? else {
        bail!("{b:?}");
    };
    let json: Value = serde_json::from_str(&j)?;
    assert_eq!(json["error"]["code"], 2005, "{json}");
    assert!(json["error"]["msg"].as_str().is_some(), "{json}");
    let (mut ws, _) = open(&srv, Proto::Hp, true).await?;
    ws.send(bin(h.update(&[5]))).await?;
    assert_eq!(
        read_raw(&mut ws, ANSWER).await,
        RawIncoming::Binary(vec![3, b'b', b'a', b'd', 8, 0])
    );
    let RawIncoming::Binary(b) = read_raw(&mut ws, ANSWER).await else {
        bail!("no stateless message");
    };
    assert_eq!(b[..5], [3, b'b', b'a', b'd', 5], "{b:?}");
    let (Some(_), YServerMsg::Stateless(j)) = decode_yjs_server(&b, true)? else {
        bail!("{b:?}");
    };
    let json: Value = serde_json::from_str(&j)?;
    assert_eq!(json["error"]["code"], 2005, "{json}");
    drop(ws);
    still_fine(&srv, &base, &mut bystanders, "exact bytes").await?;

    // Floods past the rate limit, each on its own document.
    for (proto, name) in [(Proto::Y, "flood-y"), (Proto::Hp, "flood-h")] {
        if let Some(fault) = flood(&srv, proto, name).await? {
            faults.push(fault);
        }
        still_fine(&srv, &base, &mut bystanders, name).await?;
        kinds += 1;
    }
    if let Some(fault) = refusal_after_update(&srv).await? {
        faults.push(fault);
    }
    still_fine(&srv, &base, &mut bystanders, "a refusal after an update").await?;
    kinds += 1;
    assert!(kinds >= 60, "{kinds} kinds");

    // The bystanders can still edit (the small edits fit the document).
    bystanders[0]
        .edit(|txn, text, _| text.push(txn, "!"))
        .await?;
    bystanders[1]
        .edit(|txn, _, map| {
            map.insert(txn, "after", "yes");
        })
        .await?;
    let deadline = Instant::now() + ANSWER;
    loop {
        for b in bystanders.iter_mut() {
            b.drain(Duration::from_millis(50)).await?;
        }
        let (content, rev) = server_ydoc(&srv, DOC);
        if rev == base.1 + 2 && bystanders.iter().all(|b| b.content() == content) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the bystanders' edits did not converge"
        );
    }
    assert_eq!(bystanders[1].statuses.last(), Some(&1));
    assert!(bystanders.iter().all(|b| b.errors.is_empty()));
    let peak = srv.peak_rss_kib().expect("peak rss");
    if peak > MAX_PEAK_RSS_KIB {
        faults.push(format!(
            "after the cases, the server's resident memory peaked at {peak} KiB (bound \
             {MAX_PEAK_RSS_KIB} KiB)"
        ));
    }
    // Faults found on the way are asserted last, so every other check above has run.
    assert!(faults.is_empty(), "{faults:#?}");
    Ok(())
}

/// How many updates a flood sends (the session may send 10 in a burst).
const FLOOD: usize = 20;

/// A writer sends [`FLOOD`] updates at once on document `name` while a bystander reads. The
/// first ones (the burst) are applied, every other is refused with the rate limit's code
/// (4001); the server then sends sync step 1 and the writer's step 2 gets everything applied:
/// each marker exactly once in the server's text and map, writer and bystander equal to the
/// server. Returns a description if the Hocuspocus statuses did not arrive in the order of the
/// updates (the other checks are asserted here).
async fn flood(srv: &Server, proto: Proto, name: &str) -> Result<Option<String>> {
    let mut by = Peer::connect(srv, proto, name, Doc::new()).await?;
    let mut w = Peer::connect(srv, proto, name, Doc::new()).await?;
    let limited_before = metric(srv.addr, "coedit_rate_limited_ops_total");
    let step1s_before = w.step1s;
    let markers: Vec<String> = (0..FLOOD).map(|i| format!("[{name}:{i}]")).collect();
    for m in &markers {
        w.edit(|txn, text, map| {
            text.push(txn, m);
            map.insert(txn, m.clone(), "v");
        })
        .await?;
    }
    // Everything until the server's first step 1 (the resync, a second later).
    let mut answers = Vec::new();
    let deadline = Instant::now() + ANSWER;
    while w.step1s == step1s_before {
        assert!(
            Instant::now() < deadline,
            "{name}: no sync step 1 after the flood: {answers:?}"
        );
        if let Some(m) = w.next(ANSWER).await? {
            answers.push(m);
        }
    }
    let statuses = answers
        .iter()
        .filter_map(|m| match m {
            YServerMsg::SyncStatus(s) => Some(*s),
            _ => None,
        })
        .collect::<Vec<_>>();
    let denials = answers
        .iter()
        .filter(|m| matches!(m, YServerMsg::PermissionDenied(_)))
        .count();
    let refused = match proto {
        Proto::Hp => {
            // FLOOD statuses; each 0 is followed by a stateless message with 4001.
            assert_eq!(statuses.len(), FLOOD, "{name}: {answers:?}");
            for (i, m) in answers.iter().enumerate() {
                if *m == YServerMsg::SyncStatus(0) {
                    let next = answers.get(i + 1);
                    let ok = matches!(next, Some(YServerMsg::Stateless(j)) if yjs_error_code(j) == Some(4001));
                    assert!(ok, "{name}: status 0 followed by {next:?}");
                }
            }
            assert_eq!(denials, 0, "{name}: {answers:?}");
            statuses.iter().filter(|s| **s == 0).count()
        }
        Proto::Y => {
            assert!(statuses.is_empty(), "{name}: {answers:?}");
            denials
        }
    };
    // The writer used one token for its step 2 while joining; one may be refilled meanwhile.
    assert!(
        (9..=11).contains(&refused),
        "{name}: {refused} refused: {answers:?}"
    );
    assert!(
        w.errors.iter().all(|c| *c == 4001),
        "{name}: {:?}",
        w.errors
    );
    assert_eq!(w.errors.len(), refused, "{name}: {:?}", w.errors);
    let limited = metric(srv.addr, "coedit_rate_limited_ops_total") - limited_before;
    assert!(limited >= refused as f64, "{name}: metric {limited}");
    // The writer answers every step 1 with step 2 (a real client does) until nothing more
    // comes for longer than the resync delay.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let quiet = w.drain(Duration::from_millis(1500)).await?;
        by.drain(Duration::from_millis(20)).await?;
        if quiet.is_empty() && w.statuses.len() == w.expected_statuses() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: the resync did not settle"
        );
    }
    by.drain(Duration::from_millis(200)).await?;
    let ((text, map), _) = server_ydoc(srv, name);
    for m in &markers {
        assert_eq!(
            text.matches(m.as_str()).count(),
            1,
            "{name}: {m} in {text:?}"
        );
        assert_eq!(map[m], "v", "{name}: {m} in {map}");
    }
    assert!(
        w.content() == (text.clone(), map.clone()),
        "{name}: the writer diverged"
    );
    assert!(
        by.content() == (text, map),
        "{name}: the bystander diverged"
    );
    assert!(
        by.errors.is_empty(),
        "{name}: the bystander got {:?}",
        by.errors
    );
    assert!(by.updates > 0, "{name}: the bystander got no update");
    // Hocuspocus: the statuses answer the updates in order (the applied ones first).
    if proto == Proto::Hp {
        let accepted = FLOOD - refused;
        let in_order: Vec<u64> = (0..FLOOD).map(|i| u64::from(i < accepted)).collect();
        if statuses != in_order {
            return Ok(Some(format!(
                "{name}: statuses in arrival order {statuses:?} (updates 1 to {accepted} were \
                 applied, the rest refused: expected {in_order:?})"
            )));
        }
    }
    Ok(None)
}

/// Valid updates sent before an invalid one (within the burst).
const VALID_BEFORE_INVALID: usize = 8;

/// Hocuspocus: valid updates then, at once, one yrs cannot decode, on a document of their own.
/// The first are applied, the last refused (2005); the statuses answer them in order (`1`s
/// then `0`), else a description of the order they came in is returned.
async fn refusal_after_update(srv: &Server) -> Result<Option<String>> {
    let name = "order-h";
    let mut w = Peer::connect(srv, Proto::Hp, name, Doc::new()).await?;
    let before = w.statuses.len();
    for i in 0..VALID_BEFORE_INVALID {
        w.edit(|txn, text, _| text.push(txn, &format!("[{i}]")))
            .await?;
    }
    w.sent += 1;
    w.send(w.framing.update(&[5])).await?;
    let mut answers = Vec::new();
    let deadline = Instant::now() + ANSWER;
    while w.statuses.len() < w.sent || w.errors.is_empty() {
        assert!(Instant::now() < deadline, "{name}: {answers:?}");
        answers.extend(w.next(ANSWER).await?);
    }
    answers.extend(w.drain(QUIET).await?);
    let ((text, _), rev) = server_ydoc(srv, name);
    let want: String = (0..VALID_BEFORE_INVALID)
        .map(|i| format!("[{i}]"))
        .collect();
    assert_eq!((text, rev), (want, VALID_BEFORE_INVALID as u64), "{name}");
    assert_eq!(w.errors, [2005], "{name}: {answers:?}");
    let statuses = &w.statuses[before..];
    let mut in_order = vec![1; VALID_BEFORE_INVALID];
    in_order.push(0);
    let mut sorted = statuses.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(sorted, in_order, "{name}: {answers:?}");
    Ok((statuses != in_order).then(|| {
        format!(
            "{name}: {VALID_BEFORE_INVALID} valid updates then an undecodable one: statuses in \
             arrival order {statuses:?}, expected {in_order:?}"
        )
    }))
}

/// A slow consumer's server: small outbound bounds, no rate limit to speak of, relaxed
/// durability (no flush per update), a long client timeout (the slow clients send nothing).
const SLOW_CONFIG: &str = "[session]\noutbound_capacity = 16\nmax_outbound_bytes = 262144\n\
    max_ops_per_s = 100000.0\nop_burst = 100000.0\nclient_timeout_s = 300\n\
    [storage]\ndurability = \"relaxed\"\n";
/// Updates the writer sends, each replacing the text with this many characters.
const SLOW_UPDATES: usize = 4000;
const SLOW_CHUNK: u32 = 8192;

/// Two clients that never read (one per endpoint) while a writer replaces an 8 KiB text 4,000
/// times (32 MiB for each, far beyond the socket buffers) are disconnected with 1013; the
/// writer and a reader that keeps up are not, and see everything. The slow clients find the
/// close after what was queued for them, then reconnect, sync and converge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_yjs_reader_is_disconnected_and_the_others_go_on() -> Result<()> {
    let srv = start_server_with(SLOW_CONFIG);
    let name = "slow";
    let mut w = Peer::connect(&srv, Proto::Hp, name, Doc::new()).await?;
    let mut slow = vec![
        Peer::connect(&srv, Proto::Y, name, Doc::new()).await?,
        Peer::connect(&srv, Proto::Hp, name, Doc::new()).await?,
    ];
    let mut reader = Peer::connect(&srv, Proto::Y, name, Doc::new()).await?;
    let seen = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (seen2, stop2) = (seen.clone(), stop.clone());
    let reading = tokio::spawn(async move {
        while !stop2.load(Ordering::Relaxed) {
            reader.next(Duration::from_millis(50)).await?;
            seen2.store(reader.updates, Ordering::Relaxed);
        }
        anyhow::Ok(reader)
    });
    for i in 0..SLOW_UPDATES {
        let c = ((b'a' + (i % 26) as u8) as char).to_string();
        w.edit(|txn, text, _| {
            let len = text.len(txn);
            text.remove_range(txn, 0, len);
            text.push(txn, &c.repeat(SLOW_CHUNK as usize));
        })
        .await?;
        if i % 4 == 3 {
            // The writer keeps pace with the server and with the reader (well-behaved
            // clients), so only the clients that never read fall behind.
            let deadline = Instant::now() + Duration::from_secs(30);
            while w.statuses.len() < w.sent || seen.load(Ordering::Relaxed) < i + 1 {
                ensure!(
                    Instant::now() < deadline,
                    "update {i} not acknowledged or not seen"
                );
                w.next(Duration::from_millis(1)).await?;
            }
        }
    }
    assert!(
        w.statuses.iter().all(|s| *s == 1),
        "writer refused: {:?}",
        w.errors
    );
    assert_eq!(
        metric(srv.addr, "coedit_slow_consumer_disconnects_total"),
        2.0
    );
    // Each slow client finds the close (1013) after what was queued, then reconnects.
    for s in slow.iter_mut() {
        let closed = s.read_until_closed().await?;
        assert_eq!(
            closed,
            Some((1013, "slow consumer: reconnect and sync again".to_string()))
        );
        assert!(
            s.updates < SLOW_UPDATES,
            "{} updates before the close",
            s.updates
        );
    }
    let mut resumed = Vec::new();
    for (s, proto) in slow.into_iter().zip([Proto::Y, Proto::Hp]) {
        resumed.push(Peer::connect(&srv, proto, name, s.doc).await?);
    }
    // The others go on.
    w.edit(|txn, text, _| text.push(txn, "end")).await?;
    let deadline = Instant::now() + ANSWER;
    while seen.load(Ordering::Relaxed) < SLOW_UPDATES + 1 {
        ensure!(
            Instant::now() < deadline,
            "the reader missed the last update"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let reader = reading.await??;
    w.drain(QUIET).await?;
    for r in resumed.iter_mut() {
        r.drain(QUIET).await?;
    }
    let (content, rev) = server_ydoc(&srv, name);
    assert_eq!(rev, SLOW_UPDATES as u64 + 1);
    assert!(content.0.ends_with("end") && content.0.len() == SLOW_CHUNK as usize + 3);
    assert!(w.content() == content, "the writer diverged");
    assert!(reader.content() == content, "the reader diverged");
    assert_eq!(reader.updates, SLOW_UPDATES + 1);
    for r in &resumed {
        assert!(r.content() == content, "a resumed slow client diverged");
    }
    assert_eq!(
        metric(srv.addr, "coedit_slow_consumer_disconnects_total"),
        2.0
    );
    Ok(())
}
