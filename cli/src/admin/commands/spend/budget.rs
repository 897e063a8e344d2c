//! `tollgate admin budget`: spend caps, what applies to a user, and the spend settings.

use anyhow::Context as _;
use tollgate_proto::v1 as pb;

use super::super::super::args::{
    BudgetCmd, BudgetExplainArgs, BudgetScopeArgs, BudgetSetArgs, BudgetSettingsCmd,
    BudgetSettingsSetArgs, OutageModeArg, PeriodArg,
};
use super::super::super::client::AdminClient;
use super::super::identity::format_instant_ms;
use super::super::{explain, status};
use super::{instant_cell, usd_cell};
use crate::report::{Format, Report};

pub(in super::super) async fn budget(
    client: &mut AdminClient,
    cmd: BudgetCmd,
    format: Format,
) -> anyhow::Result<String> {
    match cmd {
        BudgetCmd::Set(args) => {
            let info = client
                .spend()
                .set_budget(set_request(args)?)
                .await
                .map_err(status)?
                .into_inner();
            let mut r = budget_report();
            r.push(budget_row(info));
            Ok(r.render(format))
        }
        BudgetCmd::List => {
            let resp = client
                .spend()
                .list_budgets(pb::ListBudgetsRequest {})
                .await
                .map_err(status)?
                .into_inner();
            let mut r = budget_report();
            resp.budgets.into_iter().for_each(|b| r.push(budget_row(b)));
            Ok(r.render(format))
        }
        BudgetCmd::Delete { id } => {
            client
                .spend()
                .delete_budget(pb::DeleteBudgetRequest { id })
                .await
                .map_err(status)?;
            Ok(budget_report().render(format))
        }
        BudgetCmd::Explain(args) => explain(client, args, format).await,
        BudgetCmd::Settings(cmd) => settings(client, cmd, format).await,
    }
}

/// The `SetBudget` request for the command line's arguments.
pub(super) fn set_request(args: BudgetSetArgs) -> anyhow::Result<pb::SetBudgetRequest> {
    if args.per_member && args.scope.group.is_none() {
        anyhow::bail!("--per-member applies to group caps only (--group NAME)");
    }
    if let Some(p) = args.alert.iter().find(|p| **p == 0) {
        anyhow::bail!("alert thresholds are whole percents above 0, got {p}");
    }
    let (scope, scope_ref) = scope_of(args.scope);
    Ok(pb::SetBudgetRequest {
        scope: scope as i32,
        scope_ref,
        period: period_pb(args.period) as i32,
        limit_micro_usd: args.limit_usd,
        per_member: args.per_member,
        alert_thresholds_percent: args.alert,
    })
}

fn scope_of(s: BudgetScopeArgs) -> (pb::BudgetScope, String) {
    match (s.group, s.user, s.key) {
        (Some(g), _, _) => (pb::BudgetScope::Group, g),
        (None, Some(u), _) => (pb::BudgetScope::User, u),
        (None, None, Some(k)) => (pb::BudgetScope::Key, k),
        (None, None, None) => (pb::BudgetScope::Org, String::new()),
    }
}

fn period_pb(p: PeriodArg) -> pb::BudgetPeriod {
    match p {
        PeriodArg::Daily => pb::BudgetPeriod::Daily,
        PeriodArg::Weekly => pb::BudgetPeriod::Weekly,
        PeriodArg::Monthly => pb::BudgetPeriod::Monthly,
    }
}

fn scope_name(scope: i32) -> &'static str {
    match pb::BudgetScope::try_from(scope) {
        Ok(pb::BudgetScope::Org) => "org",
        Ok(pb::BudgetScope::Group) => "group",
        Ok(pb::BudgetScope::User) => "user",
        Ok(pb::BudgetScope::Key) => "key",
        _ => "unknown",
    }
}

fn period_name(period: i32) -> &'static str {
    match pb::BudgetPeriod::try_from(period) {
        Ok(pb::BudgetPeriod::Daily) => "daily",
        Ok(pb::BudgetPeriod::Weekly) => "weekly",
        Ok(pb::BudgetPeriod::Monthly) => "monthly",
        _ => "unknown",
    }
}

/// `pool` or `per member` for group caps, `-` otherwise.
fn sharing(b: &pb::BudgetInfo) -> &'static str {
    match (pb::BudgetScope::try_from(b.scope), b.per_member) {
        (Ok(pb::BudgetScope::Group), true) => "per member",
        (Ok(pb::BudgetScope::Group), false) => "pool",
        _ => "-",
    }
}

