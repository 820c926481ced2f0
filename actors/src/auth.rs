//! Access tokens and authorization: who may do what to which document of which tenant.
//!
//! A token is `base64url(header) "." base64url(claims) "." base64url(signature)` (no padding),
//! JSON header and claims, like a JWT:
//! - header `{"alg":"SM2-SM3","typ":"coedit"}`: SM2 signature (`r ‖ s`, distinguishing id
//!   `1234567812345678`) over `header "." claims` as sent; or `{"alg":"HMAC-SM3",…}`: HMAC-SM3
//!   tag over the same bytes. The server accepts only the algorithm it is configured for, so
//!   a token can never choose how it is checked.
//! - claims [`Claims`]: subject, tenant, issued-at and expiry (Unix seconds), grants (document
//!   id or `prefix*` → role), and an optional server-admin flag.
//!
//! Documents are namespaced per tenant: a client names a document `name` (or `tenant:name`,
//! which must be its own tenant); the server stores it as `tenant:name`. No reference a client
//! can write resolves into another tenant's namespace.
//!
//! Invariants:
//! - Verification is total: any input is a valid token or a typed [`AuthError`].
//! - Among the grants matching a document the longest pattern wins (an exact id beats any
//!   prefix), so a narrower grant can lower a broader one.

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use coedit_protocol::wire::split_doc_ref;
use coedit_protocol::ErrorCode;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::crypto::{hmac_sm3, hmac_sm3_verify, Sm2Signer, Sm2Verifier};

/// Longest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock skew tolerated when checking expiry, in seconds.
pub const EXPIRY_LEEWAY_S: u64 = 30;
/// Most grants in one token.
pub const MAX_GRANTS: usize = 256;
/// Header algorithm name of SM2 tokens.
const ALG_SM2: &str = "SM2-SM3";
/// Header algorithm name of HMAC-SM3 tokens.
const ALG_HMAC: &str = "HMAC-SM3";
/// Header `typ`.
const TOKEN_TYPE: &str = "coedit";

/// A role on a document. Ordered: each role can do everything the ones before it can.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read the text and history, join, show presence.
    Viewer,
    /// Everything a viewer can (coedit has no comment objects yet: same rights as a viewer).
    Commenter,
    /// Also submit ops; create the document.
    Editor,
    /// Also manage the document (delete it).
    Owner,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Commenter => "commenter",
            Role::Editor => "editor",
            Role::Owner => "owner",
        })
    }
}

/// What a request does to a document, and the role it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Join, read text, ops, versions.
    Read,
    /// Send presence.
    Presence,
    /// Submit an op (or create the document).
    Write,
    /// Delete the document.
    Manage,
}

impl Action {
    /// The least role allowed to do it.
    pub fn needs(self) -> Role {
        match self {
            Action::Read | Action::Presence => Role::Viewer,
            Action::Write => Role::Editor,
            Action::Manage => Role::Owner,
        }
    }
}

/// The claims of a token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// Subject (user id).
    pub sub: String,
    /// Tenant; documents are namespaced by it.
    pub tenant: String,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Document id or `prefix*` → role.
    #[serde(default)]
    pub grants: BTreeMap<String, Role>,
    /// Server administrator (key rotation, audit export over HTTP).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
}

impl Claims {
    /// The role granted on document `name` of the token's tenant, if any.
    pub fn role_for(&self, name: &str) -> Option<Role> {
        self.grants
            .iter()
            .filter(|(pattern, _)| match pattern.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => pattern.as_str() == name,
            })
            .max_by_key(|(pattern, _)| (pattern.len(), !pattern.ends_with('*')))
            .map(|(_, &role)| role)
    }

    /// Fails once the token has expired (with [`EXPIRY_LEEWAY_S`] of tolerance).
    pub fn check_fresh(&self, now: u64) -> Result<(), AuthError> {
        if now > self.exp.saturating_add(EXPIRY_LEEWAY_S) {
            return Err(AuthError::Expired { exp: self.exp, now });
        }
        Ok(())
    }
}

/// An authentication or authorization refusal.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// No token, and the server requires one.
    #[error("an access token is required")]
    Missing,
    /// The token is malformed, signed with another key or algorithm, or altered.
    #[error("invalid access token: {0}")]
    Invalid(String),
    /// The token has expired.
    #[error("the access token expired at {exp} (now {now})")]
    Expired {
        /// Expiry.
        exp: u64,
        /// Server time.
        now: u64,
    },
    /// The document reference names another tenant.
    #[error("document {doc:?} belongs to another tenant than {tenant:?}")]
    WrongTenant {
        /// The reference.
        doc: String,
        /// The token's tenant.
        tenant: String,
    },
    /// No grant covers the document, or it does not exist and may not be created.
    #[error("no document {0:?} (or no access to it)")]
    UnknownDocument(String),
    /// The role allows reading only.
    #[error("role {role} on {doc:?} is read-only")]
    ReadOnly {
        /// The document.
        doc: String,
        /// The role held.
        role: Role,
    },
    /// The role or token does not allow this management action.
    #[error("{0}")]
    NotPermitted(String),
}

