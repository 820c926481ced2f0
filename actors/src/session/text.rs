//! The session's text-document frames: `join` (the document opened through the registry and
//! subscribed before any later frame is handled) and `op` (authorized, rate-limited, handed to
//! the document; its answer comes in the document's stream).

use super::*;

impl WsSession {
    pub(super) fn not_joined(
        ctx: &mut ws::WebsocketContext<Self>,
        format: Format,
        doc: String,
        seq: Option<u64>,
    ) {
        let msg = format!("document {doc:?} is not joined on this connection");
        Self::fail(ctx, format, ErrorCode::NotJoined, msg, Some(doc), seq);
    }

    pub(super) fn on_join(
        &mut self,
        client: ClientId,
        doc: String,
        rev: Option<u64>,
        format: Format,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let Some(resolved) = self.authorize(&doc, Action::Read, None, format, ctx) else {
            return;
        };
        // Opening a document that does not exist creates it: editors and owners only.
        let create = resolved.role >= Role::Editor;
        let doc = resolved.name.clone();
        if !self.docs.contains_key(&doc) && self.docs.len() >= self.config.max_docs {
            let msg = format!(
                "a session may join at most {} documents",
                self.config.max_docs
            );
            return Self::fail(
                ctx,
                format,
                ErrorCode::TooManyDocuments,
                msg,
                Some(doc),
                None,
            );
        }
        let registry = self.registry.clone();
        let session = self.id;
        let max_bytes = self.config.max_outbound_bytes;
        let out = self
            .outbox
            .get_or_insert_with(|| Outbox::new(ctx.address().recipient(), max_bytes))
            .clone();
        let (id, name) = (resolved.id.clone(), resolved.name.clone());
        let access = Access {
            role: resolved.role,
            sub: self.claims.as_ref().map(|c| c.sub.clone()),
        };
        let user = self.user.clone();
        let open = OpenDoc {
            kind: coedit_protocol::DocKind::Text,
            id: id.clone(),
            name: name.clone(),
            create,
        };
        let join = async move {
            let make = || Join {
                session,
                client: client.clone(),
                rev,
                format,
                out: out.clone(),
                access: access.clone(),
                user: user.clone(),
            };
            call_doc::<crate::DocActor, _, _>(&registry, open, make)
                .await
                .map(|(addr, ())| addr)
        };
        ctx.wait(join.into_actor(self).map(move |res, act, ctx| match res {
            Ok(addr) => {
                act.guard.audit(AuditEvent::Join {
                    session: act.id,
                    doc: resolved.id,
                    role: act.claims.as_ref().map(|_| resolved.role.to_string()),
                });
                act.docs.insert(doc, addr);
            }
            Err(ActorError::Auth(e)) => act.refuse(&e, "join", Some(&doc), None, format, ctx),
            Err(e) => Self::fail(ctx, format, e.code(), e.to_string(), Some(doc), None),
        }));
    }

    pub(super) fn on_op(
        &mut self,
        client: ClientId,
        m: OpMsg,
        format: Format,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let Some(name) = self.authorized_name(&m.doc, Action::Write, Some(m.seq), format, ctx)
        else {
            return;
        };
        let Some(addr) = self.docs.get(name.as_ref()).cloned() else {
            return Self::not_joined(ctx, format, m.doc, Some(m.seq));
        };
        if !self.take_op_token() {
            metrics().rate_limited.inc();
            let msg = format!(
                "more than {} ops per second (burst {}): op not applied, resend it later",
                self.config.max_ops_per_s, self.config.op_burst
            );
            let code = ErrorCode::RateLimited;
            return Self::fail(ctx, format, code, msg, Some(m.doc), Some(m.seq));
        }
        let reach = m.reach();
        match m.checked_op() {
            Ok(op) => addr.do_send(Submit {
                reach,
                subject: self.subject.clone(),
                session: Some(self.id),
                client,
                seq: m.seq,
                base_rev: m.rev,
                op,
                t: m.t,
            }),
            Err(e) => Self::fail(
                ctx,
                format,
                e.code(),
                e.to_string(),
                Some(m.doc),
                Some(m.seq),
            ),
        }
    }
}
