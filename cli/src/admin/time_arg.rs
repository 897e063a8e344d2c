//! Parsing of the time arguments the admin commands take.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

/// `YYYY-MM-DD` (midnight UTC) or RFC 3339 → Unix seconds.
pub fn parse_instant(s: &str) -> Result<i64, String> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d
            .and_hms_opt(0, 0, 0)
            .map(|dt| dt.and_utc().timestamp())
            .ok_or_else(|| format!("invalid date `{s}`"));
    }
    DateTime::parse_from_rfc3339(s)
        .map(|dt| dt.timestamp())
        .map_err(|_| format!("`{s}` is neither YYYY-MM-DD nor an RFC 3339 timestamp"))
}

/// `30d`, `12h`, `90m`, `45s` → a duration.
pub fn parse_duration(s: &str) -> Result<TimeDelta, String> {
    let bad = || format!("`{s}` is not a duration like 30d, 12h, 90m or 45s");
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = num.parse().map_err(|_| bad())?;
    if n <= 0 {
        return Err(bad());
    }
    let d = match unit {
        "d" => TimeDelta::try_days(n),
        "h" => TimeDelta::try_hours(n),
        "m" => TimeDelta::try_minutes(n),
        "s" => TimeDelta::try_seconds(n),
        _ => None,
    };
    d.ok_or_else(bad)
}

/// Unix seconds → RFC 3339 (UTC), or `-` for 0.
pub fn format_instant(unix_s: i64) -> String {
    if unix_s == 0 {
        return "-".to_owned();
    }
    DateTime::<Utc>::from_timestamp(unix_s, 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| unix_s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dates_and_rfc3339() {
        assert_eq!(parse_instant("2026-01-02").unwrap(), 1_767_312_000);
        assert_eq!(
            parse_instant("2026-01-02T00:00:00Z").unwrap(),
            1_767_312_000
        );
        assert!(parse_instant("yesterday").is_err());
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("30d").unwrap(), TimeDelta::days(30));
        assert_eq!(parse_duration("90m").unwrap(), TimeDelta::minutes(90));
        assert!(parse_duration("0d").is_err());
        assert!(parse_duration("3w").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn formats_zero_as_dash() {
        assert_eq!(format_instant(0), "-");
        assert_eq!(format_instant(1_767_312_000), "2026-01-02T00:00:00Z");
    }
}
