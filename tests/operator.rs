//! What an operator sees (issue 14's polish), against the real binary: logs that are all JSON
//! with `--log-format json` and carry no colour codes when not on a terminal, the
//! authentication warning once, each subcommand with only its own flags, a second server on a
//! data directory named as such, build and process metrics, and a memory-backed server that
//! neither creates a data directory nor claims durability.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{http_raw, run_coedit, run_coedit_within, start_server_at};

/// Starts `coedit serve` with `args` and `COEDIT_LOG=info`, waits for its address, stops it
/// with SIGTERM, and returns its standard error.
fn serve_and_stop(args: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coedit"))
        .arg("serve")
        .args(["--bind", "127.0.0.1:0"])
        .args(args)
        .env("COEDIT_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn coedit");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let started = lines
        .next()
        .and_then(Result::ok)
        .is_some_and(|l| l.starts_with("coedit listening on "));
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(started, "the server did not start: {stderr}");
    assert!(out.status.success(), "{stderr}");
    stderr
}

#[test]
fn json_logs_are_all_json_and_text_logs_have_no_colour_codes_off_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let json = serve_and_stop(&["--data-dir", data, "--log-format", "json"]);
    let mut warnings = 0;
    for line in json.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        if v["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("AUTHENTICATION IS OFF"))
        {
            warnings += 1;
        }
    }
    assert_eq!(warnings, 1, "the authentication warning once: {json}");
    let text = serve_and_stop(&["--data-dir", data]);
    assert!(!text.contains('\u{1b}'), "colour codes in {text:?}");
    assert_eq!(text.matches("AUTHENTICATION IS OFF").count(), 1, "{text}");
    assert!(text.contains("coedit listening"), "{text}");
}

#[test]
fn each_subcommand_takes_only_its_own_flags() {
    let (ok, keygen) = run_coedit(&["keygen", "--help"]);
    assert!(ok);
    for server_flag in ["--bind", "--data-dir", "--config"] {
        assert!(!keygen.contains(server_flag), "keygen --help: {keygen}");
    }
    let (ok, token) = run_coedit(&["token", "issue", "--help"]);
    assert!(ok && !token.contains("--bind"), "{token}");
    let (ok, serve) = run_coedit(&["serve", "--help"]);
    assert!(ok);
    for flag in ["--bind", "--data-dir", "--config", "--log-format"] {
        assert!(serve.contains(flag), "serve --help lacks {flag}: {serve}");
    }
    let (ok, check) = run_coedit(&["check", "--help"]);
    assert!(
        ok && check.contains("--data-dir") && !check.contains("--bind"),
        "{check}"
    );
    assert!(!run_coedit(&["keygen", "--bind", "127.0.0.1:1"]).0);
}

#[test]
fn a_second_server_on_the_same_data_directory_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _first = start_server_at(&data, "");
    let (ok, out) = run_coedit_within(
        &[
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        Duration::from_secs(20),
    );
    assert!(!ok);
    assert!(
        out.contains("another process (a running coedit?) is using the data directory"),
        "{out}"
    );
    assert!(!out.contains("WouldBlock"), "{out}");
}

#[test]
fn metrics_carry_build_and_process_information() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start_server_at(&dir.path().join("data"), "");
    let (status, _, body) = http_raw(srv.addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        body.contains(&format!(
            "coedit_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{body}"
    );
    for name in [
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_max_fds ",
        "process_start_time_seconds ",
        "process_threads ",
    ] {
        assert!(body.contains(name), "{name} missing");
    }
}

#[test]
fn a_memory_backed_server_creates_no_data_directory_and_claims_no_durability() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("never-created");
    let config = dir.path().join("memory.toml");
    std::fs::write(&config, "[storage]\nbackend = \"memory\"\n").unwrap();
    let log = serve_and_stop(&[
        "--data-dir",
        data.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(
        !data.exists(),
        "the memory backend created {}",
        data.display()
    );
    assert!(!log.contains("durability"), "{log}");
    assert!(!log.contains("documents saved"), "{log}");
    assert!(log.contains("nothing survives a restart"), "{log}");
}
