//! GS1 dates (YYMMDD): century by the GS1 sliding window, DD=00 meaning the
//! last day of the month, and a dependency-free "current year" so decoding is
//! deterministic in tests (callers pass the reference year).

use serde::{Serialize, Serializer};
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// A calendar date decoded from a GS1 YYMMDD field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gs1Date {
    /// Full year.
    pub year: i32,
    /// 1..=12.
    pub month: u8,
    /// 1..=31, already resolved when the barcode said 00.
    pub day: u8,
}

impl fmt::Display for Gs1Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl Serialize for Gs1Date {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Days in `month` of `year`; 0 for an invalid month.
pub fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// GS1 General Specifications 7.12: the century of a two-digit year relative
/// to `reference_year` (the current year when decoding live scans).
pub fn resolve_year(yy: i32, reference_year: i32) -> i32 {
    let century = reference_year.div_euclid(100) * 100;
    let diff = yy - reference_year.rem_euclid(100);
    if (51..=99).contains(&diff) {
        century - 100 + yy
    } else if (-99..=-50).contains(&diff) {
        century + 100 + yy
    } else {
        century + yy
    }
}

/// Parses a 6-digit YYMMDD field. Returns `(date, day_was_00)`.
pub fn parse_yymmdd(s: &str, reference_year: i32) -> Option<(Gs1Date, bool)> {
    let b = s.as_bytes();
    if b.len() != 6 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let two = |i: usize| (b[i] - b'0') * 10 + (b[i + 1] - b'0');
    let (yy, month, day) = (two(0), two(2), two(4));
    let year = resolve_year(i32::from(yy), reference_year);
    let last = days_in_month(year, month);
    if last == 0 || day > last {
        return None;
    }
    let end_of_month = day == 0;
    let day = if end_of_month { last } else { day };
    Some((Gs1Date { year, month, day }, end_of_month))
}

/// The current UTC year from the system clock (civil-from-days algorithm).
pub fn current_year() -> i32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    i32::try_from(year).unwrap_or(2000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_of_month_and_leap_years() {
        let (d, eom) = parse_yymmdd("240200", 2025).expect("valid");
        assert_eq!(d.to_string(), "2024-02-29");
        assert!(eom);
        assert_eq!(parse_yymmdd("250200", 2025).map(|d| d.0.day), Some(28));
        assert_eq!(
            parse_yymmdd("251231", 2025).map(|d| d.0.to_string()),
            Some("2025-12-31".into())
        );
        assert!(parse_yymmdd("251301", 2025).is_none());
        assert!(parse_yymmdd("250231", 2025).is_none());
        assert!(parse_yymmdd("2502", 2025).is_none());
    }

    #[test]
    fn sliding_century_window() {
        assert_eq!(resolve_year(99, 2025), 1999);
        assert_eq!(resolve_year(75, 2025), 2075);
        assert_eq!(resolve_year(76, 2025), 1976);
        assert_eq!(resolve_year(1, 2099), 2101);
        assert!(current_year() >= 2024);
    }
}
