//! Times for people: a lease's age or a BGP session's uptime as `1.5s` or
//! `3m04s`, a claim's moment as `2023-11-14T22:13:20Z`. JSON and YAML keep
//! the API's numbers.

/// A duration in milliseconds, to two units at most, truncated: `850ms`,
/// `1.5s`, `3m04s`, `2h03m`, `4d01h`.
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..60 => format!("{s}.{}s", ms % 1000 / 100),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// Unix time in milliseconds as RFC 3339 in UTC, to the second; empty for 0
/// (not known).
pub fn utc(unix_ms: u64) -> String {
    if unix_ms == 0 {
        return String::new();
    }
    let secs = unix_ms / 1000;
    let (days, rest) = (secs / 86400, secs % 86400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (rest / 3600, rest % 3600 / 60, rest % 60);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// The proleptic Gregorian date `days` after 1970-01-01: Howard Hinnant's
/// `civil_from_days` (chrono-compatible date algorithms), for days ≥ 0.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01, so that a leap day ends its year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // day of the 400-year era
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March year
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_keep_two_units() {
        let cases = [
            (0, "0ms"),
            (850, "850ms"),
            (1_000, "1.0s"),
            (1_599, "1.5s"),
            (59_999, "59.9s"),
            (60_000, "1m00s"),
            (184_000, "3m04s"),
            (3_600_000, "1h00m"),
            (7_380_000, "2h03m"),
            (86_400_000, "1d00h"),
            (349_200_000, "4d01h"),
        ];
        for (ms, want) in cases {
            assert_eq!(duration(ms), want, "{ms}");
        }
    }

    #[test]
    fn utc_matches_date_minus_u() {
        // Each value checked against `date -u -d @SECONDS +%FT%TZ`.
        assert_eq!(utc(1_700_000_000_123), "2023-11-14T22:13:20Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc(4_102_444_799_000), "2099-12-31T23:59:59Z");
        assert_eq!(utc(1), "1970-01-01T00:00:00Z");
        assert_eq!(utc(0), "", "not known");
    }
}
