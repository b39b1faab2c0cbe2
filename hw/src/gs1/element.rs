//! Parsing and encoding GS1 element strings: AI, data, FNC1 (ASCII 29) after
//! variable-length fields. Every field is validated against the AI table and
//! interpreted (check digits, dates, decimals).

use super::ai::{self, AiDef, Charset, Kind};
use super::{Decimal, GS, Gs1Date, Gs1Error, check, date};
use serde::Serialize;

/// One AI with its data, as read from a barcode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Element {
    /// The AI digits, e.g. "3103".
    pub ai: String,
    /// GS1 data title, e.g. "NET WEIGHT (kg)".
    pub title: &'static str,
    /// What it means.
    pub meaning: &'static str,
    /// The data exactly as scanned.
    pub raw: String,
    /// The interpreted value.
    pub value: Value,
}

/// An interpreted AI value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Value {
    /// Free text.
    Text {
        /// The text.
        text: String,
    },
    /// A plain number.
    Number {
        /// The number.
        number: u64,
    },
    /// A GS1 key with a verified check digit.
    Key {
        /// The key digits.
        key: String,
    },
    /// A date.
    Date {
        /// The date (DD=00 resolved).
        date: Gs1Date,
        /// True when the barcode said DD=00.
        end_of_month: bool,
    },
    /// A date and time.
    DateTime {
        /// The date.
        date: Gs1Date,
        /// Hour.
        hour: u8,
        /// Minute, if present.
        minute: Option<u8>,
        /// Second, if present.
        second: Option<u8>,
    },
    /// A measure.
    Measure {
        /// Exact value.
        value: Decimal,
        /// Unit.
        unit: &'static str,
    },
    /// A monetary amount.
    Amount {
        /// Exact value.
        value: Decimal,
        /// ISO 4217 numeric code when the AI carries one.
        currency: Option<String>,
    },
    /// A percentage.
    Percent {
        /// Exact value.
        value: Decimal,
    },
}

fn decimals_of(ai: &str) -> u8 {
    ai.as_bytes().last().map_or(0, |c| c.saturating_sub(b'0'))
}

fn two_digits(s: &str, i: usize) -> Option<u8> {
    s.get(i..i + 2)?.parse().ok()
}

/// Validates `raw` for the AI and interprets it.
pub fn interpret(def: &AiDef, ai: &str, raw: &str, reference_year: i32) -> Result<Value, Gs1Error> {
    let len = raw.chars().count();
    if len < def.min_len || len > def.max_len {
        return Err(Gs1Error::BadLength {
            ai: ai.into(),
            min: def.min_len,
            max: def.max_len,
            found: len,
        });
    }
    let bad = raw.chars().find(|&c| match def.charset {
        Charset::Numeric => !c.is_ascii_digit(),
        Charset::Alphanumeric => !ai::is_cset82(c),
    });
    if let Some(ch) = bad {
        return Err(Gs1Error::InvalidCharacter { ai: ai.into(), ch });
    }
    let bad_date = || Gs1Error::InvalidDate {
        ai: ai.into(),
        value: raw.into(),
    };
    let number = || {
        raw.parse::<u64>().map_err(|_| Gs1Error::InvalidCharacter {
            ai: ai.into(),
            ch: '?',
        })
    };
    let decimal = |digits: &str| {
        Decimal::from_digits(digits, decimals_of(ai)).ok_or_else(|| Gs1Error::BadLength {
            ai: ai.into(),
            min: def.min_len,
            max: 18,
            found: len,
        })
    };
    Ok(match def.kind {
        Kind::Text => Value::Text { text: raw.into() },
        Kind::Count => Value::Number { number: number()? },
        Kind::Key => {
            if !check::has_valid_mod10(raw) {
                return Err(Gs1Error::CheckDigit {
                    ai: ai.into(),
                    value: raw.into(),
                });
            }
            Value::Key { key: raw.into() }
        }
        Kind::Date => {
            let (date, end_of_month) =
                date::parse_yymmdd(raw, reference_year).ok_or_else(bad_date)?;
            Value::Date { date, end_of_month }
        }
        Kind::DateTime => {
            let (date, eom) = raw
                .get(..6)
                .and_then(|d| date::parse_yymmdd(d, reference_year))
                .ok_or_else(bad_date)?;
            let hour = two_digits(raw, 6)
                .filter(|h| *h < 24)
                .ok_or_else(bad_date)?;
            let minute = if len >= 10 {
                Some(
                    two_digits(raw, 8)
                        .filter(|m| *m < 60)
                        .ok_or_else(bad_date)?,
                )
            } else {
                None
            };
            let second = if len == 12 {
                Some(
                    two_digits(raw, 10)
                        .filter(|s| *s < 60)
                        .ok_or_else(bad_date)?,
                )
            } else {
                None
            };
            if eom || len == 9 || len == 11 {
                return Err(bad_date());
            }
            Value::DateTime {
                date,
                hour,
                minute,
                second,
            }
        }
        Kind::Measure { unit } => Value::Measure {
            value: decimal(raw)?,
            unit,
        },
        Kind::Amount => Value::Amount {
            value: decimal(raw)?,
            currency: None,
        },
        Kind::AmountIso => {
            let (cur, amount) = raw.split_at(3);
            Value::Amount {
                value: decimal(amount)?,
                currency: Some(cur.into()),
            }
        }
        Kind::Percent => Value::Percent {
            value: decimal(raw)?,
        },
    })
}

