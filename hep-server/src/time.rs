//! UTC timestamps as ISO-8601 text, without a date-time dependency.
//!
//! HEP carries Unix seconds and microseconds; a log line wants
//! `2026-11-26T05:21:49.909050Z`. The calendar arithmetic is Howard Hinnant's
//! `civil_from_days` (proleptic Gregorian, exact for every `i64` day that fits).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in microseconds since the Unix epoch (0 for a clock before it).
pub fn now_usec() -> i64 {
    usec_of(SystemTime::now())
}

/// `t` in microseconds since the Unix epoch (0 before it, saturated far after it).
pub fn usec_of(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The civil date `(year, month 1..=12, day 1..=31)` of a day count since 1970-01-01.
///
/// ```
/// use hep_server::time::civil_from_days;
/// assert_eq!(civil_from_days(0), (1970, 1, 1));
/// assert_eq!(civil_from_days(-1), (1969, 12, 31));
/// assert_eq!(civil_from_days(19_782), (2024, 2, 29));
/// ```
pub const fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift the epoch to 0000-03-01 so that leap days fall at the end of a year.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1, 0..=365
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    // Both fit: day is 1..=31 and month 1..=12 by construction.
    (year, month as u32, day as u32)
}

/// The day count since 1970-01-01 of a civil date (the inverse of [`civil_from_days`]).
///
/// ```
/// use hep_server::time::days_from_civil;
/// assert_eq!(days_from_civil(1970, 1, 1), 0);
/// assert_eq!(days_from_civil(2024, 2, 29), 19_782);
/// ```
pub const fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A point in time as people type it, in microseconds since the Unix epoch: Unix seconds
/// (`1795670509`, `1795670509.25`), RFC 3339 (`2026-11-26T05:21:49Z`,
/// `2026-11-26T07:21:49.5+02:00`, a space for the `T`, no zone meaning UTC), a date alone
/// (`2026-11-26`, midnight UTC), or a span before `now_usec` (`-15m`, `2h ago`, `1d`;
/// units `s`, `m`, `h`, `d`).
///
/// # Errors
/// A message saying what was expected, for people.
///
/// ```
/// use hep_server::time::parse_instant;
/// let t = 1_795_670_509_000_000;
/// assert_eq!(parse_instant("1795670509", 0), Ok(t));
/// assert_eq!(parse_instant("2026-11-26T05:21:49Z", 0), Ok(t));
/// assert_eq!(parse_instant("2026-11-26 07:21:49+02:00", 0), Ok(t));
/// assert_eq!(parse_instant("-1h", t), Ok(t - 3_600_000_000));
/// assert!(parse_instant("yesterday", 0).unwrap_err().contains("RFC 3339"));
/// ```
pub fn parse_instant(text: &str, now_usec: i64) -> Result<i64, String> {
    let s = text.trim();
    let err = || {
        format!(
            "`{text}` is not a time (expected Unix seconds like 1795670509, RFC 3339 like \
             2026-11-26T05:21:49Z or 2026-11-26 07:21:49+02:00, a date like 2026-11-26, or a \
             span ago like -15m, 2h, 1d)"
        )
    };
    if let Some(span) = parse_span(s) {
        return Ok(now_usec - span);
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = s.parse().map_err(|_| err())?;
        return Ok((secs * 1e6).round() as i64);
    }
    parse_rfc3339(s).ok_or_else(err)
}

/// `-15m`, `15m`, `15m ago`, `2h`, `1d`, `30s`: microseconds.
fn parse_span(s: &str) -> Option<i64> {
    let s = s.strip_suffix("ago").unwrap_or(s).trim();
    let s = s.strip_prefix('-').unwrap_or(s);
    let unit = s.chars().last()?;
    let n: i64 = s[..s.len() - unit.len_utf8()].trim().parse().ok()?;
    let secs = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return None,
    };
    n.checked_mul(secs)?.checked_mul(1_000_000)
}

fn parse_rfc3339(s: &str) -> Option<i64> {
    let num = |t: &str| -> Option<i64> {
        (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let (date, rest) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut d = date.splitn(3, '-');
    let (y, m, day) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    let days = days_from_civil(y, m as u32, day as u32);
    let Some(rest) = rest else {
        return Some(days * 86_400_000_000);
    };
    // The zone: `Z`, `+hh:mm`, `-hh:mm`, or none (UTC).
    let rest = rest.trim();
    let (time, offset_secs) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, 0)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let (h, mi) = rest[i + 1..]
            .split_once(':')
            .unwrap_or_else(|| (&rest[i + 1..], "0"));
        let off = num(h)? * 3_600 + num(mi)? * 60;
        (&rest[..i], if &rest[i..=i] == "-" { -off } else { off })
    } else {
        (rest, 0)
    };
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':');
    let h = num(t.next()?)?;
    let mi = t.next().map_or(Some(0), num)?;
    let sec = t.next().map_or(Some(0), num)?;
    if h > 23 || mi > 59 || sec > 60 || t.next().is_some() {
        return None;
    }
    let usec = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
        num(&digits)?
    };
    Some((days * 86_400 + h * 3_600 + mi * 60 + sec - offset_secs) * 1_000_000 + usec)
}

