//! The session's authentication: `hello` (the token checked off the session's thread, the
//! client id bound to the subject, the display metadata), `auth` (a new token on a live
//! session: same subject and tenant, joined documents re-authorized), and the expiry timer
//! that closes a session whose token ran out; and the authorization of each request against
//! the session's claims (with its audit on refusal) and the op rate limit.

use super::*;
use crate::errors::CLOSE_TRY_AGAIN;

impl WsSession {
    /// Resolves and authorizes a document reference for this session's claims; on refusal,
    /// audits it and reports it to the client.
    pub(super) fn authorize(
        &self,
        doc: &str,
        action: Action,
        seq: Option<u64>,
        format: Format,
        ctx: &mut ws::WebsocketContext<Self>,
    ) -> Option<Resolved> {
        match self.guard.authorize(self.claims.as_ref(), doc, action) {
            Ok(r) => Some(r),
            Err(e) => {
                self.refuse(&e, action_name(action), Some(doc), seq, format, ctx);
                None
            }
        }
    }

    /// Takes one op token from the bucket (refilled for the time since the last op).
    pub(super) fn take_op_token(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        let burst = self.config.op_burst.max(1.0);
        self.op_tokens = (self.op_tokens + elapsed * self.config.max_ops_per_s).min(burst);
        if self.op_tokens >= 1.0 {
            self.op_tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// The joined name a message's document reference stands for, once `action` is allowed.
    /// Without authentication the reference is the name (nothing to resolve or allocate on the
    /// path of every op).
    pub(super) fn authorized_name<'a>(
        &self,
        doc: &'a str,
        action: Action,
        seq: Option<u64>,
        format: Format,
        ctx: &mut ws::WebsocketContext<Self>,
    ) -> Option<Cow<'a, str>> {
        if self.claims.is_none() {
            return Some(Cow::Borrowed(doc));
        }
        self.authorize(doc, action, seq, format, ctx)
            .map(|r| Cow::Owned(r.name))
    }

    /// Audits and reports a refusal (closing the connection where the code says so).
    pub(super) fn refuse(
        &self,
        e: &AuthError,
        action: &str,
        doc: Option<&str>,
        seq: Option<u64>,
        format: Format,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        self.audit_refusal(e, action, doc);
        Self::fail(
            ctx,
            format,
            e.code(),
            e.to_string(),
            doc.map(str::to_string),
            seq,
        );
    }

    /// Audits a refusal.
    pub(super) fn audit_refusal(&self, e: &AuthError, action: &str, doc: Option<&str>) {
        debug!(parent: &self.span, error = %e, action, "refused");
        let refusal = Refusal {
            source: self.peer,
            session: Some(self.id),
            claims: self.claims.as_ref(),
            action,
            doc,
        };
        self.guard.refused(refusal, e);
    }

    pub(super) fn on_hello(
        &mut self,
        client: Option<String>,
        token: Option<String>,
        user: Option<PeerUser>,
        format: Format,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let client = match client {
            Some(c) => c,
            None => Alphanumeric.sample_string(&mut rand::rng(), CLIENT_ID_LEN),
        };
        if let Err(e) = validate_client_id(&client) {
            return Self::fail(ctx, format, e.code(), e.to_string(), None, None);
        }
        let guard = self.guard.clone();
        // With authentication the id is bound to the subject (and checked again after that).
        // Nothing else from this client is handled until the token is checked.
        ctx.wait(
            async move { guard.authenticate(token).await }
                .into_actor(self)
                .map(move |res, act, ctx| match res {
                    Ok(claims) => {
                        let client = bind_client_id(claims.as_ref(), &client);
                        match validate_client_id(&client) {
                            Ok(()) => act.welcome(client, claims, user, format, ctx),
                            Err(e) => Self::fail(ctx, format, e.code(), e.to_string(), None, None),
                        }
                    }
                    Err(AuthError::Busy) => {
                        // Overload, not a bad token: tell the client to come back (1013).
                        let e = AuthError::Busy;
                        act.audit_refusal(&e, "hello", None);
                        Self::send(ctx, &ServerMsg::error(e.code(), e.to_string()), format);
                        Self::close(ctx, CLOSE_TRY_AGAIN, e.to_string());
                    }
                    Err(e) => act.refuse(&e, "hello", None, None, format, ctx),
                }),
        );
    }

