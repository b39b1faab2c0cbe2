//! Turns one framed scan line into a typed [`ScanEvent`]: symbology, then GS1
//! element string, GS1 Digital Link, EAN/UPC retail code (with variable
//! measure) or plain text. Anything malformed is a [`ScanError`], never a guess.

use super::symbology::{self, Symbology, SymbologyError};
use crate::gs1::digital_link::{is_web_uri, looks_like_digital_link, parse_digital_link};
use crate::gs1::rcn::{self, RcnLayout, VariableMeasure};
use crate::gs1::{Element, GS, Gs1Error, Value, check, date, parse_element_string};
use serde::{Deserialize, Serialize};

/// What decoding needs besides the scan itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanContext {
    /// Year that two-digit GS1 years are resolved against (normally the current year).
    pub reference_year: i32,
    /// Variable-measure layouts by prefix (20-29); empty means none are decoded.
    #[serde(default)]
    pub variable_measure: Vec<RcnLayout>,
}

impl Default for ScanContext {
    fn default() -> Self {
        Self {
            reference_year: date::current_year(),
            variable_measure: Vec::new(),
        }
    }
}

/// A decoded scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScanEvent {
    /// The data as received, FNC1 shown as `<GS>`.
    pub raw: String,
    /// The symbology from the AIM identifier.
    pub symbology: Symbology,
    /// What the barcode says.
    pub content: ScanContent,
}

/// The meaning of a scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScanContent {
    /// A GS1 element string (GS1-128, GS1 DataMatrix, GS1 QR, GS1 DataBar), or a
    /// GTIN-14 alone as element (01) (ITF-14, or typed).
    Gs1 {
        /// AI (01), if present.
        gtin: Option<String>,
        /// Every AI in order.
        elements: Vec<Element>,
    },
    /// A GS1 Digital Link URI (in a plain QR code).
    DigitalLink {
        /// The URI.
        uri: String,
        /// AI (01), if present.
        gtin: Option<String>,
        /// Every AI: path first, then query.
        elements: Vec<Element>,
    },
    /// An EAN-13, UPC-A or EAN-8 retail code.
    Retail {
        /// The digits as scanned.
        code: String,
        /// The GTIN-14, absent for restricted-circulation codes.
        gtin: Option<String>,
        /// True for prefix 20-29 (store internal) codes.
        restricted_circulation: bool,
        /// Weight or price, when a layout is configured for the prefix.
        variable_measure: Option<VariableMeasure>,
    },
    /// Anything else (order ids in Code 128, handoff QR codes...).
    Text {
        /// The text.
        text: String,
    },
}

impl ScanEvent {
    /// The GTIN-14 of the scanned item, if the scan carries one.
    pub fn gtin(&self) -> Option<&str> {
        match &self.content {
            ScanContent::Gs1 { gtin, .. }
            | ScanContent::DigitalLink { gtin, .. }
            | ScanContent::Retail { gtin, .. } => gtin.as_deref(),
            ScanContent::Text { .. } => None,
        }
    }

    /// The element for `ai`, if the scan is GS1 data that has it.
    pub fn element(&self, ai: &str) -> Option<&Element> {
        match &self.content {
            ScanContent::Gs1 { elements, .. } | ScanContent::DigitalLink { elements, .. } => {
                elements.iter().find(|e| e.ai == ai)
            }
            _ => None,
        }
    }

    /// The text of a non-GS1 scan.
    pub fn text(&self) -> Option<&str> {
        match &self.content {
            ScanContent::Text { text } => Some(text),
            _ => None,
        }
    }
}

/// Why a scan was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// Bad or missing AIM identifier.
    #[error(transparent)]
    Symbology(#[from] SymbologyError),
    /// Bad GS1 data.
    #[error(transparent)]
    Gs1(#[from] Gs1Error),
    /// No data after the identifier.
    #[error("scan {0} has no data")]
    Empty(String),
    /// A code typed or sent as text that is neither a GTIN nor a scan with its AIM identifier.
    #[error(
        "`{0}` is not a barcode this store reads (digits only, 8, 12, 13 or 14 long, or a scan \
         with its AIM identifier)"
    )]
    Unreadable(String),
    /// Control characters in a non-GS1 scan.
    #[error("scan contains control character {0:?}")]
    ControlCharacter(char),
}

