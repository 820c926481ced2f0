//! Keys named by the configuration, and the security subcommands: `keygen`, `token issue`,
//! `rotate-master-key`, `audit verify`, `audit export`.
//!
//! Invariants:
//! - Secret files are written with mode 0600 and never overwritten by `keygen`; secret files
//!   that others can read are refused when loaded (see `coedit_actors::security::crypto`).
//! - `rotate-master-key` adds the new master key version to the key file before any data key
//!   is re-wrapped, and retires the old versions only after every data key was re-wrapped
//!   durably; a failure in between leaves a key file that opens every data key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use coedit_actors::security::audit::{self, AuditEvent};
use coedit_actors::security::auth::{now_s, Claims, Role, TokenKey, TokenSigner};
use coedit_actors::security::crypto::{
    generate_sm2_pem, random_bytes, write_secret_file, MasterKeyring, Sm2Signer, Sm2Verifier,
};
use coedit_actors::storage::StoreError;
use coedit_actors::{SledStore, Store};
use zeroize::Zeroizing;

use crate::config::{AuthMode, Config, CryptoMode};

/// Environment variable holding the master key ring when no key file is configured.
pub const MASTER_KEY_ENV: &str = "COEDIT_MASTER_KEY";
/// Shortest accepted HMAC-SM3 secret, in bytes.
pub const MIN_HMAC_KEY_BYTES: usize = 16;
/// Bytes of a secret made by `keygen`.
const HMAC_KEY_BYTES: usize = 32;
/// File names written by `keygen`.
pub const MASTER_KEY_FILE: &str = "master.key";
/// SM2 private key file written by `keygen`.
pub const SM2_KEY_FILE: &str = "sm2.pem";
/// SM2 public key file written by `keygen`.
pub const SM2_PUBLIC_KEY_FILE: &str = "sm2.pub.pem";
/// HMAC-SM3 secret file written by `keygen`.
pub const HMAC_KEY_FILE: &str = "hmac.key";
/// Longest lifetime `coedit token issue` gives a token (a year and a day).
pub const MAX_TOKEN_TTL_S: u64 = coedit_actors::security::auth::MAX_TOKEN_LIFETIME_S;
/// Online rotation: time allowed for the server to re-wrap every key.
const ROTATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// The master key ring for `[crypto] mode = "sm"` (`None` in mode `none`).
pub fn master_ring(config: &Config) -> Result<Option<MasterKeyring>> {
    if config.crypto_mode == CryptoMode::None {
        return Ok(None);
    }
    if let Some(path) = &config.master_key_file {
        return Ok(Some(MasterKeyring::load(path)?));
    }
    match std::env::var(MASTER_KEY_ENV) {
        Ok(text) => Ok(Some(
            MasterKeyring::parse(&Zeroizing::new(text)).context(MASTER_KEY_ENV)?,
        )),
        Err(_) => bail!(
            "[crypto] mode = \"sm\" needs master_key_file or the {MASTER_KEY_ENV} environment \
             variable (create one with `coedit keygen`)"
        ),
    }
}

/// The key that signs audit checkpoints, if configured.
pub fn checkpoint_signer(config: &Config) -> Result<Option<Arc<Sm2Signer>>> {
    Ok(match &config.signing_key_file {
        Some(p) => Some(Arc::new(Sm2Signer::load(p)?)),
        None => None,
    })
}

fn read_hmac_key(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "{}: mode {:o} lets others read the secret; run chmod 600",
            path.display(),
            mode & 0o777
        );
    }
    let text = Zeroizing::new(std::fs::read_to_string(path)?);
    let key = Zeroizing::new(
        hex::decode(text.trim()).with_context(|| format!("{}: not hex", path.display()))?,
    );
    if key.len() < MIN_HMAC_KEY_BYTES {
        bail!(
            "{}: the secret must be at least {MIN_HMAC_KEY_BYTES} bytes",
            path.display()
        );
    }
    Ok(key)
}

