//! Timestamps in the one text format every store table uses (UTC RFC 3339, milliseconds, `Z`),
//! so that they sort in time order and compare as strings in SQL.
//!
//! Why a module of its own: store work ([`crate::work::ctx`]) and the riders service
//! (`riders::clock`) both write these columns; one formatter means they cannot drift apart.

use time::OffsetDateTime;

/// Now, as stored.
pub fn now() -> String {
    format_time(OffsetDateTime::now_utc())
}

/// Now, in Unix milliseconds (the wire format of rider messages).
pub fn now_ms() -> i64 {
    unix_ms(OffsetDateTime::now_utc())
}

/// A moment `seconds` from now (negative for the past), as stored.
pub fn seconds_from_now(seconds: i64) -> String {
    format_time(OffsetDateTime::now_utc() + time::Duration::seconds(seconds))
}

/// A moment `hours` from now, as stored.
pub fn hours_from_now(hours: u32) -> String {
    seconds_from_now(i64::from(hours) * 3600)
}

/// Unix milliseconds (0 meaning "now") as stored text.
pub fn from_unix_ms(ms: i64) -> String {
    if ms <= 0 {
        return now();
    }
    let nanos = i128::from(ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).map_or_else(|_| now(), format_time)
}

fn unix_ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn format_time(at: OffsetDateTime) -> String {
    flashkart_sync::timestamp::format(at)
}

#[cfg(test)]
mod tests {
    #[test]
    fn unix_ms_round_trips_in_the_stored_format() {
        assert_eq!(
            super::from_unix_ms(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
        assert!(super::seconds_from_now(-10) < super::now());
    }
}
