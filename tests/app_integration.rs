//! What an application embedding coedit relies on (issue 15), against the real binary: a token
//! refreshed on a live session keeps it open past the old expiry and loses nothing; a refused
//! refresh changes nothing and closes nothing; the join answer carries the role and subject; a
//! viewer's op is refused with its `seq`; presence carries display names and colours (the
//! token's over the client's); REST reads of a missing document are 404, documents are listed a
//! page at a time within the token's tenant and grants; query errors name the parameter;
//! unknown fields are refused over WebSocket as over REST.

mod common;

use std::time::Duration;

use anyhow::{bail, Result};
use coedit_actors::security::auth::{now_s, Claims, Role, TokenSigner};
use coedit_actors::security::crypto::Sm2Signer;
use coedit_protocol::{
    Access, ClientMsg, DocRole, ErrorCode, Op, OpMsg, PeerUser, ServerMsg, PROTOCOL_VERSION,
};
use common::secure::{setup, Setup};
use common::{
    connect_raw, http, http_auth, http_raw, read_msg, start_server, start_server_at, Incoming, Ws,
};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(5);

fn token(s: &Setup, sub: &str, grants: &[(&str, Role)], ttl_s: u64, name: Option<&str>) -> String {
    let signer = Sm2Signer::load(&s.keys.join("sm2.pem")).unwrap();
    TokenSigner::Sm2(signer).issue(&Claims {
        sub: sub.into(),
        tenant: "acme".into(),
        iat: now_s(),
        exp: now_s() + ttl_s,
        nbf: None,
        grants: grants.iter().map(|(p, r)| (p.to_string(), *r)).collect(),
        admin: false,
        name: name.map(str::to_string),
        color: None,
    })
}

async fn send(ws: &mut Ws, msg: &ClientMsg) -> Result<()> {
    let text = coedit_protocol::wire::encode_json(msg);
    ws.send(Message::Text(text.into())).await?;
    Ok(())
}

async fn next(ws: &mut Ws) -> Result<ServerMsg> {
    match read_msg(ws, WAIT).await? {
        Incoming::Msg(m) => Ok(m),
        other => bail!("expected a message, got {other:?}"),
    }
}

/// Connects and says hello; returns the socket and the welcome's (client, sub, exp).
async fn hello(
    url: &str,
    token: Option<&str>,
    user: Option<PeerUser>,
) -> Result<(Ws, String, Option<String>, Option<u64>)> {
    let mut ws = connect_raw(url).await?;
    let hello = ClientMsg::Hello {
        v: PROTOCOL_VERSION,
        client: None,
        token: token.map(str::to_string),
        user,
    };
    send(&mut ws, &hello).await?;
    match next(&mut ws).await? {
        ServerMsg::Welcome {
            client,
            sub,
            exp,
            now,
            ..
        } => {
            assert_eq!(
                exp.is_some(),
                now.is_some(),
                "the server's clock comes with exp"
            );
            if let Some(n) = now {
                assert!(
                    n.abs_diff(now_s()) <= 5,
                    "server clock {n}, here {}",
                    now_s()
                );
            }
            Ok((ws, client, sub, exp))
        }
        other => bail!("expected welcome, got {other:?}"),
    }
}

/// Joins `doc`; returns the access the answer carries and the document's revision.
async fn join(ws: &mut Ws, doc: &str) -> Result<(Option<Access>, u64)> {
    let join = ClientMsg::Join {
        doc: doc.into(),
        rev: None,
    };
    send(ws, &join).await?;
    match next(ws).await? {
        ServerMsg::Snapshot { access, rev, .. } => Ok((access, rev)),
        other => bail!("expected a snapshot, got {other:?}"),
    }
}

fn op(doc: &str, rev: u64, seq: u64, text: &str) -> ClientMsg {
    ClientMsg::Op(OpMsg::new(doc, rev, seq, &Op::insert_at(0, text)))
}

/// Reads until an `ops` message holding (`client`, `seq`) arrives; fails on anything else but
/// presence.
async fn acked(ws: &mut Ws, client: &str, seq: u64) -> Result<u64> {
    loop {
        match next(ws).await? {
            ServerMsg::Ops { ops, .. } => {
                if let Some(r) = ops.iter().find(|r| r.client == client && r.seq == seq) {
                    return Ok(r.rev);
                }
            }
            ServerMsg::Presence { .. } => {}
            other => bail!("expected the op's ack, got {other:?}"),
        }
    }
}

