//! Byte-level encoders and parsers of the three scale protocols. Pure and
//! total: any input gives a reading, "need more bytes" or an error.

use serde::{Deserialize, Serialize};

const STX: u8 = 0x02;
const CR: u8 = b'\r';

/// Which protocol a scale speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ScaleProtocol {
    /// Toledo 8217 (the POS standard): 9600 7E1, single-byte commands.
    #[default]
    Toledo8217,
    /// Mettler Toledo MT-SICS level 0/1: 9600 8N1, CRLF lines.
    MtSics,
    /// CAS 22-byte continuous output: 9600 8N1.
    Cas,
}

/// Serial line settings for a protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SerialSettings {
    /// Baud rate.
    pub baud: u32,
    /// 7 or 8.
    pub data_bits: u8,
    /// Even parity (else none).
    pub even_parity: bool,
}

impl ScaleProtocol {
    /// The usual factory settings.
    pub fn serial_settings(self) -> SerialSettings {
        match self {
            Self::Toledo8217 => SerialSettings {
                baud: 9600,
                data_bits: 7,
                even_parity: true,
            },
            Self::MtSics | Self::Cas => SerialSettings {
                baud: 9600,
                data_bits: 8,
                even_parity: false,
            },
        }
    }
}

/// One weight reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Reading {
    /// Weight in milligrams; `None` when the scale gave only a status (motion, overload).
    pub milligrams: Option<i64>,
    /// Weight is stable (not in motion).
    pub stable: bool,
    /// At or over capacity.
    pub over_capacity: bool,
    /// Under zero.
    pub under_zero: bool,
    /// Net weight (a tare is active), when the protocol says so.
    pub net: bool,
}

/// Why bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Need more bytes.
    #[error("incomplete reply")]
    Incomplete,
    /// Not a reply of this protocol.
    #[error("malformed reply: {0}")]
    Malformed(String),
    /// The scale refused the command (MT-SICS ES/ET/EL, "I").
    #[error("scale error: {0}")]
    Refused(String),
}

fn malformed(s: impl Into<String>) -> ParseError {
    ParseError::Malformed(s.into())
}

/// Parses "[-+ ]digits[.digits]" with a unit ("kg", "g" or none meaning kg) into milligrams.
pub fn parse_weight(num: &str, unit: &str) -> Result<i64, ParseError> {
    let t = num.trim();
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, t[1..].trim_start()),
        Some(b'+') => (false, t[1..].trim_start()),
        _ => (false, t),
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let ok = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
    if int.is_empty() && frac.is_empty() || !ok(int) || !ok(frac) || int.len() > 9 || frac.len() > 6
    {
        return Err(malformed(format!("bad weight {num:?}")));
    }
    let scale_mg: i64 = match unit.trim() {
        "kg" | "" => 1_000_000,
        "g" => 1_000,
        other => return Err(malformed(format!("unsupported unit {other:?}"))),
    };
    let int_v: i64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| malformed("int"))?
    };
    let mut frac_mg: i64 = 0;
    let mut place = scale_mg;
    for c in frac.bytes() {
        place /= 10;
        frac_mg += i64::from(c - b'0') * place;
    }
    let v = int_v * scale_mg + frac_mg;
    Ok(if neg { -v } else { v })
}

/// Toledo 8217: parses one reply (STX ... CR) from the start of `buf`.
pub fn parse_toledo(buf: &[u8]) -> Result<(Reading, usize), ParseError> {
    let start = buf
        .iter()
        .position(|&b| b == STX)
        .ok_or(ParseError::Incomplete)?;
    if start != 0 {
        return Err(malformed("bytes before STX"));
    }
    let end = buf
        .iter()
        .position(|&b| b == CR)
        .ok_or(ParseError::Incomplete)?;
    let body = &buf[1..end];
    let used = end + 1;
    if let [b'?', status] = body {
        return Ok((
            Reading {
                milligrams: None,
                stable: status & 0x01 == 0,
                over_capacity: status & 0x02 != 0,
                under_zero: status & 0x04 != 0,
                net: false,
            },
            used,
        ));
    }
    let text = std::str::from_utf8(body).map_err(|_| malformed("not ASCII"))?;
    let text = text.strip_suffix('N').unwrap_or(text);
    let mg = parse_weight(text, "kg")?;
    Ok((
        Reading {
            milligrams: Some(mg),
            stable: true,
            ..Reading::default()
        },
        used,
    ))
}

