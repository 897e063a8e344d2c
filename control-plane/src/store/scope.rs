//! Resolving what budgets and rate limits name: the `scope_ref` of a group, user or key target,
//! and the principal (and key) an explanation is about.

use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::store::{StoreError, group, parse_uuid, principal};

/// A group by id or name; unknown is `InvalidArgument`.
pub async fn resolve_group(
    conn: &mut PgConnection,
    org_id: Uuid,
    scope_ref: &str,
) -> Result<Uuid, StoreError> {
    group::resolve(conn, org_id, scope_ref)
        .await?
        .ok_or_else(|| StoreError::InvalidArgument(format!("group `{scope_ref}` not found")))
}

/// A user by id or email, or a service account by name; unknown is `InvalidArgument`.
pub async fn resolve_principal(
    conn: &mut PgConnection,
    org_id: Uuid,
    reference: &str,
) -> Result<Uuid, StoreError> {
    match principal::resolve(conn, org_id, reference).await {
        Err(StoreError::NotFound(_)) => Err(StoreError::InvalidArgument(format!(
            "user or service account `{reference}` not found"
        ))),
        other => other,
    }
}

/// An unrevoked API key of the org by id; unknown or revoked is `InvalidArgument`.
pub async fn resolve_live_key(
    conn: &mut PgConnection,
    org_id: Uuid,
    scope_ref: &str,
) -> Result<Uuid, StoreError> {
    let id: Option<Uuid> = sqlx::query_scalar(
        "SELECT k.id FROM api_keys k JOIN principals p ON p.id = k.principal_id \
         WHERE k.id = $1 AND p.org_id = $2 AND k.revoked_at IS NULL",
    )
    .bind(parse_uuid(scope_ref))
    .bind(org_id)
    .fetch_optional(&mut *conn)
    .await?;
    id.ok_or_else(|| {
        StoreError::InvalidArgument(format!("API key `{scope_ref}` not found or revoked"))
    })
}

/// Whom an explanation is about: the principal, their display name and groups, and the key
/// (id, owner) when one was named.
#[derive(Debug, Clone)]
pub struct Subject {
    pub principal_id: Uuid,
    pub principal_name: String,
    /// (id, name), ordered by name.
    pub groups: Vec<(Uuid, String)>,
    pub key: Option<(Uuid, Uuid)>,
}

impl Subject {
    pub fn group_ids(&self) -> Vec<Uuid> {
        self.groups.iter().map(|g| g.0).collect()
    }

    pub fn group_names(&self) -> Vec<String> {
        self.groups.iter().map(|g| g.1.clone()).collect()
    }
}

/// Everything that applies to one principal: their budgets' or rate limits' standings.
#[derive(Debug, Clone)]
pub struct Explanation<S> {
    pub principal_id: Uuid,
    pub principal_name: String,
    pub group_names: Vec<String>,
    pub standings: Vec<S>,
    pub blocked: bool,
}

impl Subject {
    /// The explanation of this subject with `standings`.
    pub fn explained<S>(self, standings: Vec<S>, blocked: bool) -> Explanation<S> {
        Explanation {
            principal_id: self.principal_id,
            group_names: self.group_names(),
            principal_name: self.principal_name,
            standings,
            blocked,
        }
    }
}

/// Opens the read-only, repeatable-read transaction an explanation reads in and resolves its
/// subject there (see [`explain_subject`]).
pub async fn begin_explain(
    pool: &PgPool,
    org_id: Uuid,
    user: Option<&str>,
    api_key_id: Option<&str>,
) -> Result<(Transaction<'static, Postgres>, Subject), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let subject = explain_subject(&mut tx, org_id, user, api_key_id).await?;
    Ok((tx, subject))
}

/// Resolves `user` (id, email or service-account name) and/or `api_key_id` (revoked or not)
/// for an explanation. An unknown user or key is `NotFound`; a key of another user, or neither
/// named, is `InvalidArgument`.
///
/// A user's groups are the union of their `group_members` rows and, when no key is named, the
/// group names of their latest unrevoked sign-in session.
pub async fn explain_subject(
    conn: &mut PgConnection,
    org_id: Uuid,
    user: Option<&str>,
    api_key_id: Option<&str>,
) -> Result<Subject, StoreError> {
    let key: Option<(Uuid, Uuid)> = match api_key_id {
        Some(k) => {
            let row: Option<(Uuid, Uuid)> = sqlx::query_as(
                "SELECT k.id, k.principal_id FROM api_keys k JOIN principals p \
                 ON p.id = k.principal_id WHERE k.id = $1 AND p.org_id = $2",
            )
            .bind(parse_uuid(k))
            .bind(org_id)
            .fetch_optional(&mut *conn)
            .await?;
            Some(row.ok_or_else(|| StoreError::NotFound(format!("API key `{k}` not found")))?)
        }
        None => None,
    };
    let principal_id = match (user, key) {
        (Some(u), key) => {
            let id = match resolve_principal(conn, org_id, u).await {
                Err(StoreError::InvalidArgument(msg)) => Err(StoreError::NotFound(msg)),
                other => other,
            }?;
            if key.is_some_and(|(_, owner)| owner != id) {
                return Err(StoreError::InvalidArgument(format!(
                    "API key does not belong to `{u}`"
                )));
            }
            id
        }
        (None, Some((_, owner))) => owner,
        (None, None) => {
            return Err(StoreError::InvalidArgument(
                "name a user or an API key to explain".to_owned(),
            ));
        }
    };
    let principal_name: String =
        sqlx::query_scalar("SELECT COALESCE(email, name) FROM principals WHERE id = $1")
            .bind(principal_id)
            .fetch_one(&mut *conn)
            .await?;
    let session_groups = key.is_none();
    let groups: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT g.id, g.name FROM groups g WHERE g.org_id = $1 AND ( \
           g.id IN (SELECT group_id FROM group_members WHERE principal_id = $2) \
           OR ($3 AND g.name = ANY(COALESCE((SELECT s.groups FROM sessions s \
             WHERE s.principal_id = $2 AND s.revoked_at IS NULL \
             ORDER BY s.last_refreshed_at DESC LIMIT 1), '{}')))) \
         ORDER BY g.name",
    )
    .bind(org_id)
    .bind(principal_id)
    .bind(session_groups)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Subject {
        principal_id,
        principal_name,
        groups,
        key,
    })
}