async fn expect_error(ws: &mut Ws) -> Result<(ErrorCode, Option<String>, Option<u64>)> {
    match next(ws).await? {
        ServerMsg::Error { code, doc, seq, .. } => Ok((code, doc, seq)),
        other => bail!("expected an error, got {other:?}"),
    }
}

/// The session is alive: a ping is answered.
async fn alive(ws: &mut Ws) -> Result<()> {
    send(ws, &ClientMsg::Ping { t: 77 }).await?;
    match next(ws).await? {
        ServerMsg::Pong { t: 77 } => Ok(()),
        other => bail!("expected pong, got {other:?}"),
    }
}

/// A session may refresh its token a few times at once, then once per 10 s: the message past
/// the burst is refused (4001) without a signature check, the session stays open with the
/// token in force and its edits go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_messages_past_the_burst_are_refused_unchecked_and_the_session_goes_on() -> Result<()>
{
    let s = setup();
    let server = start_server_at(&s.data, &s.config);
    let editor = [("notes-*", Role::Editor)];
    let first = token(&s, "alice", &editor, 600, None);
    let (mut ws, client, _, _) = hello(&server.ws_url(), Some(&first), None).await?;
    let (_, rev) = join(&mut ws, "notes-9").await?;
    for _ in 0..5 {
        let fresh = token(&s, "alice", &editor, 600, None);
        send(&mut ws, &ClientMsg::Auth { token: fresh }).await?;
        match next(&mut ws).await? {
            ServerMsg::Authed { sub, .. } => assert_eq!(sub.as_deref(), Some("alice")),
            other => bail!("expected authed, got {other:?}"),
        }
    }
    let sixth = token(&s, "alice", &editor, 600, None);
    send(&mut ws, &ClientMsg::Auth { token: sixth }).await?;
    assert_eq!(expect_error(&mut ws).await?.0, ErrorCode::RateLimited);
    alive(&mut ws).await?;
    send(&mut ws, &op("notes-9", rev, 1, "still editing")).await?;
    assert_eq!(acked(&mut ws, &client, 1).await?, rev + 1);
    let (status, _, metrics) = http_raw(server.addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("coedit_rate_limited_auth_total 1"),
        "the refusal is counted"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_refreshed_on_a_live_session_keeps_it_open_and_loses_nothing() -> Result<()> {
    let s = setup();
    // No skew: the first token's session would be closed 3 s after it was issued.
    let config = s.config.replace("[auth]\n", "[auth]\nclock_skew_s = 0\n");
    let server = start_server_at(&s.data, &config);
    let editor = [("notes-*", Role::Editor)];
    let short = token(&s, "alice", &editor, 2, None);
    let (mut ws, client, sub, exp) = hello(&server.ws_url(), Some(&short), None).await?;
    assert_eq!(sub.as_deref(), Some("alice"));
    assert!(exp.is_some_and(|e| e <= now_s() + 2), "{exp:?}");
    let (access, rev) = join(&mut ws, "notes-1").await?;
    assert_eq!(
        access,
        Some(Access {
            role: Role::Editor,
            sub: Some("alice".into())
        })
    );

    // Refresh before expiry.
    let long = token(&s, "alice", &editor, 600, None);
    send(&mut ws, &ClientMsg::Auth { token: long }).await?;
    match next(&mut ws).await? {
        ServerMsg::Authed {
            sub,
            exp,
            now,
            roles,
        } => {
            assert!(now.is_some_and(|n| n.abs_diff(now_s()) <= 5), "{now:?}");
            assert_eq!(sub.as_deref(), Some("alice"));
            assert!(exp.is_some_and(|e| e >= now_s() + 590), "{exp:?}");
            assert_eq!(
                roles,
                vec![DocRole {
                    doc: "notes-1".into(),
                    role: Role::Editor
                }]
            );
        }
        other => bail!("expected authed, got {other:?}"),
    }

    // Past the first token's expiry the session is open and its edits are applied.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    send(&mut ws, &op("notes-1", rev, 1, "after expiry")).await?;
    let applied = acked(&mut ws, &client, 1).await?;
    assert_eq!(applied, rev + 1);

    // Refusals change nothing and close nothing: a tampered token, another user's token.
    let mut tampered = token(&s, "alice", &editor, 600, None).into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered)?;
    send(&mut ws, &ClientMsg::Auth { token: tampered }).await?;
    assert_eq!(expect_error(&mut ws).await?.0, ErrorCode::InvalidToken);
    alive(&mut ws).await?;
    let bob = token(&s, "bob", &editor, 600, None);
    send(&mut ws, &ClientMsg::Auth { token: bob }).await?;
    assert_eq!(expect_error(&mut ws).await?.0, ErrorCode::NotPermitted);
    alive(&mut ws).await?;
    send(&mut ws, &op("notes-1", applied, 2, "still me ")).await?;
    acked(&mut ws, &client, 2).await?;

    // A refresh that no longer grants the document leaves it, naming it.
    let elsewhere = token(&s, "alice", &[("other", Role::Viewer)], 600, None);
    send(&mut ws, &ClientMsg::Auth { token: elsewhere }).await?;
    let (code, doc, _) = expect_error(&mut ws).await?;
    assert_eq!(
        (code, doc.as_deref()),
        (ErrorCode::UnknownDocument, Some("notes-1"))
    );
    match next(&mut ws).await? {
        ServerMsg::Authed { roles, .. } => assert!(roles.is_empty(), "{roles:?}"),
        other => bail!("expected authed, got {other:?}"),
    }
    send(&mut ws, &op("notes-1", applied + 1, 3, "x")).await?;
    assert_eq!(expect_error(&mut ws).await?.0, ErrorCode::UnknownDocument);
    alive(&mut ws).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_is_told_its_role_and_its_op_is_refused_with_its_seq() -> Result<()> {
    let s = setup();
    let server = start_server_at(&s.data, &s.config);
    let grants = [("notes-*", Role::Editor), ("notes-ro", Role::Viewer)];
    let t = token(&s, "alice", &grants, 600, None);
    let (mut ws, _, _, _) = hello(&server.ws_url(), Some(&t), None).await?;
    // The editor creates the document; the viewer role is reported on the exact grant.
    let (access, _) = join(&mut ws, "notes-a").await?;
    assert_eq!(access.map(|a| a.role), Some(Role::Editor));
    let viewer = token(&s, "vera", &[("notes-*", Role::Viewer)], 600, None);
    let (mut v, _, _, _) = hello(&server.ws_url(), Some(&viewer), None).await?;
    let (access, rev) = join(&mut v, "notes-a").await?;
    assert_eq!(
        access,
        Some(Access {
            role: Role::Viewer,
            sub: Some("vera".into())
        })
    );
    send(&mut v, &op("notes-a", rev, 1, "nope")).await?;
    let (code, doc, seq) = expect_error(&mut v).await?;
    assert_eq!(
        (code, doc.as_deref(), seq),
        (ErrorCode::ReadOnly, Some("notes-a"), Some(1))
    );
    let (status, body) = http_auth(server.addr, "GET", "/api/docs/notes-a", None, Some(&viewer))?;
    assert_eq!((status, body["rev"].as_u64()), (200, Some(rev)));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_carries_names_and_colours_the_token_first() -> Result<()> {
    let s = setup();
    let server = start_server_at(&s.data, &s.config);
    let grants = [("notes-*", Role::Editor)];
    let alice = token(&s, "alice", &grants, 600, Some("Alice (token)"));
    let claimed = PeerUser {
        name: Some("spoofed".into()),
        color: Some("#112233".into()),
    };
    let (mut a, a_id, _, _) = hello(&server.ws_url(), Some(&alice), Some(claimed)).await?;
    let (_, rev) = join(&mut a, "notes-p").await?;
    let bob = token(&s, "bob", &grants, 600, None);
    let (mut b, _, _, _) = hello(&server.ws_url(), Some(&bob), None).await?;
    join(&mut b, "notes-p").await?;
    let sel = ClientMsg::Presence {
        doc: "notes-p".into(),
        rev,
        sel: vec![(0, 0)],
    };
    send(&mut a, &sel).await?;
    loop {
        match next(&mut b).await? {
            ServerMsg::Presence { peers, .. } => {
                let p = peers.iter().find(|p| p.client == a_id).expect("alice");
                let user = p.user.clone().unwrap_or_default();
                assert_eq!(user.name.as_deref(), Some("Alice (token)"));
                assert_eq!(user.color.as_deref(), Some("#112233"));
                break;
            }
            ServerMsg::Ops { .. } => {}
            other => bail!("expected presence, got {other:?}"),
        }
    }
    // A hello with a malformed colour is refused (1001) before anything else.
    let mut ws = connect_raw(&server.ws_url()).await?;
    let bad = r##"{"hello":{"v":1,"user":{"color":"javascript:alert(1)"}}}"##;
    ws.send(Message::Text(bad.into())).await?;
    assert_eq!(expect_error(&mut ws).await?.0, ErrorCode::BadMessage);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_reads_list_and_name_their_parameters() -> Result<()> {
    let server = start_server();
    let addr = server.addr;
    let (status, body) = http(addr, "GET", "/api/docs/nope", None)?;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], 5005);
    assert!(
        body["error"]["msg"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{body}"
    );
    // Reading did not create it.
    let (status, _) = http(addr, "GET", "/api/docs/nope/versions", None)?;
    assert_eq!(status, 404);
    for id in ["b1", "a2", "a1", "a10"] {
        let body = r#"{"base_rev":0,"op":["x"]}"#;
        let (status, v) = http(addr, "POST", &format!("/api/docs/{id}/ops"), Some(body))?;
        assert_eq!(status, 200, "{v}");
    }
    let (status, page) = http(addr, "GET", "/api/docs?limit=2", None)?;
    assert_eq!(status, 200, "{page}");
    let ids = |v: &serde_json::Value| -> Vec<String> {
        v["docs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&page), ["a1", "a10"]);
    assert_eq!(page["docs"][0]["rev"], 1);
    assert_eq!(page["next"], "a10");
    let (_, page) = http(addr, "GET", "/api/docs?limit=2&after=a10", None)?;
    assert_eq!(ids(&page), ["a2", "b1"]);
    let (_, page) = http(addr, "GET", "/api/docs?limit=5&after=b1", None)?;
    assert!(ids(&page).is_empty());
    assert!(page["next"].is_null());
    let (_, page) = http(addr, "GET", "/api/docs?prefix=a", None)?;
    assert_eq!(ids(&page), ["a1", "a10", "a2"]);
    assert!(page["next"].is_null());
    for (path, name) in [
        ("/api/docs/a1/ops?from=abc", "from"),
        ("/api/docs/a1/ops?limit=-3", "limit"),
        ("/api/docs/a1?rev=x", "rev"),
        ("/api/docs/a1/ops?form=1", "form"),
        ("/api/docs?limit=0", "limit"),
        ("/api/docs?after=../x", "after"),
    ] {
        let (status, body) = http(addr, "GET", path, None)?;
        assert_eq!(status, 400, "{path}: {body}");
        let msg = body["error"]["msg"].as_str().unwrap_or_default();
        assert!(msg.contains(name), "{path}: {msg}");
    }
    // Unknown fields: refused over WebSocket as over REST.
    let mut ws = connect_raw(&server.ws_url()).await?;
    ws.send(Message::Text(r#"{"hello":{"v":1,"tokn":"x"}}"#.into()))
        .await?;
    let (code, _, _) = expect_error(&mut ws).await?;
    assert_eq!(code, ErrorCode::BadMessage);
    let body = r#"{"base_rev":1,"op":["y"],"extra":1}"#;
    let (status, _) = http(addr, "POST", "/api/docs/a1/ops", Some(body))?;
    assert_eq!(status, 400);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listing_stays_within_the_tenant_and_the_grants() -> Result<()> {
    let s = setup();
    let server = start_server_at(&s.data, &s.config);
    let issue = |tenant: &str, grants: &[(&str, Role)]| {
        let signer = Sm2Signer::load(&s.keys.join("sm2.pem")).unwrap();
        TokenSigner::Sm2(signer).issue(&Claims {
            sub: "u".into(),
            tenant: tenant.into(),
            iat: now_s(),
            exp: now_s() + 600,
            nbf: None,
            grants: grants.iter().map(|(p, r)| (p.to_string(), *r)).collect(),
            admin: false,
            name: None,
            color: None,
        })
    };
    let all_acme = issue("acme", &[("*", Role::Editor)]);
    let other = issue("globex", &[("*", Role::Editor)]);
    for (id, t) in [
        ("team-1", &all_acme),
        ("team-2", &all_acme),
        ("secret", &all_acme),
        ("team-9", &other),
    ] {
        let body = r#"{"base_rev":0,"op":["x"]}"#;
        let path = format!("/api/docs/{id}/ops");
        let (status, v) = http_auth(server.addr, "POST", &path, Some(body), Some(t))?;
        assert_eq!(status, 200, "{v}");
    }
    let team = issue("acme", &[("team-*", Role::Viewer)]);
    let (status, page) = http_auth(server.addr, "GET", "/api/docs", None, Some(&team))?;
    assert_eq!(status, 200, "{page}");
    let ids: Vec<&str> = page["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["team-1", "team-2"]);
    let (status, _) = http_auth(server.addr, "GET", "/api/docs", None, None)?;
    assert_eq!(status, 401);
    Ok(())
}
