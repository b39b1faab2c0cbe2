//! AIM symbology identifiers (`]` + code character + modifier), which a
//! scanner prefixes to each scan so we know whether the data is GS1.

use serde::Serialize;

/// A recognised symbology.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Symbology {
    /// The identifier as transmitted, e.g. "]C1".
    pub aim: String,
    /// Human name.
    pub name: &'static str,
    /// Whether the data is a GS1 element string.
    pub gs1: bool,
    /// Whether the data is an EAN/UPC retail code.
    pub retail: bool,
}

const KNOWN: &[(&str, &str, bool, bool)] = &[
    ("]C0", "Code 128", false, false),
    ("]C1", "GS1-128", true, false),
    ("]C2", "Code 128 (FNC1 in second position)", false, false),
    ("]C4", "Code 128 (concatenated)", false, false),
    ("]E0", "EAN-13 / UPC-A / UPC-E", false, true),
    ("]E4", "EAN-8", false, true),
    ("]d1", "Data Matrix", false, false),
    ("]d2", "GS1 DataMatrix", true, false),
    ("]Q0", "QR Code (model 1)", false, false),
    ("]Q1", "QR Code", false, false),
    ("]Q3", "GS1 QR Code", true, false),
    ("]e0", "GS1 DataBar", true, false),
    ("]A0", "Code 39", false, false),
    ("]I0", "Interleaved 2 of 5", false, false),
    ("]I1", "Interleaved 2 of 5 (check digit)", false, false),
    ("]L0", "PDF417", false, false),
    ("]z0", "Aztec Code", false, false),
];

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SymbologyError {
    /// The scan does not start with `]`.
    #[error("scan has no AIM symbology identifier (enable AIM IDs on the scanner)")]
    Missing,
    /// `]` followed by something that is not an identifier we know.
    #[error("unknown AIM symbology identifier {0:?}")]
    Unknown(String),
}

/// What a code typed by a person or sent as text by a client came in: no barcode, so no AIM
/// identifier (`aim` is empty).
pub fn keyed() -> Symbology {
    Symbology {
        aim: String::new(),
        name: "keyed entry",
        gs1: false,
        retail: false,
    }
}

/// Splits `line` into its symbology and the data after the identifier.
pub fn split(line: &str) -> Result<(Symbology, &str), SymbologyError> {
    if !line.starts_with(']') {
        return Err(SymbologyError::Missing);
    }
    let id = line
        .get(..3)
        .ok_or_else(|| SymbologyError::Unknown(line.chars().take(3).collect()))?;
    let &(aim, name, gs1, retail) = KNOWN
        .iter()
        .find(|k| k.0 == id)
        .ok_or_else(|| SymbologyError::Unknown(id.into()))?;
    Ok((
        Symbology {
            aim: aim.into(),
            name,
            gs1,
            retail,
        },
        &line[3..],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits() {
        let (s, rest) = split("]C1010950").expect("known");
        assert!(s.gs1);
        assert_eq!(rest, "010950");
        assert_eq!(split("0109"), Err(SymbologyError::Missing));
        assert!(matches!(split("]Zz9"), Err(SymbologyError::Unknown(_))));
        assert!(matches!(split("]é"), Err(SymbologyError::Unknown(_))));
        assert!(matches!(split("]C"), Err(SymbologyError::Unknown(_))));
    }
}