/// Builds an [`Element`] from an AI and its data (used by Digital Link too).
pub fn element(ai: &str, raw: &str, reference_year: i32) -> Result<Element, Gs1Error> {
    let def = ai::lookup(ai).ok_or_else(|| Gs1Error::UnknownAi {
        position: 0,
        found: ai.into(),
    })?;
    let value = interpret(def, ai, raw, reference_year)?;
    Ok(Element {
        ai: ai.into(),
        title: def.title,
        meaning: def.meaning,
        raw: raw.into(),
        value,
    })
}

/// Adds `el` unless the same AI is already there: identical repeats are
/// dropped, conflicting ones are an error.
pub fn push_unique(out: &mut Vec<Element>, el: Element) -> Result<(), Gs1Error> {
    match out.iter().find(|e| e.ai == el.ai) {
        Some(e) if e.raw == el.raw => Ok(()),
        Some(_) => Err(Gs1Error::DuplicateAi { ai: el.ai }),
        None => {
            out.push(el);
            Ok(())
        }
    }
}

/// Parses a GS1 element string (the data after the symbology identifier,
/// FNC1 separators as ASCII 29). `reference_year` resolves YY centuries.
pub fn parse_element_string(data: &str, reference_year: i32) -> Result<Vec<Element>, Gs1Error> {
    if let Some(ch) = data
        .chars()
        .find(|c| !c.is_ascii() || (c.is_ascii_control() && *c != GS))
    {
        return Err(Gs1Error::InvalidCharacter { ai: "-".into(), ch });
    }
    // A leading FNC1 is allowed (some scanners transmit it); then data is ASCII.
    let data = data.strip_prefix(GS).unwrap_or(data);
    if data.is_empty() {
        return Err(Gs1Error::Empty);
    }
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let rest = &data[pos..];
        if rest.starts_with(GS) {
            return Err(Gs1Error::EmptyElement { position: pos });
        }
        let (def, ai) = ai::lookup_prefix(rest).ok_or_else(|| Gs1Error::UnknownAi {
            position: pos,
            found: rest.chars().take(4).collect(),
        })?;
        let body = &rest[ai.len()..];
        let field_end = body.find(GS).unwrap_or(body.len());
        let (raw, consumed) = if def.is_fixed() {
            if field_end < def.max_len {
                return Err(Gs1Error::Truncated {
                    ai: ai.into(),
                    expected: def.max_len,
                    found: field_end,
                });
            }
            (&body[..def.max_len], def.max_len)
        } else {
            (&body[..field_end], field_end)
        };
        let value = interpret(def, ai, raw, reference_year)?;
        push_unique(
            &mut out,
            Element {
                ai: ai.into(),
                title: def.title,
                meaning: def.meaning,
                raw: raw.into(),
                value,
            },
        )?;
        pos += ai.len() + consumed;
        // Skip one FNC1 separator, unless it ends the data (a trailing FNC1 is tolerated).
        if data[pos..].starts_with(GS) {
            pos += 1;
            if pos == data.len() {
                break;
            }
        }
    }
    Ok(out)
}

