//! The alert webhook worker: posts pending `webhook_outbox` rows to the configured URL.
//!
//! Each round claims due rows with `FOR UPDATE SKIP LOCKED` (so any number of replicas deliver
//! each row once), POSTs the JSON payload with a 10 s timeout, signed with
//! `x-tollgate-signature: sha256=<hex HMAC-SHA256(secret, body)>` when a secret is set, and
//! records success or schedules a retry (exponential backoff up to 1 h; given up after
//! [`outbox::MAX_ATTEMPTS`] attempts). Stops when the control plane shuts down; a delivery cut
//! short by shutdown stays pending.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::error_report::Report;
use crate::identity::Identity;
use crate::store::StoreError;
use crate::store::spend::outbox::{self, OutboxItem};
use crate::store::spend::settings;

/// The sealing purpose of the alert webhook secret (`budget_settings.alert_webhook_secret_enc`).
pub const WEBHOOK_SECRET_PURPOSE: &str = "tollgate alert webhook secret";

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-tollgate-signature";

const POLL_INTERVAL: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_secs(10);
const BATCH: i64 = 20;

/// `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this never falls back.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Starts the worker; it ends when `stop` is cancelled.
pub(crate) fn spawn(pool: PgPool, identity: Identity, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let client = match reqwest::Client::builder().timeout(TIMEOUT).build() {
            Ok(client) => client,
            Err(err) => {
                warn!(error = %Report(&err), "cannot build the webhook HTTP client; alert webhooks are not delivered");
                return;
            }
        };
        loop {
            match deliver_due(&pool, &identity, &client, &stop).await {
                // More may be due: go again at once.
                Ok(n) if n > 0 && !stop.is_cancelled() => continue,
                Ok(_) => {}
                Err(err) => warn!(error = %Report(&err), "webhook delivery round failed"),
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
    })
}

/// One round: claims due rows and tries each once. Returns how many were attempted.
async fn deliver_due(
    pool: &PgPool,
    identity: &Identity,
    client: &reqwest::Client,
    stop: &CancellationToken,
) -> Result<usize, StoreError> {
    let mut tx = pool.begin().await?;
    let settings = settings::get(&mut tx).await?;
    let Some(url) = settings.alert_webhook_url else {
        return Ok(0);
    };
    let items = outbox::claim(&mut tx, BATCH, chrono::Utc::now()).await?;
    if items.is_empty() {
        return Ok(0);
    }
    // Decrypted only when something is due (not on every idle poll).
    let secret = match settings.alert_webhook_secret_enc {
        Some(sealed) => match identity.secrets().open(WEBHOOK_SECRET_PURPOSE, &sealed) {
            Ok(secret) => Some(secret),
            Err(_) => {
                warn!(
                    "the alert webhook secret cannot be decrypted (was the secrets key changed?); set it again"
                );
                return Ok(0);
            }
        },
        None => None,
    };
    let mut attempted = 0;
    for item in &items {
        let result = tokio::select! {
            () = stop.cancelled() => break,
            result = post(client, &url, secret.as_deref(), item) => result,
        };
        attempted += 1;
        match result {
            Ok(()) => {
                debug!(id = item.id, kind = %item.kind, "webhook delivered");
                outbox::delivered(&mut tx, item.id).await?;
            }
            Err(error) => {
                warn!(id = item.id, kind = %item.kind, attempts = item.attempts + 1, %error, "webhook delivery failed");
                outbox::failed(&mut tx, item, &error, chrono::Utc::now()).await?;
            }
        }
    }
    tx.commit().await?;
    Ok(attempted)
}

/// POSTs one payload; any non-2xx answer is a failure.
async fn post(
    client: &reqwest::Client,
    url: &str,
    secret: Option<&[u8]>,
    item: &OutboxItem,
) -> Result<(), String> {
    let body = item.payload.clone().into_bytes();
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-tollgate-event", &item.kind)
        .header("x-tollgate-delivery", item.id.to_string());
    if let Some(secret) = secret {
        request = request.header(SIGNATURE_HEADER, signature(secret, &body));
    }
    let response = request
        .body(body)
        .send()
        .await
        // Without the URL: webhook URLs often carry a token.
        .map_err(|err| format!("request failed: {}", Report(&err.without_url())))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hex_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
