//! `tollgate admin spend`: spend reports over any range, and a user's daily series.

use anyhow::bail;
use chrono::{DateTime, Days, NaiveDate, Utc};
use tollgate_proto::v1 as pb;

use super::super::super::args::{SpendCmd, SpendDailyArgs, SpendReportArgs};
use super::super::super::client::AdminClient;
use super::super::super::time_arg::parse_instant;
use super::super::super::usd_arg::dollars;
use super::super::status;
use super::usd_cell;
use crate::report::{Format, Report};

/// Days shown by `spend daily` without `--from`.
const DEFAULT_DAILY_DAYS: u64 = 30;

pub(in super::super) async fn spend(
    client: &mut AdminClient,
    cmd: SpendCmd,
    format: Format,
) -> anyhow::Result<String> {
    match cmd {
        SpendCmd::Report(args) => {
            let names = if args.by.is_empty() {
                vec!["user".to_owned()]
            } else {
                args.by.clone()
            };
            let req = report_request(&args, &names)?;
            let resp = client
                .spend()
                .spend_report(req)
                .await
                .map_err(status)?
                .into_inner();
            let r = report_rows(&names, &resp);
            if format == Format::Table {
                let requests: u64 = resp.rows.iter().map(|r| r.requests).sum();
                return Ok(format!(
                    "{}\nTotal: {} over {requests} request(s)\n",
                    r.render(format),
                    dollars(resp.total_cost_micro_usd)
                ));
            }
            Ok(r.render(format))
        }
        SpendCmd::Daily(args) => daily(client, args, format).await,
    }
}

/// A report dimension by its command-line name.
pub(super) fn dimension(name: &str) -> anyhow::Result<pb::SpendDimension> {
    Ok(match name.trim() {
        "user" => pb::SpendDimension::User,
        "group" => pb::SpendDimension::Group,
        "key" => pb::SpendDimension::Key,
        "model" => pb::SpendDimension::Model,
        "provider" => pb::SpendDimension::Provider,
        "day" => pb::SpendDimension::Day,
        other => {
            bail!("cannot group spend by `{other}`: use user, group, key, model, provider or day")
        }
    })
}

fn instant(s: Option<&String>) -> anyhow::Result<i64> {
    s.map(|s| parse_instant(s).map_err(anyhow::Error::msg))
        .transpose()
        .map(Option::unwrap_or_default)
}

pub(super) fn report_request(
    args: &SpendReportArgs,
    names: &[String],
) -> anyhow::Result<pb::SpendReportRequest> {
    let group_by = names
        .iter()
        .map(|d| dimension(d).map(|d| d as i32))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(pb::SpendReportRequest {
        from_unix_s: instant(args.from.as_ref())?,
        to_unix_s: instant(args.to.as_ref())?,
        group_by,
        user: args.user.clone().unwrap_or_default(),
        group: args.group.clone().unwrap_or_default(),
        api_key_id: args.key.clone().unwrap_or_default(),
        model: args.model.clone().unwrap_or_default(),
        provider: args.provider.clone().unwrap_or_default(),
    })
}

const AMOUNT_COLUMNS: [&str; 8] = [
    "requests",
    "cost_usd",
    "cost_micro_usd",
    "input_tokens",
    "output_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "cache_read_tokens",
];

fn amount_cells(row: &pb::SpendRow) -> Vec<String> {
    vec![
        row.requests.to_string(),
        usd_cell(row.cost_micro_usd),
        row.cost_micro_usd.to_string(),
        row.input_tokens.to_string(),
        row.output_tokens.to_string(),
        row.cache_creation_5m_tokens.to_string(),
        row.cache_creation_1h_tokens.to_string(),
        row.cache_read_tokens.to_string(),
    ]
}

/// One column per dimension (named as given), then requests, cost and tokens.
pub(super) fn report_rows(names: &[String], resp: &pb::SpendReportResponse) -> Report {
    let mut columns: Vec<String> = names.iter().map(|n| n.trim().to_owned()).collect();
    columns.extend(AMOUNT_COLUMNS.map(String::from));
    let mut r = Report::new(columns);
    for row in &resp.rows {
        let mut cells = row.dimensions.clone();
        cells.resize(names.len(), String::new());
        cells.extend(amount_cells(row));
        r.push(cells);
    }
    r
}

fn day_of(arg: Option<&String>, default: NaiveDate) -> anyhow::Result<NaiveDate> {
    match arg {
        None => Ok(default),
        Some(s) => {
            let unix_s = parse_instant(s).map_err(anyhow::Error::msg)?;
            DateTime::<Utc>::from_timestamp(unix_s, 0)
                .map(|d| d.date_naive())
                .ok_or_else(|| anyhow::anyhow!("`{s}` is out of range"))
        }
    }
}

fn midnight(d: NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0)
        .map(|dt| dt.and_utc().timestamp())
        .unwrap_or_default()
}

/// The UTC days `[from, to)` of `spend daily`, defaulting to the last 30 days and today.
pub(super) fn daily_range(
    args: &SpendDailyArgs,
    today: NaiveDate,
) -> anyhow::Result<(NaiveDate, NaiveDate)> {
    let tomorrow = today.checked_add_days(Days::new(1)).unwrap_or(today);
    let to = day_of(args.to.as_ref(), tomorrow)?;
    let default_from = to
        .checked_sub_days(Days::new(DEFAULT_DAILY_DAYS))
        .unwrap_or(to);
    let from = day_of(args.from.as_ref(), default_from)?;
    if from >= to {
        bail!("--from must be before --to (which is exclusive)");
    }
    Ok((from, to))
}

