//! The GS1 Application Identifier table: for each AI its data title, meaning,
//! length (fixed or variable), character set and how its value is interpreted.
//!
//! Only the AIs a grocery dark store meets are listed; an AI outside the table
//! is a clear error, never a guess at its length.

/// What the characters of a field may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// Digits only.
    Numeric,
    /// GS1 AI encodable character set 82.
    Alphanumeric,
}

/// How a field's value is interpreted after its length and charset are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Free text (lot, serial, order number...).
    Text,
    /// A number with no further meaning (count, variant).
    Count,
    /// A GS1 key whose last digit is a mod-10 check digit (GTIN, SSCC, GLN, GSIN).
    Key,
    /// YYMMDD, DD=00 meaning end of month.
    Date,
    /// YYMMDDHH with optional MMSS (AI 8008).
    DateTime,
    /// A measure with the decimal point position in the AI's last digit.
    Measure {
        /// Unit of measure.
        unit: &'static str,
    },
    /// An amount in local currency, decimals in the AI's last digit (390n, 392n).
    Amount,
    /// ISO 4217 numeric currency then an amount (391n, 393n).
    AmountIso,
    /// A percentage with decimals in the last digit (394n).
    Percent,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct AiDef {
    /// The AI digits; for a family with a decimal-point digit (310n) the first three.
    pub code: &'static str,
    /// True when the AI has one more digit giving the implied decimal places.
    pub decimal_digit: bool,
    /// Highest allowed value of the decimal-point digit.
    pub max_decimals: u8,
    /// GS1 data title.
    pub title: &'static str,
    /// Human meaning.
    pub meaning: &'static str,
    /// Minimum data length.
    pub min_len: usize,
    /// Maximum data length (equal to `min_len` for fixed-length AIs).
    pub max_len: usize,
    /// Allowed characters.
    pub charset: Charset,
    /// Interpretation.
    pub kind: Kind,
}

impl AiDef {
    /// Length of the AI itself (2, 3 or 4 digits).
    pub fn ai_len(&self) -> usize {
        self.code.len() + usize::from(self.decimal_digit)
    }

    /// True when the data has a fixed length.
    pub fn is_fixed(&self) -> bool {
        self.min_len == self.max_len
    }
}

use Charset::{Alphanumeric as X, Numeric as N};

const fn def(
    code: &'static str,
    title: &'static str,
    meaning: &'static str,
    min_len: usize,
    max_len: usize,
    charset: Charset,
    kind: Kind,
) -> AiDef {
    AiDef {
        code,
        decimal_digit: false,
        max_decimals: 0,
        title,
        meaning,
        min_len,
        max_len,
        charset,
        kind,
    }
}

const fn fam(
    code: &'static str,
    title: &'static str,
    meaning: &'static str,
    min_len: usize,
    max_len: usize,
    max_decimals: u8,
    kind: Kind,
) -> AiDef {
    AiDef {
        code,
        decimal_digit: true,
        max_decimals,
        title,
        meaning,
        min_len,
        max_len,
        charset: N,
        kind,
    }
}

const fn measure(
    code: &'static str,
    title: &'static str,
    meaning: &'static str,
    unit: &'static str,
) -> AiDef {
    fam(code, title, meaning, 6, 6, 5, Kind::Measure { unit })
}

