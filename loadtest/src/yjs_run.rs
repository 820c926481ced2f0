//! `run --kind yjs`: real Yjs clients over the Hocuspocus protocol (`GET /hocuspocus`), with
//! the same timeline, report and convergence check as the text run ([`crate::harness`]).
//!
//! Each client is one tokio task with its own connection and its own `yrs::Doc`. It opens its
//! document's channel (`Auth` with the token, then sync step 1), answers the server's step 1
//! with step 2, applies the server's step 2, then types into the shared `Y.Text` named
//! `"text"` at `rate` edits per second near its cursor (inserts, with a backspace now and
//! then): every edit is one transaction, sent as one v1 update. It applies every update the
//! server relays and sends awareness at `presence_rate` (its cursor, as `y-protocols` does);
//! awareness it receives is not applied.
//!
//! Measured:
//! - op → ack: from sending an update to the `SyncStatus(true)` the server sends once it is
//!   durable. The server answers each update and step 2 of a channel in order, so statuses
//!   are matched to what was sent first-in first-out.
//! - op → visible: from sending an update until another client receives it. The server relays
//!   an update's bytes unchanged, so the author records its send time under a hash of those
//!   bytes ([`SentTimes`]; all clients share one clock because they share one process). Two
//!   authors deleting the same character at once send identical updates: the first send time
//!   is kept.
//!
//! Edits whose update was refused (`SyncStatus(false)`, counted as an error by the code the
//! server explains it with) or unconfirmed when the connection dropped are confirmed by the
//! status of the next step 2 this client sends: the server asks for it (its step 1) after a
//! transient refusal and on every join. At the end, every full client's text must equal the
//! server's `content.text` (`GET /api/docs/{doc}`).

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use coedit_protocol::yjs::frames::{
    HP_CLOSE, HP_PING, HP_PONG, HP_STATELESS, HP_SYNC_REPLY, HP_SYNC_STATUS, MSG_AUTH,
    MSG_AWARENESS, MSG_SYNC, SYNC_STEP1, SYNC_STEP2, SYNC_UPDATE,
};
use coedit_protocol::yjs::Framing;
use futures_util::{SinkExt, StreamExt};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use yrs::encoding::read::{Cursor, Read};
use yrs::encoding::write::Write;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{
    Assoc, Doc, GetString, IndexedSequence, OffsetKind, Options, ReadTxn, StateVector, StickyIndex,
    Text, TextRef, Transact, Update,
};

use crate::harness::{self, ClientEnd, Latencies, Shared, CONNECT_TIMEOUT, DRAIN_TIMEOUT, QUIET};
use crate::net_replay::Ws;
use crate::run::{Report, RunConfig, ALPHABET, BACKSPACE_SHARE};

/// The shared type every client types into.
pub const TEXT: &str = "text";
/// The provider version sent in `Auth`.
const PROVIDER_VERSION: &str = "coedit-loadtest";
/// Shards of [`SentTimes`] (clients look up send times concurrently).
const SHARDS: usize = 64;
/// Hocuspocus auth reply: permission denied + reason.
const AUTH_DENIED: u64 = 1;
/// Hocuspocus auth reply: authenticated + scope.
const AUTH_OK: u64 = 2;
/// Hocuspocus auth request: token.
const AUTH_TOKEN: u64 = 0;

type Stop = watch::Receiver<bool>;

/// Send times of every update, in microseconds on the run's clock, by [`SentTimes::key`].
struct SentTimes {
    shards: Vec<Mutex<HashMap<u64, u64>>>,
}

