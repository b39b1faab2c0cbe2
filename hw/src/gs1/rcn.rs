//! Restricted-circulation EAN-13 codes (prefixes 20-29) that carry a weight or
//! a price, as printed by in-store scales. The layout differs by country and
//! by store, so it is configuration: a prefix with no layout is reported as
//! restricted circulation and nothing is guessed.

use super::{Decimal, Gs1Error, check};
use serde::{Deserialize, Serialize};

/// What the variable field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeasureKind {
    /// Weight, in kilograms with `decimals` implied decimals.
    Weight,
    /// Price, in the store's currency with `decimals` implied decimals.
    Price,
}

/// One prefix's layout: `prefix | item | [price check digit] | value | check digit` = 13 digits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RcnLayout {
    /// The two-digit prefix, "20" to "29".
    pub prefix: String,
    /// Number of item reference digits after the prefix.
    pub item_digits: usize,
    /// Whether a price/weight check digit precedes the value (value must then be 4 or 5 digits).
    #[serde(default)]
    pub value_check_digit: bool,
    /// Number of value digits.
    pub value_digits: usize,
    /// Weight or price.
    pub kind: MeasureKind,
    /// Implied decimals of the value (3 for grams in kg, 2 for cents).
    pub decimals: u8,
}

impl RcnLayout {
    /// Checks the layout adds up to 13 digits and is usable.
    pub fn validate(&self) -> Result<(), String> {
        let total =
            2 + self.item_digits + usize::from(self.value_check_digit) + self.value_digits + 1;
        if self.prefix.len() != 2 || !("20".."30").contains(&self.prefix.as_str()) {
            return Err(format!("prefix {:?} is not 20-29", self.prefix));
        }
        if total != 13 {
            return Err(format!(
                "layout for prefix {} has {total} digits, not 13",
                self.prefix
            ));
        }
        if self.value_check_digit && !matches!(self.value_digits, 4 | 5) {
            return Err("a value check digit needs a 4- or 5-digit value".into());
        }
        if self.item_digits == 0 || self.value_digits == 0 || self.decimals > 6 {
            return Err("item and value need digits, decimals at most 6".into());
        }
        Ok(())
    }
}

/// A decoded variable-measure code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VariableMeasure {
    /// The prefix.
    pub prefix: String,
    /// Item reference (the store's PLU).
    pub item: String,
    /// Weight or price.
    pub kind: MeasureKind,
    /// The value.
    pub value: Decimal,
    /// Unit: "kg" for weights, "price" for prices.
    pub unit: &'static str,
}

/// True for EAN-13 codes in the restricted-circulation range 20-29.
pub fn is_restricted(code13: &str) -> bool {
    code13.len() == 13 && code13.starts_with('2')
}

/// Decodes a valid (check digit verified) EAN-13 with `layout`.
pub fn decode(code13: &str, layout: &RcnLayout) -> Result<VariableMeasure, Gs1Error> {
    let err = |reason: String| Gs1Error::RetailCode {
        code: code13.into(),
        reason,
    };
    layout.validate().map_err(err)?;
    if code13.len() != 13
        || !code13.bytes().all(|c| c.is_ascii_digit())
        || !code13.starts_with(&layout.prefix)
    {
        return Err(err("does not match the layout".into()));
    }
    let item = &code13[2..2 + layout.item_digits];
    let mut pos = 2 + layout.item_digits;
    let pcd = if layout.value_check_digit {
        pos += 1;
        code13.as_bytes().get(pos - 1).map(|c| c - b'0')
    } else {
        None
    };
    let value_str = &code13[pos..pos + layout.value_digits];
    if let Some(pcd) = pcd
        && check::price_check_digit(value_str) != Some(pcd)
    {
        return Err(err(format!(
            "price/weight check digit {pcd} does not match value {value_str}"
        )));
    }
    let value =
        Decimal::from_digits(value_str, layout.decimals).ok_or_else(|| err("bad value".into()))?;
    let unit = match layout.kind {
        MeasureKind::Weight => "kg",
        MeasureKind::Price => "price",
    };
    Ok(VariableMeasure {
        prefix: layout.prefix.clone(),
        item: item.into(),
        kind: layout.kind,
        value,
        unit,
    })
}

/// Encodes a variable-measure EAN-13 (for scale simulators and tests).
pub fn encode(layout: &RcnLayout, item: &str, value_units: u64) -> Result<String, String> {
    layout.validate()?;
    if item.len() != layout.item_digits || !item.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!("item must be {} digits", layout.item_digits));
    }
    let value = format!("{value_units:0>width$}", width = layout.value_digits);
    if value.len() != layout.value_digits {
        return Err("value does not fit".into());
    }
    let pcd = if layout.value_check_digit {
        check::price_check_digit(&value)
            .map(|d| d.to_string())
            .ok_or("no check digit")?
    } else {
        String::new()
    };
    check::with_mod10(&format!("{}{item}{pcd}{value}", layout.prefix))
        .ok_or_else(|| "not digits".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weight() -> RcnLayout {
        RcnLayout {
            prefix: "21".into(),
            item_digits: 5,
            value_check_digit: false,
            value_digits: 5,
            kind: MeasureKind::Weight,
            decimals: 3,
        }
    }

    fn price_pcd() -> RcnLayout {
        RcnLayout {
            prefix: "22".into(),
            item_digits: 4,
            value_check_digit: true,
            value_digits: 5,
            kind: MeasureKind::Price,
            decimals: 2,
        }
    }

    #[test]
    fn weight_layout() {
        let code = encode(&weight(), "12345", 1250).expect("encode");
        assert_eq!(&code[..12], "211234501250");
        let vm = decode(&code, &weight()).expect("decode");
        assert_eq!(vm.item, "12345");
        assert_eq!(vm.value.to_string(), "1.250");
    }

    #[test]
    fn price_check_digit_layout() {
        let code = encode(&price_pcd(), "1234", 14685).expect("encode");
        assert_eq!(&code[..12], "221234614685");
        assert_eq!(
            decode(&code, &price_pcd()).map(|v| v.value.to_string()),
            Ok("146.85".into())
        );
        let mut bad: Vec<u8> = code.into_bytes();
        bad[6] = b'7';
        let bad = String::from_utf8(bad).expect("ascii");
        assert!(decode(&bad, &price_pcd()).is_err());
    }

    #[test]
    fn invalid_layouts() {
        let mut l = weight();
        l.item_digits = 6;
        assert!(l.validate().is_err());
        l = weight();
        l.prefix = "19".into();
        assert!(l.validate().is_err());
    }
}
