//! GS1 data carried by barcodes: element strings (AIs, FNC1), check digits,
//! dates, decimal measures, GS1 Digital Link URIs and restricted-circulation
//! variable-measure EAN-13 codes. Pure functions, no I/O, never panic.

pub mod ai;
pub mod check;
pub mod date;
pub mod decimal;
pub mod digital_link;
pub mod element;
pub mod rcn;

pub use date::Gs1Date;
pub use decimal::Decimal;
pub use element::{Element, Value, encode_element_string, parse_element_string};

/// ASCII 29, how scanners transmit FNC1 separators inside GS1 data.
pub const GS: char = '\u{1d}';

/// Why GS1 data was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Gs1Error {
    /// Nothing after the symbology identifier.
    #[error("empty GS1 data")]
    Empty,
    /// Data does not start with a known AI.
    #[error("unknown or unsupported application identifier at position {position}: {found:?}")]
    UnknownAi {
        /// Byte offset in the element string.
        position: usize,
        /// Up to four characters found there.
        found: String,
    },
    /// Two FNC1 in a row, or FNC1 where an AI was expected at the end.
    #[error("empty element at position {position}")]
    EmptyElement {
        /// Byte offset in the element string.
        position: usize,
    },
    /// A fixed-length field is cut short.
    #[error("AI ({ai}) needs {expected} characters, found {found}")]
    Truncated {
        /// The AI.
        ai: String,
        /// Required length.
        expected: usize,
        /// Length present.
        found: usize,
    },
    /// A variable-length field is shorter or longer than allowed.
    #[error("AI ({ai}) data length {found} is outside {min}..={max}")]
    BadLength {
        /// The AI.
        ai: String,
        /// Minimum.
        min: usize,
        /// Maximum.
        max: usize,
        /// Found.
        found: usize,
    },
    /// A character not allowed in the field.
    #[error("AI ({ai}) contains invalid character {ch:?}")]
    InvalidCharacter {
        /// The AI (or "-" before any AI).
        ai: String,
        /// The character.
        ch: char,
    },
    /// A GS1 key whose check digit is wrong.
    #[error("AI ({ai}) {value} has a wrong check digit")]
    CheckDigit {
        /// The AI.
        ai: String,
        /// The key as scanned.
        value: String,
    },
    /// Not a real date/time.
    #[error("AI ({ai}) {value} is not a valid date")]
    InvalidDate {
        /// The AI.
        ai: String,
        /// The field.
        value: String,
    },
    /// The same AI twice with different values.
    #[error("AI ({ai}) appears twice with different values")]
    DuplicateAi {
        /// The AI.
        ai: String,
    },
    /// A GS1 Digital Link URI that is not valid.
    #[error("invalid GS1 Digital Link URI: {0}")]
    DigitalLink(String),
    /// A retail code (EAN-13/UPC-A/EAN-8) that is malformed.
    #[error("invalid retail code {code:?}: {reason}")]
    RetailCode {
        /// The code.
        code: String,
        /// Why.
        reason: String,
    },
}
