//! Process settings for one data plane.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::budget::Clock;

/// How to run a data plane. Policy (keys, models, routes, providers) is not here: it arrives
/// from the control plane in snapshots.
#[derive(Debug, Clone)]
pub struct DataPlaneConfig {
    /// Where clients connect (HTTP/1.1 and h2c). Port 0 picks a free port.
    pub listen: SocketAddr,
    /// The operator listener (`/metrics`, `/healthz`, `/readyz`); `None` = off.
    pub admin_listen: Option<SocketAddr>,
    /// The control plane's gRPC endpoint, e.g. `http://127.0.0.1:50051`.
    pub control_plane_url: String,
    /// Sent as `authorization: Bearer …` on every control-plane call.
    pub sync_token: SecretString,
    /// Names this data plane in usage records and to the control plane.
    pub data_plane_id: String,
    /// Larger request bodies are refused with 413.
    pub max_body_bytes: usize,
    pub upstream_connect_timeout: Duration,
    /// How long to wait for a provider's response headers (a route target may set its own).
    pub upstream_first_byte_timeout: Duration,
    /// Longest silence between two chunks of a provider's answer before it is cut (an SSE
    /// answer then ends with an `error` event). A route target may set its own.
    pub upstream_idle_timeout: Duration,
    /// Silence after which a `ping` event is sent on streams translated from upstreams that
    /// send none (Bedrock's event stream). Claude Code abandons a stream silent for 300 s.
    pub ping_interval: Duration,
    /// Most targets tried for one request (failover before the first byte).
    pub max_attempts: u32,
    /// Consecutive failures that open a target's circuit breaker.
    pub breaker_failure_threshold: u32,
    /// How long an open breaker skips its target before one probe request.
    pub breaker_cooldown: Duration,
    /// Retries (failover attempts) allowed as a percentage of requests …
    pub retry_budget_percent: u32,
    /// … plus this many a second whatever the traffic.
    pub retry_budget_min_per_second: u32,
    /// How often breaker states are reported to the control plane.
    pub health_report_interval: Duration,
    /// Which environment variables and files provider credential references may name.
    pub credential_references: crate::providers::CredentialReferences,
    /// How long to keep reading a provider's answer after the client left, for metering.
    pub disconnect_drain_timeout: Duration,
    pub usage_batch_max: usize,
    pub usage_flush_interval: Duration,
    /// Usage journal: every record is appended here before it is queued (so it survives
    /// `kill -9`); unacknowledged records in it are sent first at the next start.
    pub spool_path: Option<PathBuf>,
    /// The last good snapshot is kept here (encrypted under a key derived from the sync
    /// token) and served from at the next start until the control plane answers; `None` = off.
    pub snapshot_cache_path: Option<PathBuf>,
    /// A cached snapshot last delivered by the control plane longer ago than this is not
    /// served at start.
    pub snapshot_cache_max_age: Duration,
    /// How long shutdown waits for in-flight requests (and then for the usage flush).
    pub shutdown_drain_timeout: Duration,
    /// The control plane's HTTP listener (OAuth, device flow), e.g. `http://cp:8081`. The
    /// data plane forwards `/.well-known/oauth-authorization-server`, `/oauth/…` and
    /// `/device` there; `None` answers them 404.
    pub control_plane_http_url: Option<String>,
    /// The clock spend windows (UTC day, week, month) are read from: the system clock,
    /// or a manual one in tests.
    pub clock: Clock,
    /// Bounds on the client listener: requests in flight, request heads, HTTP/2 streams.
    pub listener_limits: crate::listener::ListenerLimits,
    /// Per-address rate limit on the forwarded sign-in paths.
    pub sign_in_limit: crate::sign_in_limit::SignInLimitSettings,
    /// TLS on the client listener (certificate reloaded when its files change); `None` =
    /// cleartext HTTP/1.1 and h2c.
    pub tls: Option<crate::listener::TlsSettings>,
    /// How this data plane trusts (and proves itself to) an `https` control plane.
    pub control_plane_tls: crate::control_plane::ControlPlaneTls,
}