/// The table. It is prefix-free: no AI is a prefix of another (checked by a test).
// One AI a line, so the table reads as the GS1 list it copies; rustfmt would spread each
// entry over nine lines.
#[rustfmt::skip]
pub static TABLE: &[AiDef] = &[
    def("00", "SSCC", "Serial Shipping Container Code", 18, 18, N, Kind::Key),
    def("01", "GTIN", "Global Trade Item Number", 14, 14, N, Kind::Key),
    def("02", "CONTENT", "GTIN of contained trade items", 14, 14, N, Kind::Key),
    def("10", "BATCH/LOT", "Batch or lot number", 1, 20, X, Kind::Text),
    def("11", "PROD DATE", "Production date", 6, 6, N, Kind::Date),
    def("12", "DUE DATE", "Due date", 6, 6, N, Kind::Date),
    def("13", "PACK DATE", "Packaging date", 6, 6, N, Kind::Date),
    def("15", "BEST BEFORE or BEST BY", "Best before date", 6, 6, N, Kind::Date),
    def("16", "SELL BY", "Sell by date", 6, 6, N, Kind::Date),
    def("17", "USE BY OR EXPIRY", "Expiration date", 6, 6, N, Kind::Date),
    def("20", "VARIANT", "Internal product variant", 2, 2, N, Kind::Count),
    def("21", "SERIAL", "Serial number", 1, 20, X, Kind::Text),
    def("22", "CPV", "Consumer product variant", 1, 20, X, Kind::Text),
    def("240", "ADDITIONAL ID", "Additional product identification", 1, 30, X, Kind::Text),
    def("241", "CUST. PART No.", "Customer part number", 1, 30, X, Kind::Text),
    def("250", "SECONDARY SERIAL", "Secondary serial number", 1, 30, X, Kind::Text),
    def("251", "REF. TO SOURCE", "Reference to source entity", 1, 30, X, Kind::Text),
    def("254", "GLN EXTENSION COMPONENT", "GLN extension component", 1, 20, X, Kind::Text),
    def("30", "VAR. COUNT", "Variable count of items", 1, 8, N, Kind::Count),
    measure("310", "NET WEIGHT (kg)", "Net weight", "kg"),
    measure("311", "LENGTH (m)", "Length or first dimension", "m"),
    measure("312", "WIDTH (m)", "Width, diameter or second dimension", "m"),
    measure("313", "HEIGHT (m)", "Depth, thickness, height or third dimension", "m"),
    measure("314", "AREA (m2)", "Area", "m2"),
    measure("315", "NET VOLUME (l)", "Net volume", "l"),
    measure("316", "NET VOLUME (m3)", "Net volume", "m3"),
    measure("320", "NET WEIGHT (lb)", "Net weight", "lb"),
    measure("321", "LENGTH (in)", "Length or first dimension", "in"),
    measure("322", "LENGTH (ft)", "Length or first dimension", "ft"),
    measure("323", "LENGTH (yd)", "Length or first dimension", "yd"),
    measure("324", "WIDTH (in)", "Width, diameter or second dimension", "in"),
    measure("325", "WIDTH (ft)", "Width, diameter or second dimension", "ft"),
    measure("326", "WIDTH (yd)", "Width, diameter or second dimension", "yd"),
    measure("327", "HEIGHT (in)", "Depth, thickness, height or third dimension", "in"),
    measure("328", "HEIGHT (ft)", "Depth, thickness, height or third dimension", "ft"),
    measure("329", "HEIGHT (yd)", "Depth, thickness, height or third dimension", "yd"),
    measure("330", "GROSS WEIGHT (kg)", "Logistic weight", "kg"),
    measure("331", "LENGTH (m), log", "Logistic length", "m"),
    measure("332", "WIDTH (m), log", "Logistic width", "m"),
    measure("333", "HEIGHT (m), log", "Logistic height", "m"),
    measure("334", "AREA (m2), log", "Logistic area", "m2"),
    measure("335", "VOLUME (l), log", "Logistic volume", "l"),
    measure("336", "VOLUME (m3), log", "Logistic volume", "m3"),
    measure("337", "KG PER m2", "Kilograms per square metre", "kg/m2"),
    measure("340", "GROSS WEIGHT (lb)", "Logistic weight", "lb"),
    measure("341", "LENGTH (in), log", "Logistic length", "in"),
    measure("342", "LENGTH (ft), log", "Logistic length", "ft"),
    measure("343", "LENGTH (yd), log", "Logistic length", "yd"),
    measure("344", "WIDTH (in), log", "Logistic width", "in"),
    measure("345", "WIDTH (ft), log", "Logistic width", "ft"),
    measure("346", "WIDTH (yd), log", "Logistic width", "yd"),
    measure("347", "HEIGHT (in), log", "Logistic height", "in"),
    measure("348", "HEIGHT (ft), log", "Logistic height", "ft"),
    measure("349", "HEIGHT (yd), log", "Logistic height", "yd"),
    measure("350", "AREA (in2)", "Area", "in2"),
    measure("351", "AREA (ft2)", "Area", "ft2"),
    measure("352", "AREA (yd2)", "Area", "yd2"),
    measure("353", "AREA (in2), log", "Logistic area", "in2"),
    measure("354", "AREA (ft2), log", "Logistic area", "ft2"),
    measure("355", "AREA (yd2), log", "Logistic area", "yd2"),
    measure("356", "NET WEIGHT (t oz)", "Net weight, troy ounces", "troy oz"),
    measure("357", "NET VOLUME (oz)", "Net weight or volume, ounces", "oz"),
    measure("360", "NET VOLUME (qt)", "Net volume", "qt"),
    measure("361", "NET VOLUME (gal.)", "Net volume", "gal"),
    measure("362", "VOLUME (qt), log", "Logistic volume", "qt"),
    measure("363", "VOLUME (gal.), log", "Logistic volume", "gal"),
    measure("364", "VOLUME (in3)", "Net volume", "in3"),
    measure("365", "VOLUME (ft3)", "Net volume", "ft3"),
    measure("366", "VOLUME (yd3)", "Net volume", "yd3"),
    measure("367", "VOLUME (in3), log", "Logistic volume", "in3"),
    measure("368", "VOLUME (ft3), log", "Logistic volume", "ft3"),
    measure("369", "VOLUME (yd3), log", "Logistic volume", "yd3"),
    def("37", "COUNT", "Count of trade items contained", 1, 8, N, Kind::Count),
    fam("390", "AMOUNT", "Amount payable, local currency", 1, 15, 9, Kind::Amount),
    fam("391", "AMOUNT", "Amount payable with ISO currency code", 4, 18, 9, Kind::AmountIso),
    fam("392", "PRICE", "Amount payable, single monetary area", 1, 15, 9, Kind::Amount),
    fam("393", "PRICE", "Amount payable with ISO currency code", 4, 18, 9, Kind::AmountIso),
    fam("394", "PRCNT OFF", "Percentage discount of a coupon", 4, 4, 3, Kind::Percent),
    def("400", "ORDER NUMBER", "Customer's purchase order number", 1, 30, X, Kind::Text),
    def("401", "GINC", "Global Identification Number for Consignment", 1, 30, X, Kind::Text),
    def("402", "GSIN", "Global Shipment Identification Number", 17, 17, N, Kind::Key),
    def("403", "ROUTE", "Routing code", 1, 30, X, Kind::Text),
    def("410", "SHIP TO LOC", "Ship to / deliver to GLN", 13, 13, N, Kind::Key),
    def("411", "BILL TO", "Bill to / invoice to GLN", 13, 13, N, Kind::Key),
    def("412", "PURCHASE FROM", "Purchased from GLN", 13, 13, N, Kind::Key),
    def("413", "SHIP FOR LOC", "Ship for / deliver for / forward to GLN", 13, 13, N, Kind::Key),
    def("414", "LOC No.", "Identification of a physical location (GLN)", 13, 13, N, Kind::Key),
    def("415", "PAY TO", "GLN of the invoicing party", 13, 13, N, Kind::Key),
    def("416", "PROD/SERV LOC", "GLN of the production or service location", 13, 13, N, Kind::Key),
    def("417", "PARTY", "Party GLN", 13, 13, N, Kind::Key),
    def("420", "SHIP TO POST", "Ship to postal code, single postal authority", 1, 20, X, Kind::Text),
    def("422", "ORIGIN", "Country of origin (ISO 3166 numeric)", 3, 3, N, Kind::Count),
    def("7003", "EXPIRY TIME", "Expiration date and time (YYMMDDHHMM)", 10, 10, N, Kind::Count),
    def("8004", "GIAI", "Global Individual Asset Identifier", 1, 30, X, Kind::Text),
    def("8005", "PRICE PER UNIT", "Price per unit of measure", 6, 6, N, Kind::Count),
    def("8008", "PROD TIME", "Date and time of production", 8, 12, N, Kind::DateTime),
    def("8020", "REF No.", "Payment slip reference number", 1, 25, X, Kind::Text),
    def("90", "INTERNAL", "Information mutually agreed between trading partners", 1, 30, X, Kind::Text),
    def("91", "INTERNAL", "Company internal information", 1, 90, X, Kind::Text),
    def("92", "INTERNAL", "Company internal information", 1, 90, X, Kind::Text),
    def("93", "INTERNAL", "Company internal information", 1, 90, X, Kind::Text),
    def("94", "INTERNAL", "Company internal information", 1, 90, X, Kind::Text),
    def("95", "INTERNAL", "Company internal information", 1, 90, X, Kind::Text),
    def("96", "INTERNAL", "Company internal information", 1, 90, X, Kind::Text),
    def("97", "INTERNAL", "Company internal information", 1, 90, X, Kind::Text),
    def("98", "INTERNAL", "Company internal information", 1, 90, X, Kind::Text),
    def("99", "INTERNAL", "Company internal information", 1, 90, X, Kind::Text),
];

