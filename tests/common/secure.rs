//! Keys, tokens and hellos for the tests that run the server with authentication on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use coedit_actors::security::auth::{now_s, Claims, Role, TokenSigner};
use coedit_actors::security::crypto::Sm2Signer;
use coedit_protocol::{ClientMsg, ErrorCode, ServerMsg, PROTOCOL_VERSION};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use super::{connect_raw, read_msg, run_coedit, Incoming, Server};

/// Bound on one answer.
const WAIT: Duration = Duration::from_secs(5);

/// Keys made by `coedit keygen`, a data directory and a config using them.
pub struct Setup {
    /// Holds everything.
    pub _tmp: tempfile::TempDir,
    /// The key directory.
    pub keys: PathBuf,
    /// The data directory.
    pub data: PathBuf,
    /// SM4 at rest, SM2 tokens, signed checkpoints every second.
    pub config: String,
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Keys from `coedit keygen`; a config with SM4 at rest, SM2 tokens and signed checkpoints.
pub fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let (ok, out) = run_coedit(&["keygen", "--out", path_str(&keys)]);
    assert!(ok, "{out}");
    use std::os::unix::fs::PermissionsExt;
    for secret in ["master.key", "sm2.pem", "hmac.key"] {
        let mode = std::fs::metadata(keys.join(secret))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{secret}");
    }
    // keygen never overwrites.
    let (ok, out) = run_coedit(&["keygen", "--out", path_str(&keys)]);
    assert!(!ok && out.contains("never overwrites"), "{out}");
    let config = format!(
        "[crypto]\nmode = \"sm\"\nmaster_key_file = \"{k}/master.key\"\n\
         signing_key_file = \"{k}/sm2.pem\"\n\
         [auth]\nmode = \"sm2\"\npublic_key_file = \"{k}/sm2.pub.pem\"\n\
         [audit]\ncheckpoint_interval_s = 1\n",
        k = path_str(&keys)
    );
    Setup {
        data: tmp.path().join("data"),
        keys,
        _tmp: tmp,
        config,
    }
}

pub fn issue(s: &Setup, sub: &str, tenant: &str, grants: &[&str], admin: bool) -> String {
    let key = s.keys.join("sm2.pem");
    let mut args = vec![
        "token",
        "issue",
        "--sub",
        sub,
        "--tenant",
        tenant,
        "--sm2-key",
        path_str(&key),
    ];
    for g in grants {
        args.extend(["--grant", g]);
    }
    if admin {
        args.push("--admin");
    }
    let (ok, out) = run_coedit(&args);
    assert!(ok, "{out}");
    out.trim().to_string()
}

/// A token that expired an hour ago, signed with the real key.
pub fn expired(s: &Setup) -> String {
    let signer = Sm2Signer::load(&s.keys.join("sm2.pem")).unwrap();
    TokenSigner::Sm2(signer).issue(&Claims {
        sub: "alice".into(),
        tenant: "acme".into(),
        iat: now_s() - 7200,
        exp: now_s() - 3600,
        nbf: None,
        grants: [("notes-*".to_string(), Role::Editor)]
            .into_iter()
            .collect(),
        admin: false,
        name: None,
        color: None,
    })
}

/// Says hello with `token`; returns the error code and close code, or `None` on welcome.
pub async fn hello(
    server: &Server,
    token: Option<&str>,
) -> Result<Option<(ErrorCode, Option<u16>)>> {
    let mut ws = connect_raw(&server.ws_url()).await?;
    let hello = ClientMsg::Hello {
        v: PROTOCOL_VERSION,
        client: None,
        token: token.map(str::to_string),
        user: None,
    };
    ws.send(Message::Text(
        coedit_protocol::wire::encode_json(&hello).into(),
    ))
    .await?;
    match read_msg(&mut ws, WAIT).await? {
        Incoming::Msg(ServerMsg::Welcome { .. }) => Ok(None),
        Incoming::Msg(ServerMsg::Error { code, .. }) => {
            let close = match read_msg(&mut ws, WAIT).await? {
                Incoming::Closed(c) => c,
                other => panic!("expected a close after the refusal, got {other:?}"),
            };
            Ok(Some((code, close)))
        }
        other => panic!("unexpected {other:?}"),
    }
}