/// How tokens are checked (`None`: authentication off).
pub fn token_key(config: &Config) -> Result<Option<TokenKey>> {
    Ok(match config.auth_mode {
        AuthMode::None => None,
        AuthMode::HmacSm3 => {
            let path = config
                .hmac_key_file
                .as_ref()
                .context("[auth] mode = \"hmac-sm3\" needs hmac_key_file")?;
            Some(TokenKey::Hmac(read_hmac_key(path)?))
        }
        AuthMode::Sm2 => {
            let path = config
                .public_key_file
                .as_ref()
                .context("[auth] mode = \"sm2\" needs public_key_file")?;
            Some(TokenKey::Sm2(Sm2Verifier::load(path)?))
        }
    })
}

/// `coedit keygen`: a master key ring, an SM2 key pair and an HMAC-SM3 secret in `dir`.
pub fn keygen(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let names = [
        MASTER_KEY_FILE,
        SM2_KEY_FILE,
        SM2_PUBLIC_KEY_FILE,
        HMAC_KEY_FILE,
    ];
    for name in names {
        if dir.join(name).exists() {
            bail!(
                "{} exists: keygen never overwrites keys",
                dir.join(name).display()
            );
        }
    }
    let ring = MasterKeyring::generate()?;
    write_secret_file(&dir.join(MASTER_KEY_FILE), &ring.to_text())?;
    let (private, public) = generate_sm2_pem()?;
    write_secret_file(&dir.join(SM2_KEY_FILE), &private)?;
    std::fs::write(dir.join(SM2_PUBLIC_KEY_FILE), public)?;
    let secret = Zeroizing::new(hex::encode(random_bytes::<HMAC_KEY_BYTES>()?));
    write_secret_file(&dir.join(HMAC_KEY_FILE), &format!("{}\n", *secret))?;
    for name in names {
        println!("{}", dir.join(name).display());
    }
    Ok(())
}

/// Parses `pattern=role`.
pub fn parse_grant(s: &str) -> Result<(String, Role)> {
    let (pattern, role) = s
        .split_once('=')
        .with_context(|| format!("grant {s:?}: want PATTERN=ROLE"))?;
    let role: Role = serde_json::from_value(serde_json::Value::String(role.to_string()))
        .with_context(|| format!("role {role:?}: want viewer, commenter, editor or owner"))?;
    let name = pattern.strip_suffix('*').unwrap_or(pattern);
    if !name.is_empty() {
        coedit_protocol::wire::validate_doc_id(name)?;
    }
    Ok((pattern.to_string(), role))
}

/// What `coedit token issue` signs.
pub struct TokenRequest {
    /// Subject.
    pub sub: String,
    /// Tenant.
    pub tenant: String,
    /// Grants.
    pub grants: Vec<(String, Role)>,
    /// Lifetime in seconds.
    pub ttl_s: u64,
    /// Server administrator.
    pub admin: bool,
    /// Display name for presence.
    pub name: Option<String>,
    /// Caret colour for presence, `#rrggbb`.
    pub color: Option<String>,
}

/// `coedit token issue`: a token signed with an SM2 private key or an HMAC-SM3 secret.
pub fn issue_token(
    req: TokenRequest,
    sm2_key: Option<&Path>,
    hmac_key: Option<&Path>,
) -> Result<String> {
    coedit_protocol::wire::validate_doc_id(&req.tenant).context("tenant")?;
    let signer = match (sm2_key, hmac_key) {
        (Some(p), None) => TokenSigner::Sm2(Sm2Signer::load(p)?),
        (None, Some(p)) => TokenSigner::Hmac(read_hmac_key(p)?),
        _ => bail!("give exactly one of --sm2-key and --hmac-key"),
    };
    if req.ttl_s == 0 || req.ttl_s > MAX_TOKEN_TTL_S {
        bail!(
            "--ttl {} is out of range: a token lives 1 to {MAX_TOKEN_TTL_S} seconds",
            req.ttl_s
        );
    }
    coedit_protocol::PeerUser {
        name: req.name.clone(),
        color: req.color.clone(),
    }
    .validate()
    .context("--name/--color")?;
    let now = now_s();
    let claims = Claims {
        sub: req.sub,
        tenant: req.tenant,
        iat: now,
        nbf: None,
        exp: now
            .checked_add(req.ttl_s)
            .context("the token's expiry overflows")?,
        grants: req.grants.into_iter().collect(),
        admin: req.admin,
        name: req.name,
        color: req.color,
    };
    Ok(signer.issue(&claims))
}

