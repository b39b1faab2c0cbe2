//! ESC/POS receipts for the packing station's receipt printer: a minimal,
//! widely supported command subset (init, align, bold, cut).

use serde::{Deserialize, Serialize};

const ESC: u8 = 0x1b;
const GS: u8 = 0x1d;

/// One receipt line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptLine {
    /// Item name.
    pub name: String,
    /// Quantity.
    pub qty: u32,
    /// Line total, already formatted (e.g. "120.00").
    pub amount: String,
}

/// A receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Store name, printed bold and centred.
    pub header: String,
    /// Order id.
    pub order_id: String,
    /// Lines.
    pub lines: Vec<ReceiptLine>,
    /// Total, formatted.
    pub total: String,
    /// Footer text.
    pub footer: String,
}

/// Printers default to a single-byte code page: non-ASCII becomes '?'.
fn ascii(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

fn row(left: &str, right: &str, width: usize) -> String {
    let left: String = ascii(left)
        .chars()
        .take(width.saturating_sub(right.len() + 1))
        .collect();
    let pad = width.saturating_sub(left.chars().count() + right.len());
    format!("{left}{}{right}\n", " ".repeat(pad))
}

impl Receipt {
    /// ESC/POS bytes for a 42-column printer, ending with a partial cut.
    pub fn to_escpos(&self) -> Vec<u8> {
        let mut out = vec![ESC, b'@', ESC, b'a', 1, ESC, b'E', 1];
        out.extend(format!("{}\n", ascii(&self.header)).bytes());
        out.extend([ESC, b'E', 0]);
        out.extend(format!("Order {}\n", ascii(&self.order_id)).bytes());
        out.extend([ESC, b'a', 0]);
        for l in &self.lines {
            out.extend(row(&format!("{} x {}", l.qty, l.name), &ascii(&l.amount), 42).bytes());
        }
        out.extend([ESC, b'E', 1]);
        out.extend(row("TOTAL", &ascii(&self.total), 42).bytes());
        out.extend([ESC, b'E', 0, ESC, b'a', 1]);
        out.extend(format!("{}\n\n\n", ascii(&self.footer)).bytes());
        out.extend([GS, b'V', 66, 0]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_bytes() {
        let r = Receipt {
            header: "FlashKart".into(),
            order_id: "FK-1".into(),
            lines: vec![ReceiptLine {
                name: "Crème".into(),
                qty: 2,
                amount: "80.00".into(),
            }],
            total: "80.00".into(),
            footer: "Thanks".into(),
        };
        let b = r.to_escpos();
        assert!(b.starts_with(&[ESC, b'@']));
        assert!(b.ends_with(&[GS, b'V', 66, 0]));
        let text = String::from_utf8_lossy(&b);
        assert!(text.contains("2 x Cr?me"));
        assert!(text.contains("80.00\n"));
    }
}