/// Toledo 8217 weight reply for `mg` (simulator).
pub fn encode_toledo_weight(mg: i64) -> Vec<u8> {
    let grams = mg.unsigned_abs() / 1000;
    let mut out = vec![STX];
    out.extend(
        format!(
            "{}{:02}.{:03}",
            if mg < 0 { "-" } else { "" },
            grams / 1000,
            grams % 1000
        )
        .bytes(),
    );
    out.push(CR);
    out
}

/// Toledo 8217 status reply (simulator).
pub fn encode_toledo_status(motion: bool, over: bool, under: bool) -> Vec<u8> {
    let status = 0x30 | u8::from(motion) | u8::from(over) << 1 | u8::from(under) << 2;
    vec![STX, b'?', status, CR]
}

/// An MT-SICS reply line (without CRLF).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SicsReply {
    /// S/SI/T weight reply.
    Weight(Reading),
    /// Z A: zero done; T S: tare done (weight is the tare).
    Done,
    /// @ reply: I4 A "serial number".
    Reset(String),
}

/// Parses one MT-SICS reply line.
pub fn parse_sics(line: &str) -> Result<SicsReply, ParseError> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    match fields.as_slice() {
        ["ES"] => Err(ParseError::Refused("ES syntax error".into())),
        ["ET"] => Err(ParseError::Refused("ET transmission error".into())),
        ["EL"] => Err(ParseError::Refused("EL logical error".into())),
        ["S" | "SI", "+"] => Ok(SicsReply::Weight(Reading {
            over_capacity: true,
            ..Reading::default()
        })),
        ["S" | "SI", "-"] => Ok(SicsReply::Weight(Reading {
            under_zero: true,
            ..Reading::default()
        })),
        [cmd @ ("S" | "SI" | "Z" | "T" | "@"), "I"] => {
            Err(ParseError::Refused(format!("{cmd} not executable now")))
        }
        ["Z" | "T", "+" | "-"] => Err(ParseError::Refused("outside range".into())),
        ["Z", "A"] => Ok(SicsReply::Done),
        ["T", "S", _, _] => Ok(SicsReply::Done),
        ["S" | "SI", flag @ ("S" | "D"), num, unit] => {
            let mg = parse_weight(num, unit)?;
            Ok(SicsReply::Weight(Reading {
                milligrams: Some(mg),
                stable: *flag == "S",
                ..Reading::default()
            }))
        }
        ["I4", "A", serial] => Ok(SicsReply::Reset(serial.trim_matches('"').to_string())),
        _ => Err(malformed(format!("unknown MT-SICS reply {line:?}"))),
    }
}

/// MT-SICS weight line (simulator): `S S     1.234 kg`.
pub fn encode_sics_weight(cmd: &str, mg: i64, stable: bool) -> String {
    let sign = if mg < 0 { "-" } else { "" };
    let abs = mg.unsigned_abs();
    format!(
        "{cmd} {} {:>10} kg\r\n",
        if stable { "S" } else { "D" },
        format!("{sign}{}.{:03}", abs / 1_000_000, abs % 1_000_000 / 1000)
    )
}

/// CAS frame length.
pub const CAS_FRAME_LEN: usize = 22;

/// Parses a CAS 22-byte frame `ST,GS,<id><lamp>,<8 data> kg\r\n` at the start of `buf`.
pub fn parse_cas(buf: &[u8]) -> Result<(Reading, usize), ParseError> {
    if buf.len() < CAS_FRAME_LEN {
        return Err(ParseError::Incomplete);
    }
    let f = &buf[..CAS_FRAME_LEN];
    if f[2] != b',' || f[5] != b',' || f[8] != b',' || &f[20..22] != b"\r\n" {
        return Err(malformed("not a CAS 22-byte frame"));
    }
    let state = &f[0..2];
    let kind = &f[3..5];
    let lamp = f[7];
    if lamp & 0x80 == 0 {
        return Err(malformed("lamp byte bit 7 must be set"));
    }
    if !matches!(kind, b"GS" | b"NT") || !matches!(state, b"ST" | b"US" | b"OL") {
        return Err(malformed("bad CAS header"));
    }
    let over = state == b"OL";
    let data = std::str::from_utf8(&f[9..17]).map_err(|_| malformed("not ASCII"))?;
    let unit = std::str::from_utf8(&f[18..20]).map_err(|_| malformed("not ASCII"))?;
    let milligrams = if over {
        None
    } else {
        Some(parse_weight(data, unit)?)
    };
    let reading = Reading {
        milligrams,
        stable: state == b"ST" && lamp & 0x40 != 0,
        over_capacity: over,
        under_zero: milligrams.is_some_and(|m| m < 0),
        net: kind == b"NT",
    };
    Ok((reading, CAS_FRAME_LEN))
}

