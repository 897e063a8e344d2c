//! Ships usage records to the control plane in batches, in order, without dropping any;
//! fsyncs and compacts the usage journal, when there is one.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::error::TryRecvError;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tollgate_proto::v1 as pb;

use super::journal::{Journal, JournalError};
use super::{Outcome, UsageQueue, UsageRecord};
use crate::backoff::Backoff;
use crate::budget::Ledger;
use crate::control_plane::SyncApi;
use crate::metrics::UsageBacklog;

/// One `ReportUsage` call may take this long before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A journal at least this large is rewritten once at least as many of its records are
/// acknowledged as are not (so rewriting costs O(1) per record).
const COMPACT_MIN_BYTES: u64 = 1024 * 1024;

/// A journal holding acknowledged records is rewritten at least this often.
const COMPACT_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub(crate) struct ShipperSettings {
    pub batch_max: usize,
    pub flush_interval: Duration,
    /// How long the final flush at shutdown keeps trying before leaving the rest in the
    /// journal.
    pub final_flush_timeout: Duration,
    /// Where every record was appended before it was queued (`--spool-path`).
    pub journal: Option<Arc<Journal>>,
}

/// Records that could not be delivered at shutdown and may be lost.
#[derive(Debug, thiserror::Error)]
pub enum ShipperError {
    #[error("{count} usage records could not be delivered and no spool path is configured")]
    Undelivered { count: usize },
    #[error(
        "{count} usage records could not be delivered and the usage journal could not be written: {source}"
    )]
    Journal {
        count: usize,
        #[source]
        source: JournalError,
    },
}

/// Starts the shipper. `spooled` (records read back from the journal) are sent first. Runs
/// until `stop` is cancelled, then flushes what is queued (bounded by
/// `final_flush_timeout`) and leaves the rest in the journal. Acknowledged costs are noted
/// in `ledger` (so utilisation counts each cost once, whether or not the control plane has
/// it yet), and `backlog` is counted down.
pub(crate) fn spawn_usage_shipper(
    api: SyncApi,
    queue: UsageQueue,
    spooled: Vec<UsageRecord>,
    settings: ShipperSettings,
    ledger: Arc<Ledger>,
    backlog: Arc<UsageBacklog>,
    stop: CancellationToken,
) -> JoinHandle<Result<(), ShipperError>> {
    backlog.add(spooled.len() as u64);
    let shipper = Shipper {
        api,
        ledger,
        backlog,
        queue,
        pending: spooled.into(),
        settings,
        backoff: Backoff::control_plane(),
        retry_at: None,
        journal_acked: 0,
        compacted_at: Instant::now(),
    };
    tokio::spawn(shipper.run(stop))
}

struct Shipper {
    api: SyncApi,
    ledger: Arc<Ledger>,
    backlog: Arc<UsageBacklog>,
    queue: UsageQueue,
    /// Oldest first; only ever removed from the front, once acknowledged.
    pending: VecDeque<UsageRecord>,
    settings: ShipperSettings,
    backoff: Backoff,
    retry_at: Option<Instant>,
    /// Acknowledged records still in the journal (since it was last truncated or rewritten).
    journal_acked: usize,
    /// When the journal was last truncated or rewritten.
    compacted_at: Instant,
}