impl DataPlaneConfig {
    pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
    pub const DEFAULT_SNAPSHOT_CACHE_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

    /// A configuration with the defaults and a random `data_plane_id`.
    pub fn new(listen: SocketAddr, control_plane_url: String, sync_token: SecretString) -> Self {
        DataPlaneConfig {
            listen,
            admin_listen: None,
            control_plane_url,
            sync_token,
            data_plane_id: format!("dp-{}", uuid::Uuid::new_v4().simple()),
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            upstream_connect_timeout: Duration::from_secs(10),
            upstream_first_byte_timeout: Duration::from_secs(300),
            upstream_idle_timeout: Duration::from_secs(300),
            ping_interval: Duration::from_secs(15),
            max_attempts: 3,
            breaker_failure_threshold: 5,
            breaker_cooldown: Duration::from_secs(30),
            retry_budget_percent: 20,
            retry_budget_min_per_second: 3,
            health_report_interval: Duration::from_secs(10),
            credential_references: crate::providers::CredentialReferences::default(),
            disconnect_drain_timeout: Duration::from_secs(600),
            usage_batch_max: 500,
            usage_flush_interval: Duration::from_secs(1),
            spool_path: None,
            snapshot_cache_path: None,
            snapshot_cache_max_age: Self::DEFAULT_SNAPSHOT_CACHE_MAX_AGE,
            shutdown_drain_timeout: Duration::from_secs(30),
            control_plane_http_url: None,
            clock: Clock::system(),
            listener_limits: crate::listener::ListenerLimits::default(),
            sign_in_limit: crate::sign_in_limit::SignInLimitSettings::default(),
            tls: None,
            control_plane_tls: crate::control_plane::ControlPlaneTls::default(),
        }
    }

    /// Checks everything at once and reports every problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        match self.control_plane_url.parse::<http::Uri>() {
            Ok(uri) if uri.scheme_str() == Some("http") && uri.host().is_some() => {
                if self.control_plane_tls.is_set() {
                    problems.push(
                        "control_plane_ca_file, control_plane_client_cert_file, control_plane_client_key_file: only with an https control_plane_url"
                            .to_owned(),
                    );
                }
            }
            Ok(uri) if uri.scheme_str() == Some("https") && uri.host().is_some() => {
                self.control_plane_tls.validate(&mut problems);
            }
            _ => problems.push(format!(
                "control_plane_url: `{}` is not an http(s)://host:port URL",
                self.control_plane_url
            )),
        }
        if let Some(url) = &self.control_plane_http_url {
            match url.parse::<http::Uri>() {
                Ok(uri)
                    if matches!(uri.scheme_str(), Some("http" | "https"))
                        && uri.host().is_some()
                        && uri.query().is_none() => {}
                _ => problems.push(format!(
                    "control_plane_http_url: `{url}` is not an http(s)://host:port URL"
                )),
            }
        }
        let token = self.sync_token.expose_secret();
        if token.is_empty() {
            problems.push("sync_token: must not be empty".to_owned());
        } else if !token.bytes().all(|b| b.is_ascii_graphic()) {
            problems.push("sync_token: must be printable ASCII without spaces".to_owned());
        }
        if self.data_plane_id.trim().is_empty() {
            problems.push("data_plane_id: must not be empty".to_owned());
        }
        for (name, zero) in [
            ("max_body_bytes", self.max_body_bytes == 0),
            ("usage_batch_max", self.usage_batch_max == 0),
            (
                "upstream_connect_timeout",
                self.upstream_connect_timeout.is_zero(),
            ),
            (
                "upstream_first_byte_timeout",
                self.upstream_first_byte_timeout.is_zero(),
            ),
            ("usage_flush_interval", self.usage_flush_interval.is_zero()),
            (
                "upstream_idle_timeout",
                self.upstream_idle_timeout.is_zero(),
            ),
            ("ping_interval", self.ping_interval.is_zero()),
            ("max_attempts", self.max_attempts == 0),
            (
                "breaker_failure_threshold",
                self.breaker_failure_threshold == 0,
            ),
            ("breaker_cooldown", self.breaker_cooldown.is_zero()),
            (
                "snapshot_cache_max_age",
                self.snapshot_cache_max_age.is_zero(),
            ),
            (
                "health_report_interval",
                self.health_report_interval.is_zero(),
            ),
        ] {
            if zero {
                problems.push(format!("{name}: must be positive"));
            }
        }
        self.listener_limits.validate(&mut problems);
        self.sign_in_limit.validate(&mut problems);
        if let Some(tls) = &self.tls {
            tls.validate(&mut problems);
        }
        if self.retry_budget_percent > 100 {
            problems.push("retry_budget_percent: must be at most 100".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }
}

