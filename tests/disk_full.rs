//! A full disk, on a small tmpfs: below the free-space reserve the server refuses edits with a
//! typed error (WebSocket 4006, HTTP 507) and keeps serving reads, and takes edits again once
//! space returns, with nothing acknowledged lost. When a write fails anyway (no reserve), it
//! closes every session with 1011 and a reason, exits with code 74 for its supervisor, and
//! restarts cleanly with every acknowledged edit.
//!
//! Mounting a tmpfs needs root: as another user the tests say so and pass, unless
//! `COEDIT_REQUIRE_TMPFS=1` (CI sets it) makes that a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use coedit_protocol::{ErrorCode, Op};
use common::{http, metric, run_check, server_doc, start_server_at, TestClient};

/// A tmpfs mounted for one test, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `mib` MiB, or `None` (after saying why) where that is not possible.
    fn mount(mib: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(Tmpfs { dir });
        }
        let msg = "cannot mount a tmpfs (needs root): disk-full tests not run";
        if std::env::var("COEDIT_REQUIRE_TMPFS").is_ok_and(|v| v == "1") {
            panic!("{msg}");
        }
        eprintln!("SKIPPED: {msg}");
        None
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Free bytes on the file system holding `dir`.
fn free_bytes(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap()
}

/// Fills the file system of `dir` with a file until `leave` bytes are free (or it is full).
fn fill(dir: &Path, leave: u64) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0x5au8; 64 * 1024];
    while free_bytes(dir) > leave {
        let want = (free_bytes(dir) - leave).min(block.len() as u64) as usize;
        if f.write_all(&block[..want.max(1)]).is_err() || f.sync_data().is_err() {
            break;
        }
    }
    path
}

fn post(addr: std::net::SocketAddr, body: &str) -> (u16, serde_json::Value) {
    http(addr, "POST", "/api/docs/full/ops", Some(body)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_reserve_edits_are_refused_reads_go_on_and_writing_resumes() -> Result<()> {
    let Some(fs) = Tmpfs::mount(64) else {
        return Ok(());
    };
    let data = fs.path().join("data");
    let srv = start_server_at(&data, "[storage]\nmin_free_mb = 16\n");
    let mut a = TestClient::join(&srv.ws_url(), "full", None, true).await?;
    for i in 0..20 {
        a.edit(Op::insert_at(i, "a")).await?;
        a.settle().await?;
    }
    let filler = fill(fs.path(), 8 << 20);
    println!("filled: {} bytes free", free_bytes(fs.path()));
    // Free space is read once a second: the server notices within a few seconds.
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(srv.addr, "coedit_storage_writable") != 0.0 {
        if Instant::now() > deadline {
            bail!("the server did not notice the full disk");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Edits are refused with a typed error; the op stays the client's.
    a.edit(Op::insert_at(20, "b")).await?;
    a.pump_until(|c| c.errors.iter().any(|e| e.0 == ErrorCode::StorageFull))
        .await?;
    assert_eq!(a.ot.rev(), 20, "the refused op was not applied");
    let (status, v) = post(srv.addr, r#"{"base_rev":20,"op":["rest"]}"#);
    assert_eq!(
        (status, v["error"]["code"].as_u64()),
        (507, Some(4006)),
        "{v}"
    );
    assert_eq!(metric(srv.addr, "coedit_storage_writable"), 0.0);
    // Reads go on: REST and a new session's join.
    assert_eq!(server_doc(srv.addr, "full"), ("a".repeat(20), 20));
    let b = TestClient::join(&srv.ws_url(), "full", None, false).await?;
    assert_eq!(b.text, "a".repeat(20));
    // Space returns: the client's resend is applied, nothing acknowledged was lost.
    std::fs::remove_file(filler)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.ot.rev() < 21 {
        if Instant::now() > deadline {
            bail!("edits not accepted again: {:?}", a.errors);
        }
        a.resend_inflight().await?;
        a.pump(Duration::from_millis(300)).await?;
    }
    a.settle().await?;
    assert_eq!(server_doc(srv.addr, "full"), (a.text.clone(), 21));
    assert_eq!(metric(srv.addr, "coedit_storage_writable"), 1.0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_closes_sessions_exits_74_and_restarts_cleanly() -> Result<()> {
    let Some(fs) = Tmpfs::mount(48) else {
        return Ok(());
    };
    let data = fs.path().join("data");
    // No reserve: the disk really fills under the store.
    let config = "[storage]\nmin_free_mb = 0\n";
    let mut srv = start_server_at(&data, config);
    let mut a = TestClient::join(&srv.ws_url(), "full", None, true).await?;
    for i in 0..20 {
        a.edit(Op::insert_at(i, "a")).await?;
        a.settle().await?;
    }
    let acked = a.text.clone();
    let filler = fill(fs.path(), 0);
    // Work that must be written (each join is audited) until a write fails.
    let mut code = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut i = 0;
    while code.is_none() && Instant::now() < deadline {
        i += 1;
        let _ = TestClient::join(&srv.ws_url(), &format!("other-{i}"), None, true).await;
        if let Some(c) = a.pump(Duration::from_millis(50)).await? {
            code = Some(c);
        }
    }
    assert_eq!(code, Some(Some(1011)), "sessions are closed with 1011");
    let status = srv.wait_exit(Duration::from_secs(5))?;
    assert_eq!(status.code(), Some(74));
    // Space back: a clean restart with every acknowledged edit.
    std::fs::remove_file(filler)?;
    let srv = start_server_at(&data, config);
    assert_eq!(server_doc(srv.addr, "full"), (acked, 20));
    drop(srv);
    let (ok, out) = run_check(&data);
    assert!(ok, "{out}");
    Ok(())
}
