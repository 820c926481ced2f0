//! Unit tests of `auth.rs`.

use super::*;
use crate::security::crypto::generate_sm2_pem;

const SKEW: u64 = DEFAULT_CLOCK_SKEW_S;

fn claims(exp: u64) -> Claims {
    Claims {
        sub: "alice".into(),
        tenant: "acme".into(),
        iat: 1000,
        exp,
        nbf: None,
        grants: [
            ("notes-*".to_string(), Role::Editor),
            ("notes-locked".to_string(), Role::Viewer),
            ("spec".to_string(), Role::Owner),
        ]
        .into_iter()
        .collect(),
        admin: false,
        name: None,
        color: None,
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
        assert_eq!(key.verify(&t, 4000, SKEW).unwrap(), c);
        // Expired (past the skew), with its own code.
        let e = key.verify(&t, 5000 + SKEW + 1, SKEW).unwrap_err();
        assert_eq!(e.code(), ErrorCode::TokenExpired);
        assert!(key.verify(&t, 5000 + SKEW, SKEW).is_ok());
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
            match key.verify(&forged, 4000, SKEW) {
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
            key.verify(&spliced, 4000, SKEW),
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
                matches!(key.verify(bad, 4000, SKEW), Err(AuthError::Invalid(_))),
                "{bad:?}"
            );
        }
    }
}

/// Tokens cannot be revoked: one living longer than a year, or with no subject, is refused
/// however it was signed (found by the issuers' review).
#[test]
fn immortal_and_anonymous_tokens_are_refused() {
    for (signer, key) in keys() {
        let mut c = claims(1000 + MAX_TOKEN_LIFETIME_S);
        assert!(key.verify(&signer.issue(&c), 2000, SKEW).is_ok());
        c.exp += 1;
        let e = key.verify(&signer.issue(&c), 2000, SKEW).unwrap_err();
        assert!(e.to_string().contains("above the limit"), "{e}");
        let mut c = claims(5000);
        c.sub = " ".into();
        let e = key.verify(&signer.issue(&c), 2000, SKEW).unwrap_err();
        assert!(e.to_string().contains("subject"), "{e}");
        let mut c = claims(5000);
        c.color = Some("red".into());
        assert!(matches!(
            key.verify(&signer.issue(&c), 2000, SKEW),
            Err(AuthError::Invalid(_))
        ));
    }
}

