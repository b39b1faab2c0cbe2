//! GS1 Digital Link URIs (`https://id.gs1.org/01/09506000134352/10/ABC?17=251231`):
//! the same AIs as an element string, carried in a web address that a QR code
//! holds. Any host is accepted (brands use their own domains); the path is
//! read from the first primary-key AI onwards.

use super::element::{Element, element, push_unique};
use super::{Gs1Error, check};

/// AIs that may start the Digital Link path (primary keys).
const PRIMARY_KEYS: &[&str] = &["01", "00", "414", "417", "8004", "402", "401", "8020"];

/// Primary keys that are numeric GS1 keys and may be shortened in a URI
/// (GTIN-8/12/13 are padded to 14 digits).
fn normalise_key(ai: &str, value: &str) -> String {
    if ai == "01" && matches!(value.len(), 8 | 12 | 13) && value.bytes().all(|c| c.is_ascii_digit())
    {
        format!("{value:0>14}")
    } else {
        value.to_string()
    }
}

fn percent_decode(s: &str) -> Result<String, Gs1Error> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .ok_or_else(|| Gs1Error::DigitalLink(format!("bad escape in {s:?}")))?;
            let b = u8::from_str_radix(hex, 16)
                .map_err(|_| Gs1Error::DigitalLink(format!("bad escape %{hex}")))?;
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Gs1Error::DigitalLink("escape is not UTF-8".into()))
}

/// True if `s` looks like a web URI (the caller then decides whether it is a Digital Link).
pub fn is_web_uri(s: &str) -> bool {
    let lower = s.get(..8).map(str::to_ascii_lowercase).unwrap_or_default();
    lower.starts_with("https://") || lower.starts_with("http://")
}

/// True if the URI's path holds a primary-key AI followed by a value: it is
/// then a Digital Link and must parse, or it is refused.
pub fn looks_like_digital_link(uri: &str) -> bool {
    let path = path_of(uri);
    let segs: Vec<&str> = path.split('/').collect();
    segs.windows(2)
        .any(|w| PRIMARY_KEYS.contains(&w[0]) && !w[1].is_empty())
}

fn path_of(uri: &str) -> &str {
    let after_scheme = uri.split_once("://").map_or(uri, |(_, r)| r);
    let no_frag = after_scheme.split('#').next().unwrap_or("");
    let no_query = no_frag.split('?').next().unwrap_or("");
    no_query.split_once('/').map_or("", |(_, p)| p)
}

/// Parses a Digital Link URI into elements (primary key first, then path
/// qualifiers, then query AIs). Non-numeric query keys (e.g. `linkType`) are ignored.
pub fn parse_digital_link(uri: &str, reference_year: i32) -> Result<Vec<Element>, Gs1Error> {
    if !is_web_uri(uri) {
        return Err(Gs1Error::DigitalLink("not an http(s) URI".into()));
    }
    if uri.chars().any(|c| c.is_ascii_control() || c == ' ') {
        return Err(Gs1Error::DigitalLink(
            "control character or space in URI".into(),
        ));
    }
    let segs: Vec<&str> = path_of(uri).split('/').collect();
    let start = segs
        .iter()
        .position(|s| PRIMARY_KEYS.contains(s))
        .ok_or_else(|| Gs1Error::DigitalLink("no primary key (e.g. /01/<GTIN>) in path".into()))?;
    let path = &segs[start..];
    if !path.len().is_multiple_of(2) {
        return Err(Gs1Error::DigitalLink(
            "path ends with an AI without a value".into(),
        ));
    }
    let mut out = Vec::new();
    for pair in path.chunks(2) {
        let (ai, value) = (pair[0], percent_decode(pair[1])?);
        if value.is_empty() {
            return Err(Gs1Error::DigitalLink(format!("empty value for AI ({ai})")));
        }
        let value = normalise_key(ai, &value);
        push_unique(&mut out, element(ai, &value, reference_year)?)?;
    }
    let query = uri
        .split('#')
        .next()
        .and_then(|u| u.split_once('?'))
        .map_or("", |(_, q)| q);
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        if !k.bytes().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let v = percent_decode(v)?;
        push_unique(&mut out, element(k, &v, reference_year)?)?;
    }
    Ok(out)
}

/// Builds a Digital Link URI on `https://id.gs1.org` for a GTIN with optional
/// lot/serial and query AIs (used by tests and label tooling).
pub fn build_digital_link(
    gtin: &str,
    path_quals: &[(&str, &str)],
    query: &[(&str, &str)],
) -> Result<String, Gs1Error> {
    if gtin.len() != 14 || !check::has_valid_mod10(gtin) {
        return Err(Gs1Error::CheckDigit {
            ai: "01".into(),
            value: gtin.into(),
        });
    }
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    let mut uri = format!("https://id.gs1.org/01/{gtin}");
    for (ai, v) in path_quals {
        uri.push_str(&format!("/{ai}/{}", enc(v)));
    }
    for (i, (ai, v)) in query.iter().enumerate() {
        uri.push(if i == 0 { '?' } else { '&' });
        uri.push_str(&format!("{ai}={}", enc(v)));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_example() {
        let els = parse_digital_link(
            "https://id.gs1.org/01/09506000134352/10/ABC%2F1?17=251231&linkType=gs1:pip",
            2025,
        )
        .expect("valid");
        let ais: Vec<&str> = els.iter().map(|e| e.ai.as_str()).collect();
        assert_eq!(ais, ["01", "10", "17"]);
        assert_eq!(els[1].raw, "ABC/1");
        let short =
            parse_digital_link("https://example.com/shop/01/9506000134352", 2025).expect("gtin13");
        assert_eq!(short[0].raw, "09506000134352");
    }

    #[test]
    fn errors() {
        assert!(parse_digital_link("https://id.gs1.org/01/09506000134353", 2025).is_err());
        assert!(parse_digital_link("https://id.gs1.org/01", 2025).is_err());
        assert!(parse_digital_link("https://example.com/about", 2025).is_err());
        assert!(parse_digital_link("https://id.gs1.org/01/09506000134352/10/%zz", 2025).is_err());
        assert!(looks_like_digital_link("https://id.gs1.org/01/x"));
        assert!(!looks_like_digital_link("https://example.com/a/b"));
    }

    #[test]
    fn round_trip() {
        let uri = build_digital_link("09506000134352", &[("10", "AB/C-1")], &[("17", "251231")])
            .expect("build");
        let els = parse_digital_link(&uri, 2025).expect("parse");
        assert_eq!(els[1].raw, "AB/C-1");
    }
}
