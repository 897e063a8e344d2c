//! `tollgate admin limits`: rate limits (requests and tokens per minute, requests in flight)
//! and upstream ceilings, through the RateLimitAdmin service.

use anyhow::Context as _;
use tollgate_proto::v1 as pb;

use super::super::args::{LimitExplainArgs, LimitScopeArgs, LimitSetArgs, LimitsCmd};
use super::super::client::AdminClient;
use super::identity::format_instant_ms;
use super::{explain, status};
use crate::report::{Format, Report};

pub(super) async fn limits(
    client: &mut AdminClient,
    cmd: LimitsCmd,
    format: Format,
) -> anyhow::Result<String> {
    match cmd {
        LimitsCmd::Set(args) => {
            let mut r = limit_report();
            let mut done: Vec<&'static str> = Vec::new();
            for req in set_requests(args)? {
                let kind = kind_name(req.kind);
                let info = client
                    .limits()
                    .set_rate_limit(req)
                    .await
                    .map_err(status)
                    .with_context(|| {
                        if done.is_empty() {
                            format!("cannot set the {kind} limit")
                        } else {
                            format!(
                                "cannot set the {kind} limit (already set: {})",
                                done.join(", ")
                            )
                        }
                    })?
                    .into_inner();
                done.push(kind);
                r.push(limit_row(info));
            }
            Ok(r.render(format))
        }
        LimitsCmd::List => {
            let resp = client
                .limits()
                .list_rate_limits(pb::ListRateLimitsRequest {})
                .await
                .map_err(status)?
                .into_inner();
            let mut r = limit_report();
            resp.limits.into_iter().for_each(|l| r.push(limit_row(l)));
            Ok(r.render(format))
        }
        LimitsCmd::Delete { id } => {
            client
                .limits()
                .delete_rate_limit(pb::DeleteRateLimitRequest { id })
                .await
                .map_err(status)?;
            Ok(limit_report().render(format))
        }
        LimitsCmd::Explain(args) => explain(client, args, format).await,
    }
}

/// One `SetRateLimit` request per limit given, in the order rpm, input, output, concurrency.
pub(super) fn set_requests(args: LimitSetArgs) -> anyhow::Result<Vec<pb::SetRateLimitRequest>> {
    if args.per_member && args.scope.group.is_none() {
        anyhow::bail!("--per-member applies to group limits only (--group NAME)");
    }
    let (scope, scope_ref) = scope_of(args.scope);
    let model = args.model.unwrap_or_default();
    let v = args.values;
    Ok([
        (pb::RateLimitKind::RequestsPerMinute, v.rpm),
        (pb::RateLimitKind::InputTokensPerMinute, v.input_tpm),
        (pb::RateLimitKind::OutputTokensPerMinute, v.output_tpm),
        (pb::RateLimitKind::ConcurrentRequests, v.concurrency),
    ]
    .into_iter()
    .filter_map(|(kind, limit)| {
        limit.map(|limit| pb::SetRateLimitRequest {
            scope: scope as i32,
            scope_ref: scope_ref.clone(),
            per_member: args.per_member,
            model: model.clone(),
            kind: kind as i32,
            limit,
        })
    })
    .collect())
}

fn scope_of(s: LimitScopeArgs) -> (pb::RateLimitScope, String) {
    match (s.group, s.user, s.key, s.provider) {
        (Some(g), ..) => (pb::RateLimitScope::Group, g),
        (None, Some(u), ..) => (pb::RateLimitScope::User, u),
        (None, None, Some(k), _) => (pb::RateLimitScope::Key, k),
        (None, None, None, Some(p)) => (pb::RateLimitScope::Provider, p),
        (None, None, None, None) => (pb::RateLimitScope::Org, String::new()),
    }
}

fn scope_name(scope: i32) -> &'static str {
    match pb::RateLimitScope::try_from(scope) {
        Ok(pb::RateLimitScope::Org) => "org",
        Ok(pb::RateLimitScope::Group) => "group",
        Ok(pb::RateLimitScope::User) => "user",
        Ok(pb::RateLimitScope::Key) => "key",
        Ok(pb::RateLimitScope::Provider) => "provider",
        _ => "unknown",
    }
}

