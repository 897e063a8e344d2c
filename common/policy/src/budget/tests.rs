use proptest::prelude::*;

use super::*;

fn at(y: i64, m: u32, d: u32, hh: i64, mm: i64, ss: i64) -> i64 {
    unix_s_from_civil(y, m, d) + hh * 3600 + mm * 60 + ss
}

#[test]
fn a_day_ends_at_midnight_utc() {
    let w = Period::Daily.window(at(2026, 11, 22, 23, 59, 59));
    assert_eq!(w.start_unix_s, at(2026, 11, 22, 0, 0, 0));
    assert_eq!(w.end_unix_s, at(2026, 11, 23, 0, 0, 0));
    assert_eq!(w.seconds_until_reset(at(2026, 11, 22, 23, 59, 59)), 1);
    let next = Period::Daily.window(at(2026, 11, 23, 0, 0, 0));
    assert_eq!(next.start_unix_s, w.end_unix_s);
}

#[test]
fn weeks_start_on_monday() {
    // 2026-11-22 is a Sunday; 2026-11-23 a Monday.
    let sunday_night = Period::Weekly.window(at(2026, 11, 22, 23, 59, 59));
    assert_eq!(sunday_night.start_unix_s, at(2026, 11, 16, 0, 0, 0));
    assert_eq!(sunday_night.end_unix_s, at(2026, 11, 23, 0, 0, 0));
    let monday = Period::Weekly.window(at(2026, 11, 23, 0, 0, 0));
    assert_eq!(monday.start_unix_s, at(2026, 11, 23, 0, 0, 0));
    // The epoch (a Thursday) belongs to the week of Monday 1969-12-29.
    assert_eq!(
        Period::Weekly.window(0).start_unix_s,
        at(1969, 12, 29, 0, 0, 0)
    );
}

#[test]
fn months_end_at_the_first_of_the_next_month() {
    let w = Period::Monthly.window(at(2026, 12, 31, 23, 59, 59));
    assert_eq!(w.start_unix_s, at(2026, 12, 1, 0, 0, 0));
    assert_eq!(w.end_unix_s, at(2027, 1, 1, 0, 0, 0));
    let nov = Period::Monthly.window(at(2026, 11, 30, 12, 0, 0));
    assert_eq!(nov.end_unix_s - nov.start_unix_s, 30 * 86_400);
}

#[test]
fn leap_day_belongs_to_february() {
    let leap = Period::Monthly.window(at(2028, 2, 29, 12, 0, 0));
    assert_eq!(leap.start_unix_s, at(2028, 2, 1, 0, 0, 0));
    assert_eq!(leap.end_unix_s, at(2028, 3, 1, 0, 0, 0));
    assert_eq!(leap.end_unix_s - leap.start_unix_s, 29 * 86_400);
    let plain = Period::Monthly.window(at(2027, 2, 28, 12, 0, 0));
    assert_eq!(plain.end_unix_s - plain.start_unix_s, 28 * 86_400);
    assert_eq!(civil_from_unix_s(at(2028, 2, 29, 0, 0, 0)), (2028, 2, 29));
    assert_eq!(
        civil_from_unix_s(at(2100, 3, 1, 0, 0, 0) - 1),
        (2100, 2, 28)
    );
}

proptest! {
    #[test]
    fn every_instant_lies_in_its_window(now in -4_000_000_000i64..8_000_000_000i64) {
        for period in [Period::Daily, Period::Weekly, Period::Monthly] {
            let w = period.window(now);
            prop_assert!(w.contains(now));
            prop_assert_eq!(w.start_unix_s.rem_euclid(86_400), 0);
            prop_assert_eq!(period.window(w.start_unix_s), w);
            prop_assert_eq!(period.window(w.end_unix_s - 1), w);
            // Windows tile time: the next one starts where this one ends.
            prop_assert_eq!(period.window(w.end_unix_s).start_unix_s, w.end_unix_s);
        }
    }

    #[test]
    fn weekly_windows_start_on_monday_and_last_seven_days(now in -4_000_000_000i64..8_000_000_000i64) {
        let w = Period::Weekly.window(now);
        prop_assert_eq!(w.end_unix_s - w.start_unix_s, 7 * 86_400);
        let day = w.start_unix_s.div_euclid(86_400);
        prop_assert_eq!((day + 3).rem_euclid(7), 0);
    }

    #[test]
    fn monthly_windows_start_on_the_first(now in -4_000_000_000i64..8_000_000_000i64) {
        let w = Period::Monthly.window(now);
        let (_, _, d) = civil_from_unix_s(w.start_unix_s);
        prop_assert_eq!(d, 1);
        let days = (w.end_unix_s - w.start_unix_s) / 86_400;
        prop_assert!((28..=31).contains(&days));
    }

    #[test]
    fn civil_dates_round_trip(days in -1_000_000i64..1_000_000i64) {
        let (y, m, d) = civil_from_unix_s(days * 86_400);
        prop_assert_eq!(unix_s_from_civil(y, m, d), days * 86_400);
    }
}