/// FNC1 made visible.
pub fn escape_gs(s: &str) -> String {
    s.replace(GS, "<GS>")
}

fn gtin_of(elements: &[Element]) -> Option<String> {
    elements
        .iter()
        .find(|e| e.ai == "01")
        .and_then(|e| match &e.value {
            Value::Key { key } => Some(key.clone()),
            _ => None,
        })
}

/// An EAN-13, UPC-A or EAN-8 of one of `lengths` (digits, check digit included).
fn retail(data: &str, lengths: &[usize], ctx: &ScanContext) -> Result<ScanContent, ScanError> {
    let err = |reason: &str| Gs1Error::RetailCode {
        code: data.into(),
        reason: reason.into(),
    };
    if !data.bytes().all(|c| c.is_ascii_digit()) {
        return Err(err("not all digits").into());
    }
    if !lengths.contains(&data.len()) {
        let reason = if data.len() == 8 {
            "UPC-E is not supported: enable UPC-E to UPC-A expansion on the scanner"
        } else {
            "wrong length"
        };
        return Err(err(reason).into());
    }
    if !check::has_valid_mod10(data) {
        return Err(err("wrong check digit").into());
    }
    let code13 = format!("{data:0>13}");
    if rcn::is_restricted(&code13) {
        let layout = ctx
            .variable_measure
            .iter()
            .find(|l| code13.starts_with(&l.prefix));
        let variable_measure = layout.map(|l| rcn::decode(&code13, l)).transpose()?;
        return Ok(ScanContent::Retail {
            code: data.into(),
            gtin: None,
            restricted_circulation: true,
            variable_measure,
        });
    }
    Ok(ScanContent::Retail {
        code: data.into(),
        gtin: Some(format!("{data:0>14}")),
        restricted_circulation: false,
        variable_measure: None,
    })
}

/// A GTIN-14 standing alone (typed, or in an ITF-14 on a case): GS1 key (01), checked.
fn gtin14(data: &str, ctx: &ScanContext) -> Result<ScanContent, ScanError> {
    let elements = parse_element_string(&format!("01{data}"), ctx.reference_year)?;
    Ok(ScanContent::Gs1 {
        gtin: gtin_of(&elements),
        elements,
    })
}

/// Decodes one scan line (AIM identifier + data, no line terminator).
pub fn decode_scan(line: &str, ctx: &ScanContext) -> Result<ScanEvent, ScanError> {
    let (symbology, data) = symbology::split(line)?;
    if data.is_empty() {
        return Err(ScanError::Empty(symbology.aim));
    }
    let content = if symbology.gs1 {
        let elements = parse_element_string(data, ctx.reference_year)?;
        ScanContent::Gs1 {
            gtin: gtin_of(&elements),
            elements,
        }
    } else if symbology.retail {
        let lengths: &[usize] = if symbology.aim == "]E4" {
            &[8]
        } else {
            &[12, 13]
        };
        retail(data, lengths, ctx)?
    } else {
        if let Some(c) = data.chars().find(|c| c.is_control()) {
            return Err(ScanError::ControlCharacter(c));
        }
        if symbology.aim.starts_with("]I") && data.len() == 14 && check::is_gtin(data) {
            // ITF-14, the GS1 carrier of a case's GTIN-14.
            gtin14(data, ctx)?
        } else if is_web_uri(data) && looks_like_digital_link(data) {
            let elements = parse_digital_link(data, ctx.reference_year)?;
            ScanContent::DigitalLink {
                uri: data.into(),
                gtin: gtin_of(&elements),
                elements,
            }
        } else {
            ScanContent::Text { text: data.into() }
        }
    };
    Ok(ScanEvent {
        raw: escape_gs(line),
        symbology,
        content,
    })
}

