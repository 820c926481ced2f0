//! The Yjs session's authentication and refusals: a Hocuspocus channel's `Auth` (the token
//! checked, the document authorized, then the join), each channel's token expiry, the update
//! rate limit, and how a refused update is audited and answered (the invariants are in
//! `session/yjs.rs`: after a transient refusal the client is asked to sync again).

use super::*;

impl YSession {
    /// Takes one update token from the bucket (refilled for the time since the last update).
    pub(super) fn take_update_token(&mut self) -> bool {
        let now = Instant::now();
        let earned = now.duration_since(self.refilled).as_secs_f64() * self.config.max_ops_per_s;
        self.refilled = now;
        self.update_tokens = (self.update_tokens + earned).min(self.config.op_burst.max(1.0));
        if self.update_tokens >= 1.0 {
            self.update_tokens -= 1.0;
            true
        } else {
            metrics().rate_limited.inc();
            false
        }
    }

    /// Tells a channel that its update was refused (see the module invariants).
    ///
    /// After an update was refused (the document actor told the client, in order): audits an
    /// authorization refusal, and after a transient one (rate limit, disk full, unloading)
    /// asks the client to sync again, so its edit is delayed, not left behind.
    pub(super) fn update_refused(
        &mut self,
        address: Arc<str>,
        code: ErrorCode,
        auth: Option<&AuthError>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        if let Some(a) = auth {
            let doc = self
                .channels
                .get(&address)
                .map(|c| c.doc.clone())
                .unwrap_or_default();
            self.audit_refusal(a, "update", &doc);
        }
        let transient = matches!(
            code,
            ErrorCode::RateLimited | ErrorCode::StorageFull | ErrorCode::Unavailable
        );
        if transient {
            ctx.run_later(RESYNC_DELAY, move |act, _| act.resync(&address));
        }
    }

    /// Tells a channel at once that its awareness update (or an update that never reached the
    /// document) was refused.
    pub(super) fn tell_refusal(
        &self,
        address: &Arc<str>,
        e: &ActorError,
        update: bool,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        if let Some(ch) = self.channels.get(address) {
            for f in ch
                .framing
                .refusal(&error_json(e.code(), &e.to_string()), update)
            {
                ctx.binary(Bytes::from(f));
            }
        }
    }

    pub(super) fn audit_refusal(&self, e: &AuthError, action: &str, doc: &str) {
        let claims = self.channels.values().find_map(|c| c.claims.as_ref());
        self.guard.refused(
            Refusal {
                source: self.peer,
                session: Some(self.id),
                claims,
                action,
                doc: Some(doc),
            },
            e,
        );
    }

    /// Hocuspocus: a channel's `Auth`: checks the token, authorizes the document, joins.
    pub(super) fn authenticate(
        &mut self,
        address: &str,
        token: &str,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        if self.channels.len() >= self.config.max_docs {
            let f = Framing::Hocuspocus(Arc::from(address));
            let msg = format!(
                "more than {} documents on one connection",
                self.config.max_docs
            );
            let body = error_json(ErrorCode::TooManyDocuments, &msg);
            ctx.binary(Bytes::from(f.permission_denied(&body)));
            return;
        }
        let address: Arc<str> = Arc::from(address);
        let doc = address_doc(&address).to_string();
        self.channels.insert(
            address.clone(),
            Channel {
                addr: None,
                framing: Framing::Hocuspocus(address.clone()),
                readonly: true,
                claims: None,
                queued: Vec::new(),
                doc: doc.clone(),
                joined: None,
            },
        );
        let guard = self.guard.clone();
        let token = (!token.is_empty()).then(|| token.to_string());
        let check = async move {
            coedit_protocol::wire::validate_doc_ref(&doc)
                .map_err(|e| AuthError::UnknownDocument(format!("{doc:?}: {e}")))?;
            let claims = guard.authenticate(token).await?;
            let r = guard.authorize(claims.as_ref(), &doc, Action::Read)?;
            Ok::<_, AuthError>((claims, r))
        };
        ctx.wait(check.into_actor(self).map(move |res, act, ctx| match res {
            Ok((claims, r)) => {
                if let Some(ch) = act.channels.get_mut(&address) {
                    ch.readonly = !r.role.can_write();
                    ch.claims = claims;
                }
                act.join(address, r, ctx);
            }
            Err(e) => {
                let doc = address_doc(&address).to_string();
                act.audit_refusal(&e, "auth", &doc);
                act.drop_channel(&address);
                let f = Framing::Hocuspocus(address);
                let body = error_json(e.code(), &e.to_string());
                ctx.binary(Bytes::from(f.permission_denied(&body)));
            }
        }));
    }

    /// Enforces every channel's token expiry (plus the clock skew).
    pub(super) fn expire_tokens(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let now = now_s();
        let skew = self.guard.skew_s;
        let expired: Vec<Arc<str>> = self
            .channels
            .iter()
            .filter(|(_, c)| c.claims.as_ref().is_some_and(|c| c.exp + skew <= now))
            .map(|(a, _)| a.clone())
            .collect();
        for address in expired {
            let Some(ch) = self.drop_channel(&address) else {
                continue;
            };
            if let Some(addr) = &ch.addr {
                addr.do_send(YLeave { session: self.id });
            }
            if let Some(doc) = ch.joined.clone() {
                self.guard.audit(AuditEvent::Leave {
                    session: self.id,
                    doc,
                });
            }
            let msg = "the access token has expired";
            match self.endpoint {
                YEndpoint::Hocuspocus => {
                    let body = error_json(ErrorCode::TokenExpired, msg);
                    ctx.binary(Bytes::from(ch.framing.permission_denied(&body)));
                }
                _ => return Self::refuse(ctx, ErrorCode::TokenExpired, msg),
            }
            debug!(parent: &self.span, doc = %ch.doc, "token expired");
        }
    }
}
