//! UTC calendar windows on Unix seconds: days, weeks starting Monday, calendar months.
//!
//! Civil-date conversion after Howard Hinnant's `days_from_civil` / `civil_from_days`
//! (proleptic Gregorian, exact for every `i64` day count the callers can produce).

use super::Period;

const SECONDS_PER_DAY: i64 = 86_400;

/// A half-open interval `[start, end)` of Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    pub start_unix_s: i64,
    pub end_unix_s: i64,
}

impl Window {
    pub fn contains(&self, unix_s: i64) -> bool {
        self.start_unix_s <= unix_s && unix_s < self.end_unix_s
    }

    /// Seconds from `now` until the window ends (at least 1).
    pub fn seconds_until_reset(&self, now_unix_s: i64) -> i64 {
        (self.end_unix_s - now_unix_s).max(1)
    }
}

pub(super) fn window(period: Period, now_unix_s: i64) -> Window {
    let day = now_unix_s.div_euclid(SECONDS_PER_DAY);
    let (start_day, end_day) = match period {
        Period::Daily => (day, day + 1),
        Period::Weekly => {
            // 1970-01-01 was a Thursday: Monday-based weekday = (day + 3) mod 7.
            let start = day - (day + 3).rem_euclid(7);
            (start, start + 7)
        }
        Period::Monthly => {
            let (y, m, _) = civil_from_days(day);
            let start = days_from_civil(y, m, 1);
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            (start, days_from_civil(ny, nm, 1))
        }
    };
    Window {
        start_unix_s: start_day * SECONDS_PER_DAY,
        end_unix_s: end_day * SECONDS_PER_DAY,
    }
}

/// (year, month 1–12, day 1–31) of a Unix instant, UTC.
pub fn civil_from_unix_s(unix_s: i64) -> (i64, u32, u32) {
    civil_from_days(unix_s.div_euclid(SECONDS_PER_DAY))
}

/// Unix seconds of midnight UTC at the start of the given civil date.
pub fn unix_s_from_civil(year: i64, month: u32, day: u32) -> i64 {
    days_from_civil(year, month, day) * SECONDS_PER_DAY
}

fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are in range by construction (1–31, 1–12).
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}
