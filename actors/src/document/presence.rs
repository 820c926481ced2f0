//! The document actor's `SetPresence`: a session's selections, checked against the document at
//! their revision, moved to the current one, kept moving with every op, fanned out per tick.

use super::*;

/// A session's selections at revision `rev`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetPresence {
    /// The session.
    pub session: SessionId,
    /// Revision the selections refer to.
    pub rev: u64,
    /// `[anchor, head]` pairs; empty hides the caret.
    pub sel: Vec<Selection>,
}

impl Handler<SetPresence> for DocActor {
    type Result = ();

    /// Validates and transforms the selections to the current revision, stores them and queues
    /// them for fan-out; a bad selection gets an `error` and changes nothing.
    fn handle(&mut self, m: SetPresence, ctx: &mut Context<Self>) {
        if self.closing || !self.subs.contains_key(&m.session) {
            return;
        }
        match self.current_selections(m.rev, &m.sel) {
            Ok(sel) => {
                if let Some(sub) = self.subs.get_mut(&m.session) {
                    sub.sel = sel.clone();
                    let user = sub.user.clone();
                    self.pending_presence
                        .insert(sub.client.clone(), (sel, user));
                    self.schedule_flush(ctx);
                }
            }
            Err(e) => {
                let err = ServerMsg::Error {
                    code: ErrorCode::InvalidSelection,
                    msg: e.to_string(),
                    doc: Some(self.name.to_string()),
                    seq: None,
                };
                self.reply(m.session, &err);
                self.flush_cut_presence(ctx);
            }
        }
    }
}

impl DocActor {
    /// Validates selections against the document at `rev` and moves them to the current
    /// revision.
    fn current_selections(
        &self,
        rev: u64,
        sel: &[Selection],
    ) -> Result<Vec<Selection>, SelectionError> {
        let len = self.doc.len_at(rev)? as u64;
        if let Some(&sel) = sel.iter().find(|s| s.0 > len || s.1 > len) {
            return Err(SelectionError::Outside { sel, len, rev });
        }
        let ops = self.doc.ops_since(rev)?;
        let mut sel = sel.to_vec();
        for (_, e) in ops {
            for s in &mut sel {
                *s = transform_selection(*s, e.op);
            }
        }
        Ok(sel)
    }
}

/// Why a presence message's selections were refused (`2004` InvalidSelection).
#[derive(Debug, thiserror::Error)]
enum SelectionError {
    /// A position past the end of the document at the selections' revision.
    #[error("selection {sel:?} lies outside the document of {len} characters at revision {rev}")]
    Outside {
        /// The first range outside.
        sel: Selection,
        /// Length of the document at `rev`.
        len: u64,
        /// The selections' revision.
        rev: u64,
    },
    /// The revision is not retained (or in the future).
    #[error(transparent)]
    Revision(#[from] coedit_protocol::DocError),
}