#[test]
fn a_token_for_another_algorithm_or_key_is_refused() {
    let ks = keys();
    let (hmac_signer, hmac_key) = &ks[0];
    let (sm2_signer, sm2_key) = &ks[1];
    let c = claims(5000);
    assert!(matches!(
        sm2_key.verify(&hmac_signer.issue(&c), 1000, SKEW),
        Err(AuthError::Invalid(_))
    ));
    assert!(matches!(
        hmac_key.verify(&sm2_signer.issue(&c), 1000, SKEW),
        Err(AuthError::Invalid(_))
    ));
    let other = TokenKey::Hmac(Zeroizing::new(b"another secret!!".to_vec()));
    assert!(matches!(
        other.verify(&hmac_signer.issue(&c), 1000, SKEW),
        Err(AuthError::Invalid(_))
    ));
    let (_, public) = generate_sm2_pem().unwrap();
    let other = TokenKey::Sm2(Sm2Verifier::from_pem(&public).unwrap());
    assert!(matches!(
        other.verify(&sm2_signer.issue(&c), 1000, SKEW),
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
    let ok = authorize(Some(&c), "notes-a", Action::Write, 100, SKEW).unwrap();
    assert_eq!(
        ok,
        Resolved {
            id: "acme:notes-a".into(),
            name: "notes-a".into(),
            role: Role::Editor
        }
    );
    assert_eq!(
        authorize(Some(&c), "acme:notes-a", Action::Write, 100, SKEW).unwrap(),
        ok
    );
    let code =
        |r: &str, a: Action, now: u64| authorize(Some(&c), r, a, now, SKEW).unwrap_err().code();
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
    assert!(authorize(Some(&c), "notes-locked", Action::Presence, 100, SKEW).is_ok());
    assert!(authorize(Some(&c), "spec", Action::Manage, 100, SKEW).is_ok());
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
    let open = authorize(None, "acme:x", Action::Manage, 0, SKEW).unwrap();
    assert_eq!((open.id.as_str(), open.role), ("acme:x", Role::Owner));
}

fn with_grants(grants: &[(&str, Role)]) -> Claims {
    let mut c = claims(5000);
    c.grants = grants.iter().map(|(p, r)| (p.to_string(), *r)).collect();
    c
}

#[test]
fn an_exact_grant_beats_a_longer_prefix() {
    // The adversarial cases: the prefix pattern is longer than the exact id.
    let c = with_grants(&[("notes-*", Role::Editor), ("notes-", Role::Viewer)]);
    assert_eq!(c.role_for("notes-"), Some(Role::Viewer));
    assert_eq!(c.role_for("notes-a"), Some(Role::Editor));
    assert_eq!(
        authorize(Some(&c), "notes-", Action::Write, 100, SKEW)
            .unwrap_err()
            .code(),
        ErrorCode::ReadOnly
    );
    let c = with_grants(&[("notes-ab*", Role::Editor), ("notes-ab", Role::Viewer)]);
    assert_eq!(c.role_for("notes-ab"), Some(Role::Viewer));
    assert_eq!(c.role_for("notes-abc"), Some(Role::Editor));
    // An exact grant can raise as well as lower.
    let c = with_grants(&[("a*", Role::Viewer), ("ab", Role::Owner)]);
    assert_eq!(c.role_for("ab"), Some(Role::Owner));
    // Among prefixes, the longest wins, whatever the roles.
    let c = with_grants(&[
        ("*", Role::Owner),
        ("a*", Role::Viewer),
        ("ab*", Role::Editor),
    ]);
    assert_eq!(c.role_for("abc"), Some(Role::Editor));
    assert_eq!(c.role_for("ax"), Some(Role::Viewer));
    assert_eq!(c.role_for("x"), Some(Role::Owner));
}

/// The reference resolver, written the other way round: try the exact id, then every
/// prefix of the name from the longest (the name itself) to the empty one.
fn reference_role(grants: &BTreeMap<String, Role>, name: &str) -> Option<Role> {
    if let Some(r) = grants.get(name) {
        return Some(*r);
    }
    let chars: Vec<char> = name.chars().collect();
    (0..=chars.len()).rev().find_map(|k| {
        let prefix: String = chars[..k].iter().collect();
        grants.get(&format!("{prefix}*")).copied()
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]
    #[test]
    fn grant_resolution_matches_the_reference(
        grants in proptest::collection::vec(("[ab-]{0,4}\\*?", 0u8..4), 0..8),
        name in "[ab-]{1,5}",
    ) {
        let roles = [Role::Viewer, Role::Commenter, Role::Editor, Role::Owner];
        let map: BTreeMap<String, Role> = grants
            .into_iter()
            .filter(|(p, _)| !p.is_empty())
            .map(|(p, r)| (p, roles[r as usize]))
            .collect();
        let mut c = claims(5000);
        c.grants = map.clone();
        proptest::prop_assert_eq!(c.role_for(&name), reference_role(&map, &name));
    }
}

#[test]
fn a_token_naming_one_pattern_twice_is_refused() {
    let (signer, key) = keys().remove(0);
    let c = claims(5000);
    let good = signer.issue(&c);
    // Build the claims JSON by hand with a duplicate key, then sign it.
    let json = r#"{"sub":"alice","tenant":"acme","iat":1000,"exp":5000,"grants":{"a*":"viewer","a*":"owner"}}"#;
    let header = good.split('.').next().unwrap();
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(json));
    let TokenSigner::Hmac(k) = &signer else {
        unreachable!()
    };
    let sig = URL_SAFE_NO_PAD.encode(hmac_sm3(k, input.as_bytes()));
    match key.verify(&format!("{input}.{sig}"), 4000, SKEW) {
        Err(AuthError::Invalid(why)) => assert!(why.contains("twice"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn tokens_from_the_future_are_refused_within_a_bounded_skew() {
    for (signer, key) in keys() {
        // Issued a year ahead.
        let mut c = claims(1000 + 366 * 86400);
        c.iat = 1000 + 365 * 86400;
        let e = key.verify(&signer.issue(&c), 1000, SKEW).unwrap_err();
        assert!(
            matches!(&e, AuthError::Invalid(w) if w.contains("future")),
            "{e}"
        );
        // Issued within the skew: accepted.
        c.iat = 1000 + SKEW;
        assert!(key.verify(&signer.issue(&c), 1000, SKEW).is_ok());
        c.iat = 1000 + SKEW + 1;
        assert!(key.verify(&signer.issue(&c), 1000, SKEW).is_err());
        // A wider configured skew accepts it.
        assert!(key.verify(&signer.issue(&c), 1000, SKEW + 1).is_ok());
        // nbf in the future, past the skew.
        let mut c = claims(5000);
        c.nbf = Some(1000 + SKEW + 1);
        let e = key.verify(&signer.issue(&c), 1000, SKEW).unwrap_err();
        assert!(
            matches!(&e, AuthError::Invalid(w) if w.contains("not valid before")),
            "{e}"
        );
        c.nbf = Some(1000);
        assert!(key.verify(&signer.issue(&c), 1000, SKEW).is_ok());
        // Expiring before being issued.
        let mut c = claims(900);
        c.iat = 1000;
        assert!(key.verify(&signer.issue(&c), 950, SKEW).is_err());
    }
}
