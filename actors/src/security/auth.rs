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
//! - Grant precedence, decided in one place ([`Claims::role_for`]): a grant naming the document
//!   exactly wins over every prefix grant, whatever their lengths; otherwise the longest
//!   matching `prefix*` wins. So a narrower grant can always lower (or raise) a broader one. Two
//!   matching prefixes of the same length are the same pattern, and a token that names one
//!   pattern twice is refused as invalid, so the resolution is never ambiguous.
//! - Time claims are checked against the server clock with a bounded skew
//!   ([`DEFAULT_CLOCK_SKEW_S`], `[auth] clock_skew_s`): a token issued (`iat`) or valid from
//!   (`nbf`) further in the future than the skew is refused, as is one past `exp` + skew.

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use coedit_protocol::wire::split_doc_ref;
use coedit_protocol::ErrorCode;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::security::crypto::{hmac_sm3, hmac_sm3_verify, Sm2Signer, Sm2Verifier};

/// Longest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Default clock skew tolerated between the token issuer and this server, in seconds (for
/// `exp`, `iat` and `nbf`).
pub const DEFAULT_CLOCK_SKEW_S: u64 = 30;
/// Largest configurable clock skew, in seconds.
pub const MAX_CLOCK_SKEW_S: u64 = 600;
/// Longest token lifetime accepted (`exp - iat`), in seconds: 366 days. Tokens cannot be
/// revoked, so one that lives longer is refused however it was signed.
pub const MAX_TOKEN_LIFETIME_S: u64 = 366 * 86_400;
/// Most grants in one token.
pub const MAX_GRANTS: usize = 256;
/// Header algorithm name of SM2 tokens.
const ALG_SM2: &str = "SM2-SM3";
/// Header algorithm name of HMAC-SM3 tokens.
const ALG_HMAC: &str = "HMAC-SM3";
/// Header `typ`.
const TOKEN_TYPE: &str = "coedit";

pub use coedit_protocol::Role;

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
    /// Not valid before, Unix seconds (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Document id or `prefix*` → role. A pattern named twice makes the token invalid.
    #[serde(default, deserialize_with = "grants_without_duplicates")]
    pub grants: BTreeMap<String, Role>,
    /// Server administrator (key rotation, audit export over HTTP).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
    /// Display name shown with the user's caret (overrides what the client announces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Caret colour, `#rrggbb` (overrides what the client announces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
}

/// Deserializes the grants map, refusing a pattern that appears twice (JSON allows duplicate
/// keys; a plain map would silently keep the last one).
fn grants_without_duplicates<'de, D>(d: D) -> Result<BTreeMap<String, Role>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct GrantsVisitor;
    impl<'de> serde::de::Visitor<'de> for GrantsVisitor {
        type Value = BTreeMap<String, Role>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map of document patterns to roles")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((pattern, role)) = map.next_entry::<String, Role>()? {
                if out.len() >= MAX_GRANTS {
                    return Err(serde::de::Error::custom(format!(
                        "more than {MAX_GRANTS} grants"
                    )));
                }
                if out.insert(pattern, role).is_some() {
                    return Err(serde::de::Error::custom("a grant pattern appears twice"));
                }
            }
            Ok(out)
        }
    }
    d.deserialize_map(GrantsVisitor)
}

impl Claims {
    /// The role granted on document `name` of the token's tenant, if any: the grant naming
    /// `name` exactly, else the longest `prefix*` grant that `name` starts with. This is the
    /// only place grant precedence is decided.
    pub fn role_for(&self, name: &str) -> Option<Role> {
        if let Some(&role) = self.grants.get(name) {
            return Some(role);
        }
        self.grants
            .iter()
            .filter_map(|(pattern, &role)| {
                let prefix = pattern.strip_suffix('*')?;
                name.starts_with(prefix).then_some((prefix.len(), role))
            })
            .max_by_key(|&(len, _)| len)
            .map(|(_, role)| role)
    }

    /// The display metadata the token sets (`name`, `color`), for presence.
    pub fn user(&self) -> coedit_protocol::PeerUser {
        coedit_protocol::PeerUser {
            name: self.name.clone(),
            color: self.color.clone(),
        }
    }

    /// Fails once the token has expired (with `skew` seconds of tolerance).
    pub fn check_fresh(&self, now: u64, skew: u64) -> Result<(), AuthError> {
        if now > self.exp.saturating_add(skew) {
            return Err(AuthError::Expired { exp: self.exp, now });
        }
        Ok(())
    }

    /// Fails if the token was issued, or becomes valid, more than `skew` seconds in the future,
    /// or expires before it was issued.
    pub fn check_issued(&self, now: u64, skew: u64) -> Result<(), AuthError> {
        let horizon = now.saturating_add(skew);
        if self.iat > horizon {
            return Err(invalid(format!(
                "issued in the future (iat {} is more than {skew} s after the server's clock, {now})",
                self.iat
            )));
        }
        if let Some(nbf) = self.nbf.filter(|&nbf| nbf > horizon) {
            return Err(invalid(format!(
                "not valid before {nbf} (the server's clock is {now}, skew {skew} s)"
            )));
        }
        if self.exp < self.iat {
            return Err(invalid("expires before it was issued"));
        }
        Ok(())
    }

    /// Seconds from `now` until the first second at which [`Claims::check_fresh`] refuses the
    /// token (expiry plus `skew`, plus one).
    pub fn seconds_left(&self, now: u64, skew: u64) -> u64 {
        self.exp
            .saturating_add(skew)
            .saturating_add(1)
            .saturating_sub(now)
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
    /// Too many token checks are waiting: nothing was checked; try again shortly.
    #[error("the server is checking too many tokens: try again shortly")]
    Busy,
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
            AuthError::Busy => ErrorCode::Unavailable,
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

    /// Checks a token's form, algorithm, signature and time claims (`iat`, `nbf`, `exp`, each
    /// with `skew` seconds of tolerance); returns its claims.
    pub fn verify(&self, token: &str, now: u64, skew: u64) -> Result<Claims, AuthError> {
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
        if claims.sub.trim().is_empty() {
            return Err(invalid("the subject (sub) is empty"));
        }
        if claims.exp.saturating_sub(claims.iat) > MAX_TOKEN_LIFETIME_S {
            return Err(invalid(format!(
                "lives {} s (exp - iat), above the limit of {MAX_TOKEN_LIFETIME_S} s",
                claims.exp.saturating_sub(claims.iat)
            )));
        }
        if split_doc_ref(&claims.tenant).is_err() || claims.tenant.contains(':') {
            return Err(invalid("tenant must be a valid document-id-like name"));
        }
        claims
            .user()
            .validate()
            .map_err(|e| invalid(format!("claims: {e}")))?;
        claims.check_issued(now, skew)?;
        claims.check_fresh(now, skew)?;
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
    skew: u64,
) -> Result<Resolved, AuthError> {
    let Some(claims) = claims else {
        return Ok(Resolved {
            id: doc_ref.to_string(),
            name: doc_ref.to_string(),
            role: Role::Owner,
        });
    };
    claims.check_fresh(now, skew)?;
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
    let digest =
        crate::security::crypto::sm3_parts(&[c.tenant.as_bytes(), b"\0", c.sub.as_bytes()]);
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
mod tests;
