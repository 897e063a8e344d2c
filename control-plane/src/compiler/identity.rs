//! The snapshot's identity section: token issuer/audience, published signing keys, revoked
//! sessions (until their tokens expire), disabled users and the org default groups.

use sqlx::PgPool;
use tollgate_proto::v1 as pb;

use crate::store::StoreError;
use crate::store::identity::{idp, session, signing_key};

/// Identity rows read in one `REPEATABLE READ` transaction, with the policy version they
/// belong to.
#[derive(Debug, Clone, Default)]
pub(crate) struct IdentityRows {
    pub version: i64,
    pub issuer: String,
    pub audience: String,
    pub keys: Vec<(String, Vec<u8>)>,
    pub revoked_sessions: Vec<uuid::Uuid>,
    pub disabled_users: Vec<uuid::Uuid>,
    pub default_groups: Vec<uuid::Uuid>,
}

pub(crate) async fn load(pool: &PgPool) -> Result<IdentityRows, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let version: i64 = sqlx::query_scalar("SELECT version FROM policy_version WHERE singleton")
        .fetch_one(&mut *tx)
        .await?;
    let (issuer, audience): (String, String) =
        sqlx::query_as("SELECT issuer, audience FROM token_settings WHERE singleton")
            .fetch_optional(&mut *tx)
            .await?
            .unwrap_or_default();
    let keys = signing_key::published(&mut tx).await?;
    let revoked_sessions = session::revoked_live(&mut tx).await?;
    let disabled_users = idp::disabled_users(&mut tx).await?;
    let default_groups = idp::default_groups(&mut tx)
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    tx.commit().await?;
    Ok(IdentityRows {
        version,
        issuer,
        audience,
        keys,
        revoked_sessions,
        disabled_users,
        default_groups,
    })
}

/// Fills the identity fields of `snapshot`.
pub(crate) fn apply(snapshot: &mut pb::Snapshot, rows: IdentityRows) {
    // Without issuer settings (no control plane has started identity yet) no key is published.
    if !rows.issuer.is_empty() && !rows.audience.is_empty() {
        snapshot.token_issuer = rows.issuer;
        snapshot.token_audience = rows.audience;
        snapshot.token_keys = rows
            .keys
            .into_iter()
            .map(|(kid, public_key)| pb::TokenKey {
                kid,
                alg: "EdDSA".to_owned(),
                public_key,
            })
            .collect();
    }
    snapshot.revoked_session_ids = rows
        .revoked_sessions
        .iter()
        .map(ToString::to_string)
        .collect();
    snapshot.disabled_principal_ids = rows
        .disabled_users
        .iter()
        .map(ToString::to_string)
        .collect();
    snapshot.default_group_ids = rows
        .default_groups
        .iter()
        .map(ToString::to_string)
        .collect();
}

/// Identity rows for a snapshot of policy `version`. Read in a transaction of its own: when a
/// change landed in between, the rows are newer than `version`, and that change's
/// notification triggers a compile at its own version right after.
pub(crate) async fn load_for(pool: &PgPool, version: i64) -> Result<IdentityRows, StoreError> {
    let rows = load(pool).await?;
    if rows.version != version {
        tracing::debug!(
            version,
            identity_version = rows.version,
            "identity rows are newer"
        );
    }
    Ok(rows)
}