impl AuthError {
    /// The wire code.
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Missing => ErrorCode::AuthRequired,
            AuthError::Invalid(_) => ErrorCode::InvalidToken,
            AuthError::Expired { .. } => ErrorCode::TokenExpired,
            AuthError::WrongTenant { .. } => ErrorCode::WrongTenant,
            AuthError::UnknownDocument(_) => ErrorCode::UnknownDocument,
            AuthError::ReadOnly { .. } => ErrorCode::ReadOnly,
            AuthError::NotPermitted(_) => ErrorCode::NotPermitted,
        }
    }
}

/// How tokens are checked.
#[derive(Clone)]
pub enum TokenKey {
    /// HMAC-SM3 with a shared secret.
    Hmac(Zeroizing<Vec<u8>>),
    /// SM2 signatures, checked with the issuer's public key.
    Sm2(Sm2Verifier),
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenKey::Hmac(_) => f.write_str("TokenKey::Hmac(…)"),
            TokenKey::Sm2(_) => f.write_str("TokenKey::Sm2(…)"),
        }
    }
}

/// Signs tokens (`coedit token issue`, tests).
pub enum TokenSigner {
    /// HMAC-SM3 with a shared secret.
    Hmac(Zeroizing<Vec<u8>>),
    /// SM2 with the issuer's private key.
    Sm2(Sm2Signer),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    alg: String,
    typ: String,
}

fn invalid(why: impl Into<String>) -> AuthError {
    AuthError::Invalid(why.into())
}

impl TokenSigner {
    fn alg(&self) -> &'static str {
        match self {
            TokenSigner::Hmac(_) => ALG_HMAC,
            TokenSigner::Sm2(_) => ALG_SM2,
        }
    }

    /// The token for `claims`.
    pub fn issue(&self, claims: &Claims) -> String {
        let header = Header {
            alg: self.alg().into(),
            typ: TOKEN_TYPE.into(),
        };
        let signing_input = format!("{}.{}", b64_json(&header), b64_json(claims));
        let sig = match self {
            TokenSigner::Hmac(k) => hmac_sm3(k, signing_input.as_bytes()).to_vec(),
            TokenSigner::Sm2(s) => s.sign(signing_input.as_bytes()).to_vec(),
        };
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

/// base64url of the JSON of `v`.
fn b64_json<T: Serialize>(v: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("claims and headers serialize"))
}

impl TokenKey {
    fn alg(&self) -> &'static str {
        match self {
            TokenKey::Hmac(_) => ALG_HMAC,
            TokenKey::Sm2(_) => ALG_SM2,
        }
    }

    /// Checks a token's form, algorithm, signature and expiry; returns its claims.
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid(format!("longer than {MAX_TOKEN_BYTES} bytes")));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("not three dot-separated parts"));
        };
        let decode = |part: &str, what: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|e| invalid(format!("{what} is not base64url: {e}")))
        };
        let header: Header = serde_json::from_slice(&decode(h, "header")?)
            .map_err(|e| invalid(format!("header: {e}")))?;
        if header.typ != TOKEN_TYPE || header.alg != self.alg() {
            return Err(invalid(format!(
                "algorithm {:?} (type {:?}) where this server accepts {:?}",
                header.alg,
                header.typ,
                self.alg()
            )));
        }
        let sig = decode(s, "signature")?;
        let signing_input = &token[..h.len() + 1 + c.len()];
        let checked = match self {
            TokenKey::Hmac(k) => hmac_sm3_verify(k, signing_input.as_bytes(), &sig),
            TokenKey::Sm2(v) => v.verify(signing_input.as_bytes(), &sig),
        };
        checked.map_err(|_| invalid("signature does not verify"))?;
        let claims: Claims = serde_json::from_slice(&decode(c, "claims")?)
            .map_err(|e| invalid(format!("claims: {e}")))?;
        if claims.grants.len() > MAX_GRANTS {
            return Err(invalid(format!("more than {MAX_GRANTS} grants")));
        }
        if split_doc_ref(&claims.tenant).is_err() || claims.tenant.contains(':') {
            return Err(invalid("tenant must be a valid document-id-like name"));
        }
        claims.check_fresh(now)?;
        Ok(claims)
    }
}

