//! The snapshot's identity section: token issuer/audience, published signing keys, revoked
//! sessions (until their tokens expire), disabled users and the org default groups.

use sqlx::PgConnection;
use tollgate_proto::v1 as pb;

use crate::store::StoreError;
use crate::store::identity::{idp, session, signing_key};

/// Identity rows, read inside the compiler's `REPEATABLE READ` transaction.
#[derive(Debug, Clone, Default)]
pub(crate) struct IdentityRows {
    pub issuer: String,
    pub audience: String,
    pub keys: Vec<(String, Vec<u8>)>,
    pub revoked_sessions: Vec<uuid::Uuid>,
    pub disabled_users: Vec<uuid::Uuid>,
    pub default_groups: Vec<uuid::Uuid>,
}

pub(crate) async fn load(tx: &mut PgConnection) -> Result<IdentityRows, StoreError> {
    let (issuer, audience): (String, String) =
        sqlx::query_as("SELECT issuer, audience FROM token_settings WHERE singleton")
            .fetch_optional(&mut *tx)
            .await?
            .unwrap_or_default();
    let keys = signing_key::published(tx).await?;
    let revoked_sessions = session::revoked_live(tx).await?;
    let disabled_users = idp::disabled_users(tx).await?;
    let default_groups = idp::default_groups(tx)
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    Ok(IdentityRows {
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
