//! The verification examples of `docs/EVENTS.md` ("Verifying a delivery"), in Node.js and
//! Python, run against a real delivery from coedit: both signature versions verify, a changed
//! body and another secret do not. The code is taken from the document itself, so the document
//! cannot drift from what works.
//!
//! Needs `node` and `python3` (CI has both); without them the test says so and passes, unless
//! `COEDIT_REQUIRE_NATS=1`-style strictness is asked with `COEDIT_REQUIRE_EXAMPLES=1`.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use common::receiver::{Receiver, Reply};
use common::*;

/// The first fenced block of `lang` after the heading `section` in docs/EVENTS.md.
fn example(section: &str, lang: &str) -> Result<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/EVENTS.md"))?;
    let from = doc.find(section).context("section")?;
    let fence = format!("```{lang}\n");
    let start = doc[from..].find(&fence).context("block")? + from + fence.len();
    let end = doc[start..].find("```").context("end")? + start;
    Ok(doc[start..end].to_string())
}

fn have(cmd: &str) -> bool {
    Command::new(cmd)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_documented_verifiers_accept_real_deliveries_and_refuse_forgeries() -> Result<()> {
    if !(have("node") && have("python3")) {
        if std::env::var("COEDIT_REQUIRE_EXAMPLES").as_deref() == Ok("1") {
            bail!("node and python3 are needed");
        }
        eprintln!("SKIPPED: node or python3 missing");
        return Ok(());
    }
    let secret = coedit_actors::events::sign::Secret::generate();
    let recv = Receiver::start(
        &secret,
        Arc::new(|_: &str, _: &serde_json::Value, _| Reply::Status(200)),
    );
    let config = format!(
        "[events]\nchanged_interval_ms = 20\n[[events.webhook]]\nname = \"ex\"\nurl = \"{}\"\n\
         secret = \"{secret}\"\n",
        recv.url("/ex")
    );
    let server = start_server_with(&config);
    let (status, _) = http(
        server.addr,
        "POST",
        "/api/docs/ex/ops",
        Some(r#"{"base_rev":0,"op":["é 漢"]}"#),
    )?;
    ensure!(status == 200);
    recv.wait_until(Duration::from_secs(20), "a delivery", |d| d.len() >= 2)?;
    let d = recv.deliveries().pop().context("delivery")?;
    ensure!(d.sig_v1 && d.sig_sm3);
    let tmp = tempfile::tempdir()?;
    let js = tmp.path().join("verify.mjs");
    std::fs::write(
        &js,
        format!(
            "{}\nconst [secret, id, ts, sig, bodyB64, version] = process.argv.slice(2);\n\
             const headers = {{ 'webhook-id': id, 'webhook-timestamp': ts, 'webhook-signature': sig }};\n\
             process.exit(verifyWebhook(secret, headers, Buffer.from(bodyB64, 'base64'), version) ? 0 : 1);\n",
            example("## Verifying a delivery", "js")?
        ),
    )?;
    let py = tmp.path().join("verify.py");
    std::fs::write(
        &py,
        format!(
            "{}\nimport sys\nsecret, i, ts, sig, body_b64, version = sys.argv[1:]\n\
             headers = {{'webhook-id': i, 'webhook-timestamp': ts, 'webhook-signature': sig}}\n\
             sys.exit(0 if verify_webhook(secret, headers, base64.b64decode(body_b64), version) else 1)\n",
            example("## Verifying a delivery", "python")?
        ),
    )?;
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut changed = d.raw_body.clone();
    changed[0] ^= 1;
    let other = coedit_actors::events::sign::Secret::generate();
    for version in ["v1", "v1sm3"] {
        for (runner, file) in [("node", &js), ("python3", &py)] {
            let run = |secret: &str, body: &[u8]| -> Result<bool> {
                let out = Command::new(runner)
                    .arg(file)
                    .args([
                        secret,
                        &d.id,
                        &d.timestamp.to_string(),
                        &d.signature,
                        &b64(body),
                        version,
                    ])
                    .output()?;
                let err = String::from_utf8_lossy(&out.stderr);
                ensure!(out.status.code().is_some_and(|c| c <= 1), "{runner}: {err}");
                Ok(out.status.success())
            };
            assert!(
                run(&secret, &d.raw_body)?,
                "{runner} {version}: a real delivery"
            );
            assert!(
                !run(&secret, &changed)?,
                "{runner} {version}: a changed body"
            );
            assert!(
                !run(&other, &d.raw_body)?,
                "{runner} {version}: another secret"
            );
        }
    }
    Ok(())
}
