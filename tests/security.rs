//! Security and compliance against the real binary: keys from `coedit keygen`, SM2 tokens from
//! `coedit token issue`, every refusal with its own code (WebSocket and REST) leaving documents
//! unchanged, tenant isolation, SM4-GCM encryption at rest, crypto-shredding, master key
//! rotation (offline and online), and the audit log verified (and tampered with) offline.

mod common;

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use coedit_actors::storage::{Kv, Tree};
use coedit_actors::{SledStore, Store};
use coedit_protocol::{ClientMsg, ErrorCode, Op};
use common::secure::{expired, hello, issue, path_str, setup};
use common::{http_auth, run_coedit, start_server_at, Server, TestClient};

/// Method, path, body, token, expected status and code.
type RestCase<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    u16,
    ErrorCode,
);

/// Text that must never appear in the data directory of an encrypted store.
const MARKER: &str = "PLAINTEXT-MARKER-7f3a";

fn get(server: &Server, doc: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    http_auth(server.addr, "GET", &format!("/api/docs/{doc}"), None, token).unwrap()
}

fn code_of(v: &serde_json::Value) -> u64 {
    v["error"]["code"].as_u64().unwrap_or(0)
}

/// Every file under `dir`, read whole.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(all_bytes(&p));
        } else {
            out.extend(std::fs::read(&p).unwrap());
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_roles_tenants_encryption_shredding_and_audit() -> Result<()> {
    let s = setup();
    let alice = issue(
        &s,
        "alice",
        "acme",
        &["notes-*=editor", "spec=owner"],
        false,
    );
    let bob = issue(&s, "bob", "acme", &["notes-*=viewer"], false);
    let eve = issue(&s, "eve", "globex", &["notes-*=owner"], false);
    let mut server = start_server_at(&s.data, &s.config);
    let url = server.ws_url();

    // Refusals at hello: each its own code, and the connection is closed with 1008.
    let mut forged = alice.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(
        hello(&server, None).await?,
        Some((ErrorCode::AuthRequired, Some(1008)))
    );
    assert_eq!(
        hello(&server, Some(&forged)).await?,
        Some((ErrorCode::InvalidToken, Some(1008)))
    );
    assert_eq!(
        hello(&server, Some("not.a.token")).await?,
        Some((ErrorCode::InvalidToken, Some(1008)))
    );
    assert_eq!(
        hello(&server, Some(&expired(&s))).await?,
        Some((ErrorCode::TokenExpired, Some(1008)))
    );
    assert_eq!(hello(&server, Some(&alice)).await?, None);

    // Alice (editor) creates and writes; Bob (viewer) reads but cannot write.
    let mut a = TestClient::join_as(&url, "notes-1", None, true, Some(&alice)).await?;
    a.edit(Op::insert_at(0, MARKER)).await?;
    a.settle().await?;
    let mut b = TestClient::join_as(&url, "notes-1", None, false, Some(&bob)).await?;
    assert_eq!(b.text, MARKER);
    b.edit(Op::insert_at(0, "bob was here ")).await?;
    b.pump(Duration::from_millis(300)).await?;
    assert_eq!(
        b.errors.first().map(|e| e.0),
        Some(ErrorCode::ReadOnly),
        "{:?}",
        b.errors
    );
    b.select(vec![(1, 1)]).await?;
    a.pump_until(|c| !c.presence.is_empty()).await?;
    // Unknown document (viewers cannot create), other tenant by qualified name.
    for (doc, code) in [
        ("notes-new", ErrorCode::UnknownDocument),
        ("secret", ErrorCode::UnknownDocument),
        ("globex:notes-1", ErrorCode::WrongTenant),
    ] {
        b.send(&ClientMsg::Join {
            doc: doc.into(),
            rev: None,
        })
        .await?;
        let before = b.errors.len();
        b.pump_until(|c| c.errors.len() > before).await?;
        assert_eq!(b.errors.last().unwrap().0, code, "{doc}");
    }
    assert!(
        b.ws.is_some(),
        "authorization refusals do not end the session"
    );
    // Client ids are bound to the subject: Bob cannot take over Alice's id (and her seqs).
    let impostor = TestClient::join_as(&url, "notes-1", Some(&a.id()), true, Some(&bob)).await?;
    assert_ne!(impostor.id(), a.id());
    assert!(impostor.id().ends_with(&a.id()), "{}", impostor.id());
    drop(impostor);

    // Tenants are isolated: Eve's notes-1 is another document.
    let mut e = TestClient::join_as(&url, "notes-1", None, true, Some(&eve)).await?;
    assert_eq!(e.text, "");
    e.edit(Op::insert_at(0, "globex text")).await?;
    e.settle().await?;
    e.send(&ClientMsg::Join {
        doc: "acme:notes-1".into(),
        rev: None,
    })
    .await?;
    e.pump_until(|c| !c.errors.is_empty()).await?;
    assert_eq!(e.errors[0].0, ErrorCode::WrongTenant);

    // REST: the same checks, HTTP statuses and codes.
    assert_eq!(get(&server, "notes-1", Some(&bob)).1["text"], MARKER);
    assert_eq!(get(&server, "acme:notes-1", Some(&alice)).1["text"], MARKER);
    assert_eq!(get(&server, "notes-1", Some(&eve)).1["text"], "globex text");
    let mut cases: Vec<RestCase> = vec![
        (
            "GET",
            "/api/docs/notes-1",
            None,
            None,
            401,
            ErrorCode::AuthRequired,
        ),
        (
            "GET",
            "/api/docs/notes-1",
            None,
            Some(&forged),
            401,
            ErrorCode::InvalidToken,
        ),
        (
            "GET",
            "/api/docs/globex:notes-1",
            None,
            Some(&alice),
            403,
            ErrorCode::WrongTenant,
        ),
        (
            "GET",
            "/api/docs/secret",
            None,
            Some(&alice),
            404,
            ErrorCode::UnknownDocument,
        ),
        (
            "GET",
            "/api/docs/notes-zzz",
            None,
            Some(&bob),
            404,
            ErrorCode::UnknownDocument,
        ),
        (
            "POST",
            "/api/docs/notes-1/ops",
            Some(r#"{"base_rev":1,"op":["x"]}"#),
            Some(&bob),
            403,
            ErrorCode::ReadOnly,
        ),
        (
            "DELETE",
            "/api/docs/notes-1",
            None,
            Some(&alice),
            403,
            ErrorCode::NotPermitted,
        ),
        (
            "POST",
            "/api/admin/rotate-master-key",
            None,
            Some(&alice),
            403,
            ErrorCode::NotPermitted,
        ),
    ];
    let expired_token = expired(&s);
    cases.push((
        "GET",
        "/api/docs/notes-1",
        None,
        Some(&expired_token),
        401,
        ErrorCode::TokenExpired,
    ));
    for (method, path, body, token, status, code) in &cases {
        let (st, v) = http_auth(server.addr, method, path, *body, *token)?;
        assert_eq!(
            (st, code_of(&v)),
            (*status, code.as_u16() as u64),
            "{method} {path}: {v}"
        );
    }
    // None of that changed anything.
    let (_, v) = get(&server, "notes-1", Some(&alice));
    assert_eq!(
        (v["text"].as_str(), v["rev"].as_u64()),
        (Some(MARKER), Some(1))
    );

    // Crypto-shredding: the owner deletes a document; its key is gone.
    let mut owner = TestClient::join_as(&url, "spec", None, true, Some(&alice)).await?;
    owner.edit(Op::insert_at(0, "to be shredded")).await?;
    owner.settle().await?;
    let (st, v) = http_auth(server.addr, "DELETE", "/api/docs/spec", None, Some(&alice))?;
    assert_eq!(st, 200, "{v}");
    assert_eq!(owner.pump(Duration::from_secs(2)).await?, Some(Some(1012)));
    // Gone: a read answers 404 (reads never re-create a document).
    let (st, v) = get(&server, "spec", Some(&alice));
    assert_eq!((st, v["error"]["code"].as_u64()), (404, Some(5005)), "{v}");

    drop((a, b, e));
    assert!(server.terminate()?.success());

    // Nothing readable at rest.
    let bytes = all_bytes(&s.data);
    assert!(
        !contains(&bytes, MARKER),
        "document text found in the data directory"
    );
    assert!(!contains(&bytes, "globex text"));
    let store = SledStore::open_audit_reader(&s.data)?;
    let keys = coedit_actors::storage::keys::DataKeys::list(store.kv())?;
    assert!(keys.contains(&("acme:spec".to_string(), 1, 0)), "{keys:?}");
    drop(store);

    // The audit log: intact and signed; every refusal recorded with its code; no text.
    let data = path_str(&s.data);
    let pubkey = s.keys.join("sm2.pub.pem");
    let verify = |key: &Path| {
        run_coedit(&[
            "audit",
            "verify",
            "--data-dir",
            data,
            "--pubkey",
            path_str(key),
        ])
    };
    let (ok, out) = verify(&pubkey);
    assert!(ok, "{out}");
    assert!(!out.contains(" 0 signatures verified"), "{out}");
    let export = s.data.with_extension("audit.jsonl");
    let (ok, out) = run_coedit(&[
        "audit",
        "export",
        "--data-dir",
        data,
        "--out",
        path_str(&export),
    ]);
    assert!(ok, "{out}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&export)?
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds = |k: &str| lines.iter().filter(|l| l["event"]["kind"] == k).count();
    assert!(
        kinds("op") >= 3 && kinds("join") >= 3 && kinds("session_open") >= 4,
        "{lines:?}"
    );
    assert!(kinds("checkpoint") >= 1 && kinds("admin") >= 1 && kinds("server_stop") == 1);
    let refused: std::collections::BTreeSet<u64> = lines
        .iter()
        .filter(|l| l["event"]["kind"] == "refused")
        .map(|l| l["event"]["code"].as_u64().unwrap())
        .collect();
    for code in 5001..=5007 {
        assert!(
            refused.contains(&code),
            "no refusal with code {code} audited: {refused:?}"
        );
    }
    assert!(!std::fs::read_to_string(&export)?.contains(MARKER));

    // Tampering with the stored chain is caught and located.
    let tamper = |f: &dyn Fn(&SledStore)| -> String {
        let store = SledStore::open_audit_reader(&s.data).unwrap();
        let saved = store.audit_all().unwrap();
        f(&store);
        store.flush().unwrap();
        drop(store);
        let (ok, out) = verify(&pubkey);
        assert!(!ok, "tampering not detected: {out}");
        let store = SledStore::open_audit_reader(&s.data).unwrap();
        store
            .kv()
            .delete_range(Tree::Audit, &[], &[0xff; 9])
            .unwrap();
        for (seq, v) in saved {
            store.audit_put(seq, &v).unwrap();
        }
        store.flush().unwrap();
        out
    };
    let raw = |st: &SledStore, seq: u64| {
        st.kv()
            .get(Tree::Audit, &seq.to_be_bytes())
            .unwrap()
            .unwrap()
    };
    let out = tamper(&|st| {
        let mut v = raw(st, 3);
        let n = v.len();
        v[n - 2] ^= 0x01;
        st.audit_put(3, &v).unwrap();
    });
    assert!(out.contains("audit record 3:"), "{out}");
    let out = tamper(&|st| {
        st.kv()
            .delete_range(Tree::Audit, &5u64.to_be_bytes(), &6u64.to_be_bytes())
            .unwrap();
    });
    assert!(
        out.contains("audit record 5:") && out.contains("missing"),
        "{out}"
    );
    let out = tamper(&|st| {
        let (a, b) = (raw(st, 6), raw(st, 7));
        st.audit_put(6, &b).unwrap();
        st.audit_put(7, &a).unwrap();
    });
    assert!(
        out.contains("audit record 6:") && out.contains("reordered"),
        "{out}"
    );
    let (ok, out) = verify(&pubkey);
    assert!(ok, "restored chain verifies: {out}");
    // A checkpoint checked against another key fails.
    let other = tempfile::tempdir()?;
    let (ok, _) = run_coedit(&["keygen", "--out", path_str(other.path())]);
    assert!(ok);
    let (ok, out) = verify(&other.path().join("sm2.pub.pem"));
    assert!(!ok && out.contains("checkpoint"), "{out}");

    // Offline master key rotation: data untouched, old version retired, documents readable.
    let (ops_before, live) = {
        let st = SledStore::open_audit_reader(&s.data)?;
        let live = coedit_actors::storage::keys::DataKeys::list(st.kv())?
            .iter()
            .filter(|(_, _, master)| *master == 1)
            .count();
        (st.kv().range(Tree::Ops, &[], &[0xff])?, live)
    };
    assert_eq!(live, 2, "acme:notes-1 and globex:notes-1");
    let key_file = s.keys.join("master.key");
    let (ok, out) = run_coedit(&[
        "rotate-master-key",
        "--key-file",
        path_str(&key_file),
        "--data-dir",
        data,
    ]);
    assert!(
        ok && out.contains(&format!("{live} data keys re-wrapped")),
        "{out}"
    );
    let ring = std::fs::read_to_string(&key_file)?;
    assert!(
        ring.lines().any(|l| l.starts_with("2 ")) && !ring.lines().any(|l| l.starts_with("1 ")),
        "{ring}"
    );
    {
        let st = SledStore::open_audit_reader(&s.data)?;
        assert_eq!(
            st.kv().range(Tree::Ops, &[], &[0xff])?,
            ops_before,
            "rotation rewrote data"
        );
    }
    let server = start_server_at(&s.data, &s.config);
    assert_eq!(get(&server, "notes-1", Some(&alice)).1["text"], MARKER);
    assert_eq!(get(&server, "notes-1", Some(&eve)).1["text"], "globex text");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_master_key_rotation_and_hmac_tokens() -> Result<()> {
    let s = setup();
    let hmac = s.keys.join("hmac.key");
    let config = s.config.replace(
        &format!(
            "mode = \"sm2\"\npublic_key_file = \"{}/sm2.pub.pem\"",
            path_str(&s.keys)
        ),
        &format!(
            "mode = \"hmac-sm3\"\nhmac_key_file = \"{}\"",
            path_str(&hmac)
        ),
    );
    assert_ne!(config, s.config);
    let token = |admin: bool| {
        let mut args = vec![
            "token", "issue", "--sub", "root", "--tenant", "acme", "--grant", "*=owner",
        ];
        args.extend(["--hmac-key", path_str(&hmac)]);
        if admin {
            args.push("--admin");
        }
        let (ok, out) = run_coedit(&args);
        assert!(ok, "{out}");
        out.trim().to_string()
    };
    let (user, admin) = (token(false), token(true));
    let mut server = start_server_at(&s.data, &config);
    // An SM2 token is refused by an HMAC-SM3 server.
    let sm2 = issue(&s, "root", "acme", &["*=owner"], true);
    assert_eq!(get(&server, "d", Some(&sm2)).0, 401);
    let mut c = TestClient::join_as(&server.ws_url(), "d", None, true, Some(&user)).await?;
    c.edit(Op::insert_at(0, "kept across rotation")).await?;
    c.settle().await?;
    let key_file = s.keys.join("master.key");
    let base = format!("http://{}", server.addr);
    let rotate = |token: &str| {
        let key = path_str(&key_file);
        run_coedit(&[
            "rotate-master-key",
            "--key-file",
            key,
            "--url",
            &base,
            "--token",
            token,
        ])
    };
    let (ok, out) = rotate(&user);
    assert!(
        !ok && out.contains("admin"),
        "a non-admin token cannot rotate: {out}"
    );
    // The failed attempt added version 2 to the file; this one adds 3 and re-wraps under it.
    let (ok, out) = rotate(&admin);
    assert!(ok && out.contains("1 data keys re-wrapped"), "{out}");
    let ring = std::fs::read_to_string(&key_file)?;
    assert_eq!(
        ring.lines().filter(|l| !l.starts_with('#')).count(),
        1,
        "{ring}"
    );
    // Writes after the rotation use the new version; everything survives a restart with only it.
    c.edit(Op::insert_at(0, "+")).await?;
    c.settle().await?;
    drop(c);
    assert!(server.terminate()?.success());
    let server = start_server_at(&s.data, &config);
    assert_eq!(
        get(&server, "d", Some(&user)).1["text"],
        "+kept across rotation"
    );
    Ok(())
}