/// A document reference resolved for a caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// Storage id: `tenant:name` with authentication, the reference itself without.
    pub id: String,
    /// The id the client uses and the server echoes: the name without the tenant.
    pub name: String,
    /// The caller's role (`Owner` without authentication).
    pub role: Role,
}

/// Resolves a validated document reference for `claims` (or for everyone when authentication
/// is off) and checks that `action` is allowed. (Creating a document, i.e. opening one that
/// does not exist, is checked by the caller: it needs [`Action::Write`].)
pub fn authorize(
    claims: Option<&Claims>,
    doc_ref: &str,
    action: Action,
    now: u64,
) -> Result<Resolved, AuthError> {
    let Some(claims) = claims else {
        return Ok(Resolved {
            id: doc_ref.to_string(),
            name: doc_ref.to_string(),
            role: Role::Owner,
        });
    };
    claims.check_fresh(now)?;
    let (tenant, name) =
        split_doc_ref(doc_ref).map_err(|_| AuthError::UnknownDocument(doc_ref.to_string()))?;
    if let Some(t) = tenant {
        if t != claims.tenant {
            return Err(AuthError::WrongTenant {
                doc: doc_ref.to_string(),
                tenant: claims.tenant.clone(),
            });
        }
    }
    let role = claims
        .role_for(name)
        .ok_or_else(|| AuthError::UnknownDocument(name.to_string()))?;
    if role < action.needs() {
        return Err(match action {
            Action::Write => AuthError::ReadOnly {
                doc: name.to_string(),
                role,
            },
            _ => AuthError::NotPermitted(format!(
                "role {role} on {name:?} does not allow this (needs {})",
                action.needs()
            )),
        });
    }
    Ok(Resolved {
        id: format!("{}:{name}", claims.tenant),
        name: name.to_string(),
        role,
    })
}

/// Hex digits of the subject prefix of a client id.
const CLIENT_PREFIX_LEN: usize = 12;

/// With authentication, client ids are bound to the token's subject: they start with
/// `SM3(tenant \0 subject)` (12 hex digits) and `-`, which the server adds to an id that does
/// not carry it. So nobody can claim another subject's client id (and with it the other
/// subject's exactly-once sequence numbers). Without authentication ids are used as given.
pub fn bind_client_id(claims: Option<&Claims>, client: &str) -> String {
    let Some(c) = claims else {
        return client.to_string();
    };
    let digest = crate::crypto::sm3_parts(&[c.tenant.as_bytes(), b"\0", c.sub.as_bytes()]);
    let prefix = &hex::encode(digest)[..CLIENT_PREFIX_LEN];
    match client.strip_prefix(prefix) {
        Some(rest) if rest.starts_with('-') => client.to_string(),
        _ => format!("{prefix}-{client}"),
    }
}

