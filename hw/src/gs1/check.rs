//! GS1 check digits: the mod-10 digit of GTINs, GLNs and SSCCs, and the
//! price/weight check digit of restricted-circulation variable-measure codes.
//!
//! A scanner already verified the symbol's own check character, but the GS1
//! check digit inside the data is ours to verify: a mistyped or forged code
//! must never be booked against the wrong product.

/// Mod-10 check digit (weights 3,1,3,... from the right) for `body`, which
/// must be all ASCII digits. `None` if `body` has a non-digit.
pub fn mod10_check_digit(body: &str) -> Option<u8> {
    let mut sum: u32 = 0;
    for (i, c) in body.bytes().rev().enumerate() {
        if !c.is_ascii_digit() {
            return None;
        }
        let d = u32::from(c - b'0');
        sum += if i % 2 == 0 { d * 3 } else { d };
    }
    // (10 - sum % 10) % 10 is always < 10.
    u8::try_from((10 - sum % 10) % 10).ok()
}

/// True if `full` is all digits and its last digit is the mod-10 check digit of the rest.
pub fn has_valid_mod10(full: &str) -> bool {
    let Some((body, last)) = full.len().checked_sub(1).map(|n| full.split_at(n)) else {
        return false;
    };
    let Some(&last) = last.as_bytes().first() else {
        return false;
    };
    last.is_ascii_digit() && mod10_check_digit(body) == Some(last - b'0')
}

/// True for a GTIN-8, -12, -13 or -14: all digits, one of those lengths, the right check digit.
/// The one GTIN check of the workspace: the cloud's catalog and the edge's typed codes use it.
pub fn is_gtin(code: &str) -> bool {
    matches!(code.len(), 8 | 12 | 13 | 14) && has_valid_mod10(code)
}

/// Appends the mod-10 check digit to `body` (used by encoders and tests).
pub fn with_mod10(body: &str) -> Option<String> {
    mod10_check_digit(body).map(|d| format!("{body}{d}"))
}

// GS1 General Specifications, price/weight check digit weighting tables.
const W2_MINUS: [u8; 10] = [0, 2, 4, 6, 8, 9, 1, 3, 5, 7];
const W3: [u8; 10] = [0, 3, 6, 9, 2, 5, 8, 1, 4, 7];
const W5_PLUS: [u8; 10] = [0, 5, 1, 6, 2, 7, 3, 8, 4, 9];
const W5_MINUS: [u8; 10] = [0, 5, 9, 4, 8, 3, 7, 2, 6, 1];

fn digits(s: &str) -> Option<Vec<usize>> {
    s.bytes()
        .map(|c| c.is_ascii_digit().then(|| usize::from(c - b'0')))
        .collect()
}

/// Price/weight check digit of a 4- or 5-digit field (GS1 restricted
/// circulation numbers). `None` for other lengths or non-digits.
pub fn price_check_digit(field: &str) -> Option<u8> {
    let d = digits(field)?;
    match d.as_slice() {
        [a, b, c, e] => {
            let sum = u32::from(W2_MINUS[*a])
                + u32::from(W2_MINUS[*b])
                + u32::from(W3[*c])
                + u32::from(W5_MINUS[*e]);
            u8::try_from((sum * 3) % 10).ok()
        }
        [a, b, c, e, f] => {
            let sum = u32::from(W5_PLUS[*a])
                + u32::from(W2_MINUS[*b])
                + u32::from(W5_MINUS[*c])
                + u32::from(W5_PLUS[*e])
                + u32::from(W2_MINUS[*f]);
            let target = u8::try_from((10 - sum % 10) % 10).ok()?;
            W5_MINUS
                .iter()
                .position(|&w| w == target)
                .and_then(|p| u8::try_from(p).ok())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_gtins_and_ssccs() {
        // GS1 General Specifications examples.
        assert!(has_valid_mod10("09506000134352")); // GTIN-14
        assert!(has_valid_mod10("9506000134352")); // GTIN-13
        assert!(has_valid_mod10("106141412345678908")); // SSCC
        assert!(has_valid_mod10("614141123452")); // GTIN-12
        assert!(has_valid_mod10("96385074")); // GTIN-8
        assert_eq!(mod10_check_digit("10614141234567890"), Some(8));
        assert!(!has_valid_mod10("09506000134353"));
        assert!(!has_valid_mod10(""));
        assert!(!has_valid_mod10("0950600013435x"));
    }

    #[test]
    fn gtins() {
        assert!(is_gtin("4006381333931"));
        assert!(is_gtin("96385074"));
        assert!(is_gtin("09506000134352"));
        assert!(!is_gtin("4006381333932"));
        assert!(!is_gtin("40063813339a1"));
        assert!(!is_gtin("123"));
        assert!(!is_gtin("106141412345678908"), "an SSCC is no GTIN");
        assert_eq!(with_mod10("400638133393").as_deref(), Some("4006381333931"));
    }

    #[test]
    fn price_check_digits() {
        // GS1 General Specifications worked examples.
        assert_eq!(price_check_digit("2875"), Some(9));
        assert_eq!(price_check_digit("14685"), Some(6));
        assert_eq!(price_check_digit("123"), None);
    }
}
