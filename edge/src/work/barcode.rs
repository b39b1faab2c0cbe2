//! Reading what a scanner sends: GTINs with their check digit, and variable-measure EAN-13s.
//!
//! Weighed goods carry a restricted-circulation EAN-13 (prefix 20-29) printed by the store's
//! scale: an item code (the product's PLU) and a weight or price. Countries and retailers lay
//! those digits out differently, so the layout is configuration. Full GS1 parsing (AIs, Digital
//! Link) belongs to the hardware crate; this is only what picking needs.

use serde::{Deserialize, Serialize};

/// Where the item code and the value sit in a variable-measure EAN-13 (0-based digit offsets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VariableMeasureLayout {
    /// First two-digit prefix that marks a variable-measure code (inclusive).
    pub prefix_from: u8,
    /// Last such prefix (inclusive).
    pub prefix_to: u8,
    pub item_start: usize,
    pub item_len: usize,
    pub value_start: usize,
    pub value_len: usize,
    /// What the value encodes.
    pub value: MeasureKind,
}

impl Default for VariableMeasureLayout {
    /// `2P IIIII VVVVV C`: prefix 20-29, a five-digit item code, five digits of grams.
    fn default() -> Self {
        Self {
            prefix_from: 20,
            prefix_to: 29,
            item_start: 2,
            item_len: 5,
            value_start: 7,
            value_len: 5,
            value: MeasureKind::Grams,
        }
    }
}

/// The value in a variable-measure code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeasureKind {
    /// Net weight in grams.
    Grams,
    /// Price in minor units (the weight is then unknown to the code).
    PriceMinor,
}

/// A scanned code, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    /// A GTIN-8/12/13/14 with a valid check digit, as scanned.
    Gtin(String),
    /// A store-printed variable-measure code.
    VariableMeasure {
        item: String,
        value: i64,
        kind: MeasureKind,
    },
}

/// Why a code could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BarcodeError {
    #[error("`{0}` is not a barcode this store reads (digits only, 8, 12, 13 or 14 long)")]
    Unreadable(String),
    #[error("`{0}` has a wrong check digit")]
    CheckDigit(String),
}

/// Parses a scan. A leading AIM symbology identifier (`]E0`, `]C1`...) is ignored.
pub fn parse(raw: &str, layout: &VariableMeasureLayout) -> Result<Code, BarcodeError> {
    let trimmed = raw.trim();
    let digits = match trimmed.strip_prefix(']') {
        Some(rest) if rest.len() > 2 => &rest[2..],
        _ => trimmed,
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) || ![8, 12, 13, 14].contains(&digits.len()) {
        return Err(BarcodeError::Unreadable(trimmed.to_owned()));
    }
    if !check_digit_ok(digits) {
        return Err(BarcodeError::CheckDigit(digits.to_owned()));
    }
    if digits.len() == 13 {
        let prefix: u8 = digits[..2].parse().unwrap_or(0);
        let fits = layout.item_start + layout.item_len <= 12
            && layout.value_start + layout.value_len <= 12
            && layout.item_len > 0
            && layout.value_len > 0;
        if fits && (layout.prefix_from..=layout.prefix_to).contains(&prefix) {
            let item = digits[layout.item_start..layout.item_start + layout.item_len].to_owned();
            let value = digits[layout.value_start..layout.value_start + layout.value_len]
                .parse()
                .map_err(|_| BarcodeError::Unreadable(digits.to_owned()))?;
            return Ok(Code::VariableMeasure {
                item,
                value,
                kind: layout.value,
            });
        }
    }
    Ok(Code::Gtin(digits.to_owned()))
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

/// GS1 mod-10: weights 3,1,3,... from the digit left of the check digit.
fn check_digit_ok(digits: &str) -> bool {
    let values: Vec<u32> = digits.bytes().map(|b| u32::from(b - b'0')).collect();
    let Some((check, body)) = values.split_last() else {
        return false;
    };
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| if i % 2 == 0 { d * 3 } else { *d })
        .sum();
    (10 - sum % 10) % 10 == *check
}

/// Appends the GS1 check digit to `body` (used to print variable-measure codes in tests and the
/// demo).
pub fn with_check_digit(body: &str) -> String {
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b.wrapping_sub(b'0'));
            if i % 2 == 0 { d * 3 } else { d }
        })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtin_check_digits() {
        let layout = VariableMeasureLayout::default();
        assert_eq!(
            parse("4006381333931", &layout),
            Ok(Code::Gtin("4006381333931".into()))
        );
        assert_eq!(
            parse("]E04006381333931", &layout),
            Ok(Code::Gtin("4006381333931".into()))
        );
        assert!(matches!(
            parse("4006381333932", &layout),
            Err(BarcodeError::CheckDigit(_))
        ));
        assert!(matches!(
            parse("hello", &layout),
            Err(BarcodeError::Unreadable(_))
        ));
        assert_eq!(with_check_digit("400638133393"), "4006381333931");
    }

    #[test]
    fn variable_measure_weight() {
        let layout = VariableMeasureLayout::default();
        let code = with_check_digit("231234501250");
        assert_eq!(
            parse(&code, &layout),
            Ok(Code::VariableMeasure {
                item: "12345".into(),
                value: 1250,
                kind: MeasureKind::Grams
            })
        );
        let price_layout = VariableMeasureLayout {
            item_len: 4,
            value_start: 6,
            value_len: 6,
            value: MeasureKind::PriceMinor,
            ..layout
        };
        assert_eq!(
            parse(&code, &price_layout),
            Ok(Code::VariableMeasure {
                item: "1234".into(),
                value: 501250,
                kind: MeasureKind::PriceMinor
            })
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