/// Replaces the typed stand-ins for FNC1 (`\x1d`, `<GS>`) with ASCII 29 and
/// drops a trailing line terminator.
pub fn unescape_raw(input: &str) -> String {
    input
        .trim_end_matches(['\r', '\n'])
        .replace("\\x1d", "\u{1d}")
        .replace("\\x1D", "\u{1d}")
        .replace("<GS>", "\u{1d}")
        .replace("<gs>", "\u{1d}")
}

/// Support for `flashkart-edge scan decode [DATA]`: decodes a raw scan typed
/// by a person (`\x1d` or `<GS>` for ASCII 29) with the current year and no
/// variable-measure layouts. Serialize the result with `serde_json`.
pub fn decode_raw_scan(input: &str) -> Result<ScanEvent, ScanError> {
    decode_scan(&unescape_raw(input), &ScanContext::default())
}

/// Decodes a code a person typed or a client sent as text (the pick screen's code, a GTIN in
/// a request body) into the same [`ScanEvent`] a scanner's line gives, so both take one path.
///
/// With an AIM identifier it is a scan like any other ([`decode_scan`]; `<GS>` or `\x1d`
/// stand for FNC1). Without one only a GTIN is read: 8, 12 or 13 digits as the retail code
/// they are (variable measure included), 14 as GS1 key (01); the check digit is verified.
pub fn decode_entered(input: &str, ctx: &ScanContext) -> Result<ScanEvent, ScanError> {
    let input = unescape_raw(input.trim());
    if input.starts_with(']') {
        return decode_scan(&input, ctx);
    }
    if !input.bytes().all(|c| c.is_ascii_digit()) {
        return Err(ScanError::Unreadable(escape_gs(&input)));
    }
    let content = match input.len() {
        8 | 12 | 13 => retail(&input, &[8, 12, 13], ctx)?,
        14 => gtin14(&input, ctx)?,
        _ => return Err(ScanError::Unreadable(input)),
    };
    Ok(ScanEvent {
        raw: input,
        symbology: symbology::keyed(),
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gs1::rcn::MeasureKind;

    fn ctx() -> ScanContext {
        ScanContext {
            reference_year: 2025,
            variable_measure: vec![RcnLayout {
                prefix: "21".into(),
                item_digits: 5,
                value_check_digit: false,
                value_digits: 5,
                kind: MeasureKind::Weight,
                decimals: 3,
            }],
        }
    }

    #[test]
    fn gs1_128_published_example() {
        let ev = decode_raw_scan("]C1010950600013435210ABC123<GS>17251231").expect("valid");
        assert_eq!(ev.gtin(), Some("09506000134352"));
        assert_eq!(ev.element("10").map(|e| e.raw.as_str()), Some("ABC123"));
        assert_eq!(ev.raw, "]C1010950600013435210ABC123<GS>17251231");
        let json = serde_json::to_value(&ev).expect("json");
        assert_eq!(json["content"]["kind"], "gs1");
        assert_eq!(
            json["content"]["elements"][2]["value"]["date"],
            "2025-12-31"
        );
        assert_eq!(json["symbology"]["name"], "GS1-128");
        assert!(decode_raw_scan("]d2010950600013435210ABC123\\x1d17251231").is_ok());
    }

    #[test]
    fn retail_codes() {
        let ev = decode_scan("]E09506000134352", &ctx()).expect("ean13");
        assert_eq!(ev.gtin(), Some("09506000134352"));
        let ev = decode_scan("]E0614141123452", &ctx()).expect("upc-a");
        assert_eq!(ev.gtin(), Some("00614141123452"));
        let ev = decode_scan("]E496385074", &ctx()).expect("ean8");
        assert_eq!(ev.gtin(), Some("00000096385074"));
        assert!(decode_scan("]E09506000134353", &ctx()).is_err());
        assert!(decode_scan("]E49638507", &ctx()).is_err());
    }

    #[test]
    fn variable_measure() {
        let code = rcn::encode(&ctx().variable_measure[0], "12345", 1250).expect("encode");
        let ev = decode_scan(&format!("]E0{code}"), &ctx()).expect("vm");
        match ev.content {
            ScanContent::Retail {
                restricted_circulation: true,
                variable_measure: Some(vm),
                gtin: None,
                ..
            } => {
                assert_eq!(vm.value.to_string(), "1.250");
                assert_eq!(vm.item, "12345");
            }
            other => panic!("{other:?}"),
        }
        // A prefix without a layout: reported, not guessed.
        let code = crate::gs1::check::with_mod10("220000100250").expect("digits");
        let ev = decode_scan(&format!("]E0{code}"), &ctx()).expect("rc");
        assert!(matches!(
            ev.content,
            ScanContent::Retail {
                restricted_circulation: true,
                variable_measure: None,
                ..
            }
        ));
    }

    #[test]
    fn entered_codes() {
        let ev = decode_entered(" 4006381333931 ", &ctx()).expect("ean13");
        assert_eq!(ev.gtin(), Some("04006381333931"));
        assert_eq!(ev.raw, "4006381333931");
        assert_eq!(ev.symbology.aim, "");
        let ev = decode_entered("]E04006381333931", &ctx()).expect("with aim");
        assert_eq!(ev.gtin(), Some("04006381333931"));
        let ev = decode_entered("96385074", &ctx()).expect("ean8");
        assert_eq!(ev.gtin(), Some("00000096385074"));
        let ev = decode_entered("14006381333938", &ctx()).expect("gtin14");
        assert_eq!(ev.gtin(), Some("14006381333938"));
        assert_eq!(
            ev.element("01").map(|e| e.raw.as_str()),
            Some("14006381333938")
        );
        let ev = decode_entered("]C101095060001343521012AB", &ctx()).expect("gs1");
        assert_eq!(ev.element("10").map(|e| e.raw.as_str()), Some("12AB"));
        let code = rcn::encode(&ctx().variable_measure[0], "12345", 450).expect("encode");
        let ev = decode_entered(&code, &ctx()).expect("weighed");
        assert!(matches!(
            ev.content,
            ScanContent::Retail {
                variable_measure: Some(_),
                ..
            }
        ));
        for bad in ["4006381333932", "14006381333939"] {
            let error = decode_entered(bad, &ctx()).expect_err(bad).to_string();
            assert!(error.contains("check digit"), "{error}");
        }
        for bad in ["hello", "123", "", "]C0"] {
            assert!(decode_entered(bad, &ctx()).is_err(), "{bad}");
        }
    }

    #[test]
    fn text_and_digital_link() {
        let ev = decode_scan("]C0FK-000123", &ctx()).expect("text");
        assert_eq!(ev.text(), Some("FK-000123"));
        let ev = decode_scan(
            "]Q1https://id.gs1.org/01/09506000134352/10/ABC?17=251231",
            &ctx(),
        )
        .expect("dl");
        assert_eq!(ev.gtin(), Some("09506000134352"));
        let ev = decode_scan("]I114006381333938", &ctx()).expect("itf-14");
        assert_eq!(ev.gtin(), Some("14006381333938"));
        let ev = decode_scan("]I012345678", &ctx()).expect("plain itf");
        assert_eq!(ev.text(), Some("12345678"));
        let ev = decode_scan("]Q1https://flashkart.example/h/abc", &ctx()).expect("url");
        assert!(ev.text().is_some());
        assert!(decode_scan("]Q1https://id.gs1.org/01/123", &ctx()).is_err());
        assert!(decode_scan("]C0a\u{7}b", &ctx()).is_err());
        assert!(decode_scan("]C0", &ctx()).is_err());
        assert!(decode_scan("FK-000123", &ctx()).is_err());
    }
}
