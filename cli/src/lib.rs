//! tollgate-cli: the `tollgate` command — `dev` (an all-in-one local gateway) and `admin`
//! (a client of the control plane's admin API), `login`/`token`/`logout` (a developer machine
//! signed in to the gateway). Depends on sqlx only through `dev`.

pub mod admin;
pub mod audit;
pub mod dev;
pub mod login;
pub mod pg_cluster;
pub mod report;
pub mod secret;
