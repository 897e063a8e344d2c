//! What the CLI's integration tests share: a fresh database per test.
//!
//! Postgres: `TOLLGATE_TEST_DATABASE_URL` (an admin URL allowed to create databases), else
//! `postgres://postgres@127.0.0.1:5432/postgres`.

use sqlx::{Connection as _, Executor as _, PgConnection};

/// A database created for one test, dropped by [`Db::drop_database`].
pub struct Db {
    admin_url: String,
    name: String,
    pub url: String,
}

impl Db {
    pub async fn create() -> Db {
        let admin_url = std::env::var("TOLLGATE_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let name = format!("tollgate_cli_{}", random_hex());
        let mut conn = PgConnection::connect(&admin_url).await.unwrap();
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        conn.close().await.unwrap();
        let base = admin_url.rsplit_once('/').unwrap().0;
        let url = format!("{base}/{name}");
        Db {
            admin_url,
            name,
            url,
        }
    }

    pub async fn drop_database(self) {
        let mut conn = PgConnection::connect(&self.admin_url).await.unwrap();
        let _ = conn
            .execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name).as_str())
            .await;
    }
}

/// 128 random bits as 32 hex digits.
#[allow(dead_code)] // not every test file uses it
pub fn random_hex() -> String {
    format!("{:032x}", rand::random::<u128>())
}
