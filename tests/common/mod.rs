//! Shared helpers for integration tests: `start_server()` runs the real `coedit` binary on
//! `127.0.0.1:0` with a fresh data directory, and `TestClient` is a WebSocket client built on the
//! protocol crate's `OtClient` state machine.
//!
//! Everything talks to 127.0.0.1 only and every wait is bounded.

#![allow(dead_code)]

pub mod nats;
pub mod receiver;
pub mod secure;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use coedit_protocol::wire::{encode_json, encode_msgpack};
use coedit_protocol::{
    ClientMsg, ErrorCode, Op, OpMsg, OtClient, Outgoing, Selection, ServerMsg, ServerOpOutcome,
    PROTOCOL_VERSION,
};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream as TokioTcp;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long the server may take to print its address.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on any single HTTP exchange.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `coedit` child process; killed on drop.
pub struct Server {
    /// The address it bound.
    pub addr: SocketAddr,
    child: Option<Child>,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// The temporary directory holding data and config, when this server made it.
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    /// `ws://…/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory of the process in KiB (Linux `/proc`).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    }

    /// Peak resident memory of the process in KiB (Linux `/proc`, `VmHWM`).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    }

    /// Resets the peak resident memory to the current one (Linux `clear_refs`); false if the
    /// kernel refused.
    pub fn reset_peak_rss(&self) -> bool {
        self.pid()
            .is_some_and(|pid| std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok())
    }

    /// Kills the process with SIGKILL (a crash) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let mut child = self.child.take().ok_or_else(|| anyhow!("not running"))?;
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill()?;
        let _ = child.wait();
        bail!("server did not exit within {timeout:?}")
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        let mut child = self.child.take().ok_or_else(|| anyhow!("not running"))?;
        let pid = child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        for _ in 0..200 {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.kill()?;
        bail!("server did not exit within 10 s of SIGTERM")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts the server with default settings.
pub fn start_server() -> Server {
    start_server_with("")
}

/// Starts the server with extra TOML configuration, in a fresh temporary data directory.
pub fn start_server_with(config: &str) -> Server {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut s = start_server_at(&tmp.path().join("data"), config);
    s._tmp = Some(tmp);
    s
}

/// Starts the server on an existing (or new) data directory with extra TOML configuration.
pub fn start_server_at(data_dir: &Path, config: &str) -> Server {
    std::fs::create_dir_all(data_dir).expect("data dir");
    let config_path = data_dir.with_extension("toml");
    std::fs::write(&config_path, config).expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_coedit"))
        .args(["serve", "--bind", "127.0.0.1:0", "--config"])
        .arg(&config_path)
        .arg("--data-dir")
        .arg(data_dir)
        .env(
            "COEDIT_LOG",
            std::env::var("COEDIT_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn coedit");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("coedit listening on ") {
                let _ = tx.send(addr.to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(STARTUP_TIMEOUT)
        .expect("server did not print its address")
        .parse()
        .expect("address");
    Server {
        addr,
        child: Some(child),
        data_dir: data_dir.to_path_buf(),
        _tmp: None,
    }
}

/// Runs the `coedit` binary with `args`; returns success and stdout + stderr.
pub fn run_coedit(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_coedit"))
        .args(args)
        .env("COEDIT_LOG", "error")
        .output()
        .expect("run coedit");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Runs the `coedit` binary with `args` for at most `timeout` (then kills it); returns success
/// and stdout + stderr. For commands that must fail at startup: one that starts serving instead
/// is killed and reported as "timed out".
pub fn run_coedit_within(args: &[&str], timeout: Duration) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coedit"))
        .args(args)
        .env("COEDIT_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run coedit");
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut text = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut text);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut text);
    }
    match status {
        Some(s) => (s.success(), text),
        None => (false, format!("timed out after {timeout:?}: {text}")),
    }
}

/// Runs `coedit check` on a data directory; returns success and the output.
pub fn run_check(data_dir: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_coedit"))
        .arg("check")
        .arg("--data-dir")
        .arg(data_dir)
        .env("COEDIT_LOG", "error")
        .output()
        .expect("run coedit check");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// A number from the environment variable `name`, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The seed of a randomized test: `SEED` from the environment, or a fresh one.
pub fn seed() -> u64 {
    env_or("SEED", rand::random::<u64>())
}

/// One HTTP/1.1 exchange; returns the status and the JSON body (`Null` if none).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, serde_json::Value)> {
    http_auth(addr, method, path, body, None)
}

/// [`http`] with an optional bearer token.
pub fn http_auth(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> Result<(u16, serde_json::Value)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(HTTP_TIMEOUT))?;
    let body = body.unwrap_or("");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status: u16 = resp
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow!("no status in {resp:?}"))?
        .parse()?;
    let json = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let value = if json.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(json).with_context(|| format!("body {json:?}"))?
    };
    Ok((status, value))
}

