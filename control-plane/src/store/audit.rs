//! The audit chain as seen from Rust. Entries are appended by Postgres itself: row triggers on
//! every audited table and the `tollgate_audit_append` function (see
//! `migrations/0006_audit.sql`), always in the transaction of the change, so an entry that
//! cannot be written fails the change.
//!
//! Who acted is a transaction setting (`tollgate.actor`). Admin calls run inside
//! [`with_actor`] (the admin key's name); store writes open their transaction with [`begin`],
//! which copies that actor into the transaction. Writes outside an admin call name their actor
//! with [`set_actor`] (`user:<email>` at sign-in, `system:<task>` for background work). A change
//! made with plain SQL is attributed to the database user (`db:<user>`).

pub mod query;

use std::future::Future;

use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use super::StoreError;

tokio::task_local! {
    /// The actor of the admin call being served.
    static ACTOR: String;
}

/// Runs `fut` with `actor` as the actor of every transaction it opens through [`begin`].
pub async fn with_actor<F: Future>(actor: String, fut: F) -> F::Output {
    ACTOR.scope(actor, fut).await
}

/// The actor of the current admin call, if any.
pub fn current_actor() -> Option<String> {
    ACTOR.try_with(Clone::clone).ok()
}

/// Begins a transaction whose audited changes are attributed to the current actor (see
/// [`with_actor`]); outside an admin call, to the database user unless [`set_actor`] follows.
pub async fn begin(pool: &PgPool) -> Result<Transaction<'static, Postgres>, StoreError> {
    let mut tx = pool.begin().await?;
    if let Some(actor) = current_actor() {
        set_actor(&mut tx, &actor).await?;
    }
    Ok(tx)
}

/// Names the actor of the audited changes of the current transaction.
pub async fn set_actor(conn: &mut PgConnection, actor: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT set_config('tollgate.actor', $1, true)")
        .bind(actor)
        .execute(conn)
        .await?;
    Ok(())
}

/// Appends an event (not a row change) to the chain, in the caller's transaction; returns its
/// sequence number.
pub async fn append(
    conn: &mut PgConnection,
    actor: &str,
    action: &str,
    target: &str,
    details: &serde_json::Value,
) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT tollgate_audit_append($1, $2, $3, NULL, NULL, $4::jsonb)")
            .bind(actor)
            .bind(action)
            .bind(target)
            .bind(details.to_string())
            .fetch_one(conn)
            .await?,
    )
}
