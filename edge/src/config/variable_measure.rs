//! `[variable_measure]`: where the store's scales put the item code and the weight (or price)
//! in the restricted-circulation EAN-13s (prefix 20-29) they print.
//!
//! Why apart from hw's model: the file format names digit offsets and a prefix range, as the
//! scale's manual does; decoding is `flashkart_hw::gs1::rcn`'s alone. This section is checked
//! when the configuration is read and turns into hw's layouts, one per prefix.

use flashkart_hw::gs1::rcn::{MeasureKind, RcnLayout};
use flashkart_hw::scanner::ScanContext;
use serde::{Deserialize, Serialize};

/// Where the item code and the value sit in a variable-measure EAN-13 (0-based digit offsets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VariableMeasureConfig {
    /// First two-digit prefix that marks a variable-measure code (inclusive).
    pub prefix_from: u8,
    /// Last such prefix (inclusive).
    pub prefix_to: u8,
    /// Offset of the item code (the product's PLU); 2, right after the prefix.
    pub item_start: usize,
    pub item_len: usize,
    /// Offset of the value: right after the item code, or one further when a price/weight
    /// check digit sits between them (the value is then 4 or 5 digits, and checked).
    pub value_start: usize,
    /// Digits of the value, which ends just before the EAN-13 check digit.
    pub value_len: usize,
    /// What the value encodes.
    pub value: ValueKind,
}

impl Default for VariableMeasureConfig {
    /// `2P IIIII VVVVV C`: prefix 20-29, a five-digit item code, five digits of grams.
    fn default() -> Self {
        Self {
            prefix_from: 20,
            prefix_to: 29,
            item_start: 2,
            item_len: 5,
            value_start: 7,
            value_len: 5,
            value: ValueKind::Grams,
        }
    }
}

/// The value in a variable-measure code, as the configuration names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueKind {
    /// Net weight in grams.
    Grams,
    /// Price in minor units (the weight is then unknown to the code).
    PriceMinor,
}

impl VariableMeasureConfig {
    /// hw's layouts, one per prefix of the range; an error names what does not add up.
    pub fn layouts(&self) -> Result<Vec<RcnLayout>, String> {
        let bad = |why: String| Err(format!("[variable_measure]: {why}"));
        if self.item_start != 2 {
            return bad(format!(
                "item_start is {}: the item code starts right after the two-digit prefix (2)",
                self.item_start
            ));
        }
        let item_end = self.item_start + self.item_len;
        let value_check_digit = match self.value_start.checked_sub(item_end) {
            Some(0) => false,
            Some(1) => true,
            _ => {
                return bad(format!(
                    "value_start is {}: the value follows the item code (at {item_end}, or \
                     {} after a price/weight check digit)",
                    self.value_start,
                    item_end + 1
                ));
            }
        };
        if self.prefix_from > self.prefix_to {
            return bad(format!(
                "prefix_from {} is after prefix_to {}",
                self.prefix_from, self.prefix_to
            ));
        }
        let (kind, decimals) = match self.value {
            ValueKind::Grams => (MeasureKind::Weight, 3),
            ValueKind::PriceMinor => (MeasureKind::Price, 2),
        };
        (self.prefix_from..=self.prefix_to)
            .map(|prefix| {
                let layout = RcnLayout {
                    prefix: format!("{prefix:02}"),
                    item_digits: self.item_len,
                    value_check_digit,
                    value_digits: self.value_len,
                    kind,
                    decimals,
                };
                layout
                    .validate()
                    .map(|()| layout)
                    .map_err(|why| format!("[variable_measure]: {why}"))
            })
            .collect()
    }

    /// What hw decodes scans with: this year, and these layouts (none if they do not add up;
    /// [`crate::Config::validate`] refuses such a configuration before anything runs).
    pub fn scan_context(&self) -> ScanContext {
        ScanContext {
            variable_measure: self.layouts().unwrap_or_default(),
            ..ScanContext::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_parses_as_before_and_becomes_hw_layouts() {
        let config: VariableMeasureConfig = toml::from_str("").expect("defaults");
        assert_eq!(config, VariableMeasureConfig::default());
        let layouts = config.layouts().expect("default adds up");
        assert_eq!(layouts.len(), 10);
        assert_eq!(layouts[3].prefix, "23");
        assert_eq!((layouts[3].item_digits, layouts[3].value_digits), (5, 5));
        assert_eq!(layouts[3].kind, MeasureKind::Weight);
        let price: VariableMeasureConfig = toml::from_str(
            "prefix_from = 22\nprefix_to = 22\nitem_len = 4\nvalue_start = 7\nvalue_len = 5\nvalue = \"price_minor\"\n",
        )
        .expect("price layout");
        let layouts = price.layouts().expect("adds up");
        assert!(layouts[0].value_check_digit);
        assert_eq!(layouts[0].kind, MeasureKind::Price);
        assert!(toml::from_str::<VariableMeasureConfig>("bogus = 1").is_err());
        for bad in [
            "item_start = 3",
            "value_start = 9",
            "value_len = 4",
            "prefix_from = 19",
            "prefix_from = 25\nprefix_to = 21",
        ] {
            let config: VariableMeasureConfig = toml::from_str(bad).expect(bad);
            assert!(config.layouts().is_err(), "{bad}");
        }
    }
}