/// CAS frame (simulator).
pub fn encode_cas(mg: i64, stable: bool, net: bool) -> Vec<u8> {
    let state = if stable { "ST" } else { "US" };
    let kind = if net { "NT" } else { "GS" };
    let lamp = 0xA0 | if stable { 0x40 } else { 0 } | if net { 0x02 } else { 0x04 };
    let abs = mg.unsigned_abs();
    let num = format!(
        "{}{}.{:03}",
        if mg < 0 { "-" } else { "" },
        abs / 1_000_000,
        abs % 1_000_000 / 1000
    );
    let mut out = format!("{state},{kind},1").into_bytes();
    out.push(lamp);
    out.extend(format!(",{num:>8} kg\r\n").bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toledo() {
        let (r, used) = parse_toledo(b"\x0201.234\r").expect("weight");
        assert_eq!((r.milligrams, r.stable, used), (Some(1_234_000), true, 8));
        let (r, _) = parse_toledo(&encode_toledo_status(true, false, false)).expect("status");
        assert!(!r.stable && r.milligrams.is_none());
        let (r, _) = parse_toledo(&encode_toledo_status(false, true, true)).expect("status");
        assert!(r.over_capacity && r.under_zero);
        assert_eq!(parse_toledo(b"\x0201.2"), Err(ParseError::Incomplete));
        assert!(parse_toledo(b"x\x0201.234\r").is_err());
        assert_eq!(
            parse_toledo(&encode_toledo_weight(1_250_000)).map(|r| r.0.milligrams),
            Ok(Some(1_250_000))
        );
    }

    #[test]
    fn sics() {
        assert_eq!(
            parse_sics("S S      100.00 g"),
            Ok(SicsReply::Weight(Reading {
                milligrams: Some(100_000),
                stable: true,
                ..Reading::default()
            }))
        );
        assert!(matches!(
            parse_sics("S D   1.5 kg"),
            Ok(SicsReply::Weight(Reading { stable: false, .. }))
        ));
        assert!(matches!(
            parse_sics("S +"),
            Ok(SicsReply::Weight(Reading {
                over_capacity: true,
                ..
            }))
        ));
        assert!(matches!(parse_sics("S I"), Err(ParseError::Refused(_))));
        assert!(matches!(parse_sics("EL"), Err(ParseError::Refused(_))));
        assert_eq!(parse_sics("Z A"), Ok(SicsReply::Done));
        assert_eq!(
            parse_sics("I4 A \"0123456789\""),
            Ok(SicsReply::Reset("0123456789".into()))
        );
        let line = encode_sics_weight("S", -1_500_000, true);
        assert!(matches!(
            parse_sics(line.trim_end()),
            Ok(SicsReply::Weight(Reading {
                milligrams: Some(-1_500_000),
                ..
            }))
        ));
    }

    #[test]
    fn cas() {
        let f = encode_cas(13_500_000, true, false);
        assert_eq!(f.len(), CAS_FRAME_LEN);
        let (r, _) = parse_cas(&f).expect("frame");
        assert_eq!(
            (r.milligrams, r.stable, r.net),
            (Some(13_500_000), true, false)
        );
        let (r, _) = parse_cas(&encode_cas(-200_000, false, true)).expect("frame");
        assert_eq!(
            (r.milligrams, r.stable, r.net, r.under_zero),
            (Some(-200_000), false, true, true)
        );
        assert!(parse_cas(&[b'x'; 22]).is_err());
    }
}