/// Every problem found in a [`DataPlaneConfig`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid data plane configuration: {}", .problems.join("; "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl DataPlaneConfig {
    pub(crate) fn routing(&self) -> crate::routing::RoutingSettings {
        crate::routing::RoutingSettings {
            connect_timeout: self.upstream_connect_timeout,
            first_byte_timeout: self.upstream_first_byte_timeout,
            idle_timeout: self.upstream_idle_timeout,
            ping_interval: self.ping_interval,
            max_attempts: self.max_attempts,
            breaker: crate::routing::BreakerSettings {
                failure_threshold: self.breaker_failure_threshold,
                cooldown: self.breaker_cooldown,
            },
            retry_budget: crate::routing::RetryBudgetSettings {
                percent: self.retry_budget_percent,
                min_per_second: self.retry_budget_min_per_second,
            },
            credential_references: self.credential_references.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DataPlaneConfig {
        DataPlaneConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            "http://127.0.0.1:50051".into(),
            SecretString::from("token"),
        )
    }

    #[test]
    fn defaults_are_valid_and_ids_random() {
        let a = config();
        assert!(a.validate().is_ok());
        assert_eq!(a.max_body_bytes, 32 * 1024 * 1024);
        assert_eq!(a.shutdown_drain_timeout, Duration::from_secs(30));
        assert_ne!(a.data_plane_id, config().data_plane_id);
        assert!(!format!("{a:?}").contains("token\""));
    }

    #[test]
    fn reports_every_problem_at_once() {
        let mut c = config();
        c.control_plane_url = "nope".into();
        c.sync_token = SecretString::from("");
        c.max_body_bytes = 0;
        c.usage_flush_interval = Duration::ZERO;
        let err = c.validate().unwrap_err();
        assert_eq!(err.problems.len(), 4, "{err}");
    }

    #[test]
    fn control_plane_http_url_must_be_an_http_url() {
        let mut c = config();
        c.control_plane_http_url = Some("http://cp:8081".into());
        assert!(c.validate().is_ok());
        c.control_plane_http_url = Some("cp:8081".into());
        assert_eq!(c.validate().unwrap_err().problems.len(), 1);
    }

    #[test]
    fn control_plane_tls_files_need_an_https_url_and_must_be_readable() {
        let mut c = config();
        c.control_plane_url = "https://cp:50051".into();
        assert!(c.validate().is_ok(), "public roots by default");
        c.control_plane_tls.ca_file = Some("/nonexistent/ca.pem".into());
        let err = c.validate().unwrap_err();
        assert!(
            err.problems[0].starts_with("control_plane_ca_file: cannot read /nonexistent/ca.pem"),
            "{err}"
        );
        c.control_plane_url = "http://cp:50051".into();
        let err = c.validate().unwrap_err();
        assert!(
            err.problems[0].contains("only with an https control_plane_url"),
            "{err}"
        );
    }
}