/// The kind's name as the database, the CLI and the metrics spell it.
fn kind_name(kind: i32) -> &'static str {
    match pb::RateLimitKind::try_from(kind) {
        Ok(pb::RateLimitKind::RequestsPerMinute) => "requests_per_minute",
        Ok(pb::RateLimitKind::InputTokensPerMinute) => "input_tokens_per_minute",
        Ok(pb::RateLimitKind::OutputTokensPerMinute) => "output_tokens_per_minute",
        Ok(pb::RateLimitKind::ConcurrentRequests) => "concurrent_requests",
        _ => "unknown",
    }
}

fn is_concurrency(kind: i32) -> bool {
    pb::RateLimitKind::try_from(kind) == Ok(pb::RateLimitKind::ConcurrentRequests)
}

/// `shared` or `per member` for group limits, `-` otherwise.
fn sharing(l: &pb::RateLimitInfo) -> &'static str {
    match (pb::RateLimitScope::try_from(l.scope), l.per_member) {
        (Ok(pb::RateLimitScope::Group), true) => "per member",
        (Ok(pb::RateLimitScope::Group), false) => "shared",
        _ => "-",
    }
}

/// The model a limit counts, `*` for every model.
fn model_cell(model: &str) -> String {
    if model.is_empty() {
        "*".to_owned()
    } else {
        model.to_owned()
    }
}

/// Milliseconds as seconds with one decimal, e.g. `12.5s`.
fn seconds_cell(ms: u64) -> String {
    format!("{}.{}s", ms / 1000, (ms % 1000) / 100)
}

/// The columns of [`limit_cells`] after the id.
const LIMIT_COLUMNS: [&str; 6] = ["scope", "name", "sharing", "model", "kind", "limit"];

fn limit_report() -> Report {
    Report::new(
        ["id"]
            .into_iter()
            .chain(LIMIT_COLUMNS)
            .chain(["updated_at"]),
    )
}

fn limit_row(l: pb::RateLimitInfo) -> Vec<String> {
    let mut row = limit_cells(&l);
    row.push(format_instant_ms(l.updated_at_unix_ms));
    row
}

/// The cells both tables start with: id, scope, name, sharing, model, kind and limit.
fn limit_cells(l: &pb::RateLimitInfo) -> Vec<String> {
    vec![
        l.id.clone(),
        scope_name(l.scope).to_owned(),
        l.scope_name.clone(),
        sharing(l).to_owned(),
        model_cell(&l.model),
        kind_name(l.kind).to_owned(),
        l.limit.to_string(),
    ]
}

async fn explain(
    client: &mut AdminClient,
    args: LimitExplainArgs,
    format: Format,
) -> anyhow::Result<String> {
    let req = pb::ExplainRateLimitsRequest {
        user: args.who.user.unwrap_or_default(),
        api_key_id: args.who.key.unwrap_or_default(),
        model: args.model.unwrap_or_default(),
    };
    let resp = client
        .limits()
        .explain_rate_limits(req)
        .await
        .map_err(status)?
        .into_inner();
    let r = explain_report(&resp);
    Ok(explain::render(|| explain_summary(&resp), &r, format))
}

/// A limit for humans: "group eng (per member) requests_per_minute limit on claude-x".
fn describe(l: &pb::RateLimitInfo) -> String {
    let mut s = match pb::RateLimitScope::try_from(l.scope) {
        Ok(pb::RateLimitScope::Org) => "org".to_owned(),
        _ => format!("{} {}", scope_name(l.scope), l.scope_name),
    };
    if sharing(l) == "per member" {
        s.push_str(" (per member)");
    }
    s.push(' ');
    s.push_str(kind_name(l.kind));
    s.push_str(" limit");
    if !l.model.is_empty() {
        s.push_str(" on ");
        s.push_str(&l.model);
    }
    s
}

/// One line naming the principal, their groups and whether (and by what) they are blocked.
pub(super) fn explain_summary(resp: &pb::ExplainRateLimitsResponse) -> String {
    let summary = explain::Summary {
        principal_name: &resp.principal_name,
        principal_id: &resp.principal_id,
        group_names: &resp.group_names,
        applying: resp.standings.len(),
        blocked: resp.blocked,
        noun: "limit",
        none_applies: "no rate limit applies",
    };
    summary.line(|| {
        resp.standings
            .iter()
            .filter(|s| s.blocks)
            .map(|s| match &s.limit {
                Some(l) => describe(l),
                None => "a limit".to_owned(),
            })
            .collect()
    })
}

