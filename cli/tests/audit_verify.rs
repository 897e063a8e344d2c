//! The real `tollgate audit verify` and `tollgate audit public-key` binaries against a fresh
//! database: exit 0 with a summary on an untouched log, exit 1 naming the edited entry after a
//! superuser edit, exit 1 with another public key.
//!
//! Postgres: `TOLLGATE_TEST_DATABASE_URL` (an admin URL allowed to create databases), else
//! `postgres://postgres@127.0.0.1:5432/postgres`.

// An integration-test crate: every item in it is test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Output;
use std::time::Duration;

use sqlx::PgPool;
use support::Db;
use tollgate_control_plane::audit::{AuditSigningKey, Checkpointer};

fn tollgate(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .env_remove("TOLLGATE_DATABASE_URL")
        .env_remove("TOLLGATE_AUDIT_PUBLIC_KEY")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn append(pool: &PgPool, n: usize) {
    for i in 0..n {
        sqlx::query(
            "SELECT tollgate_audit_append('admin:alice', 'test.change', 'thing', NULL, NULL, \
             jsonb_build_object('note', $1::text))",
        )
        .bind(format!("note-{i}"))
        .execute(pool)
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn audit_verify_exits_zero_when_intact_and_one_at_the_first_inconsistency() {
    let db = Db::create().await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&db.url)
        .await
        .unwrap();
    tollgate_control_plane::migrate(&pool).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("audit.pem");
    let checkpoints = dir.path().join("checkpoints.jsonl");
    let (key, _) = AuditSigningKey::load_or_create(&key_file).await.unwrap();
    let checkpointer = Checkpointer::new(key, Duration::ZERO).with_file(checkpoints.clone());
    append(&pool, 4).await;
    checkpointer.run_once(&pool).await.unwrap();
    append(&pool, 1).await;

    // The public key as the CLI prints it.
    let printed = tollgate(&[
        "audit",
        "public-key",
        "--signing-key-file",
        key_file.to_str().unwrap(),
    ]);
    assert!(printed.status.success(), "{printed:?}");
    assert_eq!(stdout(&printed), checkpointer.key().public_key_pem());
    let public = dir.path().join("audit.pub");
    std::fs::write(&public, &printed.stdout).unwrap();

    let verify = |public: &str| {
        tollgate(&[
            "audit",
            "verify",
            "--database-url",
            &db.url,
            &format!("--public-key={public}"),
            "--checkpoints",
            checkpoints.to_str().unwrap(),
        ])
    };
    let out = verify(public.to_str().unwrap());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("audit log intact: 5 entries"), "{text}");
    assert!(
        text.contains("1 stored checkpoint verified, 1 exported checkpoint matched"),
        "{text}"
    );
    assert!(text.contains("1 entry not yet covered"), "{text}");

    // Another key: the checkpoint's signature is not accepted.
    let other = AuditSigningKey::generate();
    let raw = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(other.verifying_key().as_bytes())
    };
    let out = verify(&raw);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stdout(&out).contains("none of the given public keys"),
        "{out:?}"
    );

    // A superuser edit.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE audit_entries SET payload = replace(payload, 'note-1', 'note-X') WHERE seq = 2",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let out = verify(public.to_str().unwrap());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stdout(&out).contains("entry 2 was edited"), "{out:?}");

    // Not a key at all: the check cannot run.
    let out = verify("nonsense");
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    pool.close().await;
    db.drop_database().await;
}
