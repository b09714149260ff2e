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

/// Parse `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` to Unix seconds.
pub fn parse_rfc3339(s: &str) -> Result<u64, String> {
    let bad = || format!("time {s:?}: expected RFC 3339, e.g. 2025-01-31T12:00:00Z");
    let num = |t: &str| -> Result<i64, String> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse::<i64>().map_err(|_| bad())
    };
    let (date, rest) = match s.find(['T', 't', ' ']) {
        Some(i) => (s.get(..i).unwrap_or(""), s.get(i + 1..).unwrap_or("")),
        None => (s, ""),
    };
    let mut dp = date.split('-');
    let (y, mo, d) = (
        num(dp.next().unwrap_or(""))?,
        num(dp.next().unwrap_or(""))?,
        num(dp.next().unwrap_or(""))?,
    );
    if dp.next().is_some() || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let mut secs = days_from_civil(y, mo as u32, d as u32) * 86_400;
    if !rest.is_empty() {
        let (clock, offset) = match rest.find(['Z', 'z', '+', '-']) {
            Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("")),
            None => return Err(bad()),
        };
        let clock = clock.split('.').next().unwrap_or("");
        let mut cp = clock.split(':');
        let (h, mi, se) = (
            num(cp.next().unwrap_or(""))?,
            num(cp.next().unwrap_or(""))?,
            num(cp.next().unwrap_or("0"))?,
        );
        if cp.next().is_some() || h > 23 || mi > 59 || se > 60 {
            return Err(bad());
        }
        secs += h * 3600 + mi * 60 + se;
        match offset {
            "Z" | "z" => {}
            o => {
                let sign = if o.starts_with('-') { -1 } else { 1 };
                let (oh, om) = o.get(1..).and_then(|x| x.split_once(':')).ok_or_else(bad)?;
                secs -= sign * (num(oh)? * 3600 + num(om)? * 60);
            }
        }
    }
    u64::try_from(secs).map_err(|_| bad())
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
}