impl SentTimes {
    fn new() -> Self {
        SentTimes {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn key(update: &[u8]) -> u64 {
        let mut h = DefaultHasher::new();
        update.hash(&mut h);
        h.finish()
    }

    fn shard(&self, key: u64) -> &Mutex<HashMap<u64, u64>> {
        &self.shards[(key % SHARDS as u64) as usize]
    }

    fn insert(&self, key: u64, t: u64) {
        if let Ok(mut m) = self.shard(key).lock() {
            m.entry(key).or_insert(t);
        }
    }

    fn get(&self, key: u64) -> Option<u64> {
        self.shard(key).lock().ok()?.get(&key).copied()
    }
}

/// A Hocuspocus message from the server, for this client's one channel.
#[derive(Debug, PartialEq, Eq)]
enum FromServer<'a> {
    /// Sync step 1: the server's state vector (encoded v1).
    Step1(&'a [u8]),
    /// Sync step 2: what this client lacked.
    Step2(&'a [u8]),
    /// An update another client made.
    Update(&'a [u8]),
    /// Awareness states (not applied).
    Awareness,
    /// The channel is open; `readonly` for a viewer.
    Authenticated { readonly: bool },
    /// The channel is refused (the reason is JSON with the error code).
    Denied(&'a str),
    /// Whether an update (or step 2) was applied and is durable.
    SyncStatus(bool),
    /// An application message (the server explains refusals in one).
    Stateless(&'a str),
    /// The server closed the channel.
    Close(&'a str),
    /// Connection-level ping: answer pong.
    Ping,
    /// Connection-level pong, or a message type this client does not use.
    Ignored,
}

fn buf<'a>(c: &mut Cursor<'a>) -> Result<&'a [u8]> {
    let len = c.read_var::<u64>().map_err(|e| anyhow!("{e}"))?;
    let all: &'a [u8] = c.buf;
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| c.next.checked_add(l))
        .filter(|&e| e <= all.len())
        .ok_or_else(|| anyhow!("a length of {len} past the end of the frame"))?;
    let out = &all[c.next..end];
    c.next = end;
    Ok(out)
}

fn string<'a>(c: &mut Cursor<'a>) -> Result<&'a str> {
    Ok(std::str::from_utf8(buf(c)?)?)
}

fn var(c: &mut Cursor<'_>) -> Result<u64> {
    c.read_var::<u64>().map_err(|e| anyhow!("{e}"))
}

/// Decodes a frame the server sent (the inverse of `Framing`'s encoders, plus the replies
/// only a server sends).
fn decode(frame: &[u8]) -> Result<FromServer<'_>> {
    match frame {
        [HP_PING] => return Ok(FromServer::Ping),
        [HP_PONG] => return Ok(FromServer::Ignored),
        _ => {}
    }
    let mut c = Cursor::new(frame);
    let _address = string(&mut c)?;
    Ok(match var(&mut c)? {
        MSG_SYNC | HP_SYNC_REPLY => match var(&mut c)? {
            SYNC_STEP1 => FromServer::Step1(buf(&mut c)?),
            SYNC_STEP2 => FromServer::Step2(buf(&mut c)?),
            SYNC_UPDATE => FromServer::Update(buf(&mut c)?),
            t => bail!("unknown sync message type {t}"),
        },
        MSG_AWARENESS => FromServer::Awareness,
        MSG_AUTH => match var(&mut c)? {
            AUTH_OK => FromServer::Authenticated {
                readonly: string(&mut c)? == "readonly",
            },
            AUTH_DENIED => FromServer::Denied(string(&mut c)?),
            t => bail!("unknown auth message type {t}"),
        },
        HP_SYNC_STATUS => FromServer::SyncStatus(var(&mut c)? == 1),
        HP_STATELESS => FromServer::Stateless(string(&mut c)?),
        HP_CLOSE => FromServer::Close(string(&mut c).unwrap_or_default()),
        _ => FromServer::Ignored,
    })
}

/// The `Auth` message opening channel `name` with `token` (empty without authentication).
fn auth_frame(name: &str, token: &str) -> Vec<u8> {
    let mut v = Vec::new();
    v.write_string(name);
    v.write_var(MSG_AUTH);
    v.write_var(AUTH_TOKEN);
    v.write_string(token);
    v.write_string(PROVIDER_VERSION);
    v
}

/// The error code in a JSON explanation (`{"error": {"code": N, …}}`), if there is one.
fn error_code(json: &str) -> Option<u16> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    u16::try_from(v["error"]["code"].as_u64()?).ok()
}

/// Something sent that the server will answer with a `SyncStatus`.
enum Awaiting {
    /// One edit's update, sent then.
    Edit(Instant),
    /// A step 2, confirming these edits (sent before and refused or not confirmed).
    Sync(Vec<Instant>),
}

