//! The organisation row (one per deployment for now) and the start-up lock.

use sqlx::PgConnection;
use uuid::Uuid;

use super::StoreError;

/// Name given to the organisation created at first start.
pub const DEFAULT_ORG_NAME: &str = "default";

/// Key of the transaction-scoped advisory lock that serialises start-up bootstrap across
/// replicas (arbitrary, fixed: "tollgate" in ASCII).
const BOOTSTRAP_LOCK_KEY: i64 = 0x746f_6c6c_6761_7465;

/// Holds the bootstrap lock until the surrounding transaction ends.
pub async fn lock_bootstrap(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(BOOTSTRAP_LOCK_KEY)
        .execute(conn)
        .await?;
    Ok(())
}

/// The organisation: the oldest row, created (named "default") when there is none.
pub async fn ensure_org(conn: &mut PgConnection) -> Result<Uuid, StoreError> {
    let existing: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM orgs ORDER BY created_at, id LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    if let Some(id) = existing {
        return Ok(id);
    }
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO orgs (id, name) VALUES ($1, $2)")
        .bind(id)
        .bind(DEFAULT_ORG_NAME)
        .execute(conn)
        .await?;
    Ok(id)
}