/// `coedit rotate-master-key`: adds a master key version to `key_file`, re-wraps every data
/// key under it (through the running server at `url`, or offline in `data_dir`), then retires
/// the old versions. Returns the number of data keys re-wrapped.
pub fn rotate_master_key(
    key_file: &Path,
    online: Option<(&str, &str)>,
    data_dir: &Path,
) -> Result<usize> {
    let mut ring = MasterKeyring::load(key_file)?;
    let new_version = ring.add_version()?;
    write_secret_file(key_file, &ring.to_text())?;
    let rewrapped = match online {
        Some((url, token)) => {
            let mut resp = admin_agent()
                .post(&format!(
                    "{}/api/admin/rotate-master-key",
                    url.trim_end_matches('/')
                ))
                .header("Authorization", &format!("Bearer {token}"))
                .send_empty()
                .context("calling the server")?;
            let body: serde_json::Value = resp.body_mut().read_json().context("server answer")?;
            if !resp.status().is_success() {
                bail!("server refused the rotation ({}): {body}", resp.status());
            }
            if body["master_version"] != new_version {
                bail!(
                    "the server re-wrapped under version {}, not {new_version}: is it using {}?",
                    body["master_version"],
                    key_file.display()
                );
            }
            body["rewrapped"].as_u64().unwrap_or(0) as usize
        }
        None => {
            // The ring holds the old versions (to unwrap) and the new one (to wrap).
            let store = SledStore::open_with(data_dir, Some(ring.clone()))
                .with_context(|| format!("opening the store in {}", data_dir.display()))?;
            let n = store.rotate_master_key(ring.clone())?;
            store.flush()?;
            append_admin_audit(
                &store,
                "rotate-master-key",
                &format!("master key v{new_version}"),
                n,
            )?;
            n
        }
    };
    ring.retire_old();
    write_secret_file(key_file, &ring.to_text())?;
    Ok(rewrapped)
}

/// Records an offline administrative action in the audit chain (unsigned: the server signs
/// the next checkpoint).
fn append_admin_audit(
    store: &SledStore,
    action: &str,
    target: &str,
    n: usize,
) -> Result<(), StoreError> {
    let mut chain = audit::AuditChain::resume(store)?;
    chain.append(
        store,
        AuditEvent::Admin {
            subject: "cli".into(),
            action: action.into(),
            target: target.into(),
            outcome: format!("{n} data keys re-wrapped"),
        },
    )?;
    store.flush()
}

/// `coedit audit verify`: walks the chain in `data_dir` and checks it against the anchored
/// checkpoints in `anchor_path` and the manifest's audit length; prints a report; fails at the
/// first bad record.
pub fn audit_verify(data_dir: &Path, pubkey: Option<&PathBuf>, anchor_path: &Path) -> Result<()> {
    let store = SledStore::open_audit_reader(data_dir)
        .with_context(|| format!("opening the store in {}", data_dir.display()))?;
    let verifier = pubkey.map(|p| Sm2Verifier::load(p)).transpose()?;
    let anchors = coedit_actors::security::anchor::read(anchor_path)?;
    let manifest = coedit_actors::storage::manifest::read_for(data_dir, &store)?;
    let records = store.audit_all()?;
    let expect = audit::Expectations {
        verifier: verifier.as_ref(),
        anchors: &anchors,
        min_len: manifest.as_ref().map(|m| m.audit),
    };
    match audit::verify(&records, expect) {
        Ok(r) => {
            println!(
                "ok: {} records, {} checkpoints ({} signatures verified), last checkpoint {}, {} \
                 records after it; {} anchored checkpoints matched",
                r.records,
                r.checkpoints,
                r.verified_checkpoints,
                r.last_checkpoint.map_or("none".into(), |s| s.to_string()),
                r.unsigned_tail,
                r.anchors_matched,
            );
            for (from, to) in &r.gaps {
                println!(
                    "WARNING: records {from}..={to} were lost and the loss was accepted \
                     (`coedit recover --accept-loss`, gap record {})",
                    to + 1
                );
            }
            if verifier.is_none() {
                println!("note: checkpoint signatures not checked (give --pubkey)");
            }
            if anchors.is_empty() {
                println!(
                    "note: no anchored checkpoints in {} (a chain cut short is found only with \
                     them or the manifest)",
                    anchor_path.display()
                );
            }
            Ok(())
        }
        Err(f) => {
            println!("FAULT {f}");
            bail!("the audit log fails verification at record {}", f.position)
        }
    }
}