/// One Yjs client. See the module documentation.
struct YClient {
    idx: usize,
    doc: String,
    framing: Framing,
    ydoc: Doc,
    text: TextRef,
    /// Where this client types, tracked through remote edits.
    cursor: Option<StickyIndex>,
    awaiting: VecDeque<Awaiting>,
    /// Edits waiting to be confirmed by the status of the next step 2.
    orphaned: Vec<Instant>,
    /// The server's step 2 arrived on this connection.
    synced: bool,
    awareness_clock: u32,
    full: bool,
    lat: Latencies,
    token: Arc<str>,
    shared: Arc<Shared>,
    sent: Arc<SentTimes>,
}

impl YClient {
    fn new(cfg: &RunConfig, idx: usize, shared: Arc<Shared>, sent: Arc<SentTimes>) -> Self {
        let doc = harness::doc_of(cfg, idx);
        // Random client ids (yrs' default): ids must not repeat on a document, across runs too.
        let ydoc = Doc::with_options(Options {
            offset_kind: OffsetKind::Utf16,
            ..Options::default()
        });
        let text = ydoc.get_or_insert_text(TEXT);
        YClient {
            idx,
            framing: Framing::Hocuspocus(Arc::from(doc.as_str())),
            doc,
            ydoc,
            text,
            cursor: None,
            awaiting: VecDeque::new(),
            orphaned: Vec::new(),
            synced: false,
            awareness_clock: 0,
            full: cfg.full.is_none_or(|k| idx < k),
            lat: Latencies::new(),
            token: Arc::from(cfg.token.as_deref().unwrap_or_default()),
            shared,
            sent,
        }
    }

    async fn send(ws: &mut Ws, frame: Vec<u8>) -> Result<()> {
        ws.send(Message::Binary(frame.into())).await?;
        Ok(())
    }

