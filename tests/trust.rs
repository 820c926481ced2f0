//! Regressions of the adversarial run (issue 13), each against the real binary: a viewer cannot
//! write whatever the grant lengths, tokens from the future are refused, an expired session is
//! closed and hears nothing more, a frame header announcing 2^40 bytes closes the connection at
//! once without memory growth, unauthenticated connections get a small budget, refused hellos
//! do not fill the audit log, a wrong master key is refused at startup, history is paged, and
//! the smaller ones (REST body limits and order of checks, bad query ranges, config ranges,
//! token lifetimes, shutdown of sessions that joined nothing).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use coedit_actors::security::auth::{now_s, Claims, Role, TokenSigner};
use coedit_actors::security::crypto::Sm2Signer;
use coedit_protocol::{ClientMsg, ErrorCode, Op, ServerMsg, PROTOCOL_VERSION};
use common::secure::{hello, issue, path_str, setup};
use common::{
    connect_raw, http, http_auth, read_msg, run_coedit, run_coedit_within, start_server_at,
    start_server_with, Incoming, TestClient,
};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(5);

fn post_op(addr: std::net::SocketAddr, doc: &str, body: &str, token: Option<&str>) -> (u16, u64) {
    let (status, v) = http_auth(
        addr,
        "POST",
        &format!("/api/docs/{doc}/ops"),
        Some(body),
        token,
    )
    .unwrap();
    (status, v["error"]["code"].as_u64().unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exact_grant_beats_a_longer_prefix_over_websocket_and_rest() -> Result<()> {
    let s = setup();
    let server = start_server_at(&s.data, &s.config);
    let url = server.ws_url();
    for (doc, broad, narrow) in [
        ("notes-", "notes-*=editor", "notes-=viewer"),
        ("notes-ab", "notes-ab*=editor", "notes-ab=viewer"),
    ] {
        // An editor of the prefix creates the document.
        let editor = issue(&s, "ed", "acme", &[broad], false);
        let mut e = TestClient::join_as(&url, doc, None, true, Some(&editor)).await?;
        e.edit(Op::insert_at(0, "kept")).await?;
        e.settle().await?;
        // The viewer's exact grant is shorter than the editor prefix: it must still win.
        let viewer = issue(&s, "vi", "acme", &[broad, narrow], false);
        let mut v = TestClient::join_as(&url, doc, None, true, Some(&viewer)).await?;
        assert_eq!(v.text, "kept");
        v.edit(Op::insert_at(0, "VIEWER ")).await?;
        v.pump_until(|c| !c.errors.is_empty()).await?;
        assert_eq!(v.errors[0].0, ErrorCode::ReadOnly, "{doc}: {:?}", v.errors);
        let (status, code) = post_op(
            server.addr,
            doc,
            r#"{"base_rev":1,"op":["REST "]}"#,
            Some(&viewer),
        );
        assert_eq!((status, code), (403, 5006), "{doc}");
        let (status, body) = http_auth(
            server.addr,
            "GET",
            &format!("/api/docs/{doc}"),
            None,
            Some(&viewer),
        )?;
        assert_eq!(
            (status, body["text"].as_str()),
            (200, Some("kept")),
            "{doc}"
        );
        // A prefix-only token still writes the longer names.
        let (status, _) = post_op(
            server.addr,
            &format!("{doc}x"),
            r#"{"base_rev":0,"op":["ok"]}"#,
            Some(&viewer),
        );
        assert_eq!(status, 200, "{doc}x");
    }
    Ok(())
}

/// A token signed with the server's SM2 key, with hand-made claims.
fn signed(s: &common::secure::Setup, claims: &Claims) -> String {
    let signer = Sm2Signer::load(&s.keys.join("sm2.pem")).unwrap();
    TokenSigner::Sm2(signer).issue(claims)
}

fn claims(iat: u64, exp: u64) -> Claims {
    Claims {
        sub: "alice".into(),
        tenant: "acme".into(),
        iat,
        exp,
        nbf: None,
        grants: [("notes-*".to_string(), Role::Editor)]
            .into_iter()
            .collect(),
        admin: false,
        name: None,
        color: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_the_future_are_refused() -> Result<()> {
    let s = setup();
    let server = start_server_at(&s.data, &s.config);
    let year = 365 * 86_400;
    let ahead = signed(&s, &claims(now_s() + year, now_s() + 2 * year));
    assert_eq!(
        hello(&server, Some(&ahead)).await?,
        Some((ErrorCode::InvalidToken, Some(1008)))
    );
    let mut c = claims(now_s(), now_s() + 3600);
    c.nbf = Some(now_s() + 3600);
    assert_eq!(
        hello(&server, Some(&signed(&s, &c))).await?,
        Some((ErrorCode::InvalidToken, Some(1008)))
    );
    // Within the default skew (30 s): accepted.
    let near = signed(&s, &claims(now_s() + 10, now_s() + 3600));
    assert_eq!(hello(&server, Some(&near)).await?, None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_closed_and_hears_nothing_more() -> Result<()> {
    let s = setup();
    let config = s.config.replace("[auth]\n", "[auth]\nclock_skew_s = 0\n");
    let server = start_server_at(&s.data, &config);
    let url = server.ws_url();
    let long = signed(&s, &claims(now_s(), now_s() + 3600));
    let mut writer = TestClient::join_as(&url, "notes-x", None, true, Some(&long)).await?;
    writer.edit(Op::insert_at(0, "a")).await?;
    writer.settle().await?;
    let short = signed(&s, &claims(now_s(), now_s() + 2));
    let mut reader = TestClient::join_as(&url, "notes-x", None, true, Some(&short)).await?;
    assert_eq!(reader.text, "a");
    // Wait past the expiry, reading whatever comes (nothing is sent to it meanwhile).
    let deadline = Instant::now() + Duration::from_secs(6);
    let mut closed = None;
    while Instant::now() < deadline && closed.is_none() {
        closed = reader.pump(Duration::from_millis(100)).await?;
    }
    assert_eq!(
        closed,
        Some(Some(1008)),
        "the expired session must be closed"
    );
    assert_eq!(
        reader.errors.last().map(|e| e.0),
        Some(ErrorCode::TokenExpired),
        "{:?}",
        reader.errors
    );
    // Edits made after the expiry never reached it.
    writer.edit(Op::insert_at(1, "b")).await?;
    writer.settle().await?;
    assert_eq!(reader.text, "a");
    Ok(())
}

/// A raw WebSocket connection: the handshake by hand, so frames can be written byte by byte.
fn raw_ws(addr: std::net::SocketAddr) -> Result<TcpStream> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(WAIT))?;
    write!(
        s,
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b)?;
        head.push(b[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        bail!("no upgrade: {}", String::from_utf8_lossy(&head));
    }
    Ok(s)
}

/// A masked client frame header (binary) announcing `len` bytes.
fn frame_header(len: u64) -> Vec<u8> {
    let mut h = vec![0x82, 0x80 | 127];
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0]);
    h
}

/// Reads server frames until a close frame; returns its code (`None` if the connection ended
/// without one).
fn read_close(s: &mut TcpStream) -> Option<u16> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Parse complete frames in `buf`.
        while buf.len() >= 2 {
            let len = (buf[1] & 0x7f) as usize;
            let (hl, len) = match len {
                126 if buf.len() >= 4 => (4, u16::from_be_bytes([buf[2], buf[3]]) as usize),
                127 if buf.len() >= 10 => {
                    (10, u64::from_be_bytes(buf[2..10].try_into().ok()?) as usize)
                }
                126 | 127 => break,
                n => (2, n),
            };
            if buf.len() < hl + len {
                break;
            }
            if buf[0] & 0x0f == 0x8 {
                let p = &buf[hl..hl + len];
                return (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
            }
            buf.drain(..hl + len);
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_header_closes_the_connection_at_once() -> Result<()> {
    let s = setup();
    let server = start_server_at(&s.data, &s.config);
    let before = server.rss_kib().unwrap_or(0);
    for announced in [1u64 << 40, 2 * 1024 * 1024, 20 * 1024] {
        let mut ws = raw_ws(server.addr)?;
        ws.write_all(&frame_header(announced))?;
        // Keep sending payload while the server has not closed (bounded: 64 MiB, 10 s).
        let zeros = vec![0u8; 256 * 1024];
        let started = Instant::now();
        let mut sent = 0usize;
        let mut writer = ws.try_clone()?;
        writer.set_write_timeout(Some(Duration::from_millis(200)))?;
        let pump = std::thread::spawn(move || {
            while sent < 64 << 20 && started.elapsed() < Duration::from_secs(10) {
                if writer.write_all(&zeros).is_err() {
                    break;
                }
                sent += zeros.len();
            }
            sent
        });
        let code = read_close(&mut ws);
        let elapsed = started.elapsed();
        let sent = pump.join().unwrap();
        assert_eq!(code, Some(1009), "announced {announced}");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
        eprintln!("announced {announced}: closed with 1009 after {elapsed:?}, {sent} bytes sent");
    }
    let after = server.rss_kib().unwrap_or(0);
    eprintln!("server RSS {before} KiB before, {after} KiB after");
    assert!(
        after < before + 32 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_connections_get_a_small_budget() -> Result<()> {
    let server = start_server_with("[session]\nhello_timeout_s = 1\n");
    // No hello: closed after the hello timeout.
    let mut ws = connect_raw(&server.ws_url()).await?;
    let started = Instant::now();
    match read_msg(&mut ws, WAIT).await? {
        Incoming::Closed(code) => assert_eq!(code, Some(1008)),
        other => bail!("expected a close, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    // Messages before hello: more than 64 KiB of them closes the connection.
    let mut ws = connect_raw(&server.ws_url()).await?;
    let junk = Message::Binary(vec![0xc1u8; 8 * 1024].into());
    let mut closed = None;
    for _ in 0..20 {
        if ws.send(junk.clone()).await.is_err() {
            break;
        }
    }
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        match read_msg(&mut ws, WAIT).await? {
            Incoming::Closed(code) => {
                closed = Some(code);
                break;
            }
            Incoming::Msg(ServerMsg::Error { .. }) => {}
            other => bail!("unexpected {other:?}"),
        }
    }
    assert_eq!(closed, Some(Some(1008)));
    // A client that says hello and pipelines big frames behind it is not affected.
    let mut c = TestClient::join(&server.ws_url(), "pipelined", None, true).await?;
    c.edit(Op::insert_at(0, &"x".repeat(200_000))).await?;
    c.settle().await?;
    assert_eq!(c.ot.rev(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_hellos_do_not_fill_the_audit_log() -> Result<()> {
    let s = setup();
    let mut server = start_server_at(&s.data, &s.config);
    // Each token carries ~6 KB of attacker text in a header field the server quotes back.
    const N: usize = 600;
    let field = "A".repeat(6000);
    let header = base64_url(&format!(
        r#"{{"alg":"SM2-SM3","typ":"coedit","{field}":1}}"#
    ));
    let token = format!("{header}.e30.c2ln");
    for i in 0..N {
        let mut ws = connect_raw(&server.ws_url()).await?;
        let hello = ClientMsg::Hello {
            v: PROTOCOL_VERSION,
            client: None,
            token: Some(token.clone()),
            user: None,
        };
        ws.send(Message::Text(
            coedit_protocol::wire::encode_json(&hello).into(),
        ))
        .await?;
        match read_msg(&mut ws, WAIT).await? {
            Incoming::Msg(ServerMsg::Error { code, .. }) => {
                assert_eq!(code, ErrorCode::InvalidToken, "hello {i}")
            }
            other => bail!("hello {i}: {other:?}"),
        }
    }
    assert!(server.terminate()?.success());
    let export = s.data.with_extension("audit.jsonl");
    let (ok, out) = run_coedit(&[
        "audit",
        "export",
        "--data-dir",
        path_str(&s.data),
        "--out",
        path_str(&export),
    ]);
    assert!(ok, "{out}");
    let text = std::fs::read_to_string(&export)?;
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let refused: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["event"]["kind"] == "refused")
        .collect();
    let counted: u64 = lines
        .iter()
        .filter(|l| l["event"]["kind"] == "refusals_counted")
        .map(|l| l["event"]["counted"].as_u64().unwrap())
        .sum();
    eprintln!(
        "{N} refused hellos: {} refusal records, {counted} counted in summaries, {} bytes of audit \
         log in all",
        refused.len(),
        text.len()
    );
    // Every refusal accounted for; identical ones recorded once.
    assert_eq!(refused.len() as u64 + counted, N as u64);
    assert!(refused.len() <= 2, "{}", refused.len());
    for r in &refused {
        let reason = r["event"]["reason"].as_str().unwrap();
        assert!(
            reason.len() < 400,
            "unclipped reason of {} bytes",
            reason.len()
        );
        assert_eq!(r["event"]["source"], "127.0.0.1");
    }
    assert!(text.len() < 64 * 1024, "{} bytes", text.len());
    Ok(())
}

fn base64_url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[test]
fn a_wrong_master_key_is_refused_at_startup() {
    let s = setup();
    let mut server = start_server_at(&s.data, &s.config);
    let token = issue(&s, "alice", "acme", &["notes-*=editor"], false);
    let (status, _) = post_op(
        server.addr,
        "notes-1",
        r#"{"base_rev":0,"op":["secret"]}"#,
        Some(&token),
    );
    assert_eq!(status, 200);
    assert!(server.terminate().unwrap().success());
    // Another key file: also numbers its key "1".
    let other = s._tmp.path().join("other-keys");
    let (ok, out) = run_coedit(&["keygen", "--out", path_str(&other)]);
    assert!(ok, "{out}");
    let wrong = s.config.replace(
        &format!("{}/master.key", path_str(&s.keys)),
        &format!("{}/master.key", path_str(&other)),
    );
    let config_path = s._tmp.path().join("wrong.toml");
    std::fs::write(&config_path, &wrong).unwrap();
    let (ok, out) = run_coedit_within(
        &[
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--config",
            path_str(&config_path),
            "--data-dir",
            path_str(&s.data),
        ],
        Duration::from_secs(10),
    );
    assert!(!ok, "the server started with the wrong key: {out}");
    assert!(
        out.contains("not the key this store was encrypted with"),
        "{out}"
    );
    // The right key still opens everything; nothing was written under the wrong one.
    let server = start_server_at(&s.data, &s.config);
    let (status, v) =
        http_auth(server.addr, "GET", "/api/docs/notes-1", None, Some(&token)).unwrap();
    assert_eq!((status, v["text"].as_str()), (200, Some("secret")), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_paged_and_read_off_the_document_actor() -> Result<()> {
    let srv = start_server_with(
        "[document]\nhistory_window = 100\n[storage]\ndurability = \"relaxed\"\n",
    );
    const N: u64 = 2500;
    for rev in 0..N {
        let body = if rev == 0 {
            r#"{"base_rev":0,"op":["x"]}"#.to_string()
        } else {
            format!(r#"{{"base_rev":{rev},"op":[{rev},"x"]}}"#)
        };
        let (status, _) = post_op(srv.addr, "long", &body, None);
        assert_eq!(status, 200, "op {rev}");
    }
    let mut from = 0;
    let mut revs = Vec::new();
    let mut pages = 0;
    loop {
        let (status, v) = http(
            srv.addr,
            "GET",
            &format!("/api/docs/long/ops?from={from}"),
            None,
        )?;
        assert_eq!(status, 200, "{v}");
        let ops = v["ops"].as_array().unwrap();
        assert!(ops.len() <= 1000, "{}", ops.len());
        revs.extend(ops.iter().map(|o| o["rev"].as_u64().unwrap()));
        pages += 1;
        match v["next"].as_u64() {
            Some(n) => from = n,
            None => break,
        }
    }
    assert_eq!(revs, (1..=N).collect::<Vec<_>>());
    assert_eq!(pages, 3);
    let (status, v) = http(
        srv.addr,
        "GET",
        "/api/docs/long/ops?from=2490&limit=5",
        None,
    )?;
    assert_eq!(status, 200);
    assert_eq!(
        (v["ops"].as_array().unwrap().len(), v["next"].as_u64()),
        (5, Some(2495))
    );
    for (q, names) in [
        ("from=5&to=2", "from"),
        ("limit=0", "limit"),
        ("limit=20000", "limit"),
    ] {
        let (status, v) = http(srv.addr, "GET", &format!("/api/docs/long/ops?{q}"), None)?;
        let msg = v["error"]["msg"].as_str().unwrap_or_default();
        assert_eq!(
            (status, v["error"]["code"].as_u64()),
            (400, Some(1001)),
            "{q}: {v}"
        );
        assert!(msg.contains(names), "{q}: {msg}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_limits_and_checks_come_in_the_right_order() -> Result<()> {
    // A trailing retain past the end is refused, over REST as over WebSocket.
    let srv = start_server_with("");
    assert_eq!(
        post_op(srv.addr, "t", r#"{"base_rev":0,"op":[99999]}"#, None),
        (409, 2002)
    );
    assert_eq!(
        post_op(srv.addr, "t", r#"{"base_rev":0,"op":["ab"]}"#, None).0,
        200
    );
    assert_eq!(
        post_op(srv.addr, "t", r#"{"base_rev":1,"op":[2]}"#, None).0,
        200
    );
    assert_eq!(
        post_op(srv.addr, "t", r#"{"base_rev":1,"op":[3]}"#, None),
        (409, 2002)
    );
    let mut c = TestClient::join(&srv.ws_url(), "t", None, false).await?;
    c.send(&ClientMsg::Op(coedit_protocol::OpMsg {
        doc: "t".into(),
        rev: 2,
        seq: 1,
        op: vec![coedit_protocol::Component::Retain(99_999)],
        t: None,
    }))
    .await?;
    c.pump_until(|c| !c.errors.is_empty()).await?;
    assert_eq!(c.errors[0].0, ErrorCode::OpDoesNotFit);
    // An oversized body gets the JSON error 1002 (413), not plain text.
    let big = format!(r#"{{"base_rev":0,"op":["{}"]}}"#, "y".repeat(2 << 20));
    let (status, v) = http(srv.addr, "POST", "/api/docs/t/ops", Some(&big))?;
    assert_eq!(
        (status, v["error"]["code"].as_u64()),
        (413, Some(1002)),
        "{v}"
    );
    // With authentication on, an unauthenticated request with a bad body gets 401.
    let s = setup();
    let secure = start_server_at(&s.data, &s.config);
    assert_eq!(
        post_op(secure.addr, "notes-1", "not json", None),
        (401, 5001)
    );
    let (status, _) = http(secure.addr, "POST", "/api/docs/notes-1/ops", Some(&big))?;
    assert_eq!(status, 401);
    Ok(())
}

#[test]
fn out_of_range_settings_and_token_lifetimes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[server]\nworkers = 100000\n").unwrap();
    let (ok, out) = run_coedit_within(
        &[
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--config",
            path_str(&config),
            "--data-dir",
            path_str(&dir.path().join("data")),
        ],
        Duration::from_secs(10),
    );
    assert!(!ok);
    assert!(
        out.contains("[server] workers = 100000 is out of range"),
        "{out}"
    );
    assert!(!out.contains("panicked"), "{out}");
    let keys = dir.path().join("keys");
    assert!(run_coedit(&["keygen", "--out", path_str(&keys)]).0);
    let key = keys.join("hmac.key");
    let (ok, out) = run_coedit(&[
        "token",
        "issue",
        "--sub",
        "a",
        "--tenant",
        "t",
        "--hmac-key",
        path_str(&key),
        "--ttl",
        "18446744073709551615",
    ]);
    assert!(!ok && out.contains("--ttl"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_joined_nothing_is_closed_at_shutdown() -> Result<()> {
    let mut srv = start_server_with("[server]\nshutdown_timeout_s = 20\n");
    let mut ws = connect_raw(&srv.ws_url()).await?;
    let hello = ClientMsg::Hello {
        v: PROTOCOL_VERSION,
        client: None,
        token: None,
        user: None,
    };
    ws.send(Message::Text(
        coedit_protocol::wire::encode_json(&hello).into(),
    ))
    .await?;
    assert!(matches!(
        read_msg(&mut ws, WAIT).await?,
        Incoming::Msg(ServerMsg::Welcome { .. })
    ));
    let started = Instant::now();
    let pid = srv.pid().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()?;
    match read_msg(&mut ws, WAIT).await? {
        Incoming::Closed(code) => assert_eq!(code, Some(1012)),
        other => bail!("expected 1012, got {other:?}"),
    }
    let status = srv.wait_exit(Duration::from_secs(5))?;
    assert!(status.success());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_audit_chain_is_detected_and_only_an_accepted_loss_lets_the_server_go_on(
) -> Result<()> {
    use coedit_actors::storage::{Kv, Tree};
    let s = setup();
    let data = path_str(&s.data).to_string();
    let mut server = start_server_at(&s.data, &s.config);
    let token = issue(&s, "alice", "acme", &["notes-*=editor"], false);
    for rev in 0..5u64 {
        let body = if rev == 0 {
            r#"{"base_rev":0,"op":["a"]}"#.to_string()
        } else {
            format!(r#"{{"base_rev":{rev},"op":[{rev},"a"]}}"#)
        };
        assert_eq!(post_op(server.addr, "notes-1", &body, Some(&token)).0, 200);
    }
    // Signed checkpoints every second, each anchored outside the store.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(server.terminate()?.success());
    let pubkey = s.keys.join("sm2.pub.pem");
    let verify = || {
        run_coedit(&[
            "audit",
            "verify",
            "--data-dir",
            &data,
            "--pubkey",
            path_str(&pubkey),
        ])
    };
    let (ok, out) = verify();
    assert!(ok && !out.contains(" 0 anchored"), "{out}");
    // Every audit record deleted: once "ok: 0 records".
    {
        let store = coedit_actors::SledStore::open_audit_reader(&s.data)?;
        store.kv().delete_range(Tree::Audit, &[], &[0xff; 9])?;
        store.kv().flush()?;
    }
    let (ok, out) = verify();
    assert!(!ok && out.contains("cut short"), "{out}");
    let config_path = s._tmp.path().join("coedit.toml");
    std::fs::write(&config_path, &s.config)?;
    let (ok, out) = run_coedit(&[
        "check",
        "--config",
        path_str(&config_path),
        "--data-dir",
        &data,
    ]);
    assert!(!ok && out.contains("audit log lost records"), "{out}");
    let serve = [
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--config",
        path_str(&config_path),
        "--data-dir",
        &data,
    ];
    let (ok, out) = run_coedit_within(&serve, Duration::from_secs(10));
    assert!(!ok && out.contains("audit log lost records"), "{out}");
    // `recover` without --accept-loss writes nothing.
    let recover = |accept: bool| {
        let mut args = vec![
            "recover",
            "--config",
            path_str(&config_path),
            "--data-dir",
            &data,
        ];
        if accept {
            args.push("--accept-loss");
        }
        run_coedit(&args)
    };
    let (ok, out) = recover(false);
    assert!(ok && out.contains("nothing written"), "{out}");
    let (ok, _) = run_coedit_within(&serve, Duration::from_secs(10));
    assert!(!ok);
    let (ok, out) = recover(true);
    assert!(ok && out.contains("gap record"), "{out}");
    // The server goes on; the chain verifies and says what was lost.
    let mut server = start_server_at(&s.data, &s.config);
    let (status, v) = http_auth(server.addr, "GET", "/api/docs/notes-1", None, Some(&token))?;
    assert_eq!((status, v["text"].as_str()), (200, Some("aaaaa")));
    assert!(server.terminate()?.success());
    let (ok, out) = verify();
    assert!(
        ok && out.contains("were lost and the loss was accepted"),
        "{out}"
    );
    Ok(())
}
