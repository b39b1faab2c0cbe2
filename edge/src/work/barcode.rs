//! What the store reads in a scan: the catalog key a decoded [`ScanEvent`] names.
//!
//! Why a module of its own: decoding is `flashkart-hw`'s alone (AIM identifiers, GS1 data,
//! check digits, variable-measure labels), whether a serial scanner sent the scan or a person
//! typed the code; this is the one place that says what the store looks up for each kind of
//! scan (a GTIN, or the PLU and weight of a weighed-goods label) and how GTINs are stored.

use flashkart_hw::ScanEvent;
use flashkart_hw::gs1::rcn::MeasureKind;
use flashkart_hw::scanner::{self, ScanContent, ScanError};

use crate::Error;
use crate::config::VariableMeasureConfig;

/// What the catalog looks a scan up by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key<'a> {
    /// A GTIN as scanned (8 to 14 digits), or a store-internal code no layout reads.
    Gtin(&'a str),
    /// A store-printed variable-measure label.
    Plu {
        /// The 13 digits as scanned.
        code: &'a str,
        /// The item code, the product's PLU.
        item: &'a str,
        /// Net weight in grams; `None` when the label carries a price instead.
        weight_g: Option<i64>,
    },
}

/// Decodes a code typed or sent as text (the pick screen's `code`, a request's `gtin`) with
/// hw's decoder and the store's layouts: the same [`ScanEvent`] a serial scanner gives.
pub fn decode_entered(code: &str, layout: &VariableMeasureConfig) -> Result<ScanEvent, Error> {
    scanner::decode_entered(code, &layout.scan_context()).map_err(|e| Error::Invalid(e.to_string()))
}

/// The catalog key of a scan; a scan that names no product (an order id, a URL) is refused.
pub fn key(event: &ScanEvent) -> Result<Key<'_>, Error> {
    match &event.content {
        ScanContent::Retail {
            code,
            variable_measure: Some(measure),
            ..
        } => {
            let weight_g = match measure.kind {
                MeasureKind::Weight => Some(
                    measure
                        .value
                        .to_scale(3)
                        .and_then(|g| i64::try_from(g).ok())
                        .ok_or_else(|| {
                            Error::Invalid(format!(
                                "`{code}` weighs {} kg, not a whole number of grams",
                                measure.value
                            ))
                        })?,
                ),
                MeasureKind::Price => None,
            };
            Ok(Key::Plu {
                code,
                item: &measure.item,
                weight_g,
            })
        }
        ScanContent::Retail { code, .. } => Ok(Key::Gtin(code)),
        ScanContent::Text { text } => Err(Error::Invalid(
            ScanError::Unreadable(text.clone()).to_string(),
        )),
        ScanContent::Gs1 { .. } | ScanContent::DigitalLink { .. } => event
            .gtin()
            .map(Key::Gtin)
            .ok_or_else(|| Error::Invalid(format!("scan {} carries no GTIN", event.raw))),
    }
}

/// The forms a GTIN may be stored in: as scanned, as GTIN-14, and as GTIN-13 when it has a
/// leading zero.
pub fn gtin_forms(gtin: &str) -> [String; 3] {
    let fourteen = format!("{gtin:0>14}");
    let thirteen = fourteen
        .strip_prefix('0')
        .map_or_else(|| gtin.to_owned(), str::to_owned);
    [gtin.to_owned(), fourteen, thirteen]
}

#[cfg(test)]
mod tests {
    use flashkart_hw::gs1::check::with_mod10;

    use super::*;
    use crate::config::variable_measure::ValueKind;

    fn entered(code: &str, layout: &VariableMeasureConfig) -> ScanEvent {
        decode_entered(code, layout).expect(code)
    }

    #[test]
    fn gtin_check_digits() {
        let layout = VariableMeasureConfig::default();
        let plain = entered("4006381333931", &layout);
        assert_eq!(key(&plain).expect("gtin"), Key::Gtin("4006381333931"));
        let aim = entered("]E04006381333931", &layout);
        assert_eq!(key(&aim).expect("gtin"), Key::Gtin("4006381333931"));
        let wrong = decode_entered("4006381333932", &layout).expect_err("check digit");
        assert!(wrong.to_string().contains("check digit"), "{wrong}");
        let unreadable = decode_entered("hello", &layout).expect_err("unreadable");
        assert!(matches!(unreadable, Error::Invalid(_)), "{unreadable}");
        let text = flashkart_hw::decode_raw_scan("]C0FK-000123").expect("text");
        assert!(matches!(key(&text), Err(Error::Invalid(_))));
    }

    #[test]
    fn variable_measure_weight() {
        let layout = VariableMeasureConfig::default();
        let code = with_mod10("231234501250").expect("digits");
        let weighed = entered(&code, &layout);
        assert_eq!(
            key(&weighed).expect("plu"),
            Key::Plu {
                code: &code,
                item: "12345",
                weight_g: Some(1250)
            }
        );
        let price_layout = VariableMeasureConfig {
            item_len: 4,
            value_start: 6,
            value_len: 6,
            value: ValueKind::PriceMinor,
            ..layout
        };
        let priced = entered(&code, &price_layout);
        assert_eq!(
            key(&priced).expect("plu"),
            Key::Plu {
                code: &code,
                item: "1234",
                weight_g: None
            }
        );
    }

    #[test]
    fn gtin_forms_cover_padding() {
        assert_eq!(
            gtin_forms("04006381333931"),
            [
                "04006381333931".to_owned(),
                "04006381333931".to_owned(),
                "4006381333931".to_owned()
            ]
        );
    }
}
