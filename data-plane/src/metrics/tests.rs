use std::collections::BTreeMap;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

use super::*;

/// A meter provider exporting to memory.
fn provider() -> (SdkMeterProvider, InMemoryMetricExporter) {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    (provider, exporter)
}

/// One exported data point: metric name, unit, attributes and value (sums and gauges) or
/// count (histograms).
#[derive(Debug, Clone, PartialEq)]
struct Point {
    name: String,
    unit: String,
    attributes: BTreeMap<String, String>,
    value: f64,
}

fn attributes<'a>(kvs: impl Iterator<Item = &'a KeyValue>) -> BTreeMap<String, String> {
    kvs.map(|kv| (kv.key.to_string(), kv.value.to_string()))
        .collect()
}

fn points_of<T: Copy>(
    name: &str,
    unit: &str,
    data: &MetricData<T>,
    as_f64: impl Fn(T) -> f64,
) -> Vec<Point> {
    let point = |attributes, value| Point {
        name: name.to_owned(),
        unit: unit.to_owned(),
        attributes,
        value,
    };
    match data {
        MetricData::Sum(sum) => sum
            .data_points()
            .map(|p| point(attributes(p.attributes()), as_f64(p.value())))
            .collect(),
        MetricData::Gauge(gauge) => gauge
            .data_points()
            .map(|p| point(attributes(p.attributes()), as_f64(p.value())))
            .collect(),
        MetricData::Histogram(h) => h
            .data_points()
            .map(|p| point(attributes(p.attributes()), p.count() as f64))
            .collect(),
        MetricData::ExponentialHistogram(_) => Vec::new(),
    }
}

/// Everything exported so far (cumulative).
fn points(provider: &SdkMeterProvider, exporter: &InMemoryMetricExporter) -> Vec<Point> {
    provider.force_flush().unwrap();
    let exported: Vec<ResourceMetrics> = exporter.get_finished_metrics().unwrap();
    let mut out = Vec::new();
    if let Some(rm) = exported.last() {
        for scope in rm.scope_metrics() {
            assert_eq!(scope.scope().name(), METER_NAME);
            for m in scope.metrics() {
                out.extend(match m.data() {
                    AggregatedMetrics::U64(d) => points_of(m.name(), m.unit(), d, |v| v as f64),
                    AggregatedMetrics::F64(d) => points_of(m.name(), m.unit(), d, |v| v),
                    AggregatedMetrics::I64(d) => points_of(m.name(), m.unit(), d, |v| v as f64),
                });
            }
        }
    }
    out
}