    /// [`Self::connect`] to the server `attempt` names for this client, else to the next ones
    /// in turn (each server once); `attempt` is left at the one that answered.
    async fn connect_any(&mut self, cfg: &RunConfig, attempt: &mut usize) -> Result<Ws> {
        let mut last = None;
        for _ in 0..cfg.urls.len() {
            match self.connect(cfg.url_for(self.idx, *attempt)).await {
                Ok(ws) => return Ok(ws),
                Err(e) => last = Some(e),
            }
            *attempt += 1;
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no --url to connect to")))
    }

    /// Connects (again), opens the channel and syncs both ways; returns once the server's
    /// step 2 is applied.
    async fn connect(&mut self, url: &str) -> Result<Ws> {
        let connect = tokio_tungstenite::connect_async_with_config(url, None, true);
        let (mut ws, _) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .context("connect timed out")??;
        for a in self.awaiting.drain(..) {
            match a {
                Awaiting::Edit(t) => self.orphaned.push(t),
                Awaiting::Sync(ts) => self.orphaned.extend(ts),
            }
        }
        self.synced = false;
        let name = self.doc.clone();
        Self::send(&mut ws, auth_frame(&name, &self.token)).await?;
        let sv = self.ydoc.transact().state_vector().encode_v1();
        Self::send(&mut ws, self.framing.sync_step1(&sv)).await?;
        while !self.synced {
            let m = tokio::time::timeout(CONNECT_TIMEOUT, ws.next())
                .await
                .context("no sync step 2 from the server")?
                .ok_or_else(|| anyhow!("connection closed"))??;
            match m {
                Message::Binary(b) => self.on_frame(&mut ws, &b).await?,
                Message::Close(c) => bail!("connection closed: {c:?}"),
                _ => {}
            }
        }
        Ok(ws)
    }

    fn apply(&mut self, update: &[u8]) -> Result<()> {
        let u = Update::decode_v1(update).map_err(|e| anyhow!("bad update: {e}"))?;
        self.ydoc
            .transact_mut()
            .apply_update(u)
            .map_err(|e| anyhow!("update not applied: {e}"))
    }

    /// Handles one frame from the server.
    async fn on_frame(&mut self, ws: &mut Ws, frame: &[u8]) -> Result<()> {
        match decode(frame)? {
            FromServer::Step1(sv) => {
                let sv = StateVector::decode_v1(sv).map_err(|e| anyhow!("state vector: {e}"))?;
                let diff = self.ydoc.transact().encode_state_as_update_v1(&sv);
                self.awaiting
                    .push_back(Awaiting::Sync(std::mem::take(&mut self.orphaned)));
                Self::send(ws, self.framing.sync_step2(&diff)).await?;
            }
            FromServer::Step2(u) => {
                self.apply(u)?;
                self.synced = true;
            }
            FromServer::Update(u) => {
                self.apply(u)?;
                if let Some(t) = self.sent.get(SentTimes::key(u)) {
                    self.lat.visible(&self.shared, t);
                }
            }
            FromServer::SyncStatus(applied) => match (self.awaiting.pop_front(), applied) {
                (Some(Awaiting::Edit(t)), true) => self.lat.acked(&self.shared, Some(t)),
                (Some(Awaiting::Sync(ts)), true) => {
                    for t in ts {
                        self.lat.acked(&self.shared, Some(t));
                    }
                }
                (Some(Awaiting::Edit(t)), false) => self.orphaned.push(t),
                (Some(Awaiting::Sync(ts)), false) => self.orphaned.extend(ts),
                (None, _) => {
                    eprintln!("client {}: a sync status for nothing sent", self.idx);
                    self.shared.errors.fetch_add(1, Ordering::Relaxed);
                }
            },
            FromServer::Stateless(s) => {
                if let Some(code) = error_code(s) {
                    self.shared.error_code(code);
                }
            }
            FromServer::Authenticated { readonly: true } => {
                bail!("the token gives read-only access to {}", self.doc)
            }
            FromServer::Denied(reason) => {
                // Counted as an error when this client fails.
                self.shared.note_code(error_code(reason).unwrap_or(0));
                bail!("{} refused: {reason}", self.doc)
            }
            FromServer::Close(reason) => bail!("the server closed {}: {reason}", self.doc),
            FromServer::Ping => Self::send(ws, vec![HP_PONG]).await?,
            FromServer::Authenticated { readonly: false }
            | FromServer::Awareness
            | FromServer::Ignored => {}
        }
        Ok(())
    }

    /// A local edit near the cursor, as one transaction; returns its update.
    fn edit(&mut self, rng: &mut SmallRng) -> Vec<u8> {
        let mut txn = self.ydoc.transact_mut();
        let len = self.text.len(&txn);
        let at = self.cursor.as_ref().and_then(|c| c.get_offset(&txn));
        let mut pos = at.map_or(0, |o| o.index).min(len);
        if pos > 0 && rng.random_bool(BACKSPACE_SHARE) {
            pos -= 1;
            self.text.remove_range(&mut txn, pos, 1);
        } else {
            let c = ALPHABET[rng.random_range(0..ALPHABET.len())];
            self.text.insert(&mut txn, pos, c.encode_utf8(&mut [0; 4]));
            pos += 1;
        }
        // Attached to the character before it: others' inserts at the cursor go after it.
        self.cursor = self.text.sticky_index(&txn, pos, Assoc::Before);
        txn.encode_update_v1()
    }

    /// An awareness update with this client's cursor.
    fn awareness(&mut self) -> Vec<u8> {
        let pos = {
            let txn = self.ydoc.transact();
            let at = self.cursor.as_ref().and_then(|c| c.get_offset(&txn));
            at.map_or(0, |o| o.index)
        };
        self.awareness_clock += 1;
        let state = serde_json::json!({
            "user": {"name": format!("loadtest-{}", self.idx)},
            "cursor": {"anchor": pos, "head": pos},
        });
        let mut v = Vec::new();
        v.write_var(1u64);
        v.write_var(self.ydoc.client_id().get());
        v.write_var(self.awareness_clock);
        v.write_string(&state.to_string());
        self.framing.awareness(&v)
    }

    fn idle(&self) -> bool {
        self.awaiting.is_empty() && self.orphaned.is_empty()
    }

    /// Types until told to stop; reports when it has nothing unconfirmed; once every client
    /// has (`finish`), drains until quiet.
    async fn run(
        mut self,
        cfg: Arc<RunConfig>,
        mut stop: Stop,
        mut finish: Stop,
    ) -> Result<ClientEnd> {
        let mut rng =
            SmallRng::seed_from_u64(cfg.seed ^ (self.idx as u64).wrapping_mul(0x9e37_79b9));
        tokio::time::sleep(harness::ramp_delay(&cfg, self.idx)).await;
        let mut attempt = 0;
        let mut ws = self.connect_any(&cfg, &mut attempt).await?;
        let period = Duration::from_secs_f64(1.0 / cfg.rate.max(1e-6));
        let mut typing = tokio::time::interval_at(
            tokio::time::Instant::now() + period.mul_f64(rng.random::<f64>()),
            period,
        );
        typing.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let presence_period = Duration::from_secs_f64(1.0 / cfg.presence_rate.max(1e-6));
        let mut presence = tokio::time::interval(presence_period);
        let mut stopping = *stop.borrow();
        let mut settled = false;
        let mut finishing = false;
        let mut last_msg = Instant::now();
        let drain_deadline = tokio::time::sleep(Duration::from_secs(86_400));
        tokio::pin!(drain_deadline);
        loop {
            tokio::select! {
                _ = typing.tick(), if !stopping => {
                    let update = self.edit(&mut rng);
                    self.sent.insert(SentTimes::key(&update), self.shared.now_us());
                    self.shared.edits_typed.fetch_add(1, Ordering::Relaxed);
                    self.shared.ops_sent.fetch_add(1, Ordering::Relaxed);
                    self.awaiting.push_back(Awaiting::Edit(Instant::now()));
                    Self::send(&mut ws, self.framing.update(&update)).await?;
                }
                _ = presence.tick(), if !stopping && cfg.presence_rate > 0.0 => {
                    let frame = self.awareness();
                    Self::send(&mut ws, frame).await?;
                }
                m = ws.next() => {
                    last_msg = Instant::now();
                    match m {
                        Some(Ok(Message::Binary(b))) => self.on_frame(&mut ws, &b).await?,
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                            self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
                            attempt += 1;
                            ws = self.connect_any(&cfg, &mut attempt).await?;
                        }
                        Some(Ok(_)) => {}
                    }
                }
                _ = stop.changed(), if !stopping => {
                    stopping = true;
                    drain_deadline.as_mut().reset(tokio::time::Instant::now() + DRAIN_TIMEOUT);
                }
                _ = finish.changed(), if !finishing => finishing = true,
                _ = tokio::time::sleep(QUIET), if stopping => {
                    if !settled && self.idle() {
                        settled = true;
                        self.shared.settled.fetch_add(1, Ordering::Relaxed);
                    }
                    if finishing && self.idle() && last_msg.elapsed() >= QUIET {
                        break;
                    }
                }
                _ = &mut drain_deadline => bail!("client {} did not drain", self.idx),
            }
        }
        self.lat.merge_into(&self.shared);
        let _ = ws.close(None).await;
        let text = self
            .full
            .then(|| self.text.get_string(&self.ydoc.transact()));
        Ok(ClientEnd {
            doc: self.doc,
            rev: None,
            text,
        })
    }
}

