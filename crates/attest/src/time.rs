//! RFC 3339 time stamps for `--at` and for messages (UTC, whole seconds), converted
//! with the proleptic Gregorian calendar (days-from-civil).

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
pub fn fmt_rfc3339(unix: u64) -> String {
    let secs = unix as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days in `month` of `year` (proleptic Gregorian).
fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parse `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` (RFC 3339 §5.6; `t`,
/// `z` and a space for `T` accepted) to Unix seconds. Strict: fixed-width fields, a day
/// that exists in its month, offsets within ±23:59, and second 60 only as the leap
/// second 23:59:60 (counted as 23:59:59, as X.509 validity times cannot name it). A
/// mistyped date is an error, never a verdict for another day.
pub fn parse_rfc3339(s: &str) -> Result<u64, String> {
    let bad =
        |why: &str| format!("time {s:?}: {why} (expected RFC 3339, e.g. 2025-01-31T12:00:00Z)");
    // A field of exactly `width` ASCII digits.
    let field = |t: Option<&str>, width: usize, name: &str| -> Result<i64, String> {
        match t {
            Some(t) if t.len() == width && t.bytes().all(|b| b.is_ascii_digit()) => {
                t.parse::<i64>().map_err(|_| bad(name))
            }
            _ => Err(bad(&format!("{name} must be {width} digits"))),
        }
    };
    let (date, rest) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut dp = date.split('-');
    let y = field(dp.next(), 4, "the year")?;
    let mo = field(dp.next(), 2, "the month")?;
    let d = field(dp.next(), 2, "the day")?;
    if dp.next().is_some() {
        return Err(bad("extra fields after the day"));
    }
    if !(1..=12).contains(&mo) {
        return Err(bad("no such month"));
    }
    let (mo, d) = (mo as u32, d as u32);
    if d == 0 || d > days_in_month(y, mo) {
        return Err(bad(&format!("{y:04}-{mo:02} has no day {d}")));
    }
    let mut secs = days_from_civil(y, mo, d) * 86_400;
    if let Some(rest) = rest {
        let Some(z) = rest.find(['Z', 'z', '+', '-']) else {
            return Err(bad("missing time zone (Z or ±HH:MM)"));
        };
        let (clock, offset) = (&rest[..z], &rest[z..]);
        let (clock, frac) = match clock.split_once('.') {
            Some((c, f)) => (c, Some(f)),
            None => (clock, None),
        };
        if frac.is_some_and(|f| f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit())) {
            return Err(bad("fraction of a second must be digits"));
        }
        let mut cp = clock.split(':');
        let h = field(cp.next(), 2, "the hour")?;
        let mi = field(cp.next(), 2, "the minute")?;
        let se = field(cp.next(), 2, "the second")?;
        if cp.next().is_some() {
            return Err(bad("extra fields after the second"));
        }
        if h > 23 || mi > 59 || se > 60 {
            return Err(bad("no such time of day"));
        }
        if se == 60 && (h, mi) != (23, 59) {
            return Err(bad("second 60 exists only as the leap second 23:59:60"));
        }
        secs += h * 3600 + mi * 60 + se.min(59);
        match offset {
            "Z" | "z" => {}
            o => {
                let sign = if o.starts_with('-') { -1 } else { 1 };
                let mut op = o[1..].split(':');
                let oh = field(op.next(), 2, "the offset's hours")?;
                let om = field(op.next(), 2, "the offset's minutes")?;
                if op.next().is_some() || oh > 23 || om > 59 {
                    return Err(bad("offset outside -23:59..+23:59"));
                }
                secs -= sign * (oh * 3600 + om * 60);
            }
        }
    }
    u64::try_from(secs).map_err(|_| bad("before 1970"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(fmt_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(fmt_rfc3339(1_735_689_600), "2025-01-01T00:00:00Z");
        assert_eq!(parse_rfc3339("2025-01-01T00:00:00Z"), Ok(1_735_689_600));
        assert_eq!(parse_rfc3339("2025-01-01"), Ok(1_735_689_600));
        assert_eq!(
            parse_rfc3339("2025-01-01T02:00:00+02:00"),
            Ok(1_735_689_600)
        );
        assert_eq!(
            parse_rfc3339("2024-12-31T23:00:00.5-01:00"),
            Ok(1_735_689_600)
        );
        for t in [0u64, 951_782_400, 1_709_164_800, 4_102_444_799] {
            assert_eq!(parse_rfc3339(&fmt_rfc3339(t)), Ok(t));
        }
        for b in [
            "",
            "2025",
            "2025-13-01",
            "2025-01-01T25:00:00Z",
            "2025-01-01T00:00",
            "x-1-1",
        ] {
            assert!(parse_rfc3339(b).is_err(), "{b}");
        }
    }

    /// Regression (probe P8): calendar-invalid dates, offsets outside ±23:59, unpadded
    /// fields and a non-leap second 60 were normalized into another instant.
    #[test]
    fn regression_invalid_dates_and_offsets_are_rejected() {
        for b in [
            "2026-02-30T00:00:00Z",
            "2027-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-01-01T12:00:00+99:99",
            "2026-01-01T12:00:00+24:00",
            "2026-01-01T12:00:00+05:60",
            "2026-1-1T1:2:3Z",
            "2026-01-01T00:00:60Z",
            "2026-02-32",
            "2026-00-10",
            "2026-01-00",
            "2026-01-01T24:00:00Z",
            "2026-01-01T19:60:00Z",
            "2026-01-01T12:00:00.Z",
            "2026-01-01T12:00:00+0500",
            "2026-01-01T12:00:00",
            "12026-01-01",
        ] {
            let e = parse_rfc3339(b).expect_err(b);
            assert!(e.contains(b), "{e}");
        }
        // Still accepted: leap day, leap second, extreme offsets, date only.
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00Z").map(fmt_rfc3339),
            Ok("2024-02-29T00:00:00Z".into())
        );
        assert_eq!(
            parse_rfc3339("2016-12-31T23:59:60Z").map(fmt_rfc3339),
            Ok("2016-12-31T23:59:59Z".into())
        );
        assert_eq!(
            parse_rfc3339("2026-01-01T23:59:00+23:59").map(fmt_rfc3339),
            Ok("2026-01-01T00:00:00Z".into())
        );
        assert_eq!(
            parse_rfc3339("2026-01-01t00:00:00z"),
            parse_rfc3339("2026-01-01")
        );
    }
}