/// One raw GET; returns the status, the lower-cased head and the body (any content type).
pub fn http_raw(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(HTTP_TIMEOUT)).expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let (head, body) = resp.split_once("\r\n\r\n").expect("a head");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// The value of the sample `name` (with labels) in a metrics exposition.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The value of one sample in the server's `/metrics`, or NaN if absent.
pub fn metric(addr: SocketAddr, name: &str) -> f64 {
    sample(&http_raw(addr, "/metrics").2, name).unwrap_or(f64::NAN)
}

/// A raw connection that said hello (server-assigned client id) and joined `doc` with `rev`
/// (answers not read).
pub async fn connect_and_join(url: &str, doc: &str, rev: Option<u64>) -> Result<Ws> {
    let mut ws = connect_raw(url).await?;
    for m in [
        ClientMsg::Hello {
            v: PROTOCOL_VERSION,
            client: None,
            token: None,
            user: None,
        },
        ClientMsg::Join {
            doc: doc.to_string(),
            rev,
        },
    ] {
        ws.send(Message::Binary(encode_msgpack(&m).into())).await?;
    }
    Ok(ws)
}

/// The server's text and revision of a document, over REST.
pub fn server_doc(addr: SocketAddr, doc: &str) -> (String, u64) {
    let (status, v) = http(addr, "GET", &format!("/api/docs/{doc}"), None).expect("GET doc");
    assert_eq!(status, 200, "{v}");
    (
        v["text"].as_str().expect("text").to_string(),
        v["rev"].as_u64().expect("rev"),
    )
}

/// A raw WebSocket connection.
pub type Ws = WebSocketStream<MaybeTlsStream<TokioTcp>>;

/// Opens a WebSocket to the server.
pub async fn connect_raw(url: &str) -> Result<Ws> {
    let (ws, _) = tokio::time::timeout(HTTP_TIMEOUT, tokio_tungstenite::connect_async(url))
        .await
        .context("connect timed out")??;
    Ok(ws)
}

/// What a raw read produced.
#[derive(Debug)]
pub enum Incoming {
    /// A decoded server message.
    Msg(ServerMsg),
    /// The server closed the connection with this code.
    Closed(Option<u16>),
    /// Nothing within the timeout.
    Timeout,
}

/// Reads the next server message (decoding either frame type).
pub async fn read_msg(ws: &mut Ws, timeout: Duration) -> Result<Incoming> {
    loop {
        let next = match tokio::time::timeout(timeout, ws.next()).await {
            Err(_) => return Ok(Incoming::Timeout),
            Ok(None) => return Ok(Incoming::Closed(None)),
            Ok(Some(Err(_))) => return Ok(Incoming::Closed(None)),
            Ok(Some(Ok(m))) => m,
        };
        return Ok(match next {
            Message::Binary(b) => Incoming::Msg(ServerMsg::from_msgpack(&b)?),
            Message::Text(t) => Incoming::Msg(ServerMsg::from_json(&t)?),
            Message::Close(frame) => Incoming::Closed(frame.map(|f| u16::from(f.code))),
            _ => continue,
        });
    }
}

/// A collaborating client: a replica, the OT state machine, and a connection.
pub struct TestClient {
    /// The server's `ws://` URL.
    pub url: String,
    /// The connection, `None` while disconnected.
    pub ws: Option<Ws>,
    /// MessagePack (binary frames) or JSON (text frames).
    pub binary: bool,
    /// The OT client state machine.
    pub ot: OtClient,
    /// The local replica.
    pub text: String,
    /// The joined document.
    pub doc: String,
    /// Errors received, in order.
    pub errors: Vec<(ErrorCode, String)>,
    /// Latest known selections of other clients.
    pub presence: HashMap<String, Vec<Selection>>,
    /// Access token sent in `hello`.
    pub token: Option<String>,
    /// `(rev, seq)` of this client's acknowledged ops (its own op in the stream, or an `ack`).
    pub own_acks: Vec<(u64, u64)>,
}

