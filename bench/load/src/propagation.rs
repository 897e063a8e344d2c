//! How long an admin change takes to be enforced by the data plane: a group's model allowlist
//! toggled (deny, allow, deny, …) and API keys revoked, each timed from the start of the admin
//! call until the data plane's answer changes. Polls every 2 ms on one keep-alive connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use tollgate_proto::v1 as pb;

use crate::client::{Connection, RequestTemplate};
use crate::stack::{Admin, GROUP, OTHER_MODEL};

/// A change that is not enforced within this long counts as a failure of the run.
const ENFORCED_WITHIN: Duration = Duration::from_secs(15);
const POLL_EVERY: Duration = Duration::from_millis(2);

#[derive(Debug, Clone, Default, Serialize)]
pub struct Propagation {
    /// Seconds from the admin call to enforcement, per policy change.
    pub policy_change_s: Vec<f64>,
    /// Seconds from the admin call to the first rejection, per revoked key.
    pub revocation_s: Vec<f64>,
}

pub async fn run(
    admin: &mut Admin,
    data_plane: SocketAddr,
    api_key: &str,
    changes: u32,
    spare_keys: &[(String, String)],
) -> Result<Propagation> {
    let mut out = Propagation::default();
    let template = RequestTemplate::new(api_key, false, None)?;
    let mut probe = Prober::new(data_plane, template);
    for i in 0..changes {
        let deny = i % 2 == 0;
        let allowed = if deny { OTHER_MODEL } else { "*" };
        let start = Instant::now();
        admin
            .set_group_models(pb::SetGroupModelsRequest {
                group: GROUP.into(),
                allowed_models: vec![allowed.into()],
            })
            .await
            .context("changing the group's models")?;
        let took = probe.until(|ok| ok != deny, start).await?;
        out.policy_change_s.push(took.as_secs_f64());
    }
    if changes % 2 == 1 {
        // Leave access as it was.
        admin
            .set_group_models(pb::SetGroupModelsRequest {
                group: GROUP.into(),
                allowed_models: vec!["*".into()],
            })
            .await?;
        probe.until(|ok| ok, Instant::now()).await?;
    }
    for (id, secret) in spare_keys {
        let mut key_probe = Prober::new(data_plane, RequestTemplate::new(secret, false, None)?);
        key_probe.until(|ok| ok, Instant::now()).await?;
        let start = Instant::now();
        admin
            .revoke_api_key(pb::RevokeApiKeyRequest { id: id.clone() })
            .await
            .context("revoking an API key")?;
        let took = key_probe.until(|ok| !ok, start).await?;
        out.revocation_s.push(took.as_secs_f64());
    }
    Ok(out)
}

struct Prober {
    addr: SocketAddr,
    template: std::sync::Arc<RequestTemplate>,
    conn: Option<Connection>,
}

impl Prober {
    fn new(addr: SocketAddr, template: std::sync::Arc<RequestTemplate>) -> Prober {
        Prober {
            addr,
            template,
            conn: None,
        }
    }

    /// Polls until `done(answer was 200)` holds; the time since `start`.
    async fn until(&mut self, done: impl Fn(bool) -> bool, start: Instant) -> Result<Duration> {
        while start.elapsed() < ENFORCED_WITHIN {
            let conn = match self.conn.as_mut() {
                Some(c) if c.is_open() => c,
                _ => self.conn.insert(Connection::open(self.addr).await?),
            };
            match conn.exchange(&self.template, Instant::now()).await {
                Ok(ex) if done(ex.status == 200) => return Ok(start.elapsed()),
                Ok(_) => {}
                Err(_) => self.conn = None,
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
        bail!("the data plane did not enforce an admin change within {ENFORCED_WITHIN:?}")
    }
}
