//! The audit trail as 等保/密评 asks for it, against the real binary: every edit names its
//! author (WebSocket and REST alike), sessions and refusals name the client's address (from
//! `X-Forwarded-For` only through a trusted proxy), and the log of a running server can be
//! verified and exported (admin token), not only with the server stopped.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::Result;
use coedit_protocol::Op;
use common::secure::{issue, path_str, setup};
use common::{run_coedit, start_server_at, TestClient};

/// One HTTP/1.1 exchange with extra header lines; returns the status and the body.
fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    headers: &[String],
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn events(jsonl: &str) -> Vec<serde_json::Value> {
    jsonl
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authors_addresses_and_the_log_of_a_running_server() -> Result<()> {
    let s = setup();
    let config = s.config.replace(
        "[crypto]\n",
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n[crypto]\n",
    );
    let server = start_server_at(&s.data, &config);
    let alice = issue(&s, "alice", "acme", &["notes-*=editor"], false);
    let admin = issue(&s, "root", "acme", &["*=owner"], true);
    let bearer = |t: &str| format!("Authorization: Bearer {t}");
    // An edit over REST without a client id, one over WebSocket.
    let (status, body) = request(
        server.addr,
        "POST",
        "/api/docs/notes-1/ops",
        r#"{"base_rev":0,"op":["rest "]}"#,
        &[bearer(&alice)],
    );
    assert_eq!(status, 200, "{body}");
    let mut ws = TestClient::join_as(&server.ws_url(), "notes-1", None, true, Some(&alice)).await?;
    ws.edit(Op::insert_at(5, "ws")).await?;
    ws.settle().await?;
    // A Yjs update over REST: an `op` record with seq 0 and the SM3 of the update's bytes.
    let update = {
        use yrs::{ReadTxn, StateVector, Text, Transact};
        let d = yrs::Doc::with_client_id(3);
        d.get_or_insert_text("text")
            .push(&mut d.transact_mut(), "yjs");
        let u = d
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        u
    };
    let mut conn = TcpStream::connect(server.addr)?;
    write!(
        conn,
        "POST /api/docs/notes-2/updates HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Authorization: Bearer {alice}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\n\r\n",
        update.len()
    )?;
    conn.write_all(&update)?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer)?;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A refusal through the trusted proxy (127.0.0.1 here), naming the client behind it.
    let forwarded = |ip: &str| format!("X-Forwarded-For: {ip}");
    let (status, _) = request(
        server.addr,
        "GET",
        "/api/docs/secret",
        "",
        &[bearer(&alice), forwarded("203.0.113.7")],
    );
    assert_eq!(status, 404);
    // Wait for a signed checkpoint (every second) to be anchored.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let url = format!("http://{}", server.addr);
    // The running server's log, verified and exported with an admin token.
    let pubkey = s.keys.join("sm2.pub.pem");
    let (ok, out) = run_coedit(&[
        "audit",
        "verify",
        "--url",
        &url,
        "--token",
        &admin,
        "--pubkey",
        path_str(&pubkey),
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("anchored checkpoints matched") && !out.contains(" 0 anchored"),
        "{out}"
    );
    let (ok, out) = run_coedit(&["audit", "verify", "--url", &url, "--token", &alice]);
    assert!(
        !ok && out.contains("403"),
        "a non-admin token must be refused: {out}"
    );
    let export = s.data.with_extension("online.jsonl");
    let (ok, out) = run_coedit(&[
        "audit",
        "export",
        "--url",
        &url,
        "--token",
        &admin,
        "--out",
        path_str(&export),
    ]);
    assert!(ok, "{out}");
    let evs = events(&std::fs::read_to_string(&export)?);
    let ops: Vec<&serde_json::Value> = evs.iter().filter(|e| e["kind"] == "op").collect();
    assert_eq!(ops.len(), 3, "{ops:?}");
    let yjs = ops
        .iter()
        .find(|e| e["doc"] == "acme:notes-2")
        .expect("the Yjs update");
    assert_eq!(
        (&yjs["seq"], &yjs["rev"], &yjs["subject"]),
        (
            &serde_json::json!(0),
            &serde_json::json!(1),
            &serde_json::json!("alice")
        ),
        "{yjs}"
    );
    assert_eq!(
        yjs["op_sm3"],
        hex::encode(coedit_actors::security::crypto::sm3(&update)),
        "{yjs}"
    );
    let ops: Vec<&serde_json::Value> = ops
        .into_iter()
        .filter(|e| e["doc"] != "acme:notes-2")
        .collect();
    for op in &ops {
        assert_eq!(op["subject"], "alice", "{op}");
    }
    // The REST edit's one-off client id is bound to its subject like any other.
    let ws_client = ops[1]["client"].as_str().unwrap();
    let prefix = &ws_client[..12];
    assert!(
        ops[0]["client"].as_str().unwrap().starts_with(prefix),
        "{ops:?}"
    );
    let refused = evs
        .iter()
        .find(|e| e["kind"] == "refused" && e["doc"] == "secret")
        .expect("the refusal");
    assert_eq!(refused["source"], "203.0.113.7", "{refused}");
    assert_eq!(refused["subject"], "alice");
    let open = evs
        .iter()
        .find(|e| e["kind"] == "session_open")
        .expect("a session");
    assert_eq!(open["source"], "127.0.0.1", "{open}");
    assert!(evs
        .iter()
        .any(|e| e["kind"] == "admin" && e["action"] == "audit-verify"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_addresses_are_ignored_without_a_trusted_proxy() -> Result<()> {
    let s = setup();
    let mut server = start_server_at(&s.data, &s.config);
    let alice = issue(&s, "alice", "acme", &["notes-*=editor"], false);
    let (status, _) = request(
        server.addr,
        "GET",
        "/api/docs/secret",
        "",
        &[
            format!("Authorization: Bearer {alice}"),
            "X-Forwarded-For: 203.0.113.7".into(),
        ],
    );
    assert_eq!(status, 404);
    assert!(server.terminate()?.success());
    let (ok, out) = run_coedit(&["audit", "export", "--data-dir", path_str(&s.data)]);
    assert!(ok);
    let evs = events(
        out.lines()
            .filter(|l| l.starts_with('{'))
            .collect::<Vec<_>>()
            .join("\n")
            .as_str(),
    );
    let refused = evs
        .iter()
        .find(|e| e["kind"] == "refused" && e["doc"] == "secret")
        .expect("the refusal");
    assert_eq!(refused["source"], "127.0.0.1", "{refused}");
    Ok(())
}