/// The server's text of Yjs document `doc` (`content.text` of `GET /api/docs/{doc}`; an
/// empty text is `null` there).
fn server_text(base: &str, doc: &str, token: Option<&str>) -> Result<(Option<u64>, String)> {
    let mut req = ureq::get(&format!("{base}/api/docs/{doc}"));
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let v: serde_json::Value = req.call()?.body_mut().read_json()?;
    if v["kind"] != "yjs" {
        bail!("{doc} is not a Yjs document on the server: {v}");
    }
    let text = v["content"][TEXT].as_str().unwrap_or_default().to_string();
    Ok((None, text))
}

/// Runs the Yjs load against the Hocuspocus endpoints in `cfg.urls` and returns the report.
pub async fn run(cfg: RunConfig) -> Result<Report> {
    if cfg.baseline {
        bail!("the baseline server speaks only the text protocol");
    }
    if cfg
        .urls
        .iter()
        .any(|u| u.trim_end_matches('/').ends_with("/ws"))
    {
        bail!("Yjs clients speak Hocuspocus: give --url ws://HOST:PORT/hocuspocus");
    }
    let cfg = Arc::new(cfg);
    let sent = Arc::new(SentTimes::new());
    let make = |idx: usize, shared: Arc<Shared>, stop: Stop, finish: Stop| {
        YClient::new(&cfg, idx, shared, sent.clone()).run(cfg.clone(), stop, finish)
    };
    harness::drive("yjs", cfg.clone(), make, server_text).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_frames_decode() {
        let f = Framing::Hocuspocus("d".into());
        assert_eq!(
            decode(&f.sync_step1(b"sv")).unwrap(),
            FromServer::Step1(b"sv")
        );
        assert_eq!(
            decode(&f.sync_step2(b"s2")).unwrap(),
            FromServer::Step2(b"s2")
        );
        assert_eq!(decode(&f.update(b"u")).unwrap(), FromServer::Update(b"u"));
        assert_eq!(decode(&f.awareness(b"a")).unwrap(), FromServer::Awareness);
        assert_eq!(
            decode(&f.sync_status(true).unwrap()).unwrap(),
            FromServer::SyncStatus(true)
        );
        assert_eq!(
            decode(&f.sync_status(false).unwrap()).unwrap(),
            FromServer::SyncStatus(false)
        );
        assert_eq!(
            decode(&f.authenticated(false)).unwrap(),
            FromServer::Authenticated { readonly: false }
        );
        assert_eq!(
            decode(&f.authenticated(true)).unwrap(),
            FromServer::Authenticated { readonly: true }
        );
        let denied = f.permission_denied(r#"{"error":{"code":2001,"msg":"no"}}"#);
        let FromServer::Denied(reason) = decode(&denied).unwrap() else {
            panic!("not denied")
        };
        assert_eq!(error_code(reason), Some(2001));
        assert_eq!(decode(&[HP_PING]).unwrap(), FromServer::Ping);
        assert!(decode(&[1, b'd', 0, 9]).is_err());
        // What this client sends is what the server's decoder reads.
        let auth = auth_frame("d", "tok");
        assert!(matches!(
            coedit_protocol::yjs::frames::decode_hocuspocus(&auth),
            Ok(coedit_protocol::yjs::HpInbound::Doc {
                address: "d",
                msg: coedit_protocol::yjs::YMessage::Auth { token: "tok" }
            })
        ));
    }

    #[test]
    fn edits_are_updates_another_client_applies() {
        let cfg = RunConfig {
            urls: vec!["ws://127.0.0.1:1/hocuspocus".into()],
            clients: 2,
            docs: 1,
            hot: true,
            rate: 1.0,
            presence_rate: 0.0,
            ramp: Duration::ZERO,
            duration: Duration::ZERO,
            full: None,
            server_pid: None,
            doc_prefix: "y-".into(),
            seed: 7,
            baseline: false,
            token: None,
        };
        let shared = Arc::new(Shared::new());
        let sent = Arc::new(SentTimes::new());
        let mut a = YClient::new(&cfg, 0, shared.clone(), sent.clone());
        let mut b = YClient::new(&cfg, 1, shared, sent);
        let mut rng = SmallRng::seed_from_u64(1);
        for _ in 0..200 {
            let u = a.edit(&mut rng);
            b.apply(&u).unwrap();
            let u = b.edit(&mut rng);
            a.apply(&u).unwrap();
        }
        let text = |c: &YClient| c.text.get_string(&c.ydoc.transact());
        assert_eq!(text(&a), text(&b));
        assert!(text(&a).chars().count() > 200, "{}", text(&a));
        let aw = a.awareness();
        assert!(matches!(
            coedit_protocol::yjs::frames::decode_hocuspocus(&aw),
            Ok(coedit_protocol::yjs::HpInbound::Doc { address: "y-0", .. })
        ));
    }

    #[test]
    fn send_times_keep_the_first() {
        let s = SentTimes::new();
        let k = SentTimes::key(b"update");
        assert_eq!(s.get(k), None);
        s.insert(k, 5);
        s.insert(k, 9);
        assert_eq!(s.get(k), Some(5));
    }
}