/// One row per day of `[from, to)`, zero where the report has none.
pub(super) fn daily_series(
    from: NaiveDate,
    to: NaiveDate,
    resp: &pb::SpendReportResponse,
) -> Report {
    let mut columns = vec!["day".to_owned()];
    columns.extend(AMOUNT_COLUMNS.map(String::from));
    let mut r = Report::new(columns);
    let mut day = from;
    while day < to {
        let label = day.format("%Y-%m-%d").to_string();
        let row = resp
            .rows
            .iter()
            .find(|row| row.dimensions.first() == Some(&label))
            .cloned()
            .unwrap_or_default();
        let mut cells = vec![label];
        cells.extend(amount_cells(&row));
        r.push(cells);
        match day.checked_add_days(Days::new(1)) {
            Some(next) => day = next,
            None => break,
        }
    }
    r
}

async fn daily(
    client: &mut AdminClient,
    args: SpendDailyArgs,
    format: Format,
) -> anyhow::Result<String> {
    let (from, to) = daily_range(&args, Utc::now().date_naive())?;
    let req = pb::SpendReportRequest {
        from_unix_s: midnight(from),
        to_unix_s: midnight(to),
        group_by: vec![pb::SpendDimension::Day as i32],
        user: args.user.clone(),
        ..Default::default()
    };
    let resp = client
        .spend()
        .spend_report(req)
        .await
        .map_err(status)?
        .into_inner();
    let r = daily_series(from, to, &resp);
    if format == Format::Table {
        return Ok(format!(
            "{}\nTotal for {}: {}\n",
            r.render(format),
            args.user,
            dollars(resp.total_cost_micro_usd)
        ));
    }
    Ok(r.render(format))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::{AdminCommand, parse_args};

    fn spend_cmd(words: &[&str]) -> SpendCmd {
        match parse_args(["spend"].iter().chain(words).copied()) {
            Ok(a) => match a.command {
                AdminCommand::Spend(cmd) => cmd,
                other => unreachable!("{other:?}"),
            },
            Err(e) => unreachable!("{words:?}: {e}"),
        }
    }

    #[test]
    fn report_request_carries_range_dimensions_and_filters() {
        let SpendCmd::Report(args) = spend_cmd(&[
            "report",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-22",
            "--by",
            "user,model,day",
            "--group",
            "eng",
            "--model",
            "claude-sonnet-5",
            "--format",
            "csv",
        ]) else {
            unreachable!()
        };
        let req = report_request(&args, &args.by).unwrap();
        assert_eq!(req.from_unix_s, 1_793_491_200);
        assert_eq!(req.to_unix_s, 1_795_305_600);
        assert_eq!(
            req.group_by,
            [
                pb::SpendDimension::User as i32,
                pb::SpendDimension::Model as i32,
                pb::SpendDimension::Day as i32
            ]
        );
        assert_eq!(
            (req.group.as_str(), req.model.as_str()),
            ("eng", "claude-sonnet-5")
        );
        assert!(dimension("team").is_err());
    }

    #[test]
    fn report_csv_shows_cost_in_dollars_and_micro_dollars() {
        let resp = pb::SpendReportResponse {
            rows: vec![pb::SpendRow {
                dimensions: vec!["alice@example.com".into()],
                requests: 3,
                cost_micro_usd: 1_234_567,
                input_tokens: 10,
                output_tokens: 20,
                ..Default::default()
            }],
            total_cost_micro_usd: 1_234_567,
            ..Default::default()
        };
        let csv = report_rows(&["user".to_owned()], &resp).render(Format::Csv);
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some(
                "user,requests,cost_usd,cost_micro_usd,input_tokens,output_tokens,\
                 cache_write_5m_tokens,cache_write_1h_tokens,cache_read_tokens"
            )
        );
        assert_eq!(
            lines.next(),
            Some("alice@example.com,3,1.234567,1234567,10,20,0,0,0")
        );
    }

    #[test]
    fn daily_series_fills_days_without_spend() {
        let SpendCmd::Daily(args) = spend_cmd(&[
            "daily",
            "--user",
            "a@b.c",
            "--from",
            "2026-02-27",
            "--to",
            "2026-03-02",
        ]) else {
            unreachable!()
        };
        let today = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
        let (from, to) = daily_range(&args, today).unwrap();
        let resp = pb::SpendReportResponse {
            rows: vec![pb::SpendRow {
                dimensions: vec!["2026-02-28".into()],
                requests: 2,
                cost_micro_usd: 20_000_000,
                ..Default::default()
            }],
            ..Default::default()
        };
        let r = daily_series(from, to, &resp);
        let days: Vec<(&str, &str)> = r
            .rows
            .iter()
            .map(|row| (row[0].as_str(), row[2].as_str()))
            .collect();
        assert_eq!(
            days,
            [
                ("2026-02-27", "0.00"),
                ("2026-02-28", "20.00"),
                ("2026-03-01", "0.00")
            ]
        );
    }

    #[test]
    fn daily_defaults_to_the_last_thirty_days_and_needs_a_user() {
        let SpendCmd::Daily(args) = spend_cmd(&["daily", "--user", "a@b.c"]) else {
            unreachable!()
        };
        let today = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
        let (from, to) = daily_range(&args, today).unwrap();
        assert_eq!(to, NaiveDate::from_ymd_opt(2026, 11, 23).unwrap());
        assert_eq!(from, NaiveDate::from_ymd_opt(2026, 10, 24).unwrap());
        assert!(parse_args(["spend", "daily"]).is_err());
        let SpendCmd::Daily(bad) = spend_cmd(&[
            "daily",
            "--user",
            "a",
            "--from",
            "2026-03-02",
            "--to",
            "2026-03-02",
        ]) else {
            unreachable!()
        };
        assert!(daily_range(&bad, today).is_err());
    }
}