/// A UTC instant shown as ISO-8601 with microseconds: `2026-11-26T05:21:49.909050Z`.
///
/// Microseconds of a million or more (some agents write them) carry into the seconds.
///
/// ```
/// use hep_server::time::UtcTimestamp;
/// let t = UtcTimestamp::new(1_700_000_000, 123_456);
/// assert_eq!(t.to_string(), "2023-11-14T22:13:20.123456Z");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UtcTimestamp {
    secs: i64,
    usecs: u32,
}

impl UtcTimestamp {
    /// The instant `secs` seconds and `usecs` microseconds after the Unix epoch.
    pub const fn new(secs: i64, usecs: u32) -> Self {
        Self {
            secs: secs + (usecs / 1_000_000) as i64,
            usecs: usecs % 1_000_000,
        }
    }

    /// Seconds since the epoch.
    pub const fn secs(&self) -> i64 {
        self.secs
    }

    /// Microseconds within the second, `0..1_000_000`.
    pub const fn usecs(&self) -> u32 {
        self.usecs
    }
}

impl fmt::Display for UtcTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.secs.div_euclid(86_400);
        let sod = self.secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
            sod / 3_600,
            sod % 3_600 / 60,
            sod % 60,
            self.usecs
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_leap(y: i64) -> bool {
        (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
    }

    #[test]
    fn known_dates() {
        let cases = [
            (0, (1970, 1, 1)),
            (59, (1970, 3, 1)),
            (10_957, (2000, 1, 1)),
            (11_016, (2000, 2, 29)),
            (11_017, (2000, 3, 1)),
            (-25_508, (1900, 3, 1)),
            (-719_468, (0, 3, 1)),
            (2_932_896, (9999, 12, 31)),
            (20_783, (2026, 11, 26)),
        ];
        for (days, ymd) in cases {
            assert_eq!(civil_from_days(days), ymd, "day {days}");
        }
    }

    #[test]
    fn consecutive_days_walk_the_calendar() {
        let (mut y, mut m, mut d) = civil_from_days(-800_000);
        for days in -800_000..800_000i64 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            assert_eq!(days_from_civil(y, m, d), days);
            let month_len = match m {
                2 if is_leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > month_len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn timestamps_format_with_microseconds() {
        // The Kamailio vectors were captured on 2026-11-26.
        assert_eq!(
            UtcTimestamp::new(1_795_670_509, 909_050).to_string(),
            "2026-11-26T05:21:49.909050Z"
        );
        assert_eq!(
            UtcTimestamp::new(0, 0).to_string(),
            "1970-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            UtcTimestamp::new(u32::MAX.into(), 999_999).to_string(),
            "2106-02-07T06:28:15.999999Z"
        );
        assert_eq!(
            UtcTimestamp::new(-1, 0).to_string(),
            "1969-12-31T23:59:59.000000Z"
        );
    }

    #[test]
    fn instants_parse_leniently() {
        let t = 1_795_670_509_909_050;
        for text in [
            "1795670509.90905",
            "2026-11-26T05:21:49.909050Z",
            "2026-11-26t05:21:49.90905z",
            "2026-11-26 05:21:49.909050",
            "2026-11-26T06:21:49.909050+01:00",
            "2026-11-26T04:21:49.909050-01:00",
        ] {
            assert_eq!(parse_instant(text, 0), Ok(t), "{text}");
        }
        assert_eq!(parse_instant("2026-11-26", 0), Ok(1_795_651_200_000_000));
        assert_eq!(parse_instant("10m ago", 600_000_000), Ok(0));
        assert_eq!(parse_instant("1d", 86_400_000_000), Ok(0));
        for bad in [
            "",
            "now",
            "2026-13-01",
            "2026-11-26T25:00",
            "12x",
            "2026-11-26T05:21:49+xx",
        ] {
            assert!(parse_instant(bad, 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn oversized_microseconds_carry() {
        let t = UtcTimestamp::new(10, 2_500_000);
        assert_eq!((t.secs(), t.usecs()), (12, 500_000));
    }
}