fn join_percents(p: &[u32]) -> String {
    p.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

fn budget_report() -> Report {
    Report::new([
        "id",
        "scope",
        "name",
        "period",
        "limit_usd",
        "sharing",
        "alerts_percent",
        "updated_at",
    ])
}

fn budget_row(b: pb::BudgetInfo) -> Vec<String> {
    vec![
        b.id.clone(),
        scope_name(b.scope).to_owned(),
        b.scope_name.clone(),
        period_name(b.period).to_owned(),
        usd_cell(b.limit_micro_usd),
        sharing(&b).to_owned(),
        join_percents(&b.alert_thresholds_percent),
        format_instant_ms(b.updated_at_unix_ms),
    ]
}

async fn explain(
    client: &mut AdminClient,
    args: BudgetExplainArgs,
    format: Format,
) -> anyhow::Result<String> {
    let req = pb::ExplainBudgetRequest {
        user: args.user.unwrap_or_default(),
        api_key_id: args.key.unwrap_or_default(),
    };
    let resp = client
        .spend()
        .explain_budget(req)
        .await
        .map_err(status)?
        .into_inner();
    let r = explain_report(&resp);
    Ok(explain::render(|| explain_summary(&resp), &r, format))
}

/// One line naming the principal, their groups and whether (and by what) they are blocked.
pub(super) fn explain_summary(resp: &pb::ExplainBudgetResponse) -> String {
    let summary = explain::Summary {
        principal_name: &resp.principal_name,
        principal_id: &resp.principal_id,
        group_names: &resp.group_names,
        applying: resp.standings.len(),
        blocked: resp.blocked,
        noun: "cap",
        none_applies: "no cap applies",
    };
    summary.line(|| {
        resp.standings
            .iter()
            .filter(|s| s.blocks)
            .map(|s| match &s.budget {
                Some(b) => format!(
                    "{} {} {} cap",
                    scope_name(b.scope),
                    b.scope_name,
                    period_name(b.period)
                ),
                None => "a cap".to_owned(),
            })
            .collect()
    })
}

pub(super) fn explain_report(resp: &pb::ExplainBudgetResponse) -> Report {
    let mut r = Report::new([
        "budget_id",
        "scope",
        "name",
        "period",
        "sharing",
        "spent_usd",
        "leased_usd",
        "remaining_usd",
        "limit_usd",
        "window_start",
        "resets_at",
        "blocks",
        "explanation",
    ]);
    for s in &resp.standings {
        let b = s.budget.clone().unwrap_or_default();
        r.push(vec![
            b.id.clone(),
            scope_name(b.scope).to_owned(),
            b.scope_name.clone(),
            period_name(b.period).to_owned(),
            sharing(&b).to_owned(),
            usd_cell(s.spent_micro_usd),
            usd_cell(s.leased_micro_usd),
            usd_cell(s.remaining_micro_usd),
            usd_cell(b.limit_micro_usd),
            instant_cell(s.window_start_unix_s),
            instant_cell(s.resets_at_unix_s),
            if s.blocks { "BLOCKS" } else { "-" }.to_owned(),
            s.explanation.clone(),
        ]);
    }
    r
}

async fn settings(
    client: &mut AdminClient,
    cmd: BudgetSettingsCmd,
    format: Format,
) -> anyhow::Result<String> {
    let info = match cmd {
        BudgetSettingsCmd::Show => client
            .spend()
            .get_budget_settings(pb::GetBudgetSettingsRequest {})
            .await
            .map_err(status)?
            .into_inner(),
        BudgetSettingsCmd::Set(args) => client
            .spend()
            .set_budget_settings(settings_request(args)?)
            .await
            .map_err(status)?
            .into_inner(),
    };
    Ok(settings_report(&info).render(format))
}

/// The `SetBudgetSettings` request: unset options keep their current value.
pub(super) fn settings_request(
    args: BudgetSettingsSetArgs,
) -> anyhow::Result<pb::SetBudgetSettingsRequest> {
    let alert_webhook_secret = match &args.webhook_secret_file {
        Some(path) => {
            let s = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .trim()
                .to_owned();
            if s.is_empty() {
                anyhow::bail!("{} is empty", path.display());
            }
            s
        }
        None => String::new(),
    };
    Ok(pb::SetBudgetSettingsRequest {
        outage_mode: match args.outage_mode {
            None => pb::OutageMode::Unspecified,
            Some(OutageModeArg::Closed) => pb::OutageMode::Closed,
            Some(OutageModeArg::Open) => pb::OutageMode::Open,
        } as i32,
        lease_ttl_s: args.lease_ttl_s.unwrap_or(0),
        input_bytes_per_token: args.input_bytes_per_token.unwrap_or(0),
        output_estimate_max_tokens: args.output_estimate_max_tokens.map_or(-1, i64::from),
        alert_webhook_url: args.webhook_url.unwrap_or_default(),
        alert_webhook_secret,
        clear_webhook: args.clear_webhook,
    })
}

fn settings_report(info: &pb::BudgetSettingsInfo) -> Report {
    let mut r = Report::new(["setting", "value"]);
    let outage = match pb::OutageMode::try_from(info.outage_mode) {
        Ok(pb::OutageMode::Open) => "open",
        _ => "closed",
    };
    let output = if info.output_estimate_max_tokens == 0 {
        "max_tokens as sent".to_owned()
    } else {
        info.output_estimate_max_tokens.to_string()
    };
    let url = if info.alert_webhook_url.is_empty() {
        "-".to_owned()
    } else {
        info.alert_webhook_url.clone()
    };
    for (k, v) in [
        ("outage_mode", outage.to_owned()),
        ("lease_ttl_s", info.lease_ttl_s.to_string()),
        (
            "input_bytes_per_token",
            info.input_bytes_per_token.to_string(),
        ),
        ("output_estimate_max_tokens", output),
        ("webhook_url", url),
        (
            "webhook_secret_set",
            info.alert_webhook_secret_set.to_string(),
        ),
    ] {
        r.push(vec![k.to_owned(), v]);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::{AdminCommand, parse_args};

    fn set_args(words: &[&str]) -> BudgetSetArgs {
        let argv = ["budget", "set"].iter().chain(words).copied();
        match parse_args(argv) {
            Ok(a) => match a.command {
                AdminCommand::Budget(BudgetCmd::Set(s)) => s,
                other => unreachable!("{other:?}"),
            },
            Err(e) => unreachable!("{words:?}: {e}"),
        }
    }

    #[test]
    fn group_cap_per_member_with_alerts_becomes_the_request() {
        let req = set_request(set_args(&[
            "--group",
            "eng",
            "--period",
            "daily",
            "--limit-usd",
            "20.00",
            "--per-member",
            "--alert",
            "50,80,100",
        ]))
        .unwrap();
        assert_eq!(req.scope, pb::BudgetScope::Group as i32);
        assert_eq!(req.scope_ref, "eng");
        assert_eq!(req.period, pb::BudgetPeriod::Daily as i32);
        assert_eq!(req.limit_micro_usd, 20_000_000);
        assert!(req.per_member);
        assert_eq!(req.alert_thresholds_percent, [50, 80, 100]);
    }

    #[test]
    fn org_user_and_key_scopes() {
        let org = set_request(set_args(&[
            "--org",
            "--period",
            "monthly",
            "--limit-usd",
            "1000",
        ]))
        .unwrap();
        assert_eq!(
            (org.scope, org.scope_ref.as_str()),
            (pb::BudgetScope::Org as i32, "")
        );
        assert!(org.alert_thresholds_percent.is_empty(), "server default");
        let user = set_request(set_args(&[
            "--user",
            "a@b.c",
            "--period",
            "weekly",
            "--limit-usd",
            "0.5",
        ]))
        .unwrap();
        assert_eq!(user.scope, pb::BudgetScope::User as i32);
        assert_eq!(user.limit_micro_usd, 500_000);
        let key = set_request(set_args(&[
            "--key",
            "k1",
            "--period",
            "daily",
            "--limit-usd",
            "1",
        ]))
        .unwrap();
        assert_eq!(
            (key.scope, key.scope_ref.as_str()),
            (pb::BudgetScope::Key as i32, "k1")
        );
    }

    #[test]
    fn exactly_one_scope_and_per_member_only_for_groups() {
        let try_set = |extra: &[&str]| {
            parse_args(
                ["budget", "set", "--period", "daily", "--limit-usd", "1"]
                    .iter()
                    .chain(extra)
                    .copied(),
            )
        };
        assert!(try_set(&[]).is_err(), "a scope is required");
        assert!(try_set(&["--org", "--user", "a@b.c"]).is_err());
        let per_member_user = set_args(&[
            "--user",
            "a@b.c",
            "--per-member",
            "--period",
            "daily",
            "--limit-usd",
            "1",
        ]);
        assert!(set_request(per_member_user).is_err());
        assert!(try_set(&["--org", "--limit-usd", "-1"]).is_err());
        assert!(try_set(&["--org", "--period", "hourly"]).is_err());
        assert!(
            parse_args([
                "budget",
                "set",
                "--org",
                "--period",
                "daily",
                "--limit-usd",
                "1.1234567"
            ])
            .is_err()
        );
        assert!(parse_args(["budget", "explain"]).is_err());
        assert!(parse_args(["budget", "explain", "--user", "a", "--key", "b"]).is_err());
        assert!(parse_args(["budget", "explain", "--key", "b"]).is_ok());
    }

    fn settings_args(words: &[&str]) -> anyhow::Result<BudgetSettingsSetArgs> {
        let a = parse_args(["budget", "settings", "set"].iter().chain(words).copied())?;
        match a.command {
            AdminCommand::Budget(BudgetCmd::Settings(BudgetSettingsCmd::Set(s))) => Ok(s),
            other => unreachable!("{other:?}"),
        }
    }

    #[test]
    fn settings_leave_unset_fields_unchanged() {
        let req = settings_request(settings_args(&[]).unwrap()).unwrap();
        assert_eq!(req.outage_mode, pb::OutageMode::Unspecified as i32);
        assert_eq!((req.lease_ttl_s, req.input_bytes_per_token), (0, 0));
        assert_eq!(req.output_estimate_max_tokens, -1);
        assert!(!req.clear_webhook && req.alert_webhook_url.is_empty());

        let req = settings_request(
            settings_args(&[
                "--outage-mode",
                "open",
                "--lease-ttl-s",
                "2",
                "--input-bytes-per-token",
                "1",
                "--output-estimate-max-tokens",
                "0",
            ])
            .unwrap(),
        )
        .unwrap();
        assert_eq!(req.outage_mode, pb::OutageMode::Open as i32);
        assert_eq!((req.lease_ttl_s, req.input_bytes_per_token), (2, 1));
        assert_eq!(req.output_estimate_max_tokens, 0, "0 = max_tokens as sent");
    }

    #[test]
    fn settings_reject_out_of_range_and_conflicting_webhook_options() {
        assert!(settings_args(&["--lease-ttl-s", "0"]).is_err());
        assert!(settings_args(&["--lease-ttl-s", "3601"]).is_err());
        assert!(settings_args(&["--input-bytes-per-token", "65"]).is_err());
        assert!(settings_args(&["--outage-mode", "maybe"]).is_err());
        assert!(settings_args(&["--clear-webhook", "--webhook-url", "http://x"]).is_err());
    }

    #[test]
    fn webhook_secret_is_read_from_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\n").unwrap();
        let p = path.to_str().unwrap();
        let req = settings_request(
            settings_args(&["--webhook-url", "http://hook", "--webhook-secret-file", p]).unwrap(),
        )
        .unwrap();
        assert_eq!(req.alert_webhook_secret, "s3cret");
        assert_eq!(req.alert_webhook_url, "http://hook");
    }

    fn standing(scope: pb::BudgetScope, name: &str, blocks: bool) -> pb::BudgetStanding {
        pb::BudgetStanding {
            budget: Some(pb::BudgetInfo {
                id: format!("b-{name}"),
                scope: scope as i32,
                scope_name: name.into(),
                period: pb::BudgetPeriod::Daily as i32,
                limit_micro_usd: 20_000_000,
                ..Default::default()
            }),
            spent_micro_usd: 12_400_000,
            leased_micro_usd: 1_000_000,
            remaining_micro_usd: 6_600_000,
            blocks,
            ..Default::default()
        }
    }

    #[test]
    fn explain_marks_what_blocks() {
        let resp = pb::ExplainBudgetResponse {
            principal_id: "p1".into(),
            principal_name: "alice@example.com".into(),
            group_names: vec!["eng".into()],
            standings: vec![
                standing(pb::BudgetScope::Group, "eng", false),
                standing(pb::BudgetScope::User, "alice@example.com", true),
            ],
            blocked: true,
        };
        let summary = explain_summary(&resp);
        assert_eq!(
            summary,
            "alice@example.com (p1, groups: eng): BLOCKED by the user alice@example.com daily cap"
        );
        let r = explain_report(&resp);
        let blocks = r.columns.iter().position(|c| c == "blocks").unwrap();
        let spent = r.columns.iter().position(|c| c == "spent_usd").unwrap();
        assert_eq!(r.rows[0][blocks], "-");
        assert_eq!(r.rows[1][blocks], "BLOCKS");
        assert_eq!(r.rows[1][spent], "12.40");
        assert_eq!(r.rows[0][4], "pool");
    }
}