/// Seconds since the Unix epoch.
pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::generate_sm2_pem;

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "alice".into(),
            tenant: "acme".into(),
            iat: 1000,
            exp,
            grants: [
                ("notes-*".to_string(), Role::Editor),
                ("notes-locked".to_string(), Role::Viewer),
                ("spec".to_string(), Role::Owner),
            ]
            .into_iter()
            .collect(),
            admin: false,
        }
    }

    fn keys() -> Vec<(TokenSigner, TokenKey)> {
        let (private, public) = generate_sm2_pem().unwrap();
        vec![
            (
                TokenSigner::Hmac(Zeroizing::new(b"0123456789abcdef".to_vec())),
                TokenKey::Hmac(Zeroizing::new(b"0123456789abcdef".to_vec())),
            ),
            (
                TokenSigner::Sm2(Sm2Signer::from_pem(&private).unwrap()),
                TokenKey::Sm2(Sm2Verifier::from_pem(&public).unwrap()),
            ),
        ]
    }

    #[test]
    fn tokens_round_trip_and_refuse_tampering() {
        for (signer, key) in keys() {
            let c = claims(5000);
            let t = signer.issue(&c);
            assert_eq!(key.verify(&t, 4000).unwrap(), c);
            // Expired (past the leeway), with its own code.
            let e = key.verify(&t, 5000 + EXPIRY_LEEWAY_S + 1).unwrap_err();
            assert_eq!(e.code(), ErrorCode::TokenExpired);
            assert!(key.verify(&t, 5000 + EXPIRY_LEEWAY_S).is_ok());
            // Every changed character of the token is refused as invalid.
            for i in 0..t.len() {
                let mut b = t.clone().into_bytes();
                b[i] = if b[i] == b'A' { b'B' } else { b'A' };
                let Ok(forged) = String::from_utf8(b) else {
                    continue;
                };
                if forged == t {
                    continue;
                }
                match key.verify(&forged, 4000) {
                    Err(AuthError::Invalid(_)) => {}
                    other => panic!("position {i}: {other:?}"),
                }
            }
            // Raised privileges with the original signature.
            let mut raised = c.clone();
            raised.admin = true;
            let other = signer.issue(&raised);
            let (h, rest) = t.split_once('.').unwrap();
            let (_, sig) = rest.split_once('.').unwrap();
            let claims_part = other.split('.').nth(1).unwrap();
            let spliced = format!("{h}.{claims_part}.{sig}");
            assert!(matches!(
                key.verify(&spliced, 4000),
                Err(AuthError::Invalid(_))
            ));
            for bad in [
                "",
                "a.b",
                "a.b.c.d",
                "!!!.???.***",
                &"x".repeat(MAX_TOKEN_BYTES + 1),
            ] {
                assert!(
                    matches!(key.verify(bad, 4000), Err(AuthError::Invalid(_))),
                    "{bad:?}"
                );
            }
        }
    }

    #[test]
    fn a_token_for_another_algorithm_or_key_is_refused() {
        let ks = keys();
        let (hmac_signer, hmac_key) = &ks[0];
        let (sm2_signer, sm2_key) = &ks[1];
        let c = claims(5000);
        assert!(matches!(
            sm2_key.verify(&hmac_signer.issue(&c), 0),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            hmac_key.verify(&sm2_signer.issue(&c), 0),
            Err(AuthError::Invalid(_))
        ));
        let other = TokenKey::Hmac(Zeroizing::new(b"another secret!!".to_vec()));
        assert!(matches!(
            other.verify(&hmac_signer.issue(&c), 0),
            Err(AuthError::Invalid(_))
        ));
        let (_, public) = generate_sm2_pem().unwrap();
        let other = TokenKey::Sm2(Sm2Verifier::from_pem(&public).unwrap());
        assert!(matches!(
            other.verify(&sm2_signer.issue(&c), 0),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn grants_roles_and_tenants() {
        let c = claims(5000);
        assert_eq!(c.role_for("notes-a"), Some(Role::Editor));
        assert_eq!(c.role_for("notes-locked"), Some(Role::Viewer));
        assert_eq!(c.role_for("spec"), Some(Role::Owner));
        assert_eq!(c.role_for("specs"), None);
        assert_eq!(c.role_for("other"), None);
        let ok = authorize(Some(&c), "notes-a", Action::Write, 100).unwrap();
        assert_eq!(
            ok,
            Resolved {
                id: "acme:notes-a".into(),
                name: "notes-a".into(),
                role: Role::Editor
            }
        );
        assert_eq!(
            authorize(Some(&c), "acme:notes-a", Action::Write, 100).unwrap(),
            ok
        );
        let code =
            |r: &str, a: Action, now: u64| authorize(Some(&c), r, a, now).unwrap_err().code();
        assert_eq!(
            code("globex:notes-a", Action::Read, 100),
            ErrorCode::WrongTenant
        );
        assert_eq!(code("other", Action::Read, 100), ErrorCode::UnknownDocument);
        assert_eq!(
            code("notes-locked", Action::Write, 100),
            ErrorCode::ReadOnly
        );
        assert_eq!(
            code("notes-a", Action::Manage, 100),
            ErrorCode::NotPermitted
        );
        assert_eq!(code("notes-a", Action::Read, 9999), ErrorCode::TokenExpired);
        assert!(authorize(Some(&c), "notes-locked", Action::Presence, 100).is_ok());
        assert!(authorize(Some(&c), "spec", Action::Manage, 100).is_ok());
        // Client ids are bound to the subject (idempotently); other subjects get other ids.
        let id = bind_client_id(Some(&c), "laptop");
        assert!(
            id.ends_with("-laptop") && id.len() == CLIENT_PREFIX_LEN + 7,
            "{id}"
        );
        assert_eq!(bind_client_id(Some(&c), &id), id);
        let mut other = c.clone();
        other.sub = "mallory".into();
        assert_ne!(bind_client_id(Some(&other), &id), id);
        assert_eq!(bind_client_id(None, "laptop"), "laptop");
        // Without authentication the reference is the id and everything is allowed.
        let open = authorize(None, "acme:x", Action::Manage, 0).unwrap();
        assert_eq!((open.id.as_str(), open.role), ("acme:x", Role::Owner));
    }
}
