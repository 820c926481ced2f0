//! `coedit events …`: the change-event admin calls of a running server, from the command line
//! (`list`, `list --dead`, `replay`, `enable`), and `secret`, which prints a signing secret.

use anyhow::{bail, Context, Result};
use coedit_actors::events::sign::Secret;
use serde_json::{json, Value};

use crate::cli::{EventsCommand, ServerArgs};
use crate::security::admin_agent;

/// Runs one `coedit events` command, printing the server's JSON answer (pretty).
pub fn run(cmd: EventsCommand) -> Result<()> {
    let answer = match cmd {
        EventsCommand::Secret => {
            println!("{}", Secret::generate());
            return Ok(());
        }
        EventsCommand::List {
            dead: false,
            server,
            ..
        } => call(&server, "GET", "/api/admin/events/sinks", None)?,
        EventsCommand::List {
            dead: true,
            sink,
            server,
        } => {
            let path = match sink {
                Some(s) => format!("/api/admin/events/dead?sink={s}"),
                None => "/api/admin/events/dead".into(),
            };
            call(&server, "GET", &path, None)?
        }
        EventsCommand::Replay { ids, server } => call(
            &server,
            "POST",
            "/api/admin/events/replay",
            Some(json!({ "ids": ids })),
        )?,
        EventsCommand::Enable { name, server } => call(
            &server,
            "POST",
            &format!("/api/admin/events/sinks/{name}/enable"),
            None,
        )?,
    };
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

/// Calls the server; a non-2xx answer is an error carrying its JSON body.
fn call(server: &ServerArgs, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
    let url = format!("{}{path}", server.url.trim_end_matches('/'));
    let agent = admin_agent();
    let auth = server.token.as_ref().map(|t| format!("Bearer {t}"));
    let mut resp = match method {
        "POST" => {
            let mut r = agent.post(&url).header("content-type", "application/json");
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.send(body.unwrap_or(Value::Null).to_string())
        }
        _ => {
            let mut r = agent.get(&url);
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.call()
        }
    }
    .with_context(|| format!("calling {url}"))?;
    let text = resp
        .body_mut()
        .read_to_string()
        .context("the server's answer")?;
    if !resp.status().is_success() {
        bail!("the server refused ({}): {text}", resp.status());
    }
    serde_json::from_str(&text).context("the server's answer is not JSON")
}