impl TestClient {
    /// Connects, says hello (reusing `client_id` if given) and joins `doc` with no revision.
    pub async fn join(url: &str, doc: &str, client_id: Option<&str>, binary: bool) -> Result<Self> {
        Self::join_as(url, doc, client_id, binary, None).await
    }

    /// [`TestClient::join`] with an access token.
    pub async fn join_as(
        url: &str,
        doc: &str,
        client_id: Option<&str>,
        binary: bool,
        token: Option<&str>,
    ) -> Result<Self> {
        let mut c = TestClient {
            token: token.map(str::to_string),
            url: url.to_string(),
            ws: None,
            binary,
            ot: OtClient::new(client_id.unwrap_or(""), 0),
            text: String::new(),
            doc: doc.to_string(),
            errors: Vec::new(),
            presence: HashMap::new(),
            own_acks: Vec::new(),
        };
        c.connect(client_id.map(str::to_string), None).await?;
        Ok(c)
    }

    /// The client id the server knows this client by.
    pub fn id(&self) -> String {
        self.ot.client_id().to_string()
    }

    /// Sends one message in this client's encoding.
    pub async fn send(&mut self, msg: &ClientMsg) -> Result<()> {
        let frame = if self.binary {
            Message::Binary(encode_msgpack(msg).into())
        } else {
            Message::Text(encode_json(msg).into())
        };
        let ws = self.ws.as_mut().ok_or_else(|| anyhow!("disconnected"))?;
        ws.send(frame).await?;
        Ok(())
    }

    /// (Re)connects: hello, then join with `rev` (or none: snapshot), then resend the op in
    /// flight. The join's answer is handled before returning.
    async fn connect(&mut self, client_id: Option<String>, rev: Option<u64>) -> Result<()> {
        self.ws = Some(connect_raw(&self.url).await?);
        self.send(&ClientMsg::Hello {
            v: PROTOCOL_VERSION,
            client: client_id,
            token: self.token.clone(),
            user: None,
        })
        .await?;
        match self.read().await? {
            Incoming::Msg(ServerMsg::Welcome { client, .. }) => self.ot.set_client_id(client),
            other => bail!("expected welcome, got {other:?}"),
        }
        let doc = self.doc.clone();
        self.send(&ClientMsg::Join { doc, rev }).await?;
        loop {
            match self.read().await? {
                Incoming::Msg(ServerMsg::Snapshot { rev, text, .. }) => {
                    let id = self.id();
                    self.ot = OtClient::new(id, rev);
                    self.text = text;
                    break;
                }
                Incoming::Msg(m @ ServerMsg::Ops { .. }) => {
                    self.handle(m).await?;
                    break;
                }
                Incoming::Msg(m) => self.handle(m).await?,
                other => bail!("expected the join's answer, got {other:?}"),
            }
        }
        if let Some(out) = self.ot.resend() {
            self.send_op(out).await?;
        }
        Ok(())
    }

    /// Drops the connection abruptly (no close frame).
    pub fn disconnect(&mut self) {
        self.ws = None;
    }

    /// Reconnects under the same client id and resumes from the replica's revision.
    pub async fn reconnect(&mut self) -> Result<()> {
        let id = self.id();
        let rev = self.ot.rev();
        self.connect(Some(id), Some(rev)).await
    }

    async fn read(&mut self) -> Result<Incoming> {
        let ws = self.ws.as_mut().ok_or_else(|| anyhow!("disconnected"))?;
        read_msg(ws, HTTP_TIMEOUT).await
    }

    /// Sends the op in flight again (same base and sequence number), as a client does after
    /// a refusal that did not apply it (`RateLimited`, `StorageFull`).
    pub async fn resend_inflight(&mut self) -> Result<()> {
        if let Some(out) = self.ot.resend() {
            self.send_op(out).await?;
        }
        Ok(())
    }

    async fn send_op(&mut self, out: Outgoing) -> Result<()> {
        let msg = ClientMsg::Op(OpMsg::new(self.doc.clone(), out.base_rev, out.seq, &out.op));
        self.send(&msg).await
    }

    /// A local edit: applied to the replica at once, sent when nothing is in flight.
    pub async fn edit(&mut self, op: Op) -> Result<()> {
        self.text = op.apply_str(&self.text)?;
        if let Some(out) = self.ot.local(op) {
            if self.ws.is_some() {
                self.send_op(out).await?;
            }
        }
        Ok(())
    }

