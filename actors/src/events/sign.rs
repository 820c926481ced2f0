//! Webhook signatures per the Standard Webhooks specification
//! (<https://www.standardwebhooks.com/>): the signed content is `id.timestamp.body`, the key is
//! the secret's bytes (`whsec_` + base64), and the `webhook-signature` header lists
//! space-separated `identifier,base64` signatures. coedit sends two:
//! - `v1,…`: HMAC-SHA256, the specification's own (any Standard Webhooks library verifies it);
//! - `v1sm3,…`: HMAC-SM3 (GB/T 15852.2 with SM3, GM/T 0004), for compliance deployments.
//!
//! Invariants: the same secret, id, timestamp and body always give the same header; a secret
//! that is not `whsec_` + base64 of 24 to 64 bytes is refused when the configuration is read.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{KeyInit, Mac};

use super::EventsError;

/// The secret prefix the specification uses.
pub const SECRET_PREFIX: &str = "whsec_";
/// Fewest secret bytes accepted (the specification's lower bound).
pub const MIN_SECRET_BYTES: usize = 24;
/// Most secret bytes accepted (the specification's upper bound).
pub const MAX_SECRET_BYTES: usize = 64;
/// Identifier of the HMAC-SHA256 signature.
pub const SIG_V1: &str = "v1";
/// Identifier of the HMAC-SM3 signature.
pub const SIG_V1_SM3: &str = "v1sm3";

/// A webhook signing secret.
#[derive(Clone)]
pub struct Secret(zeroize::Zeroizing<Vec<u8>>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    /// Parses `whsec_` + base64 (24 to 64 bytes).
    pub fn parse(s: &str) -> Result<Secret, EventsError> {
        let b64 = s.trim().strip_prefix(SECRET_PREFIX).ok_or_else(|| {
            EventsError::Config(format!("a webhook secret starts with {SECRET_PREFIX}"))
        })?;
        let bytes = B64
            .decode(b64)
            .map_err(|e| EventsError::Config(format!("webhook secret is not base64: {e}")))?;
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&bytes.len()) {
            return Err(EventsError::Config(format!(
                "a webhook secret holds {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, not {}",
                bytes.len()
            )));
        }
        Ok(Secret(zeroize::Zeroizing::new(bytes)))
    }

    /// A fresh random secret, as `whsec_…` (for operators and tests).
    pub fn generate() -> String {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the system's random source");
        format!("{SECRET_PREFIX}{}", B64.encode(key))
    }
}

/// The `webhook-signature` header for `id`, `timestamp` (Unix seconds) and `body`.
pub fn signature_header(secret: &Secret, id: &str, timestamp: u64, body: &[u8]) -> String {
    let content = signed_content(id, timestamp, body);
    format!(
        "{SIG_V1},{} {SIG_V1_SM3},{}",
        B64.encode(hmac_sha256(&secret.0, &content)),
        B64.encode(hmac_sm3(&secret.0, &content)),
    )
}

/// `id.timestamp.body`.
fn signed_content(id: &str, timestamp: u64, body: &[u8]) -> Vec<u8> {
    let mut c = Vec::with_capacity(id.len() + 24 + body.len());
    c.extend_from_slice(id.as_bytes());
    c.push(b'.');
    c.extend_from_slice(timestamp.to_string().as_bytes());
    c.push(b'.');
    c.extend_from_slice(body);
    c
}

fn hmac_sha256(key: &[u8], content: &[u8]) -> Vec<u8> {
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(content);
    mac.finalize().into_bytes().to_vec()
}

fn hmac_sm3(key: &[u8], content: &[u8]) -> Vec<u8> {
    let mut mac =
        hmac::Hmac::<sm3::Sm3>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(content);
    mac.finalize().into_bytes().to_vec()
}

/// Checks a `webhook-signature` header the way a receiver does (tests and `docs/EVENTS.md`'s
/// examples): true when one of its signatures with `identifier` matches.
pub fn verify(
    secret: &Secret,
    identifier: &str,
    id: &str,
    timestamp: u64,
    body: &[u8],
    header: &str,
) -> bool {
    let content = signed_content(id, timestamp, body);
    let expected = match identifier {
        SIG_V1 => hmac_sha256(&secret.0, &content),
        SIG_V1_SM3 => hmac_sm3(&secret.0, &content),
        _ => return false,
    };
    header.split(' ').any(|sig| {
        sig.split_once(',').is_some_and(|(v, s)| {
            v == identifier && B64.decode(s).is_ok_and(|got| constant_eq(&got, &expected))
        })
    })
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's test vector (its reference libraries' tests).
    #[test]
    fn the_specification_vector_verifies() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
        let header = signature_header(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        let v1 = header.split(' ').next().expect("v1");
        assert_eq!(v1, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(header.contains(" v1sm3,"));
    }

    #[test]
    fn both_signatures_verify_and_any_change_breaks_them() {
        let secret = Secret::parse(&Secret::generate()).expect("generated secret parses");
        let body = br#"{"schema":1}"#;
        let h = signature_header(&secret, "evt_1", 1700000000, body);
        for id in [SIG_V1, SIG_V1_SM3] {
            assert!(verify(&secret, id, "evt_1", 1700000000, body, &h), "{id}");
            assert!(!verify(&secret, id, "evt_2", 1700000000, body, &h));
            assert!(!verify(&secret, id, "evt_1", 1700000001, body, &h));
            assert!(!verify(
                &secret,
                id,
                "evt_1",
                1700000000,
                br#"{"schema":2}"#,
                &h
            ));
        }
        let other = Secret::parse(&Secret::generate()).expect("secret");
        assert!(!verify(&other, SIG_V1, "evt_1", 1700000000, body, &h));
    }

    #[test]
    fn bad_secrets_are_refused() {
        for s in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_***",
            "whsec_AAAA",
        ] {
            assert!(
                matches!(Secret::parse(s), Err(EventsError::Config(_))),
                "{s}"
            );
        }
    }
}
