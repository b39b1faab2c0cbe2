//! Timestamps as every table stores them: UTC RFC 3339 text with milliseconds, which sorts in
//! time order, the same format the edge writes.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

pub fn now_rfc3339() -> String {
    rfc3339(now())
}

pub fn rfc3339(at: OffsetDateTime) -> String {
    flashkart_sync::timestamp::format(at)
}

/// Parses a stored timestamp; `None` for anything that is not RFC 3339.
pub fn parse(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let text = "2026-11-22T05:06:07.089Z";
        assert_eq!(parse(text).map(rfc3339).as_deref(), Some(text));
        assert_eq!(parse("yesterday"), None);
    }
}
