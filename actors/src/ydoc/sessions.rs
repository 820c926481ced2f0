//! The messages a Yjs session sends its document actor (`YJoin`, `YSyncStep1`, `YUpdate`,
//! `YRefuse`, `YAwareness`, `YQueryAwareness`, `YLeave`) and their handlers. The invariants
//! are the actor's (`ydoc.rs`): answers wait for durability, a refusal changes nothing and is
//! told after the statuses of the session's earlier updates.

use super::*;

/// Subscribe a session. Once everything accepted before is durable it gets sync step 1 (the
/// server's state vector) and the awareness states.
#[derive(Message)]
#[rtype(result = "Result<(), ActorError>")]
pub struct YJoin {
    /// The joining session.
    pub session: SessionId,
    /// How its messages are framed.
    pub framing: Framing,
    /// Whether its updates are refused (viewer).
    pub readonly: bool,
    /// Where its frames go.
    pub out: Outbox,
}

impl Handler<YJoin> for YDocActor {
    type Result = Result<(), ActorError>;

    fn handle(&mut self, m: YJoin, ctx: &mut Context<Self>) -> Self::Result {
        self.check_open()?;
        // What became durable before the join goes to the others now: the newcomer's sync
        // answer covers it.
        if self.round_pending() {
            self.flush();
        }
        self.subs.insert(
            m.session,
            YSub {
                out: m.out,
                framing: m.framing,
                readonly: m.readonly,
            },
        );
        self.when_durable(Waiter::Joined(m.session));
        self.schedule_flush(ctx);
        Ok(())
    }
}

/// A session's sync step 1: answered with step 2 (what it lacks).
#[derive(Message)]
#[rtype(result = "Result<(), ActorError>")]
pub struct YSyncStep1 {
    /// The session.
    pub session: SessionId,
    /// Its state vector.
    pub sv: StateVector,
}

impl Handler<YSyncStep1> for YDocActor {
    type Result = Result<(), ActorError>;

    fn handle(&mut self, m: YSyncStep1, ctx: &mut Context<Self>) -> Self::Result {
        self.check_open()?;
        if !self.subs.contains_key(&m.session) {
            return Err(ActorError::NotSubscribed(self.name.to_string()));
        }
        self.when_durable(Waiter::Sync(m.session, m.sv));
        self.schedule_flush(ctx);
        Ok(())
    }
}

/// A session's update (sync step 2 or update). Refused for a viewer when it would change the
/// document.
#[derive(Message)]
#[rtype(result = "Result<(), ActorError>")]
pub struct YUpdate {
    /// The session.
    pub session: SessionId,
    /// Its client id (stored with the update).
    pub client: Arc<str>,
    /// The update.
    pub update: Bytes,
    /// The author's token subject (authentication on), for the audit record.
    pub subject: Option<Arc<str>>,
}

impl Handler<YUpdate> for YDocActor {
    type Result = Result<(), ActorError>;

    /// Applies the update, or refuses it: the refusal is answered to the session after the
    /// statuses of its earlier updates (so a client matches statuses to updates in order), and
    /// returned (for the session's audit and resync).
    fn handle(&mut self, m: YUpdate, ctx: &mut Context<Self>) -> Self::Result {
        let session = m.session;
        let res = self.update(m, ctx);
        if let Err(e) = &res {
            if self.subs.contains_key(&session) {
                self.when_durable(Waiter::Refused(session, e.code(), e.to_string()));
            }
        }
        self.schedule_flush(ctx);
        res
    }
}

/// A session refused an update itself (rate limit): answered like a refusal by the document,
/// after the statuses of the session's earlier updates.
#[derive(Message)]
#[rtype(result = "()")]
pub struct YRefuse {
    /// The session.
    pub session: SessionId,
    /// Why.
    pub code: ErrorCode,
    /// What to tell it.
    pub msg: String,
}

impl Handler<YRefuse> for YDocActor {
    type Result = ();

    fn handle(&mut self, m: YRefuse, ctx: &mut Context<Self>) {
        if self.subs.contains_key(&m.session) {
            self.when_durable(Waiter::Refused(m.session, m.code, m.msg));
        }
        self.schedule_flush(ctx);
    }
}

impl YDocActor {
    /// Applies a session's update, or says why not.
    fn update(&mut self, m: YUpdate, ctx: &mut Context<Self>) -> Result<(), ActorError> {
        self.check_open()?;
        let Some(readonly) = self.subs.get(&m.session).map(|s| s.readonly) else {
            return Err(ActorError::NotSubscribed(self.name.to_string()));
        };
        if readonly {
            // A viewer's sync step 2 usually adds nothing: acknowledge that; refuse the rest.
            if !self.doc.would_change(&m.update)? {
                self.when_durable(Waiter::Applied(m.session));
                return Ok(());
            }
            return Err(AuthError::ReadOnly {
                doc: self.name.to_string(),
                role: Role::Viewer,
            }
            .into());
        }
        self.accept(
            m.session,
            &m.client,
            m.update,
            m.subject,
            Waiter::Applied(m.session),
            ctx,
        )
        .map(|_| ())
    }
}

/// A session's awareness update: relayed to every subscriber (not stored).
#[derive(Message)]
#[rtype(result = "Result<(), ActorError>")]
pub struct YAwareness {
    /// The session.
    pub session: SessionId,
    /// The awareness update.
    pub update: Bytes,
}

impl Handler<YAwareness> for YDocActor {
    type Result = Result<(), ActorError>;

    fn handle(&mut self, m: YAwareness, ctx: &mut Context<Self>) -> Self::Result {
        self.check_open()?;
        if !self.subs.contains_key(&m.session) {
            return Err(ActorError::NotSubscribed(self.name.to_string()));
        }
        if let Some(relay) = self.awareness.apply(m.session, &m.update)? {
            self.relay_awareness(&relay);
        }
        self.schedule_flush(ctx);
        Ok(())
    }
}

/// A session asks for every awareness state.
#[derive(Message)]
#[rtype(result = "()")]
pub struct YQueryAwareness {
    /// The session.
    pub session: SessionId,
}

impl Handler<YQueryAwareness> for YDocActor {
    type Result = ();

    fn handle(&mut self, m: YQueryAwareness, ctx: &mut Context<Self>) {
        let frame = match (self.subs.get(&m.session), self.awareness.encode_all()) {
            (Some(s), Some(all)) => s.framing.awareness(&all),
            _ => return,
        };
        self.send(m.session, vec![frame]);
        self.schedule_flush(ctx);
    }
}

/// Unsubscribe a session; its awareness states are cleared for the others.
#[derive(Message)]
#[rtype(result = "()")]
pub struct YLeave {
    /// The session.
    pub session: SessionId,
}

impl Handler<YLeave> for YDocActor {
    type Result = ();

    fn handle(&mut self, m: YLeave, ctx: &mut Context<Self>) {
        self.remove_subscriber(m.session, ctx);
    }
}

impl YDocActor {
    /// Unsubscribes a session (local or remote); its awareness states are cleared for the
    /// others.
    pub(super) fn remove_subscriber(&mut self, session: SessionId, ctx: &mut Context<Self>) {
        if self.subs.remove(&session).is_some() {
            self.answers.remove(&session);
            self.unsubscribed(session);
        }
        if self.subs.is_empty() {
            self.schedule_idle_check(ctx);
        }
        self.schedule_flush(ctx);
    }
}
