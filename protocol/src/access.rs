//! Who a session is and what it may do, as the wire carries it: roles, the access a join's
//! answer reports, and the display metadata (name, colour) presence carries.
//!
//! Invariants:
//! - [`Role`] is ordered: each role can do everything the ones before it can. The server
//!   decides roles (`actors/src/auth.rs`); this module only names them.
//! - A [`PeerUser`] that reaches the server has been checked by [`PeerUser::validate`]: a
//!   bounded name without control characters and a `#rrggbb` colour, so what one client
//!   announces can never break another client's page or grow presence messages without bound.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ProtocolError;

/// Longest display name in presence, in characters.
pub const MAX_USER_NAME_CHARS: usize = 64;

/// A role on a document. Ordered: each role can do everything the ones before it can.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read the text and history, join, show presence.
    Viewer,
    /// Everything a viewer can (coedit has no comment objects yet: same rights as a viewer).
    Commenter,
    /// Also submit ops; create the document.
    Editor,
    /// Also manage the document (delete it).
    Owner,
}

impl Role {
    /// Whether the role may submit ops.
    pub fn can_write(self) -> bool {
        self >= Role::Editor
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Commenter => "commenter",
            Role::Editor => "editor",
            Role::Owner => "owner",
        })
    }
}

/// What a session may do in a document, carried by the first message of a join's answer
/// (and by `authed` after a token refresh).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// The session's role on the document (`owner` when the server has no authentication).
    pub role: Role,
    /// The token's subject (absent without authentication).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
}

/// A joined document's role after a token refresh.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocRole {
    /// Document id (as joined).
    pub doc: String,
    /// The role the new token gives.
    pub role: Role,
}

/// Display metadata of a participant, shown with its caret: from the token's `name`/`color`
/// claims, else from the client's `hello`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerUser {
    /// Display name, at most [`MAX_USER_NAME_CHARS`] characters, no control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Caret colour, `#rrggbb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
}

impl PeerUser {
    /// Checks the name and colour (see the module invariants).
    pub fn validate(&self) -> Result<(), ProtocolError> {
        if let Some(name) = &self.name {
            if name.chars().count() > MAX_USER_NAME_CHARS || name.chars().any(char::is_control) {
                return Err(ProtocolError::Decode(format!(
                    "user.name must be at most {MAX_USER_NAME_CHARS} characters without \
                     control characters"
                )));
            }
        }
        if let Some(color) = &self.color {
            if !is_hex_color(color) {
                return Err(ProtocolError::Decode(format!(
                    "user.color must be #rrggbb, got {:?}",
                    color.chars().take(16).collect::<String>()
                )));
            }
        }
        Ok(())
    }

    /// Whether there is nothing to show.
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.color.is_none()
    }

    /// `self`, with each field that `over` sets replaced by it.
    pub fn overridden_by(self, over: PeerUser) -> PeerUser {
        PeerUser {
            name: over.name.or(self.name),
            color: over.color.or(self.color),
        }
    }
}

/// `#` followed by six hex digits.
pub fn is_hex_color(s: &str) -> bool {
    s.len() == 7 && s.starts_with('#') && s[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_named() {
        assert!(Role::Viewer < Role::Commenter && Role::Commenter < Role::Editor);
        assert!(Role::Editor < Role::Owner);
        assert!(!Role::Commenter.can_write() && Role::Editor.can_write());
        assert_eq!(serde_json::to_string(&Role::Viewer).unwrap(), "\"viewer\"");
        assert_eq!(Role::Owner.to_string(), "owner");
    }

    #[test]
    fn user_metadata_is_bounded() {
        let ok = PeerUser {
            name: Some("李雷 (QA)".into()),
            color: Some("#a1B2c3".into()),
        };
        ok.validate().unwrap();
        for bad in [
            PeerUser {
                name: Some("x".repeat(MAX_USER_NAME_CHARS + 1)),
                color: None,
            },
            PeerUser {
                name: Some("a\u{0}b".into()),
                color: None,
            },
            PeerUser {
                name: None,
                color: Some("red".into()),
            },
            PeerUser {
                name: None,
                color: Some("#12345g".into()),
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        let merged = ok.clone().overridden_by(PeerUser {
            name: Some("Token Name".into()),
            color: None,
        });
        assert_eq!(merged.name.as_deref(), Some("Token Name"));
        assert_eq!(merged.color, ok.color);
    }
}
