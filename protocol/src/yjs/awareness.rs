//! [`AwarenessTable`]: the awareness (presence) states of a Yjs document as the server relays
//! them: per Yjs client id, its clock, its JSON state and the session that announced it.
//!
//! Wire shape (y-protocols awareness update): `[count varuint]` then per entry
//! `[client varuint][clock varuint][state varstring (JSON, "null" = gone)]`.
//!
//! Invariants:
//! - An update is decoded here whole before anything changes; beyond [`MAX_AWARENESS_BYTES`]
//!   or [`MAX_AWARENESS_ENTRIES`], or malformed, it is refused.
//! - A session may only set the states of Yjs clients it announced first (or new ones, at most
//!   [`MAX_CLIENTS_PER_SESSION`]): it cannot overwrite or clear someone else's presence.
//! - What is relayed is re-encoded from the entries accepted, so a refused entry never reaches
//!   anyone; an entry is accepted under the y-protocols rule (a newer clock, or the same clock
//!   clearing the state).
//! - When a session goes, its clients' states are cleared and the clearing is relayed.

use std::collections::HashMap;
use std::sync::Arc;

use yrs::encoding::read::{Cursor, Read};
use yrs::encoding::write::Write;

use super::YjsError;

/// Largest awareness update accepted, in bytes.
pub const MAX_AWARENESS_BYTES: usize = 64 * 1024;
/// Most entries in one awareness update.
pub const MAX_AWARENESS_ENTRIES: usize = 64;
/// Most Yjs clients one session may announce on a document.
pub const MAX_CLIENTS_PER_SESSION: usize = 16;
/// The state of a client that is gone.
const NULL_STATE: &str = "null";

#[derive(Clone, Debug)]
struct Entry<S> {
    clock: u32,
    json: Arc<str>,
    owner: S,
}

/// The awareness states of one document, owned by sessions of type `S`.
#[derive(Debug)]
pub struct AwarenessTable<S> {
    states: HashMap<u64, Entry<S>>,
}

impl<S> Default for AwarenessTable<S> {
    fn default() -> Self {
        AwarenessTable {
            states: HashMap::new(),
        }
    }
}

fn bad(e: impl std::fmt::Display) -> YjsError {
    YjsError::InvalidAwareness(e.to_string())
}

/// Decodes an awareness update into `(client, clock, state)` entries.
fn decode(update: &[u8]) -> Result<Vec<(u64, u32, &str)>, YjsError> {
    if update.len() > MAX_AWARENESS_BYTES {
        return Err(bad(format!("larger than {MAX_AWARENESS_BYTES} bytes")));
    }
    let mut c = Cursor::new(update);
    let count = c.read_var::<u64>().map_err(bad)?;
    if count > MAX_AWARENESS_ENTRIES as u64 {
        return Err(bad(format!("more than {MAX_AWARENESS_ENTRIES} entries")));
    }
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let client = c.read_var::<u64>().map_err(bad)?;
        let clock = c.read_var::<u32>().map_err(bad)?;
        let state = super::frames::read_str(&mut c).map_err(|e| bad(e.to_string()))?;
        out.push((client, clock, state));
    }
    if c.has_content() {
        return Err(bad("trailing bytes"));
    }
    Ok(out)
}

fn encode<'a>(entries: impl ExactSizeIterator<Item = (u64, u32, &'a str)>) -> Vec<u8> {
    let mut v = Vec::new();
    v.write_var(entries.len() as u64);
    for (client, clock, state) in entries {
        v.write_var(client);
        v.write_var(clock);
        v.write_string(state);
    }
    v
}

