//! The tus request headers: `Upload-Metadata`, `Upload-Checksum`,
//! `Upload-Concat`, `Upload-Offset` / `Upload-Length`.
//!
//! Invariants:
//! - `Metadata`: parse → render → parse is the identity; parsed keys are
//!   unique, non-empty, printable ASCII without commas; any well-formed
//!   metadata renders to a header that parses back to it;
//! - `Checksum::parse` never panics; a `Known` digest has its algorithm's
//!   length and is the base64 that was sent; algorithm names are
//!   case-insensitive;
//! - `ConcatHeader`: parse → render → parse is the identity, whatever the
//!   endpoint URL rendered with;
//! - `parse_u64` agrees with a reference parser (digits only after trimming,
//!   at most 20 of them, value within `u64`).

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use depot::protocol::tus::headers::{Algorithm, Checksum, ConcatHeader, Metadata, parse_u64};
use libfuzzer_sys::fuzz_target;

fn check_metadata(s: &str) {
    let Ok(m) = Metadata::parse(s) else { return };
    for (i, (k, _)) in m.0.iter().enumerate() {
        assert!(!k.is_empty() && k.bytes().all(|b| b.is_ascii_graphic() && b != b','), "key {k:?}");
        assert!(m.0[..i].iter().all(|(o, _)| o != k), "duplicate key {k:?} from {s:?}");
    }
    let rendered = m.render();
    let again = Metadata::parse(&rendered).unwrap_or_else(|e| panic!("{s:?} rendered {rendered:?}: {e}"));
    assert_eq!(again, m, "{s:?} rendered {rendered:?}");
    assert_eq!(again.render(), rendered);
}

fn check_checksum(s: &str) {
    match Checksum::parse(s) {
        Ok(Checksum::Known { algorithm, digest }) => {
            assert_eq!(digest.len(), algorithm.digest_len(), "{s:?}");
            let (name, b64) = s.trim().split_once(' ').expect("a known checksum has a space");
            let want = match name.to_ascii_lowercase().as_str() {
                "sha1" => Algorithm::Sha1,
                "md5" => Algorithm::Md5,
                "crc32" => Algorithm::Crc32,
                "blake3" => Algorithm::Blake3,
                other => panic!("{s:?}: `{other}` parsed as {algorithm:?}"),
            };
            assert_eq!(algorithm, want);
            assert_eq!(STANDARD.decode(b64.trim()).ok(), Some(digest), "{s:?}");
        }
        Ok(Checksum::Unsupported(name)) => {
            assert!(!["sha1", "md5", "crc32", "blake3"].contains(&name.to_ascii_lowercase().as_str()));
        }
        Err(_) => {}
    }
}

const BASES: [&str; 4] = ["", "/api/tus/", "http://127.0.0.1:8080/api/tus/", "https://files.example/a/b/"];

fn check_concat(s: &str) {
    let Ok(c) = ConcatHeader::parse(s) else { return };
    if let ConcatHeader::Final(ids) = &c {
        assert!(!ids.is_empty() && ids.iter().all(|i| !i.is_empty()), "{s:?}: {c:?}");
    }
    for base in BASES {
        let r = c.render(base);
        match ConcatHeader::parse(&r) {
            Ok(again) => assert_eq!(again, c, "{s:?} rendered with {base:?} as {r:?}"),
            Err(e) => panic!("{s:?} parsed to {c:?}, rendered with {base:?} as {r:?}, which fails: {e}"),
        }
    }
}

/// The reference for `Upload-Offset` / `Upload-Length`.
fn reference_u64(s: &str) -> Option<u64> {
    let t = s.trim();
    if t.is_empty() || t.len() > 20 {
        return None;
    }
    let mut v: u128 = 0;
    for b in t.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u128::from(b - b'0');
    }
    u64::try_from(v).ok()
}

fn check_u64(s: &str) {
    let got = parse_u64("Upload-Offset", s);
    assert_eq!(got.as_ref().ok().copied(), reference_u64(s), "{s:?}: {got:?}");
    if let Err(e) = got {
        assert!(e.0.contains("Upload-Offset"), "the error names the header: {e}");
    }
}