    /// Sets this client's selection.
    pub async fn select(&mut self, sel: Vec<Selection>) -> Result<()> {
        let msg = ClientMsg::Presence {
            doc: self.doc.clone(),
            rev: self.ot.rev(),
            sel,
        };
        self.send(&msg).await
    }

    /// Handles one server message.
    pub async fn handle(&mut self, msg: ServerMsg) -> Result<()> {
        let next = match msg {
            ServerMsg::Ops { ops, .. } => {
                let mut next = None;
                for r in ops {
                    match self.ot.on_server_op(r.rev, &r.client, r.seq, &r.op)? {
                        ServerOpOutcome::Apply(op) => self.text = op.apply_str(&self.text)?,
                        ServerOpOutcome::OwnAck(n) => {
                            self.own_acks.push((r.rev, r.seq));
                            if n.is_some() {
                                next = n;
                            }
                        }
                        ServerOpOutcome::Stale => {}
                    }
                }
                next
            }
            ServerMsg::Ack { seq, rev, .. } => {
                let acks_inflight = self.ot.inflight_seq() == Some(seq);
                let next = self.ot.on_ack(seq, rev)?;
                if acks_inflight {
                    self.own_acks.push((rev, seq));
                }
                next
            }
            ServerMsg::Presence { peers, .. } => {
                for p in peers {
                    self.presence.insert(p.client, p.sel);
                }
                None
            }
            ServerMsg::Error { code, msg, .. } => {
                self.errors.push((code, msg));
                None
            }
            ServerMsg::Snapshot { .. }
            | ServerMsg::Welcome { .. }
            | ServerMsg::Authed { .. }
            | ServerMsg::Pong { .. } => None,
        };
        if let Some(out) = next {
            self.send_op(out).await?;
        }
        Ok(())
    }

    /// Handles messages until none arrives for `quiet`. Returns the close code if the server
    /// closed the connection.
    pub async fn pump(&mut self, quiet: Duration) -> Result<Option<Option<u16>>> {
        while let Some(ws) = self.ws.as_mut() {
            match read_msg(ws, quiet).await? {
                Incoming::Msg(m) => self.handle(m).await?,
                Incoming::Timeout => return Ok(None),
                Incoming::Closed(code) => {
                    self.ws = None;
                    return Ok(Some(code));
                }
            }
        }
        Ok(None)
    }

    /// Pumps until `cond` holds (bounded by [`HTTP_TIMEOUT`]).
    pub async fn pump_until(&mut self, cond: impl Fn(&TestClient) -> bool) -> Result<()> {
        let deadline = std::time::Instant::now() + HTTP_TIMEOUT;
        while !cond(self) {
            if std::time::Instant::now() > deadline {
                bail!(
                    "client {}: condition not reached in {HTTP_TIMEOUT:?}",
                    self.id()
                );
            }
            self.pump(Duration::from_millis(20)).await?;
        }
        Ok(())
    }

    /// Pumps until the client is synchronized and quiet (bounded).
    pub async fn settle(&mut self) -> Result<()> {
        for _ in 0..200 {
            self.pump(Duration::from_millis(30)).await?;
            if self.ot.is_synchronized() {
                return Ok(());
            }
        }
        bail!("client {} did not settle", self.id())
    }
}

/// One HTTP/1.1 exchange with a raw body (e.g. a Yjs update); returns the status and the raw
/// response body.
pub fn http_bytes(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(HTTP_TIMEOUT))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no head in {:?}", String::from_utf8_lossy(&resp)))?;
    let head = String::from_utf8_lossy(&resp[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow!("no status in {head:?}"))?
        .parse()?;
    Ok((status, resp[split + 4..].to_vec()))
}

/// What a raw read on a binary-protocol WebSocket (Yjs) produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawIncoming {
    /// A binary frame.
    Binary(Vec<u8>),
    /// A text frame.
    Text(String),
    /// The connection ended: the close frame's code and reason, if one came.
    Closed(Option<(u16, String)>),
    /// Nothing within the timeout.
    Timeout,
}