pub(super) fn explain_report(resp: &pb::ExplainRateLimitsResponse) -> Report {
    let mut r = Report::new(["limit_id"].into_iter().chain(LIMIT_COLUMNS).chain([
        "available",
        "held",
        "full_in",
        "blocks",
        "explanation",
    ]));
    for s in &resp.standings {
        let l = s.limit.clone().unwrap_or_default();
        let concurrency = is_concurrency(l.kind);
        let mut row = limit_cells(&l);
        row.extend([
            s.available.to_string(),
            if concurrency {
                s.held.to_string()
            } else {
                "-".to_owned()
            },
            if concurrency {
                "-".to_owned()
            } else {
                seconds_cell(s.full_in_ms)
            },
            if s.blocks { "BLOCKS" } else { "-" }.to_owned(),
            s.explanation.clone(),
        ]);
        r.push(row);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::{AdminCommand, parse_args};

    fn set_args(words: &[&str]) -> LimitSetArgs {
        let argv = ["limits", "set"].iter().chain(words).copied();
        match parse_args(argv) {
            Ok(a) => match a.command {
                AdminCommand::Limits(LimitsCmd::Set(s)) => s,
                other => unreachable!("{other:?}"),
            },
            Err(e) => unreachable!("{words:?}: {e}"),
        }
    }

    #[test]
    fn each_kind_given_becomes_one_request_for_the_same_scope_and_model() {
        let reqs = set_requests(set_args(&[
            "--group",
            "eng",
            "--per-member",
            "--model",
            "claude-sonnet-4-5",
            "--concurrency",
            "4",
            "--rpm",
            "60",
            "--output-tpm",
            "40000",
        ]))
        .unwrap();
        let kinds: Vec<(i32, u64)> = reqs.iter().map(|r| (r.kind, r.limit)).collect();
        assert_eq!(
            kinds,
            [
                (pb::RateLimitKind::RequestsPerMinute as i32, 60),
                (pb::RateLimitKind::OutputTokensPerMinute as i32, 40_000),
                (pb::RateLimitKind::ConcurrentRequests as i32, 4),
            ]
        );
        for r in &reqs {
            assert_eq!(r.scope, pb::RateLimitScope::Group as i32);
            assert_eq!(r.scope_ref, "eng");
            assert_eq!(r.model, "claude-sonnet-4-5");
            assert!(r.per_member);
        }
    }

    #[test]
    fn org_user_key_and_provider_scopes() {
        let org = set_requests(set_args(&["--org", "--input-tpm", "1000000"])).unwrap();
        assert_eq!(org.len(), 1);
        assert_eq!(
            (
                org[0].scope,
                org[0].scope_ref.as_str(),
                org[0].model.as_str()
            ),
            (pb::RateLimitScope::Org as i32, "", "")
        );
        assert_eq!(org[0].kind, pb::RateLimitKind::InputTokensPerMinute as i32);
        for (flag, scope) in [
            ("--user", pb::RateLimitScope::User),
            ("--key", pb::RateLimitScope::Key),
            ("--provider", pb::RateLimitScope::Provider),
        ] {
            let r = set_requests(set_args(&[flag, "x", "--rpm", "5"])).unwrap();
            assert_eq!((r[0].scope, r[0].scope_ref.as_str()), (scope as i32, "x"));
            assert!(!r[0].per_member);
        }
    }

    #[test]
    fn set_needs_exactly_one_scope_and_at_least_one_positive_limit() {
        let try_set = |words: &[&str]| parse_args(["limits", "set"].iter().chain(words).copied());
        assert!(try_set(&["--rpm", "1"]).is_err(), "a scope is required");
        assert!(try_set(&["--org"]).is_err(), "a limit is required");
        assert!(try_set(&["--org", "--user", "a@b.c", "--rpm", "1"]).is_err());
        assert!(try_set(&["--group", "g", "--provider", "p", "--rpm", "1"]).is_err());
        assert!(try_set(&["--org", "--rpm", "0"]).is_err());
        assert!(try_set(&["--org", "--input-tpm", "1000000000001"]).is_err());
        assert!(try_set(&["--org", "--input-tpm", "1000000000000"]).is_ok());
        assert!(try_set(&["--org", "--concurrency", "-1"]).is_err());
        assert!(try_set(&["--org", "--rpm", "ten"]).is_err());
        let per_member_user = set_args(&["--user", "a@b.c", "--per-member", "--rpm", "1"]);
        assert!(
            set_requests(per_member_user).is_err(),
            "--per-member is for group limits only"
        );
        let per_member_group = set_args(&["--group", "g", "--per-member", "--rpm", "1"]);
        assert!(set_requests(per_member_group).is_ok());
    }

    #[test]
    fn explain_takes_a_user_or_a_key_and_an_optional_model() {
        assert!(parse_args(["limits", "explain"]).is_err());
        assert!(parse_args(["limits", "explain", "--user", "a", "--key", "b"]).is_err());
        assert!(parse_args(["limits", "explain", "--model", "m"]).is_err());
        let a = parse_args(["limits", "explain", "--key", "k1", "--model", "m"]).unwrap();
        let AdminCommand::Limits(LimitsCmd::Explain(e)) = a.command else {
            unreachable!()
        };
        assert_eq!(
            (e.who.key.as_deref(), e.who.user, e.model.as_deref()),
            (Some("k1"), None, Some("m"))
        );
        assert!(matches!(
            parse_args(["limits", "delete", "l1"]).unwrap().command,
            AdminCommand::Limits(LimitsCmd::Delete { id }) if id == "l1"
        ));
        assert!(parse_args(["limits", "delete"]).is_err());
    }

    fn info(scope: pb::RateLimitScope, name: &str, kind: pb::RateLimitKind) -> pb::RateLimitInfo {
        pb::RateLimitInfo {
            id: format!("l-{name}"),
            scope: scope as i32,
            scope_name: name.into(),
            kind: kind as i32,
            limit: 10,
            ..Default::default()
        }
    }

    /// A per-member requests-per-minute limit of group `eng`.
    fn eng_rpm_per_member() -> pb::RateLimitInfo {
        pb::RateLimitInfo {
            per_member: true,
            ..info(
                pb::RateLimitScope::Group,
                "eng",
                pb::RateLimitKind::RequestsPerMinute,
            )
        }
    }

    #[test]
    fn list_rows_show_every_model_as_a_star_and_group_sharing() {
        let row = limit_row(eng_rpm_per_member());
        assert_eq!(
            row[..7],
            [
                "l-eng",
                "group",
                "eng",
                "per member",
                "*",
                "requests_per_minute",
                "10"
            ]
        );
        let mut provider = info(
            pb::RateLimitScope::Provider,
            "bedrock-us",
            pb::RateLimitKind::ConcurrentRequests,
        );
        provider.model = "us.anthropic.claude".into();
        let row = limit_row(provider);
        assert_eq!(
            row[1..6],
            [
                "provider",
                "bedrock-us",
                "-",
                "us.anthropic.claude",
                "concurrent_requests"
            ]
        );
    }

    #[test]
    fn explain_names_what_blocks_and_shows_slots_for_concurrency() {
        let group = eng_rpm_per_member();
        let resp = pb::ExplainRateLimitsResponse {
            principal_id: "p1".into(),
            principal_name: "alice@example.com".into(),
            group_names: vec!["eng".into()],
            standings: vec![
                pb::RateLimitStanding {
                    limit: Some(group),
                    available: 0,
                    full_in_ms: 6_250,
                    blocks: true,
                    explanation: "group eng requests/min: 0 of 10 left".into(),
                    ..Default::default()
                },
                pb::RateLimitStanding {
                    limit: Some(info(
                        pb::RateLimitScope::User,
                        "alice@example.com",
                        pb::RateLimitKind::ConcurrentRequests,
                    )),
                    available: 3,
                    held: 7,
                    ..Default::default()
                },
            ],
            blocked: true,
        };
        assert_eq!(
            explain_summary(&resp),
            "alice@example.com (p1, groups: eng): BLOCKED by the group eng (per member) \
             requests_per_minute limit"
        );
        let r = explain_report(&resp);
        let col = |name: &str| r.columns.iter().position(|c| c == name).unwrap();
        assert_eq!(r.rows[0][col("blocks")], "BLOCKS");
        assert_eq!(r.rows[0][col("full_in")], "6.2s");
        assert_eq!(r.rows[0][col("held")], "-");
        assert_eq!(r.rows[1][col("blocks")], "-");
        assert_eq!(r.rows[1][col("available")], "3");
        assert_eq!(r.rows[1][col("held")], "7");
        assert_eq!(r.rows[1][col("full_in")], "-");

        let open = pb::ExplainRateLimitsResponse {
            principal_id: "p2".into(),
            principal_name: "ci".into(),
            ..Default::default()
        };
        assert_eq!(
            explain_summary(&open),
            "ci (p2, no groups): no rate limit applies"
        );
    }
}