/// AIs whose first two digits give a predefined length: they never need an
/// FNC1 separator after them (GS1 General Specifications, figure 5.10.1-2).
pub fn predefined_length(ai: &str) -> bool {
    matches!(
        ai.get(..2),
        Some(
            "00" | "01"
                | "02"
                | "03"
                | "04"
                | "11"
                | "12"
                | "13"
                | "14"
                | "15"
                | "16"
                | "17"
                | "18"
                | "19"
                | "20"
                | "31"
                | "32"
                | "33"
                | "34"
                | "35"
                | "36"
                | "41"
        )
    )
}

/// Finds the AI at the start of `s`: returns the definition and the AI digits.
pub fn lookup_prefix(s: &str) -> Option<(&'static AiDef, &str)> {
    TABLE.iter().find_map(|d| {
        let ai = s.get(..d.ai_len())?;
        let matches = ai.starts_with(d.code)
            && (!d.decimal_digit
                || ai
                    .as_bytes()
                    .last()
                    .is_some_and(|c| c.is_ascii_digit() && c - b'0' <= d.max_decimals));
        matches.then_some((d, ai))
    })
}

/// Finds the definition of exactly `ai` (e.g. "3103").
pub fn lookup(ai: &str) -> Option<&'static AiDef> {
    lookup_prefix(ai).and_then(|(d, found)| (found.len() == ai.len()).then_some(d))
}

/// True for characters of the GS1 AI encodable character set 82.
pub fn is_cset82(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!\"%&'()*+,-./:;<=>?_".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_prefix_free_and_sane() {
        for a in TABLE {
            assert!(a.min_len <= a.max_len && a.min_len > 0, "{}", a.code);
            for b in TABLE {
                if std::ptr::eq(a, b) {
                    continue;
                }
                assert!(
                    !b.code.starts_with(a.code),
                    "{} prefixes {}",
                    a.code,
                    b.code
                );
            }
        }
    }

    #[test]
    fn lookups() {
        assert_eq!(lookup("3103").map(|d| d.title), Some("NET WEIGHT (kg)"));
        assert!(lookup("3106").is_none(), "310n allows n <= 5 only");
        assert_eq!(lookup("8008").map(|d| d.max_len), Some(12));
        assert!(lookup("23").is_none());
        assert!(predefined_length("3103") && !predefined_length("10"));
    }
}
