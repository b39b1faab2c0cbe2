//! Printer status replies: Zebra `~HS` host status (three STX..ETX strings)
//! and ESC/POS `DLE EOT` real-time status bytes, parsed into one
//! [`PrinterStatus`] so "paper out" reaches the tablet before staff notice.

use serde::Serialize;

const STX: u8 = 0x02;
const ETX: u8 = 0x03;

/// What a printer reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PrinterStatus {
    /// Out of labels/paper.
    pub paper_out: bool,
    /// Paused (ZPL).
    pub paused: bool,
    /// Print head open (ZPL).
    pub head_open: bool,
    /// Ribbon out (ZPL, thermal transfer only).
    pub ribbon_out: bool,
    /// Cover open (ESC/POS).
    pub cover_open: bool,
    /// Paper roll near its end (ESC/POS).
    pub paper_near_end: bool,
    /// Receive buffer full (ZPL).
    pub buffer_full: bool,
    /// Other error reported (ESC/POS error bit, ZPL temperature/RAM flags).
    pub error: bool,
}

impl PrinterStatus {
    /// Conditions that stop printing, in words for the tablet.
    pub fn faults(&self) -> Vec<&'static str> {
        [
            (self.paper_out, "paper out"),
            (self.paused, "paused"),
            (self.head_open, "head open"),
            (self.ribbon_out, "ribbon out"),
            (self.cover_open, "cover open"),
            (self.buffer_full, "buffer full"),
            (self.error, "error"),
        ]
        .into_iter()
        .filter_map(|(on, what)| on.then_some(what))
        .collect()
    }

    /// True when a job can be sent.
    pub fn is_ready(&self) -> bool {
        self.faults().is_empty()
    }
}

/// Why a status reply was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    /// Not enough bytes yet.
    #[error("incomplete status reply")]
    Incomplete,
    /// Bytes that are not a status reply.
    #[error("malformed status reply: {0}")]
    Malformed(String),
}

fn flag(fields: &[&str], i: usize) -> Result<bool, StatusError> {
    match fields.get(i).map(|f| f.trim()) {
        Some("0") => Ok(false),
        Some("1") => Ok(true),
        other => Err(StatusError::Malformed(format!(
            "field {i} is {other:?}, expected 0 or 1"
        ))),
    }
}

/// Splits `buf` into STX..ETX strings; returns them and the bytes consumed
/// (through the CR LF after the third ETX, if present).
fn hs_strings(buf: &[u8]) -> Result<(Vec<String>, usize), StatusError> {
    let mut strings = Vec::new();
    let mut i = 0;
    while strings.len() < 3 {
        while i < buf.len() && matches!(buf[i], b'\r' | b'\n') {
            i += 1;
        }
        match buf.get(i) {
            None => return Err(StatusError::Incomplete),
            Some(&STX) => {}
            Some(b) => {
                return Err(StatusError::Malformed(format!(
                    "expected STX, got 0x{b:02x}"
                )));
            }
        }
        let end = buf[i + 1..]
            .iter()
            .position(|&b| b == ETX)
            .ok_or(StatusError::Incomplete)?;
        let body = &buf[i + 1..i + 1 + end];
        if body.iter().any(|b| !(0x20..0x7f).contains(b)) {
            return Err(StatusError::Malformed(
                "non-printable byte in status string".into(),
            ));
        }
        strings.push(String::from_utf8_lossy(body).into_owned());
        i += end + 2;
    }
    while i < buf.len() && matches!(buf[i], b'\r' | b'\n') {
        i += 1;
    }
    Ok((strings, i))
}

/// Parses a Zebra `~HS` reply. Returns the status and the bytes consumed.
pub fn parse_zpl_hs(buf: &[u8]) -> Result<(PrinterStatus, usize), StatusError> {
    let (s, used) = hs_strings(buf)?;
    let one: Vec<&str> = s[0].split(',').collect();
    let two: Vec<&str> = s[1].split(',').collect();
    let three: Vec<&str> = s[2].split(',').collect();
    if one.len() != 12 || two.len() != 11 || three.len() != 2 {
        return Err(StatusError::Malformed(format!(
            "expected 12, 11 and 2 fields, got {}, {} and {}",
            one.len(),
            two.len(),
            three.len()
        )));
    }
    let status = PrinterStatus {
        paper_out: flag(&one, 1)?,
        paused: flag(&one, 2)?,
        buffer_full: flag(&one, 5)?,
        error: flag(&one, 9)? || flag(&one, 10)? || flag(&one, 11)?,
        head_open: flag(&two, 2)?,
        ribbon_out: flag(&two, 3)?,
        ..PrinterStatus::default()
    };
    Ok((status, used))
}