    /// Takes one `auth` token from the session's bucket (refilled for the time since).
    fn take_auth_token(&mut self) -> bool {
        let now = Instant::now();
        let earned =
            now.duration_since(self.auth_refilled).as_secs_f64() / AUTH_REFILL.as_secs_f64();
        self.auth_refilled = now;
        self.auth_tokens = (self.auth_tokens + earned).min(AUTH_BURST);
        if self.auth_tokens >= 1.0 {
            self.auth_tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn welcome(
        &mut self,
        client: String,
        claims: Option<Claims>,
        user: Option<PeerUser>,
        format: Format,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        debug!(parent: &self.span, client = %client, "hello");
        self.guard.audit(AuditEvent::SessionOpen {
            session: self.id,
            client: client.clone(),
            subject: claims.as_ref().map(|c| c.sub.clone()),
            tenant: claims.as_ref().map(|c| c.tenant.clone()),
            source: self.peer.map(|p| p.to_string()),
        });
        if self.client.is_none() {
            metrics().session_state(Some(STATE_CONNECTED), Some(STATE_READY));
        }
        self.client = Some(ClientId::from(client.as_str()));
        self.subject = claims.as_ref().map(|c| Arc::from(c.sub.as_str()));
        let user = match &claims {
            Some(c) => user.unwrap_or_default().overridden_by(c.user()),
            None => user.unwrap_or_default(),
        };
        self.user = (!user.is_empty()).then(|| Arc::new(user));
        let welcome = ServerMsg::Welcome {
            v: PROTOCOL_VERSION,
            client,
            sub: claims.as_ref().map(|c| c.sub.clone()),
            exp: claims.as_ref().map(|c| c.exp),
            now: claims.as_ref().map(|_| now_s()),
        };
        self.claims = claims;
        self.arm_expiry(format, ctx);
        Self::send(ctx, &welcome, format);
    }

    /// `auth`: checks the new token; on success the session goes on with it (same subject and
    /// tenant), its expiry timer re-armed, and every joined document re-authorized: one the new
    /// token no longer grants is left with an `error` naming it. A refused token changes
    /// nothing and does not close the session (the current token stays in force until it
    /// expires). Past [`AUTH_BURST`] messages, one per [`AUTH_REFILL`]: the others are
    /// refused (`RateLimited`) unchecked.
    pub(super) fn on_auth(
        &mut self,
        token: String,
        format: Format,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        if !self.take_auth_token() {
            metrics().auth_rate_limited.inc();
            let msg = format!(
                "more than {AUTH_BURST} auth messages, or more than one per {} s: token not \
                 checked, the current one stays in force",
                AUTH_REFILL.as_secs()
            );
            return Self::send(ctx, &ServerMsg::error(ErrorCode::RateLimited, msg), format);
        }
        let guard = self.guard.clone();
        ctx.wait(
            async move { guard.authenticate(Some(token)).await }
                .into_actor(self)
                .map(move |res, act, ctx| match res {
                    Ok(claims) => act.reauthenticated(claims, format, ctx),
                    Err(e) => {
                        act.audit_refusal(&e, "auth", None);
                        Self::send(ctx, &ServerMsg::error(e.code(), e.to_string()), format);
                    }
                }),
        );
    }

    fn reauthenticated(
        &mut self,
        claims: Option<Claims>,
        format: Format,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        if let (Some(new), Some(old)) = (&claims, &self.claims) {
            if new.sub != old.sub || new.tenant != old.tenant {
                let e = AuthError::NotPermitted(format!(
                    "the new token is for {}/{}, this session for {}/{}: reconnect to change user",
                    new.tenant, new.sub, old.tenant, old.sub
                ));
                self.audit_refusal(&e, "auth", None);
                return Self::send(ctx, &ServerMsg::error(e.code(), e.to_string()), format);
            }
        }
        let exp = claims.as_ref().map(|c| c.exp);
        if let Some(c) = &claims {
            self.guard.audit(AuditEvent::TokenRefresh {
                session: self.id,
                subject: c.sub.clone(),
                exp: c.exp,
            });
        }
        self.claims = claims;
        self.arm_expiry(format, ctx);
        let mut names: Vec<String> = self.docs.keys().cloned().collect();
        names.sort();
        let mut roles = Vec::with_capacity(names.len());
        for name in names {
            match self
                .guard
                .authorize(self.claims.as_ref(), &name, Action::Read)
            {
                Ok(r) => roles.push(DocRole {
                    doc: name,
                    role: r.role,
                }),
                Err(e) => {
                    if let Some(addr) = self.docs.remove(&name) {
                        addr.do_send(Leave { session: self.id });
                        self.guard.audit(AuditEvent::Leave {
                            session: self.id,
                            doc: name.clone(),
                        });
                    }
                    self.refuse(&e, "auth", Some(&name), None, format, ctx);
                }
            }
        }
        let sub = self.claims.as_ref().map(|c| c.sub.clone());
        let now = exp.map(|_| now_s());
        let authed = ServerMsg::Authed {
            sub,
            exp,
            now,
            roles,
        };
        Self::send(ctx, &authed, format);
    }

    /// Closes the session when its token expires (plus the clock skew), unless the claims were
    /// replaced meanwhile.
    fn arm_expiry(&mut self, format: Format, ctx: &mut ws::WebsocketContext<Self>) {
        self.claims_generation += 1;
        let Some(c) = &self.claims else {
            return;
        };
        let generation = self.claims_generation;
        let left = Duration::from_secs(c.seconds_left(now_s(), self.guard.skew_s).max(1))
            .min(MAX_EXPIRY_TIMER);
        // Checked again when the timer fires: the clock may have been adjusted meanwhile.
        ctx.run_later(left, move |act, ctx| {
            if act.claims_generation != generation {
                return;
            }
            let Some(c) = &act.claims else {
                return;
            };
            match c.check_fresh(now_s(), act.guard.skew_s) {
                Ok(()) => act.arm_expiry(format, ctx),
                Err(e) => {
                    debug!(parent: &act.span, "token expired: closing the session");
                    act.refuse(&e, "session", None, None, format, ctx);
                }
            }
        });
    }
}
