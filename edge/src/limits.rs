//! Bounds on what the API takes in: quantities, weights, dates and free text.
//!
//! Anything a tablet, a scanner or a hostile LAN client sends is checked here before it reaches
//! the ledger, so that no arithmetic on it can overflow and no row carries megabytes of text.
//! Every check refuses with [`Error::Invalid`] (422) and nothing is written.

use crate::Error;

/// Pieces or packages in one request (a receive, an adjustment, a count, an order line). Far
/// above any real dark store's delivery, far below where sums of them could overflow an i64.
pub const MAX_QTY: i64 = 1_000_000;
/// Grams of a weighed item or a packed order (1 t): no bag, tote or scale comes near it.
pub const MAX_WEIGHT_G: i64 = 1_000_000;
/// Bags of one order.
pub const MAX_BAGS: i64 = 100;
/// Lot numbers: GS1 AI (10) allows 20 characters; supplier paperwork sometimes carries longer
/// lot codes, so 64 printable ASCII characters.
pub const MAX_LOT: usize = 64;
/// Ids (staff, bins, orders, products) named in requests.
pub const MAX_ID: usize = 64;
/// Names (staff, bins' aisle/bay/shelf).
pub const MAX_NAME: usize = 100;
/// Notes and reasons typed by staff.
pub const MAX_NOTE: usize = 500;
/// Raw scans (a GS1-128 case label holds at most 48 data characters; Digital Link URLs are
/// longer).
pub const MAX_SCAN: usize = 512;
/// Money in minor units (cash due, collected or handed in): 10^10, the bound the cloud puts on
/// prices and coupons, so sums of a shift's amounts stay far inside an i64.
pub const MAX_MONEY_MINOR: i64 = 10_000_000_000;

/// Refuses a quantity outside `min..=MAX_QTY` in magnitude.
pub fn qty(field: &str, value: i64, min: i64) -> Result<i64, Error> {
    if (min..=MAX_QTY).contains(&value) {
        Ok(value)
    } else {
        Err(Error::Invalid(format!(
            "`{field}` must be {min}..={MAX_QTY}, not {value}"
        )))
    }
}

/// Refuses a signed quantity that is zero or beyond ±[`MAX_QTY`].
pub fn signed_qty(field: &str, value: i64) -> Result<i64, Error> {
    if value != 0 && (-MAX_QTY..=MAX_QTY).contains(&value) {
        Ok(value)
    } else {
        Err(Error::Invalid(format!(
            "`{field}` must be non-zero and within ±{MAX_QTY}, not {value}"
        )))
    }
}

/// Refuses a weight outside `0..=MAX_WEIGHT_G` grams.
pub fn weight_g(field: &str, value: i64) -> Result<i64, Error> {
    if (0..=MAX_WEIGHT_G).contains(&value) {
        Ok(value)
    } else {
        Err(Error::Invalid(format!(
            "`{field}` must be 0..={MAX_WEIGHT_G} grams, not {value}"
        )))
    }
}

/// Refuses an amount of money outside `0..=MAX_MONEY_MINOR` minor units.
pub fn money_minor(field: &str, value: i64) -> Result<i64, Error> {
    if (0..=MAX_MONEY_MINOR).contains(&value) {
        Ok(value)
    } else {
        Err(Error::Invalid(format!(
            "`{field}` must be 0..={MAX_MONEY_MINOR} minor units, not {value}"
        )))
    }
}

/// Refuses a currency that is not an ISO 4217 code (three ASCII capital letters).
pub fn currency(field: &str, value: &str) -> Result<(), Error> {
    if value.len() == 3 && value.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        let shown: String = value.chars().take(8).collect();
        Err(Error::Invalid(format!(
            "`{field}` `{}` is not an ISO 4217 code such as EUR",
            shown.escape_debug()
        )))
    }
}

/// Refuses text longer than `max` characters or with control characters.
pub fn text(field: &str, value: &str, max: usize) -> Result<(), Error> {
    let len = value.chars().count();
    if len > max {
        return Err(Error::Invalid(format!(
            "`{field}` is {len} characters; at most {max}"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "`{field}` contains control characters"
        )));
    }
    Ok(())
}