/// Encodes a `~HS` reply (for the printer simulator and round-trip tests).
pub fn encode_zpl_hs(s: &PrinterStatus) -> Vec<u8> {
    let b = |v: bool| u8::from(v);
    let one = format!(
        "030,{},{},1218,000,{},0,0,000,{},0,0",
        b(s.paper_out),
        b(s.paused),
        b(s.buffer_full),
        b(s.error)
    );
    let two = format!(
        "000,0,{},{},0,2,4,0,00000000,1,000",
        b(s.head_open),
        b(s.ribbon_out)
    );
    let mut out = Vec::new();
    for part in [one, two, "1234,0".to_string()] {
        out.push(STX);
        out.extend(part.bytes());
        out.extend([ETX, b'\r', b'\n']);
    }
    out
}

/// ESC/POS `DLE EOT 2` (offline cause) and `DLE EOT 4` (roll paper sensor) queries.
pub const ESCPOS_QUERY: [u8; 6] = [0x10, 0x04, 0x02, 0x10, 0x04, 0x04];

fn escpos_byte(b: u8) -> Result<u8, StatusError> {
    // Fixed bits: bit 1 and bit 4 set, bit 0 and bit 7 clear.
    if b & 0x93 == 0x12 {
        Ok(b)
    } else {
        Err(StatusError::Malformed(format!(
            "0x{b:02x} is not an ESC/POS status byte"
        )))
    }
}

/// Parses the replies to [`ESCPOS_QUERY`] (two bytes).
pub fn parse_escpos(buf: &[u8]) -> Result<(PrinterStatus, usize), StatusError> {
    let (&offline, &roll) = match buf {
        [a, b, ..] => (a, b),
        _ => return Err(StatusError::Incomplete),
    };
    let offline = escpos_byte(offline)?;
    let roll = escpos_byte(roll)?;
    let status = PrinterStatus {
        cover_open: offline & 0x04 != 0,
        paper_out: offline & 0x20 != 0 || roll & 0x60 != 0,
        error: offline & 0x40 != 0,
        paper_near_end: roll & 0x0c != 0,
        ..PrinterStatus::default()
    };
    Ok((status, 2))
}

/// Encodes ESC/POS status bytes (for the simulator and tests).
pub fn encode_escpos(s: &PrinterStatus) -> [u8; 2] {
    let offline = 0x12
        | if s.cover_open { 0x04 } else { 0 }
        | if s.paper_out { 0x20 } else { 0 }
        | if s.error { 0x40 } else { 0 };
    let roll = 0x12 | if s.paper_near_end { 0x0c } else { 0 } | if s.paper_out { 0x60 } else { 0 };
    [offline, roll]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zebra_manual_example() {
        let reply = b"\x02030,0,0,1245,000,0,0,0,000,0,0,0\x03\r\n\x02001,0,0,0,1,2,6,0,00000000,1,000\x03\r\n\x021234,0\x03\r\n";
        let (s, used) = parse_zpl_hs(reply).expect("valid");
        assert!(s.is_ready());
        assert_eq!(used, reply.len());
        let paper_out = b"\x02030,1,1,1245,000,0,0,0,000,0,0,0\x03\x02001,0,1,0,1,2,6,0,00000000,1,000\x03\x021234,0\x03";
        let (s, _) = parse_zpl_hs(paper_out).expect("valid");
        assert_eq!(s.faults(), vec!["paper out", "paused", "head open"]);
        assert_eq!(parse_zpl_hs(&reply[..20]), Err(StatusError::Incomplete));
        assert!(parse_zpl_hs(b"garbage").is_err());
    }

    #[test]
    fn escpos_bits() {
        let (s, _) = parse_escpos(&[0x16, 0x72]).expect("valid");
        assert!(s.cover_open && s.paper_out);
        assert!(parse_escpos(&[0xff, 0x12]).is_err());
        assert_eq!(parse_escpos(&[0x12]), Err(StatusError::Incomplete));
    }
}
