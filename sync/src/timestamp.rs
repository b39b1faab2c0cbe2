//! The one text format of every stored timestamp: UTC RFC 3339 with milliseconds and `Z`.
//!
//! Both sides write timestamps into the same replicated tables and compare them as strings in
//! SQL (latest wins, sorting timelines), which only works if every writer formats alike. The
//! store schema lives in this crate, so its timestamp format does too.

use time::{OffsetDateTime, UtcOffset};

/// `at` as stored (converted to UTC first).
pub fn format(at: OffsetDateTime) -> String {
    let at = at.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    #[test]
    fn formats_in_utc_with_milliseconds() {
        assert_eq!(
            super::format(datetime!(2026-11-22 07:06:07.089 +02:00)),
            "2026-11-22T05:06:07.089Z"
        );
    }
}
