//! US dollars on the command line: decimal strings converted to integer micro-USD exactly
//! (never through floating point), and micro-USD shown back as dollars with cents.

/// Micro-USD per USD.
const MICRO: u64 = 1_000_000;
/// Digits after the decimal point that micro-USD can hold.
const MAX_DECIMALS: usize = 6;

/// `20`, `20.5`, `$20.00`, `0.000001` → micro-USD. At most six decimals (one micro-dollar);
/// no sign, no exponent, no thousands separators.
pub fn parse_usd(s: &str) -> Result<u64, String> {
    let bad = |why: &str| format!("`{s}` is not a dollar amount like 20.00: {why}");
    let t = s.trim();
    let t = t.strip_prefix('$').unwrap_or(t);
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if whole.is_empty() && frac.is_empty() {
        return Err(bad("no digits"));
    }
    if !whole
        .bytes()
        .chain(frac.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return Err(bad("only digits and one decimal point are allowed"));
    }
    if frac.len() > MAX_DECIMALS {
        return Err(bad("more than six decimals (below one micro-dollar)"));
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad("too large"))?
    };
    let frac_micro: u64 = if frac.is_empty() {
        0
    } else {
        let padded = format!("{frac:0<MAX_DECIMALS$}");
        padded.parse().map_err(|_| bad("invalid decimals"))?
    };
    whole
        .checked_mul(MICRO)
        .and_then(|w| w.checked_add(frac_micro))
        .ok_or_else(|| bad("too large"))
}

/// Micro-USD → `12.40`, `0.000123`, `3.75`: always at least the cents, more digits only
/// when the amount has them (exact, never rounded).
pub fn format_usd(micro_usd: u64) -> String {
    let whole = micro_usd / MICRO;
    let frac = format!("{:06}", micro_usd % MICRO);
    let trimmed = frac.trim_end_matches('0');
    let shown = if trimmed.len() <= 2 {
        &frac[..2]
    } else {
        trimmed
    };
    format!("{whole}.{shown}")
}

/// Like [`format_usd`] with a leading `$`.
pub fn dollars(micro_usd: u64) -> String {
    format!("${}", format_usd(micro_usd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dollars_exactly_without_floats() {
        assert_eq!(parse_usd("20.00"), Ok(20_000_000));
        assert_eq!(parse_usd("20"), Ok(20_000_000));
        assert_eq!(parse_usd("$20.5"), Ok(20_500_000));
        assert_eq!(parse_usd("0.1"), Ok(100_000));
        assert_eq!(parse_usd(".25"), Ok(250_000));
        assert_eq!(parse_usd("3."), Ok(3_000_000));
        assert_eq!(parse_usd("0.000001"), Ok(1));
        assert_eq!(parse_usd("0.29"), Ok(290_000), "0.29 is not 0.28999… here");
        assert_eq!(parse_usd("18446744073709.551615"), Ok(u64::MAX));
    }

    #[test]
    fn refuses_what_is_not_an_exact_amount() {
        for s in [
            "",
            ".",
            "$",
            "-1",
            "+1",
            "1e3",
            "1,000",
            "1.2.3",
            "0.0000001",
            "abc",
            "18446744073709.551616",
        ] {
            assert!(parse_usd(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn formats_cents_and_keeps_smaller_digits() {
        assert_eq!(format_usd(0), "0.00");
        assert_eq!(format_usd(20_000_000), "20.00");
        assert_eq!(format_usd(12_400_000), "12.40");
        assert_eq!(format_usd(3_750_000), "3.75");
        assert_eq!(format_usd(123), "0.000123");
        assert_eq!(format_usd(1_234_500), "1.2345");
        assert_eq!(dollars(5_000), "$0.005");
    }

    #[test]
    fn format_and_parse_round_trip() {
        for n in [0, 1, 10, 99, 100_000, 1_000_001, 987_654_321, u64::MAX] {
            assert_eq!(parse_usd(&format_usd(n)), Ok(n), "{n}");
        }
    }
}