impl Shipper {
    async fn run(mut self, stop: CancellationToken) -> Result<(), ShipperError> {
        let interval = self.settings.flush_interval;
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_attempt = Instant::now();
        let mut last_tended = Instant::now();
        loop {
            let tick = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                received = self.queue.recv() => match received {
                    Some(record) => {
                        self.pending.push_back(record);
                        false
                    }
                    None => break,
                },
                _ = ticker.tick() => true,
            };
            self.take_queued();
            // The time check keeps a busy queue (always ready, polled first) from starving
            // the ticker.
            let due = tick
                || self.pending.len() >= self.settings.batch_max
                || last_attempt.elapsed() >= interval;
            let allowed = self.retry_at.is_none_or(|at| Instant::now() >= at);
            if due && allowed && !self.pending.is_empty() {
                last_attempt = Instant::now();
                self.send_pending().await;
            }
            if tick || last_tended.elapsed() >= interval {
                last_tended = Instant::now();
                self.tend_journal().await;
            }
        }
        self.final_flush().await
    }

    /// Once a flush interval: truncates the journal if everything in it is acknowledged,
    /// rewrites it when enough of it is, and fsyncs it.
    async fn tend_journal(&mut self) {
        let Some(journal) = self.settings.journal.clone() else {
            return;
        };
        if self.journal_acked > 0 {
            let cut = journal.cut(|| self.take_queued());
            let compacted = if self.pending.is_empty() {
                journal.truncate(cut)
            } else if self.compacted_at.elapsed() >= COMPACT_INTERVAL
                || (journal.len() >= COMPACT_MIN_BYTES && self.journal_acked >= self.pending.len())
            {
                let records = Vec::from(self.pending.clone());
                let journal = journal.clone();
                blocking(move || journal.rewrite(cut, &records)).await
            } else {
                Ok(false)
            };
            match compacted {
                Ok(true) => {
                    self.journal_acked = 0;
                    self.compacted_at = Instant::now();
                }
                Ok(false) => {}
                Err(error) => {
                    // Not retried before the next interval.
                    self.compacted_at = Instant::now();
                    tracing::warn!(%error, "cannot compact the usage journal");
                }
            }
        }
        if let Err(error) = blocking(move || journal.sync()).await {
            tracing::warn!(%error, "cannot fsync the usage journal");
        }
    }

    /// Moves everything already queued into `pending` without waiting.
    fn take_queued(&mut self) {
        loop {
            match self.queue.try_recv() {
                Ok(record) => self.pending.push_back(record),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            }
        }
    }

    /// Sends batches until `pending` is empty or a call fails.
    async fn send_pending(&mut self) {
        while !self.pending.is_empty() {
            if let Err(status) = self.send_batch().await {
                let delay = self.backoff.next_delay();
                self.retry_at = Some(Instant::now() + delay);
                tracing::warn!(
                    code = ?status.code(),
                    detail = status.message(),
                    queued = self.pending.len(),
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "cannot report usage to the control plane; will retry"
                );
                return;
            }
            self.backoff.reset();
            self.retry_at = None;
        }
    }

    /// Sends the oldest batch; removes it from `pending` once acknowledged.
    async fn send_batch(&mut self) -> Result<(), tonic::Status> {
        let count = self.pending.len().min(self.settings.batch_max.max(1));
        let records = self.pending.iter().take(count).map(to_proto).collect();
        let mut request = tonic::Request::new(pb::UsageBatch { records });
        request.set_timeout(CALL_TIMEOUT);
        let ack = tokio::time::timeout(CALL_TIMEOUT, self.api.report_usage(request))
            .await
            .map_err(|_| tonic::Status::deadline_exceeded("report usage timed out"))??
            .into_inner();
        tracing::debug!(
            sent = count,
            inserted = ack.inserted,
            duplicates = ack.duplicates,
            "usage batch acknowledged"
        );
        for record in self.pending.drain(..count) {
            if record.cost_micro_usd > 0 && !record.charges.is_empty() {
                self.ledger.reported(&record.charges, record.cost_micro_usd);
            }
        }
        self.backlog.acknowledged(count as u64);
        self.journal_acked += count;
        Ok(())
    }

    /// At shutdown: deliver what is left within the bound; leave the rest (only) in the
    /// journal.
    async fn final_flush(mut self) -> Result<(), ShipperError> {
        let deadline = Instant::now() + self.settings.final_flush_timeout;
        self.backoff.reset();
        self.take_queued();
        while !self.pending.is_empty() {
            match tokio::time::timeout_at(deadline, self.send_batch()).await {
                Ok(Ok(())) => self.backoff.reset(),
                Ok(Err(status)) => {
                    tracing::warn!(code = ?status.code(), detail = status.message(), "final usage flush failed");
                    let pause = self.backoff.next_delay();
                    if Instant::now() + pause >= deadline {
                        break;
                    }
                    tokio::time::sleep(pause).await;
                }
                Err(_) => break,
            }
            self.take_queued();
        }
        let Some(journal) = self.settings.journal.clone() else {
            self.take_queued();
            let count = self.pending.len();
            if count == 0 {
                return Ok(());
            }
            tracing::error!(
                count,
                "usage records undelivered at shutdown and no spool configured"
            );
            return Err(ShipperError::Undelivered { count });
        };
        let cut = journal.cut(|| self.take_queued());
        let records = Vec::from(self.pending);
        let count = records.len();
        blocking(move || {
            if records.is_empty() {
                journal.truncate(cut)?;
            } else {
                journal.rewrite(cut, &records)?;
            }
            journal.sync()
        })
        .await
        .map_err(|source| ShipperError::Journal { count, source })?;
        if count > 0 {
            tracing::warn!(
                count,
                "usage records left in the journal; they are sent at the next start"
            );
        }
        Ok(())
    }
}

/// Runs journal file work off the async worker threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, JournalError> + Send + 'static,
) -> Result<T, JournalError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(JournalError::Interrupted)?
}

fn to_proto(r: &UsageRecord) -> pb::UsageRecord {
    let outcome = match r.outcome {
        Outcome::Complete => pb::UsageOutcome::Complete,
        Outcome::ClientDisconnected => pb::UsageOutcome::ClientDisconnected,
        Outcome::UpstreamError => pb::UsageOutcome::UpstreamError,
        Outcome::Truncated => pb::UsageOutcome::Truncated,
    };
    pb::UsageRecord {
        request_id: r.request_id.clone(),
        data_plane_id: r.data_plane_id.clone(),
        started_at_unix_ms: r.started_at_unix_ms,
        duration_ms: r.duration_ms,
        api_key_id: r.api_key_id.clone(),
        principal_id: r.principal_id.clone(),
        model: r.model.clone(),
        provider_id: r.provider_id.clone(),
        upstream_model: r.upstream_model.clone(),
        stream: r.stream,
        status: u32::from(r.status),
        outcome: outcome as i32,
        input_tokens: r.input_tokens,
        output_tokens: r.output_tokens,
        cache_creation_5m_tokens: r.cache_creation_5m_tokens,
        cache_creation_1h_tokens: r.cache_creation_1h_tokens,
        cache_read_tokens: r.cache_read_tokens,
        endpoint: r.endpoint.clone(),
        cost_micro_usd: r.cost_micro_usd,
        charges: r.charges.iter().map(pb::CounterKey::from).collect(),
        group_ids: r.group_ids.clone(),
        price_source: r.price_source.clone(),
    }
}
