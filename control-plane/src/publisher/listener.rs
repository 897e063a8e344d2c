//! The `LISTEN tollgate_policy` connection, reconnected with jittered exponential backoff.
//!
//! Runs in its own task and reports through a channel, so the recompile loop never cancels a
//! half-read notification.

use std::time::Duration;

use rand::Rng;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::error_report::Report;

/// The channel the policy triggers notify (payload: the new version).
pub const POLICY_CHANNEL: &str = "tollgate_policy";

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// What the listener saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerEvent {
    /// Listening (again): notifications may have been missed, so resync.
    Connected,
    /// A policy change committed; the new version when the payload parsed.
    Changed(Option<u64>),
}

pub fn spawn_listener(
    pool: PgPool,
    events: mpsc::Sender<ListenerEvent>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = run(&pool, &events) => {}
        }
        debug!("policy listener stopped");
    })
}

/// Listens until the event receiver goes away.
async fn run(pool: &PgPool, events: &mpsc::Sender<ListenerEvent>) {
    let mut delay = BACKOFF_MIN;
    loop {
        match listen(pool).await {
            Ok(mut listener) => {
                delay = BACKOFF_MIN;
                if !send(events, ListenerEvent::Connected) {
                    return;
                }
                loop {
                    let event = match listener.try_recv().await {
                        Ok(Some(n)) => ListenerEvent::Changed(n.payload().parse().ok()),
                        // The connection dropped and was re-established: resync.
                        Ok(None) => {
                            warn!(
                                "policy listener reconnected; notifications may have been missed"
                            );
                            ListenerEvent::Connected
                        }
                        Err(err) => {
                            warn!(error = %Report(&err), "policy listener failed; reconnecting");
                            break;
                        }
                    };
                    if !send(events, event) {
                        return;
                    }
                }
            }
            Err(err) => warn!(
                error = %Report(&err),
                retry_in_ms = delay.as_millis(),
                "cannot listen for policy changes"
            ),
        }
        tokio::time::sleep(jitter(delay)).await;
        delay = (delay * 2).min(BACKOFF_MAX);
    }
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(POLICY_CHANNEL).await?;
    Ok(listener)
}

/// Queues an event without waiting. A full queue means a recompile is already pending; the rare
/// event dropped then is covered by the periodic resync. Returns false once the receiver is gone.
fn send(events: &mpsc::Sender<ListenerEvent>, event: ListenerEvent) -> bool {
    !matches!(
        events.try_send(event),
        Err(mpsc::error::TrySendError::Closed(_))
    )
}

/// Between half and all of `delay`, so replicas do not reconnect in lockstep.
fn jitter(delay: Duration) -> Duration {
    delay.mul_f64(rand::rng().random_range(0.5..=1.0))
}
