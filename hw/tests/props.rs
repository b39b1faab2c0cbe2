//! Property tests: no input panics the GS1, scan, scale or printer-status
//! parsers, and encode -> parse round-trips.

use flashkart_hw::gs1::ai::{Charset, Kind, TABLE};
use flashkart_hw::gs1::check::with_mod10;
use flashkart_hw::gs1::{encode_element_string, parse_element_string};
use flashkart_hw::printer::PrinterStatus;
use flashkart_hw::printer::status::{encode_escpos, encode_zpl_hs, parse_escpos, parse_zpl_hs};
use flashkart_hw::scale::protocol::{
    SicsReply, encode_cas, encode_sics_weight, encode_toledo_weight, parse_cas, parse_sics,
    parse_toledo,
};
use flashkart_hw::scanner::{LineFramer, ScanContext, decode_entered, decode_scan};
use proptest::prelude::*;

fn ctx() -> ScanContext {
    ScanContext {
        reference_year: 2025,
        variable_measure: Vec::new(),
    }
}

/// A valid (ai, data) pair for table row `i`, built from `seed` digits/letters.
fn valid_pair(i: usize, seed: &[u8]) -> (String, String) {
    let def = &TABLE[i % TABLE.len()];
    let ai = if def.decimal_digit {
        format!("{}{}", def.code, seed[0] % (def.max_decimals + 1))
    } else {
        def.code.to_string()
    };
    let len = def.min_len + usize::from(seed[1]) % (def.max_len - def.min_len + 1);
    let digit = |k: usize| char::from(b'0' + seed[k % seed.len()] % 10);
    let data: String = match def.kind {
        Kind::Key => with_mod10(&(0..len - 1).map(digit).collect::<String>()).unwrap_or_default(),
        Kind::Date => "250630".into(),
        Kind::DateTime => "2506301530"
            .chars()
            .take(if len >= 10 { 10 } else { 8 })
            .collect(),
        _ => match def.charset {
            Charset::Numeric => (0..len).map(digit).collect(),
            Charset::Alphanumeric => (0..len)
                .map(|k| char::from(b'A' + seed[k % seed.len()] % 26))
                .collect(),
        },
    };
    (ai, data)
}

proptest! {
    #[test]
    fn gs1_parser_never_panics(s in "\\PC{0,80}", g in proptest::collection::vec(any::<u8>(), 0..60)) {
        let _ = parse_element_string(&s, 2025);
        let bytes: String = g.iter().map(|b| char::from(b % 64 + 29)).collect();
        let _ = parse_element_string(&bytes, 2025);
    }

    #[test]
    fn scan_decoder_never_panics(s in "\\PC{0,100}", sym in prop::sample::select(vec!["]C1", "]E0", "]E4", "]d2", "]Q1", "]Q3", "]e0", "]C0", ""])) {
        let _ = decode_scan(&format!("{sym}{s}"), &ctx());
        let _ = decode_scan(&format!("{sym}https://id.gs1.org/{s}"), &ctx());
        let _ = decode_entered(&format!("{sym}{s}"), &ctx());
    }

    #[test]
    fn entered_digits_decode_as_scanned(body in "[0-9]{11,13}") {
        // A code typed without AIM identifier reads as the barcode carrying it would.
        let code = with_mod10(&body).unwrap_or_default();
        let sym = if code.len() == 14 { "]C101" } else { "]E0" };
        let typed = decode_entered(&code, &ctx()).map(|e| e.content);
        let scanned = decode_scan(&format!("{sym}{code}"), &ctx()).map(|e| e.content);
        prop_assert_eq!(typed, scanned);
    }

    #[test]
    fn framer_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8)) {
        let mut f = LineFramer::new(Some("#".into()), 32);
        for c in &chunks {
            let _ = f.push(c);
        }
    }

    #[test]
    fn element_strings_round_trip(rows in proptest::collection::vec((0usize..TABLE.len(), proptest::collection::vec(any::<u8>(), 40)), 1..5)) {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (i, seed) in &rows {
            let p = valid_pair(*i, seed);
            if !pairs.iter().any(|q| q.0 == p.0) {
                pairs.push(p);
            }
        }
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(a, d)| (a.as_str(), d.as_str())).collect();
        let s = encode_element_string(&refs, 2025).expect("valid pairs encode");
        let parsed = parse_element_string(&s, 2025).expect("encoded string parses");
        let back: Vec<(String, String)> = parsed.into_iter().map(|e| (e.ai, e.raw)).collect();
        prop_assert_eq!(back, pairs);
    }

    #[test]
    fn scale_parsers_never_panic(b in proptest::collection::vec(any::<u8>(), 0..64), s in "\\PC{0,40}") {
        let _ = parse_toledo(&b);
        let _ = parse_cas(&b);
        let _ = parse_sics(&s);
    }

    #[test]
    fn scale_round_trips(mg in -9_999_000i64..99_999_000, stable: bool, net: bool) {
        let mg = mg / 1000 * 1000; // protocols carry grams
        prop_assert_eq!(parse_cas(&encode_cas(mg, stable, net)).map(|r| (r.0.milligrams, r.0.stable, r.0.net)), Ok((Some(mg), stable, net)));
        let line = encode_sics_weight("SI", mg, stable);
        prop_assert_eq!(parse_sics(line.trim_end()).ok(), Some(SicsReply::Weight(flashkart_hw::scale::Reading { milligrams: Some(mg), stable, ..Default::default() })));
        if mg >= 0 {
            prop_assert_eq!(parse_toledo(&encode_toledo_weight(mg)).map(|r| r.0.milligrams), Ok(Some(mg)));
        }
    }

    #[test]
    fn printer_status_parsers_never_panic_and_round_trip(b in proptest::collection::vec(any::<u8>(), 0..120), flags in any::<[bool; 6]>()) {
        let _ = parse_zpl_hs(&b);
        let _ = parse_escpos(&b);
        let st = PrinterStatus { paper_out: flags[0], paused: flags[1], head_open: flags[2], ribbon_out: flags[3], buffer_full: flags[4], error: flags[5], ..Default::default() };
        prop_assert_eq!(parse_zpl_hs(&encode_zpl_hs(&st)).map(|r| r.0), Ok(st));
        let esc = PrinterStatus { paper_out: flags[0], cover_open: flags[1], paper_near_end: flags[2], error: flags[3], ..Default::default() };
        prop_assert_eq!(parse_escpos(&encode_escpos(&esc)).map(|r| r.0), Ok(esc));
    }
}