fn find<'a>(points: &'a [Point], name: &str, filter: &[(&str, &str)]) -> Vec<&'a Point> {
    points
        .iter()
        .filter(|p| p.name == name)
        .filter(|p| {
            filter
                .iter()
                .all(|(k, v)| p.attributes.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

fn finished<'a>(usage: &'a Usage) -> FinishedRequest<'a> {
    FinishedRequest {
        model: "claude-sonnet-5",
        provider: "anthropic-main",
        outcome: "complete",
        status: 200,
        user: UserLabels {
            email: "ada@example.com",
            groups: "admins,eng",
            api_key: "laptop",
        },
        usage: Some(usage),
        cost_micro_usd: 1234,
        duration: Duration::from_millis(1500),
        time_to_first_token: Some(Duration::from_millis(300)),
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn a_finished_request_records_every_instrument_with_user_attributes() {
    let (provider, exporter) = provider();
    let instruments = Instruments::new(&provider.meter(METER_NAME));
    let usage = Usage {
        input_tokens: 11,
        output_tokens: 6,
        cache_creation_5m_tokens: 0,
        cache_creation_1h_tokens: 2,
        cache_read_tokens: 5,
    };
    instruments.record_request(&finished(&usage));
    let points = points(&provider, &exporter);

    let user = [
        ("model", "claude-sonnet-5"),
        ("provider", "anthropic-main"),
        ("user.email", "ada@example.com"),
        ("user.groups", "admins,eng"),
        ("api_key", "laptop"),
    ];
    let requests = find(&points, "tollgate.requests", &[]);
    assert_eq!(requests.len(), 1);
    let mut expected = labels(&user);
    expected.extend(labels(&[("outcome", "complete"), ("status_class", "2xx")]));
    assert_eq!(requests[0].attributes, expected);
    assert_eq!(requests[0].value, 1.0);

    let tokens = find(&points, "tollgate.tokens", &[]);
    let by_type: BTreeMap<_, _> = tokens
        .iter()
        .map(|p| (p.attributes["token.type"].as_str(), p.value))
        .collect();
    assert_eq!(
        by_type,
        BTreeMap::from([
            ("cache_creation_1h", 2.0),
            ("cache_read", 5.0),
            ("input", 11.0),
            ("output", 6.0),
        ]),
        "zero counts are not recorded"
    );
    for p in &tokens {
        let mut expected = labels(&user);
        expected.insert("token.type".into(), p.attributes["token.type"].clone());
        assert_eq!(p.attributes, expected);
    }

    let cost = find(&points, "tollgate.cost", &[]);
    assert_eq!(cost.len(), 1);
    assert_eq!(cost[0].attributes, labels(&user));
    assert_eq!(cost[0].value, 1234.0);
    assert_eq!(cost[0].unit, "micro-USD");

    let duration = find(&points, "tollgate.request.duration", &[]);
    assert_eq!(duration.len(), 1);
    assert_eq!(duration[0].unit, "s");
    assert_eq!(
        duration[0].attributes,
        labels(&[
            ("model", "claude-sonnet-5"),
            ("provider", "anthropic-main"),
            ("outcome", "complete")
        ])
    );
    let ttft = find(&points, "tollgate.time_to_first_token", &[]);
    assert_eq!(ttft.len(), 1);
    assert_eq!(
        ttft[0].attributes,
        labels(&[("model", "claude-sonnet-5"), ("provider", "anthropic-main")])
    );
}

#[test]
fn attempts_failovers_and_budget_rejections_are_counted() {
    let (provider, exporter) = provider();
    let instruments = Instruments::new(&provider.meter(METER_NAME));
    instruments.upstream_attempt("primary", "retryable_error");
    instruments.upstream_attempt("backup", "ok");
    instruments.failover("claude-sonnet-5", "primary");
    instruments.budget_rejection("user", "ada@example.com");
    let points = points(&provider, &exporter);
    assert_eq!(
        find(&points, "tollgate.upstream.attempts", &[])
            .iter()
            .map(|p| p.attributes.clone())
            .collect::<Vec<_>>()
            .len(),
        2
    );
    assert_eq!(
        find(
            &points,
            "tollgate.upstream.attempts",
            &[("provider", "primary"), ("outcome", "retryable_error")]
        )
        .len(),
        1
    );
    let failovers = find(&points, "tollgate.upstream.failovers", &[]);
    assert_eq!(
        failovers[0].attributes,
        labels(&[("model", "claude-sonnet-5"), ("from_provider", "primary")])
    );
    let rejections = find(&points, "tollgate.budget.rejections", &[]);
    assert_eq!(
        rejections[0].attributes,
        labels(&[("scope", "user"), ("user.email", "ada@example.com")])
    );
}

#[test]
fn a_rejection_records_no_tokens_or_cost() {
    let (provider, exporter) = provider();
    let instruments = Instruments::new(&provider.meter(METER_NAME));
    instruments.record_request(&FinishedRequest {
        outcome: "unauthenticated",
        status: 401,
        provider: "",
        usage: None,
        cost_micro_usd: 0,
        time_to_first_token: None,
        user: UserLabels::default(),
        ..finished(&Usage::default())
    });
    let points = points(&provider, &exporter);
    let requests = find(&points, "tollgate.requests", &[("status_class", "4xx")]);
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].attributes["outcome"], "unauthenticated");
    assert!(find(&points, "tollgate.tokens", &[]).is_empty());
    assert!(find(&points, "tollgate.cost", &[]).is_empty());
    assert!(find(&points, "tollgate.time_to_first_token", &[]).is_empty());
}

#[test]
fn gauges_report_snapshot_version_staleness_and_backlog() {
    let (provider, exporter) = provider();
    let snapshots = Arc::new(SnapshotStore::default());
    let backlog = Arc::new(UsageBacklog::default());
    let _gauges = register_gauges(
        &provider.meter(METER_NAME),
        &snapshots,
        &backlog,
        Box::new(Vec::new),
    );
    backlog.add(3);
    backlog.acknowledged(1);
    let points = points(&provider, &exporter);
    assert_eq!(
        find(&points, "tollgate.snapshot.version", &[])[0].value,
        0.0
    );
    assert_eq!(find(&points, "tollgate.usage.backlog", &[])[0].value, 2.0);
    let staleness = find(&points, "tollgate.snapshot.staleness", &[]);
    assert_eq!(staleness[0].unit, "s");
    assert!(staleness[0].value >= 0.0);
}

#[test]
fn rate_limit_rejections_are_counted_by_scope_and_kind() {
    let (provider, exporter) = provider();
    let instruments = Instruments::new(&provider.meter(METER_NAME));
    instruments.rate_limit_rejection("user", "requests_per_minute");
    instruments.rate_limit_rejection("user", "requests_per_minute");
    instruments.rate_limit_rejection("provider", "concurrent_requests");
    let points = points(&provider, &exporter);
    let user = find(
        &points,
        "tollgate.rate_limit.rejections",
        &[("scope", "user"), ("kind", "requests_per_minute")],
    );
    assert_eq!(user.len(), 1);
    assert_eq!(user[0].value, 2.0);
    assert_eq!(
        user[0].attributes,
        labels(&[("scope", "user"), ("kind", "requests_per_minute")])
    );
    let provider_points = find(
        &points,
        "tollgate.rate_limit.rejections",
        &[("scope", "provider")],
    );
    assert_eq!(provider_points[0].value, 1.0);
}

#[test]
fn the_rate_limit_gauge_reports_each_buckets_utilization() {
    let (provider, exporter) = provider();
    let snapshots = Arc::new(SnapshotStore::default());
    let backlog = Arc::new(UsageBacklog::default());
    let _gauges = register_gauges(
        &provider.meter(METER_NAME),
        &snapshots,
        &backlog,
        Box::new(|| {
            vec![
                RateUtilization {
                    limit_id: "rl-1".into(),
                    scope: "group",
                    kind: "requests_per_minute",
                    fraction: 0.25,
                },
                RateUtilization {
                    limit_id: "rl-2".into(),
                    scope: "provider",
                    kind: "concurrent_requests",
                    fraction: 1.5,
                },
            ]
        }),
    );
    let points = points(&provider, &exporter);
    let gauge = find(&points, "tollgate.rate_limit.utilization", &[]);
    assert_eq!(gauge.len(), 2);
    let rl1 = find(
        &points,
        "tollgate.rate_limit.utilization",
        &[("limit_id", "rl-1")],
    );
    assert_eq!(
        rl1[0].attributes,
        labels(&[
            ("limit_id", "rl-1"),
            ("scope", "group"),
            ("kind", "requests_per_minute")
        ])
    );
    assert_eq!(rl1[0].value, 0.25);
    let rl2 = find(
        &points,
        "tollgate.rate_limit.utilization",
        &[("limit_id", "rl-2")],
    );
    assert_eq!(rl2[0].value, 1.0, "clamped to 0..1");
}

#[test]
fn group_names_are_sorted_and_joined() {
    use tollgate_policy::{ApiKey, Caller, ModelAccess, Principal, PrincipalKind};
    use tollgate_proto::v1 as pb;
    let group = |id: &str, name: &str| pb::Group {
        id: id.into(),
        name: name.into(),
        allowed_models: vec!["*".into()],
    };
    let snapshot = tollgate_policy::Snapshot::try_from(pb::Snapshot {
        version: 1,
        groups: vec![group("g2", "eng"), group("g1", "admins")],
        ..Default::default()
    })
    .unwrap();
    let caller = Caller::Key(Arc::new(ApiKey {
        id: "k".into(),
        name: "laptop".into(),
        principal: Arc::new(Principal {
            id: "p".into(),
            kind: PrincipalKind::User,
            name: "Ada".into(),
            email: "ada@example.com".into(),
        }),
        group_ids: vec!["g2".into(), "g1".into(), "g-gone".into()],
        expires_at_unix_s: None,
        access: ModelAccess::All,
    }));
    assert_eq!(group_names(&caller, &snapshot), "admins,eng,g-gone");
    assert_eq!(crate::usage::api_key_name(&caller), "laptop");
}