impl<S: Copy + Eq> AwarenessTable<S> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies `owner`'s update; returns the update to relay (the entries accepted), if any.
    pub fn apply(&mut self, owner: S, update: &[u8]) -> Result<Option<Vec<u8>>, YjsError> {
        let entries = decode(update)?;
        let owned = self.states.values().filter(|e| e.owner == owner).count();
        let new = entries
            .iter()
            .filter(|(c, _, s)| *s != NULL_STATE && !self.states.contains_key(c))
            .count();
        if owned + new > MAX_CLIENTS_PER_SESSION {
            return Err(bad(format!(
                "more than {MAX_CLIENTS_PER_SESSION} clients from one session"
            )));
        }
        let mut accepted = Vec::new();
        for (client, clock, state) in entries {
            match self.states.get(&client) {
                Some(e) if e.owner != owner => continue,
                Some(e) if clock < e.clock || (clock == e.clock && state != NULL_STATE) => continue,
                None if state == NULL_STATE => continue,
                _ => {}
            }
            if state == NULL_STATE {
                self.states.remove(&client);
            } else {
                self.states.insert(
                    client,
                    Entry {
                        clock,
                        json: Arc::from(state),
                        owner,
                    },
                );
            }
            accepted.push((client, clock, state));
        }
        if accepted.is_empty() {
            return Ok(None);
        }
        Ok(Some(encode(accepted.into_iter())))
    }

    /// Clears every state `owner` announced; returns the clearing to relay, if any.
    pub fn remove_owner(&mut self, owner: S) -> Option<Vec<u8>> {
        let gone: Vec<(u64, u32)> = self
            .states
            .iter()
            .filter(|(_, e)| e.owner == owner)
            .map(|(c, e)| (*c, e.clock))
            .collect();
        if gone.is_empty() {
            return None;
        }
        for (c, _) in &gone {
            self.states.remove(c);
        }
        Some(encode(
            gone.into_iter()
                .map(|(c, clock)| (c, clock.wrapping_add(1), NULL_STATE)),
        ))
    }

    /// Every state, as one update (for a newcomer), if there are any.
    pub fn encode_all(&self) -> Option<Vec<u8>> {
        if self.states.is_empty() {
            return None;
        }
        Some(encode(
            self.states
                .iter()
                .map(|(c, e)| (*c, e.clock, e.json.as_ref())),
        ))
    }

    /// Number of clients with a state.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// Whether no client has a state.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upd(entries: &[(u64, u32, &str)]) -> Vec<u8> {
        encode(entries.iter().copied())
    }

    #[test]
    fn owners_clocks_and_clearing() {
        let mut t = AwarenessTable::<u32>::new();
        let a = upd(&[(10, 1, r#"{"user":"a"}"#)]);
        assert_eq!(t.apply(1, &a).unwrap(), Some(a.clone()));
        // An older clock is ignored; someone else cannot touch client 10.
        assert_eq!(t.apply(1, &upd(&[(10, 0, "{}")])).unwrap(), None);
        assert_eq!(t.apply(2, &upd(&[(10, 5, "null")])).unwrap(), None);
        assert_eq!(t.len(), 1);
        let b = upd(&[(20, 1, "{}")]);
        assert_eq!(t.apply(2, &b).unwrap(), Some(b));
        assert_eq!(decode(&t.encode_all().unwrap()).unwrap().len(), 2);
        // Session 1 goes: its client is cleared with a newer clock.
        let gone = t.remove_owner(1).unwrap();
        assert_eq!(decode(&gone).unwrap(), vec![(10, 2, "null")]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.remove_owner(1), None);
        // The owner clears its own state.
        assert!(t.apply(2, &upd(&[(20, 2, "null")])).unwrap().is_some());
        assert!(t.is_empty() && t.encode_all().is_none());
    }

    #[test]
    fn limits() {
        let mut t = AwarenessTable::<u32>::new();
        assert!(t.apply(1, &[]).is_err());
        assert!(t.apply(1, &[1, 5]).is_err());
        assert!(t.apply(1, &[200, 1]).is_err());
        let mut trailing = upd(&[(1, 1, "{}")]);
        trailing.push(0);
        assert!(t.apply(1, &trailing).is_err());
        let many: Vec<(u64, u32, &str)> = (0..17).map(|c| (c, 1, "{}")).collect();
        assert!(t.apply(1, &upd(&many)).is_err());
        assert!(t.is_empty());
        let big = "x".repeat(MAX_AWARENESS_BYTES);
        assert!(t.apply(1, &upd(&[(1, 1, &big)])).is_err());
    }
}