/// An HTTP agent for the admin calls, bounded in time, that reads error statuses as answers.
pub(crate) fn admin_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(ROTATE_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .new_agent()
}

/// GETs an admin URL of a running server; fails with its JSON error on a non-2xx status.
fn admin_get(url: &str, path: &str, token: &str) -> Result<String> {
    let mut resp = admin_agent()
        .get(&format!("{}{path}", url.trim_end_matches('/')))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .context("calling the server")?;
    let body = resp.body_mut().read_to_string().context("server answer")?;
    if !resp.status().is_success() {
        bail!("the server refused ({}): {body}", resp.status());
    }
    Ok(body)
}

/// `coedit audit verify --url`: asks a running server to verify its chain (against its
/// anchors, its manifest and its signing key); with `pubkey`, also checks that the server's
/// signing key is that key.
pub fn audit_verify_online(url: &str, token: &str, pubkey: Option<&PathBuf>) -> Result<()> {
    let v: serde_json::Value =
        serde_json::from_str(&admin_get(url, "/api/admin/audit/verify", token)?)?;
    if let Some(p) = pubkey {
        let want = hex::encode(Sm2Verifier::load(p)?.fingerprint());
        if v["signer"].as_str() != Some(want.as_str()) {
            bail!(
                "the server signs checkpoints with key {}, not with {}",
                v["signer"],
                p.display()
            );
        }
    }
    if v["ok"] != true {
        println!("FAULT {}", v["fault"]);
        bail!(
            "the audit log fails verification at record {}",
            v["fault"]["position"]
        );
    }
    let r = &v["report"];
    println!(
        "ok: {} records, {} checkpoints ({} signatures verified), last checkpoint {}, {} records \
         after it; {} anchored checkpoints matched",
        r["records"],
        r["checkpoints"],
        r["verified_checkpoints"],
        r["last_checkpoint"],
        r["unsigned_tail"],
        r["anchors_matched"],
    );
    for g in r["gaps"].as_array().into_iter().flatten() {
        println!(
            "WARNING: records {}..={} were lost and the loss was accepted",
            g[0], g[1]
        );
    }
    Ok(())
}

/// `coedit audit export --url`: a running server's chain as JSON lines to `out` (stdout if
/// `None`).
pub fn audit_export_online(url: &str, token: &str, out: Option<&PathBuf>) -> Result<u64> {
    let body = admin_get(url, "/api/admin/audit/export", token)?;
    match out {
        Some(p) => std::fs::write(p, &body).with_context(|| format!("writing {}", p.display()))?,
        None => print!("{body}"),
    }
    Ok(body.lines().count() as u64)
}

/// `coedit audit export`: the chain as JSON lines to `out` (stdout if `None`).
pub fn audit_export(data_dir: &Path, out: Option<&PathBuf>) -> Result<u64> {
    let store = SledStore::open_audit_reader(data_dir)
        .with_context(|| format!("opening the store in {}", data_dir.display()))?;
    let records = store.audit_all()?;
    let n = match out {
        Some(p) => {
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
            );
            let n = audit::export(&records, &mut f)?;
            std::io::Write::flush(&mut f)?;
            n
        }
        None => audit::export(&records, &mut std::io::stdout().lock())?,
    };
    Ok(n)
}
