//! The ZPL II bag label: store, order id as Code 128, handoff QR code, bag
//! n of m, customer first name and delivery slot. Field data is hex-escaped
//! (`^FH`) so no customer text can inject ZPL commands.

use serde::{Deserialize, Serialize};

/// Why a label cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// A field is empty, too long or has characters the barcode cannot carry.
    #[error("label field {field}: {reason}")]
    Field {
        /// Field name.
        field: &'static str,
        /// Why.
        reason: &'static str,
    },
}

/// What goes on a bag label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BagLabel {
    /// Store display name.
    pub store_name: String,
    /// Order id, printed as Code 128 (letters, digits and '-').
    pub order_id: String,
    /// Payload of the handoff QR code the rider scans (printable ASCII, no ^ or ~).
    pub handoff_code: String,
    /// This bag's number, from 1.
    pub bag: u8,
    /// Number of bags in the order.
    pub bags: u8,
    /// Customer first name (any UTF-8).
    pub customer_first_name: String,
    /// Delivery slot, e.g. "18:00-18:30".
    pub delivery_slot: String,
}

fn field_err(field: &'static str, reason: &'static str) -> LabelError {
    LabelError::Field { field, reason }
}

fn check_text(field: &'static str, s: &str, max: usize) -> Result<(), LabelError> {
    if s.chars().count() > max {
        return Err(field_err(field, "too long"));
    }
    if s.chars().any(char::is_control) {
        return Err(field_err(field, "control character"));
    }
    Ok(())
}

/// Escapes text for a `^FH` field: everything but plain printable ASCII
/// (and `^`, `~`, `_`) becomes `_XX` per UTF-8 byte.
pub fn fh_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..0x7f).contains(&b) && !matches!(b, b'^' | b'~' | b'_') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("_{b:02X}"));
        }
    }
    out
}

impl BagLabel {
    /// Validates the fields.
    pub fn validate(&self) -> Result<(), LabelError> {
        let id = &self.order_id;
        if id.is_empty()
            || id.len() > 40
            || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(field_err("order_id", "must be 1-40 letters, digits or '-'"));
        }
        let h = &self.handoff_code;
        if h.is_empty()
            || h.len() > 300
            || !h
                .bytes()
                .all(|b| (0x21..0x7f).contains(&b) && b != b'^' && b != b'~')
        {
            return Err(field_err(
                "handoff_code",
                "must be 1-300 printable ASCII characters without ^ or ~",
            ));
        }
        if self.bag == 0 || self.bag > self.bags || self.bags > 99 {
            return Err(field_err("bag", "must satisfy 1 <= bag <= bags <= 99"));
        }
        check_text("store_name", &self.store_name, 40)?;
        check_text("customer_first_name", &self.customer_first_name, 30)?;
        check_text("delivery_slot", &self.delivery_slot, 40)
    }

    /// The idempotency key of this label's print job.
    pub fn job_id(&self) -> String {
        format!("label:{}:{}/{}", self.order_id, self.bag, self.bags)
    }

    /// The ZPL II for a 4x4 inch label at 203 dpi.
    pub fn to_zpl(&self) -> Result<String, LabelError> {
        self.validate()?;
        let lines = [
            "^XA".to_string(),
            "^CI28".into(),
            "^PW812".into(),
            "^LL812".into(),
            format!("^FX{}^FS", fh_escape(&self.job_id())),
            format!("^FO40,30^A0N,50,50^FH^FD{}^FS", fh_escape(&self.store_name)),
            format!("^FO40,100^A0N,40,40^FDOrder {}^FS", self.order_id),
            format!("^FO40,160^BY2,3,120^BCN,120,Y,N,N^FD{}^FS", self.order_id),
            format!("^FO40,340^BQN,2,8^FDQA,{}^FS", self.handoff_code),
            format!("^FO470,360^A0N,70,70^FDBag {}/{}^FS", self.bag, self.bags),
            format!(
                "^FO470,460^A0N,45,45^FH^FD{}^FS",
                fh_escape(&self.customer_first_name)
            ),
            format!(
                "^FO470,530^A0N,35,35^FH^FD{}^FS",
                fh_escape(&self.delivery_slot)
            ),
            "^PQ1".into(),
            "^XZ".into(),
        ];
        Ok(lines.join("\n") + "\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> BagLabel {
        BagLabel {
            store_name: "FlashKart Indiranagar".into(),
            order_id: "FK-000123".into(),
            handoff_code: "https://fk.example/h/FK-000123?c=9f2a".into(),
            bag: 1,
            bags: 2,
            customer_first_name: "José^XZ".into(),
            delivery_slot: "18:00-18:30".into(),
        }
    }

    #[test]
    fn label_contents() {
        let z = sample().to_zpl().expect("zpl");
        assert!(z.starts_with("^XA") && z.trim_end().ends_with("^XZ"));
        assert_eq!(
            z.matches("^XA").count(),
            1,
            "customer text cannot inject a format"
        );
        assert!(z.contains("^BCN,120,Y,N,N^FDFK-000123^FS"));
        assert!(z.contains("^FDQA,https://fk.example/h/FK-000123?c=9f2a^FS"));
        assert!(z.contains("Jos_C3_A9_5EXZ"));
        assert!(z.contains("Bag 1/2"));
    }

    #[test]
    fn refuses_bad_fields() {
        let mut l = sample();
        l.order_id = "FK>1".into();
        assert!(l.to_zpl().is_err());
        l = sample();
        l.bag = 3;
        assert!(l.to_zpl().is_err());
        l = sample();
        l.handoff_code = "a~b".into();
        assert!(l.to_zpl().is_err());
    }
}
