//! Who a request acts for, whichever credential it presented.

use std::sync::Arc;

use crate::access::ModelAccess;
use crate::credential::{ApiKey, Principal};

/// A signed-in session, as proven by a verified gateway access token.
#[derive(Debug)]
pub struct Session {
    /// The token's `sid`.
    pub id: String,
    pub principal: Arc<Principal>,
    /// Tollgate group ids the token's `groups` resolved to (or the org defaults).
    pub group_ids: Vec<String>,
    /// Unix seconds (`exp`).
    pub expires_at_unix_s: i64,
    /// The union of the groups' model access.
    pub access: ModelAccess,
}

/// An authenticated caller: an API key or a signed-in session.
#[derive(Debug, Clone)]
pub enum Caller {
    Key(Arc<ApiKey>),
    Session(Arc<Session>),
}

impl Caller {
    pub fn principal(&self) -> &Arc<Principal> {
        match self {
            Caller::Key(key) => &key.principal,
            Caller::Session(session) => &session.principal,
        }
    }

    pub fn group_ids(&self) -> &[String] {
        match self {
            Caller::Key(key) => &key.group_ids,
            Caller::Session(session) => &session.group_ids,
        }
    }

    pub fn access(&self) -> &ModelAccess {
        match self {
            Caller::Key(key) => &key.access,
            Caller::Session(session) => &session.access,
        }
    }

    /// The API key id, for API-key callers.
    pub fn key_id(&self) -> Option<&str> {
        match self {
            Caller::Key(key) => Some(&key.id),
            Caller::Session(_) => None,
        }
    }

    /// The session id (`sid`), for signed-in callers.
    pub fn session_id(&self) -> Option<&str> {
        match self {
            Caller::Key(_) => None,
            Caller::Session(session) => Some(&session.id),
        }
    }

    /// What to name the credential in logs: the key id or `session:<sid>`.
    pub fn log_id(&self) -> String {
        match self {
            Caller::Key(key) => key.id.clone(),
            Caller::Session(session) => format!("session:{}", session.id),
        }
    }
}
