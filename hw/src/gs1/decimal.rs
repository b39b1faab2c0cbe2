//! A small exact decimal for GS1 measures and amounts (AIs 310n, 320n, 392n and
//! variable-measure codes): money and weights must never pass through `f64`.

use serde::{Serialize, Serializer};
use std::fmt;

/// `units / 10^scale`, exactly as encoded in the barcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    /// The digits as an integer.
    pub units: u64,
    /// Number of implied decimal places.
    pub scale: u8,
}

impl Decimal {
    /// Parses `digits` (ASCII digits only, at most 18 of them) with `scale` implied decimals.
    pub fn from_digits(digits: &str, scale: u8) -> Option<Self> {
        if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok().map(|units| Self { units, scale })
    }

    /// The value rescaled to `scale` decimals, if that is exact and fits.
    pub fn to_scale(&self, scale: u8) -> Option<u64> {
        if scale >= self.scale {
            10u64
                .checked_pow(u32::from(scale - self.scale))
                .and_then(|f| self.units.checked_mul(f))
        } else {
            let f = 10u64.checked_pow(u32::from(self.scale - scale))?;
            self.units.is_multiple_of(f).then_some(self.units / f)
        }
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scale == 0 {
            return write!(f, "{}", self.units);
        }
        let s = format!(
            "{:0>width$}",
            self.units,
            width = usize::from(self.scale) + 1
        );
        let (int, frac) = s.split_at(s.len() - usize::from(self.scale));
        write!(f, "{int}.{frac}")
    }
}

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_rescale() {
        let d = Decimal::from_digits("001250", 3).expect("digits");
        assert_eq!(d.to_string(), "1.250");
        assert_eq!(d.to_scale(3), Some(1250));
        assert_eq!(d.to_scale(2), Some(125));
        assert_eq!(d.to_scale(0), None);
        assert_eq!(
            Decimal::from_digits("5", 2).map(|d| d.to_string()),
            Some("0.05".into())
        );
        assert_eq!(Decimal::from_digits("12a", 2), None);
    }
}