/// Encodes `(ai, data)` pairs as an element string with FNC1 (ASCII 29)
/// after every field whose length is not predefined, except the last.
/// Every pair is validated as the parser would.
pub fn encode_element_string(
    pairs: &[(&str, &str)],
    reference_year: i32,
) -> Result<String, Gs1Error> {
    let mut out = String::new();
    for (i, (ai, raw)) in pairs.iter().enumerate() {
        element(ai, raw, reference_year)?;
        out.push_str(ai);
        out.push_str(raw);
        if i + 1 < pairs.len() && !ai::predefined_length(ai) {
            out.push(GS);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Vec<Element>, Gs1Error> {
        parse_element_string(s, 2025)
    }

    #[test]
    fn gtin_lot_expiry() {
        let els = parse("010950600013435210ABC123\u{1d}17251231").expect("valid");
        assert_eq!(els.len(), 3);
        assert_eq!(
            els[0].value,
            Value::Key {
                key: "09506000134352".into()
            }
        );
        assert_eq!(
            els[1].value,
            Value::Text {
                text: "ABC123".into()
            }
        );
        assert_eq!(els[2].raw, "251231");
    }

    #[test]
    fn sscc_and_weight() {
        let els = parse("00106141412345678908").expect("sscc");
        assert_eq!(els[0].title, "SSCC");
        let els = parse("0109506000134352310300125015251200").expect("weight");
        assert_eq!(
            els[1].value,
            Value::Measure {
                value: Decimal {
                    units: 1250,
                    scale: 3
                },
                unit: "kg"
            }
        );
        match &els[2].value {
            Value::Date { date, end_of_month } => {
                assert_eq!(date.to_string(), "2025-12-31");
                assert!(end_of_month);
            }
            other => panic!("not a date: {other:?}"),
        }
    }

    #[test]
    fn price_with_currency_and_variable_fields() {
        let els = parse("3932978123\u{1d}3202001234").expect("price");
        assert_eq!(
            els[0].value,
            Value::Amount {
                value: Decimal {
                    units: 123,
                    scale: 2
                },
                currency: Some("978".into())
            }
        );
        assert_eq!(
            els[1].value.clone(),
            Value::Measure {
                value: Decimal {
                    units: 1234,
                    scale: 2
                },
                unit: "lb"
            }
        );
        let els = parse("800825123114\u{1d}8020ABC").expect("8008");
        assert!(matches!(
            els[0].value,
            Value::DateTime {
                hour: 14,
                minute: None,
                ..
            }
        ));
    }

    #[test]
    fn clear_errors() {
        assert_eq!(parse(""), Err(Gs1Error::Empty));
        assert!(matches!(
            parse("0109506000134353"),
            Err(Gs1Error::CheckDigit { .. })
        ));
        assert!(matches!(
            parse("01095060001343"),
            Err(Gs1Error::Truncated { .. })
        ));
        assert!(matches!(parse("23123"), Err(Gs1Error::UnknownAi { .. })));
        assert!(matches!(
            parse("17251301"),
            Err(Gs1Error::InvalidDate { .. })
        ));
        assert!(matches!(
            parse("10ABC\u{1d}\u{1d}21X"),
            Err(Gs1Error::EmptyElement { .. })
        ));
        assert!(matches!(
            parse("10ABCDEFGHIJKLMNOPQRSTU"),
            Err(Gs1Error::BadLength { .. })
        ));
        assert!(matches!(
            parse("10AB C"),
            Err(Gs1Error::InvalidCharacter { .. })
        ));
        assert!(matches!(
            parse("10A\u{1d}10B"),
            Err(Gs1Error::DuplicateAi { .. })
        ));
        assert!(matches!(
            parse("3106123456"),
            Err(Gs1Error::UnknownAi { .. })
        ));
    }

    #[test]
    fn encode_inserts_fnc1_only_where_needed() {
        let s = encode_element_string(
            &[("01", "09506000134352"), ("10", "ABC123"), ("17", "251231")],
            2025,
        )
        .expect("encode");
        assert_eq!(s, "010950600013435210ABC123\u{1d}17251231");
        assert!(encode_element_string(&[("01", "09506000134353")], 2025).is_err());
    }
}