/// A metadata key as clients send them, or any printable ASCII word.
fn key(u: &mut Unstructured) -> arbitrary::Result<String> {
    const KEYS: [&str; 8] =
        ["filename", "filetype", "name", "type", "contentType", "relativePath", "is_confidential", "x"];
    if u.ratio(1, 2)? {
        return Ok(u.choose(&KEYS)?.to_string());
    }
    let n = u.int_in_range(1..=12)?;
    (0..n)
        .map(|_| {
            let c = char::from(u.int_in_range(0x21u8..=0x7e)?);
            Ok(if c == ',' { '_' } else { c })
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    // Literal header values (seeds: what tus-js-client, Uppy and tuspy send).
    if let Some(check) = match mode {
        b'M' => Some(check_metadata as fn(&str)),
        b'C' => Some(check_checksum as fn(&str)),
        b'X' => Some(check_concat as fn(&str)),
        b'U' => Some(check_u64 as fn(&str)),
        _ => None,
    } {
        if let Ok(s) = std::str::from_utf8(rest) {
            check(s.trim_end_matches('\n'));
        }
        return;
    }
    let mut u = Unstructured::new(rest);
    match mode % 6 {
        // Any string through every parser.
        0 => {
            let Ok(s) = <&str>::arbitrary(&mut u) else { return };
            check_metadata(s);
            check_checksum(s);
            check_concat(s);
            check_u64(s);
        }
        // Well-formed metadata: render → parse is the identity.
        1 => {
            let Ok(n) = u.int_in_range(0..=8) else { return };
            let mut m = Metadata::default();
            for _ in 0..n {
                let (Ok(k), Ok(v)) = (key(&mut u), Option::<Vec<u8>>::arbitrary(&mut u)) else { return };
                // An empty value is sent as a bare key.
                let v = v.filter(|v| !v.is_empty());
                if m.0.iter().all(|(o, _)| *o != k) {
                    m.0.push((k, v));
                }
            }
            let rendered = m.render();
            assert_eq!(Metadata::parse(&rendered).as_ref(), Ok(&m), "{rendered:?}");
            check_metadata(&rendered);
        }
        // A checksum as clients send it.
        2 => {
            let algs = [Algorithm::Sha1, Algorithm::Md5, Algorithm::Crc32, Algorithm::Blake3];
            let names = ["sha1", "md5", "crc32", "blake3"];
            let (Ok(i), Ok(upper), Ok(digest)) =
                (u.int_in_range(0..=3usize), bool::arbitrary(&mut u), Vec::<u8>::arbitrary(&mut u))
            else {
                return;
            };
            let name = if upper { names[i].to_ascii_uppercase() } else { names[i].to_string() };
            let header = format!("{name} {}", STANDARD.encode(&digest));
            let got = Checksum::parse(&header);
            if digest.len() == algs[i].digest_len() {
                assert_eq!(got, Ok(Checksum::Known { algorithm: algs[i], digest }), "{header:?}");
            } else {
                assert!(got.is_err(), "{header:?}: {got:?}");
            }
            check_checksum(&header);
        }
        // `final;` with URLs built from arbitrary ids.
        3 => {
            let (Ok(base), Ok(ids)) = (u.choose(&BASES), Vec::<String>::arbitrary(&mut u)) else { return };
            let h =
                format!("final;{}", ids.iter().map(|i| format!("{base}{i}")).collect::<Vec<_>>().join(" "));
            check_concat(&h);
            // Hex ids (what the server hands out) always come back as they were.
            let hex: Vec<String> =
                ids.iter().map(|i| blake3::hash(i.as_bytes()).to_hex()[..32].to_string()).collect();
            if !hex.is_empty() {
                let c = ConcatHeader::Final(hex);
                assert_eq!(ConcatHeader::parse(&c.render(base)).as_ref(), Ok(&c));
            }
        }
        // Numbers: digit strings with padding and whitespace.
        4 => {
            let (Ok(v), Ok(zeros), Ok(ws)) =
                (u64::arbitrary(&mut u), u.int_in_range(0..=24usize), u.int_in_range(0..=2u8))
            else {
                return;
            };
            let digits = format!("{}{v}", "0".repeat(zeros));
            let s = match ws {
                0 => digits.clone(),
                1 => format!(" {digits} "),
                _ => format!("\t{digits}"),
            };
            check_u64(&s);
            if digits.len() <= 20 {
                assert_eq!(parse_u64("Upload-Length", &s), Ok(v), "{s:?}");
            }
            // One past the largest value.
            check_u64(&format!("{}", u128::from(v) + u128::from(u64::MAX)));
        }
        // Bytes as a header value (what `HeaderValue::to_str` lets through).
        _ => {
            let bytes: Vec<u8> = u.take_rest().iter().map(|b| b & 0x7f).collect();
            let Ok(s) = std::str::from_utf8(&bytes) else { return };
            check_metadata(s);
            check_checksum(s);
            check_concat(s);
            check_u64(s);
        }
    }
});