/// Reads the next data frame or the close (WebSocket pings and pongs are skipped).
pub async fn read_raw(ws: &mut Ws, timeout: Duration) -> RawIncoming {
    loop {
        let next = match tokio::time::timeout(timeout, ws.next()).await {
            Err(_) => return RawIncoming::Timeout,
            Ok(None) | Ok(Some(Err(_))) => return RawIncoming::Closed(None),
            Ok(Some(Ok(m))) => m,
        };
        return match next {
            Message::Binary(b) => RawIncoming::Binary(b.to_vec()),
            Message::Text(t) => RawIncoming::Text(t.to_string()),
            Message::Close(f) => {
                RawIncoming::Closed(f.map(|f| (u16::from(f.code), f.reason.as_str().to_string())))
            }
            _ => continue,
        };
    }
}

/// A message the server sends on a Yjs connection (y-websocket or Hocuspocus), decoded
/// strictly (one message per frame, no trailing bytes) for assertions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum YServerMsg {
    /// Sync step 1 with the server's state vector (encoded v1).
    SyncStep1(Vec<u8>),
    /// Sync step 2: what the client lacks (an update, v1).
    SyncStep2(Vec<u8>),
    /// An update from someone else.
    Update(Vec<u8>),
    /// An awareness update.
    Awareness(Vec<u8>),
    /// Auth: permission denied, with the reason (coedit: JSON `{"error":{"code",…}}`).
    PermissionDenied(String),
    /// Hocuspocus auth: authenticated, with the scope.
    Authenticated(String),
    /// Hocuspocus: sync status (1 applied and durable, 0 refused).
    SyncStatus(u64),
    /// Hocuspocus: a stateless message.
    Stateless(String),
    /// Hocuspocus: the server closes the channel, with a reason.
    Close(String),
    /// Hocuspocus: connection-level pong.
    Pong,
}

/// Decodes a frame from the server: `(address, message)`, the address `None` for y-websocket
/// and for connection-level Hocuspocus messages.
pub fn decode_yjs_server(frame: &[u8], hocuspocus: bool) -> Result<(Option<String>, YServerMsg)> {
    use yrs::encoding::read::{Cursor, Read};
    if hocuspocus && frame == [10] {
        return Ok((None, YServerMsg::Pong));
    }
    let mut c = Cursor::new(frame);
    let e = |e: yrs::encoding::read::Error| anyhow!("frame {frame:?}: {e}");
    let address = if hocuspocus {
        Some(c.read_string().map_err(e)?.to_string())
    } else {
        None
    };
    let t: u64 = c.read_var().map_err(e)?;
    let msg = match (t, hocuspocus) {
        (0, _) | (4, true) => {
            let step: u64 = c.read_var().map_err(e)?;
            let buf = c.read_buf().map_err(e)?.to_vec();
            match step {
                0 => YServerMsg::SyncStep1(buf),
                1 => YServerMsg::SyncStep2(buf),
                2 => YServerMsg::Update(buf),
                s => bail!("unknown sync step {s} in {frame:?}"),
            }
        }
        (1, _) => YServerMsg::Awareness(c.read_buf().map_err(e)?.to_vec()),
        (2, _) => {
            let sub: u64 = c.read_var().map_err(e)?;
            let s = c.read_string().map_err(e)?.to_string();
            match (sub, hocuspocus) {
                (0, false) | (1, true) => YServerMsg::PermissionDenied(s),
                (2, true) => YServerMsg::Authenticated(s),
                _ => bail!("unknown auth message {sub} in {frame:?}"),
            }
        }
        (5, true) => YServerMsg::Stateless(c.read_string().map_err(e)?.to_string()),
        (7, true) => YServerMsg::Close(c.read_string().map_err(e)?.to_string()),
        (8, true) => YServerMsg::SyncStatus(c.read_var().map_err(e)?),
        _ => bail!("unknown message type {t} in {frame:?}"),
    };
    if c.has_content() {
        bail!("trailing bytes in {frame:?}");
    }
    Ok((address, msg))
}

/// The code of a coedit error told in a Yjs message (`{"error":{"code":N,"msg":…}}`).
pub fn yjs_error_code(json: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v["error"]["code"].as_u64()
}

/// A Hocuspocus `Auth` message (a token, possibly empty) for channel `address`.
pub fn hp_auth(address: &str, token: &str) -> Vec<u8> {
    use yrs::encoding::write::Write;
    let mut v = Vec::new();
    v.write_string(address);
    v.write_var(2u64);
    v.write_var(0u64);
    v.write_string(token);
    v
}