/// Refuses a raw scan longer than [`MAX_SCAN`]. Control characters are allowed: GS1 data
/// carries FNC1 as ASCII 29.
pub fn scan(field: &str, value: &str) -> Result<(), Error> {
    let len = value.len();
    if len > MAX_SCAN {
        return Err(Error::Invalid(format!(
            "`{field}` is {len} bytes; a scan is at most {MAX_SCAN}"
        )));
    }
    Ok(())
}

/// Refuses an empty id, one longer than [`MAX_ID`], or one with control characters.
pub fn id(field: &str, value: &str) -> Result<(), Error> {
    if value.trim().is_empty() {
        return Err(Error::Invalid(format!("`{field}` must not be empty")));
    }
    text(field, value, MAX_ID)
}

/// Refuses a lot that is not 1..=[`MAX_LOT`] printable ASCII characters.
pub fn lot(value: &str) -> Result<(), Error> {
    let shown: String = value.chars().take(24).collect();
    if value.is_empty() || value.len() > MAX_LOT {
        return Err(Error::Invalid(format!(
            "lot `{shown}` must be 1..={MAX_LOT} characters, not {}",
            value.chars().count()
        )));
    }
    if !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(Error::Invalid(format!(
            "lot `{}` must be printable ASCII",
            shown.escape_debug()
        )));
    }
    Ok(())
}

/// Refuses anything but a real calendar date `YYYY-MM-DD` (no 30 February).
pub fn date(field: &str, value: &str) -> Result<time::Date, Error> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let shown: String = value.chars().take(24).collect();
    if value.len() != 10 {
        return Err(Error::Invalid(format!(
            "`{field}` `{shown}` must be a date YYYY-MM-DD"
        )));
    }
    time::Date::parse(value, &format).map_err(|e| {
        Error::Invalid(format!(
            "`{field}` `{shown}` is not a real date YYYY-MM-DD: {e}"
        ))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn dates_must_exist() {
        assert!(date("expiry", "2026-02-28").is_ok());
        assert!(date("expiry", "2028-02-29").is_ok());
        for bad in [
            "1900-02-30",
            "2026-02-29",
            "2026-13-01",
            "2026-00-10",
            "26-01-01",
            "",
        ] {
            assert!(date("expiry", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lots_and_text_are_bounded() {
        assert!(lot("L-2026/07 A").is_ok());
        assert!(lot(&"x".repeat(MAX_LOT)).is_ok());
        assert!(lot(&"x".repeat(MAX_LOT + 1)).is_err());
        assert!(lot("").is_err());
        assert!(lot("a\u{1d}b").is_err());
        assert!(lot("löt").is_err());
        assert!(text("note", "ok", 5).is_ok());
        assert!(text("note", "too long", 5).is_err());
        assert!(text("note", "a\nb", 5).is_err());
        assert!(id("id", " ").is_err());
    }

    #[test]
    fn quantities_are_bounded() {
        assert!(signed_qty("qty", i64::MIN).is_err());
        assert!(signed_qty("qty", i64::MAX).is_err());
        assert!(signed_qty("qty", 0).is_err());
        assert_eq!(signed_qty("qty", -MAX_QTY).unwrap(), -MAX_QTY);
        assert!(qty("qty", 0, 1).is_err());
        assert!(qty("counted", 0, 0).is_ok());
        assert!(weight_g("w", -1).is_err());
        assert!(weight_g("w", i64::MAX).is_err());
    }

    #[test]
    fn money_and_currencies_are_bounded() {
        assert_eq!(money_minor("amount", 0).unwrap(), 0);
        assert_eq!(
            money_minor("amount", MAX_MONEY_MINOR).unwrap(),
            MAX_MONEY_MINOR
        );
        assert!(money_minor("amount", MAX_MONEY_MINOR + 1).is_err());
        assert!(money_minor("amount", -1).is_err());
        assert!(currency("currency", "EUR").is_ok());
        for bad in ["", "eur", "EURO", "E1R", "ÉUR"] {
            assert!(currency("currency", bad).is_err(), "{bad}");
        }
    }
}
