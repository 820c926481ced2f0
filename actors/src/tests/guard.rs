//! The guard's bound on token checks, with a real verifier whose only thread the test holds.

use std::collections::BTreeMap;
use std::sync::mpsc;

use zeroize::Zeroizing;

use super::{wait_until, Rig};
use crate::security::auth::{now_s, AuthError, Claims, TokenKey, TokenSigner};
use crate::security::guard::Guard;
use crate::security::verifier::{Hold, TokenVerifier};

fn token(signer: &TokenSigner) -> String {
    signer.issue(&Claims {
        sub: "alice".into(),
        tenant: "t".into(),
        iat: now_s(),
        exp: now_s() + 600,
        nbf: None,
        grants: BTreeMap::new(),
        admin: false,
        name: None,
        color: None,
    })
}

/// Invariant (bounded token checks): while `max_pending` checks wait for the verifier, one
/// more is refused at once with `Busy` (it never reaches the verifier); the slots are released
/// however checks end, so checks pass again afterwards; a missing token takes no slot.
#[actix::test]
async fn token_checks_beyond_the_bound_are_refused_at_once_and_released_after() {
    let rig = Rig::new();
    let secret = Zeroizing::new(vec![7u8; 32]);
    let signer = TokenSigner::Hmac(secret.clone());
    let verifier = TokenVerifier::start(1, Some(TokenKey::Hmac(secret)));
    let guard = Guard::new(verifier.clone(), rig.writer.clone(), true, 0).with_max_pending(2);

    let (release, held) = mpsc::channel();
    verifier.do_send(Hold(held));
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let (guard, token) = (guard.clone(), token(&signer));
            actix::spawn(async move { guard.authenticate(Some(token)).await })
        })
        .collect();
    wait_until("two checks waiting", || guard.pending_checks() == 2).await;
    let third = guard.authenticate(Some(token(&signer))).await;
    assert!(matches!(third, Err(AuthError::Busy)), "{third:?}");
    assert!(matches!(
        guard.authenticate(None).await,
        Err(AuthError::Missing)
    ));
    assert_eq!(guard.pending_checks(), 2, "the refusals took no slot");

    release.send(()).expect("verifier holds");
    for w in waiting {
        let claims = w.await.expect("task").expect("a valid token passes");
        assert_eq!(claims.map(|c| c.sub).as_deref(), Some("alice"));
    }
    assert_eq!(guard.pending_checks(), 0);
    let bad = guard.authenticate(Some("not.a.token".into())).await;
    assert!(matches!(bad, Err(AuthError::Invalid(_))), "{bad:?}");
    assert_eq!(guard.pending_checks(), 0, "released after a refusal too");
    assert!(guard.authenticate(Some(token(&signer))).await.is_ok());
}
