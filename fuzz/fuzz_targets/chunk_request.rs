//! The parameters of a resumable.js / flow.js / plain chunked-upload request.
//!
//! (a) Key/value pairs (query string and form fields) → `PieceParams::parse`:
//! - it agrees with an independent reference parser (which flavor, which
//!   value wins, which values are valid);
//! - duplicates resolve to the last value, and pairs that are not protocol
//!   parameters (`!PieceParams::is_param`) never matter, so the server may
//!   drop every other form field;
//! - a parsed request renders to unique parameter names of its own flavor
//!   and parses back to the same value.
//!
//! (b) A multipart body, read as the server reads it (the `multer` parser
//! behind axum's `Multipart`: query pairs first, then the parameter fields,
//! the bytes in field `file`):
//! - a well-formed body built from the pairs yields exactly its fields (a
//!   leading byte-order mark in a text field is dropped by the parser's
//!   decoding, as browsers never send one), and the same parse as (a);
//! - for a damaged body (truncated, bytes flipped or inserted) or arbitrary
//!   bytes, the parser never panics, the outcome does not depend on how the
//!   body is split into network reads, and whatever parameters it yields
//!   satisfy (a).

#![no_main]

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use depot::protocol::seed::params::{Flavor, PieceParams};
use depot::store::ChunkId;
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 10] = [
    "ChunkNumber",
    "ChunkSize",
    "CurrentChunkSize",
    "TotalSize",
    "Identifier",
    "Filename",
    "RelativePath",
    "TotalChunks",
    "Type",
    "ChunkHash",
];
const FLAVORS: [Flavor; 3] = [Flavor::Resumable, Flavor::Flow, Flavor::Plain];
const MAX_VALUE: usize = 4096;

fn key_for(f: Flavor, name: &str) -> String {
    match f {
        Flavor::Resumable => format!("resumable{name}"),
        Flavor::Flow => format!("flow{name}"),
        Flavor::Plain => name[..1].to_ascii_lowercase() + &name[1..],
    }
}

// ---------------------------------------------------------------- reference

/// An independent reading of the protocol: the flavor is the first of
/// resumable, flow, plain whose chunk number is present; the last value of a
/// key wins; numbers are 1–20 ASCII digits, nothing around them; no value of the
/// flavor's parameters exceeds 4096 bytes.
fn reference(pairs: &[(String, String)]) -> Option<PieceParams> {
    let flavor = FLAVORS.into_iter().find(|f| pairs.iter().any(|(k, _)| *k == key_for(*f, "ChunkNumber")))?;
    let mut last: HashMap<&str, &str> = HashMap::new();
    for (k, v) in pairs {
        last.insert(k, v);
    }
    let val = |name: &str| last.get(key_for(flavor, name).as_str()).copied();
    if NAMES.iter().any(|n| val(n).is_some_and(|v| v.len() > MAX_VALUE)) {
        return None;
    }
    let num = |name: &str| -> Option<u64> {
        let t = val(name)?;
        if t.is_empty() || t.len() > 20 || t.bytes().any(|b| !b.is_ascii_digit()) {
            return None;
        }
        t.bytes().try_fold(0u64, |acc, b| acc.checked_mul(10)?.checked_add(u64::from(b - b'0')))
    };
    let number = u32::try_from(num("ChunkNumber")?).ok()?;
    let total_chunks = u32::try_from(num("TotalChunks")?).ok()?;
    let chunk_size = num("ChunkSize")?;
    let total_size = num("TotalSize")?;
    let current_size = match val("CurrentChunkSize") {
        Some(_) => Some(num("CurrentChunkSize")?),
        None => None,
    };
    let identifier = val("Identifier")?;
    let filename = val("Filename")?;
    if number == 0 || total_chunks == 0 || number > total_chunks || chunk_size == 0 {
        return None;
    }
    if identifier.is_empty() || filename.is_empty() {
        return None;
    }
    let hash = match val("ChunkHash").map(str::trim).unwrap_or("") {
        "" => None,
        h => Some(h.parse::<ChunkId>().ok()?),
    };
    Some(PieceParams {
        flavor,
        number,
        chunk_size,
        current_size,
        total_size,
        identifier: identifier.to_string(),
        filename: filename.to_string(),
        relative_path: val("RelativePath").filter(|s| !s.is_empty()).map(str::to_string),
        total_chunks,
        mime: val("Type").map(str::trim).filter(|s| !s.is_empty()).map(str::to_string),
        hash,
    })
}

fn parse(pairs: &[(String, String)]) -> Result<PieceParams, String> {
    PieceParams::parse(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))).map_err(|e| e.0)
}

/// Invariants (a); returns the parse.
fn check_pairs(pairs: &[(String, String)]) -> Result<PieceParams, String> {
    let r = parse(pairs);
    assert_eq!(r.as_ref().ok(), reference(pairs).as_ref(), "{pairs:?} parsed to {r:?}");
    if let Err(e) = &r {
        assert!(!e.is_empty());
    }

    // The last value of a key wins: keeping only last occurrences changes nothing.
    let mut seen = std::collections::HashSet::new();
    let mut dedup: Vec<(String, String)> =
        pairs.iter().rev().filter(|(k, _)| seen.insert(k.clone())).cloned().collect();
    dedup.reverse();
    assert_eq!(parse(&dedup), r, "last occurrences of {pairs:?}");
    // Only protocol parameters matter.
    let params: Vec<(String, String)> =
        pairs.iter().filter(|(k, _)| PieceParams::is_param(k)).cloned().collect();
    assert_eq!(parse(&params), r, "parameters of {pairs:?}");

    if let Ok(p) = &r {
        assert!(p.number >= 1 && p.number <= p.total_chunks && p.chunk_size > 0);
        assert!(!p.identifier.is_empty() && !p.filename.is_empty());
        let rendered = p.render();
        let mut keys = std::collections::HashSet::new();
        for (k, v) in &rendered {
            assert!(keys.insert(k.clone()), "{k} rendered twice");
            assert!(PieceParams::is_param(k), "{k} is not a parameter");
            assert!(NAMES.iter().any(|n| key_for(p.flavor, n) == *k), "{k} is not of flavor {:?}", p.flavor);
            assert!(v.len() <= MAX_VALUE);
        }
        assert_eq!(parse(&rendered).as_ref(), Ok(p), "{p:?} rendered as {rendered:?}");
    }
    r
}

// ---------------------------------------------------------------- generators

fn key(u: &mut Unstructured) -> arbitrary::Result<String> {
    Ok(match u.int_in_range(0..=15u8)? {
        0..=10 => key_for(*u.choose(&FLAVORS)?, u.choose(&NAMES)?),
        11 => "file".into(),
        12 => u
            .choose(&[
                "ChunkNumber",
                "chunknumber",
                "resumablechunkNumber",
                "flowChunkNumber ",
                "resumableFoo",
                "flowX",
                "x",
            ])?
            .to_string(),
        _ => String::arbitrary(u)?,
    })
}

fn number(u: &mut Unstructured) -> arbitrary::Result<String> {
    let n: u64 = match u.int_in_range(0..=4u8)? {
        0 => u.int_in_range(0..=6)?,
        1 => u.int_in_range(0..=1 << 21)?,
        2 => u64::from(u32::MAX) + u.int_in_range(0..=2)? - 1,
        3 => u64::MAX - u.int_in_range(0..=2)?,
        _ => u64::arbitrary(u)?,
    };
    Ok(match u.int_in_range(0..=7u8)? {
        0 => format!(" {n}\t"),
        1 => format!("00{n}"),
        2 => format!("-{n}"),
        3 => format!("+{n}"),
        4 => format!("{n}e3"),
        5 => format!("{n}9"),
        _ => n.to_string(),
    })
}

fn value(u: &mut Unstructured, key: &str) -> arbitrary::Result<String> {
    let numeric = ["ChunkNumber", "TotalChunks", "ChunkSize", "TotalSize", "CurrentChunkSize"]
        .iter()
        .any(|n| key.to_ascii_lowercase().ends_with(&n.to_ascii_lowercase()));
    if numeric && u.ratio(4, 5)? {
        return number(u);
    }
    if key.to_ascii_lowercase().ends_with("chunkhash") && u.ratio(4, 5)? {
        let id = ChunkId(<[u8; 32]>::arbitrary(u)?).to_string();
        return Ok(match u.int_in_range(0..=4u8)? {
            0 => id.to_ascii_uppercase(),
            1 => format!(" {id} "),
            2 => id[1..].to_string(),
            3 => format!("{id}0"),
            _ => id,
        });
    }
    Ok(match u.int_in_range(0..=9u8)? {
        0 => String::new(),
        1 => "a".repeat(u.int_in_range(MAX_VALUE - 1..=MAX_VALUE + 1)?),
        2 => "../../etc/passwd".into(),
        _ => String::arbitrary(u)?,
    })
}

/// A consistent request of some flavor, as the libraries send it.
fn valid(u: &mut Unstructured) -> arbitrary::Result<Vec<(String, String)>> {
    let f = *u.choose(&FLAVORS)?;
    let total = u.int_in_range(1..=8u32)?;
    let n = u.int_in_range(1..=total)?;
    let chunk = u.int_in_range(1..=1 << 20u64)?;
    let size = chunk * u64::from(total) - u.int_in_range(0..=chunk - 1)?;
    let mut out = vec![
        (key_for(f, "ChunkNumber"), n.to_string()),
        (key_for(f, "ChunkSize"), chunk.to_string()),
        (key_for(f, "CurrentChunkSize"), chunk.to_string()),
        (key_for(f, "TotalSize"), size.to_string()),
        (key_for(f, "Type"), u.choose(&["", "image/png", " text/plain "])?.to_string()),
        (key_for(f, "Identifier"), format!("{size}-{}", String::arbitrary(u)?)),
        (key_for(f, "Filename"), u.choose(&["a.txt", "photo.jpg", "naïve report.pdf", "x"])?.to_string()),
        (key_for(f, "RelativePath"), "dir/a.txt".into()),
        (key_for(f, "TotalChunks"), total.to_string()),
    ];
    if u.ratio(1, 2)? {
        out.push((key_for(f, "ChunkHash"), ChunkId::of(&n.to_le_bytes()).to_string()));
    }
    Ok(out)
}

fn pairs(u: &mut Unstructured) -> arbitrary::Result<Vec<(String, String)>> {
    let mut out = if u.ratio(2, 3)? { valid(u)? } else { Vec::new() };
    for _ in 0..u.int_in_range(0..=8)? {
        let k = key(u)?;
        let v = value(u, &k)?;
        let at = u.int_in_range(0..=out.len())?;
        out.insert(at, (k, v));
    }
    Ok(out)
}

// ---------------------------------------------------------------- multipart

fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    // The body is in memory: every poll makes progress.
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// What the server takes from a multipart body.
#[derive(Debug, PartialEq, Eq)]
struct Extracted {
    /// Every field: its name and, for parameters, the text.
    fields: Vec<(Option<String>, Option<String>)>,
    /// Parameter pairs, in order.
    pairs: Vec<(String, String)>,
    file: Option<Vec<u8>>,
    /// The body was refused (the server answers 400).
    failed: bool,
}

fn extract(body: &[u8], splits: &[usize], boundary: &str) -> Extracted {
    let mut pieces = Vec::new();
    let mut at = 0;
    for &n in splits {
        let end = (at + n).min(body.len());
        pieces.push(Ok::<_, Infallible>(Bytes::copy_from_slice(&body[at..end])));
        at = end;
    }
    pieces.push(Ok(Bytes::copy_from_slice(&body[at..])));
    let stream = futures_util::stream::iter(pieces);
    block_on(async move {
        let mut mp = multer::Multipart::new(stream, boundary);
        let mut out = Extracted { fields: Vec::new(), pairs: Vec::new(), file: None, failed: false };
        loop {
            let mut field = match mp.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(_) => {
                    out.failed = true;
                    break;
                }
            };
            let name = field.name().map(str::to_string);
            let n = name.clone().unwrap_or_default();
            if n == "file" {
                if out.file.is_some() {
                    out.failed = true;
                    break;
                }
                let mut data = Vec::new();
                loop {
                    match field.chunk().await {
                        Ok(Some(c)) => data.extend_from_slice(&c),
                        Ok(None) => break,
                        Err(_) => {
                            out.failed = true;
                            return out;
                        }
                    }
                }
                out.fields.push((name, None));
                out.file = Some(data);
            } else if PieceParams::is_param(&n) {
                match field.text().await {
                    Ok(v) => {
                        out.fields.push((name, Some(v.clone())));
                        out.pairs.push((n, v));
                    }
                    Err(_) => {
                        out.failed = true;
                        break;
                    }
                }
            } else {
                out.fields.push((name, None));
            }
        }
        out
    })
}

/// A field name multipart carries verbatim in `name="…"`.
fn plain_name(k: &str) -> bool {
    !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

fn multipart_body(boundary: &str, form: &[(String, String)], file: Option<&[u8]>) -> Vec<u8> {
    let mut b = Vec::new();
    for (k, v) in form {
        b.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n").as_bytes(),
        );
        b.extend_from_slice(v.as_bytes());
        b.extend_from_slice(b"\r\n");
    }
    if let Some(f) = file {
        b.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"blob\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        b.extend_from_slice(f);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    b
}

fn splits(u: &mut Unstructured) -> arbitrary::Result<Vec<usize>> {
    (0..u.int_in_range(0..=12)?).map(|_| u.int_in_range(0..=96usize)).collect()
}

fn check_multipart(u: &mut Unstructured) -> arbitrary::Result<()> {
    let all = pairs(u)?;
    let boundary = format!("----depotFormBoundary{:016x}", u64::arbitrary(u)?);
    // The first pairs come in the query string, the others as form fields.
    let q = u.int_in_range(0..=all.len())?;
    let (query, form) = all.split_at(q);
    let form: Vec<(String, String)> =
        form.iter().filter(|(k, _)| plain_name(k) && k != "file").cloned().collect();
    let file: Option<Vec<u8>> = if u.ratio(4, 5)? { Some(Vec::<u8>::arbitrary(u)?) } else { None };
    let body = multipart_body(&boundary, &form, file.as_deref());
    let delimiter = format!("\r\n--{boundary}");
    let well_formed = !form.iter().any(|(_, v)| v.contains(&delimiter[2..]))
        && !file
            .as_deref()
            .is_some_and(|f| f.windows(delimiter.len() - 2).any(|w| w == &delimiter.as_bytes()[2..]));

    let cuts = splits(u)?;
    let got = extract(&body, &cuts, &boundary);
    assert_eq!(extract(&body, &[], &boundary), got, "the same body in one read");
    if well_formed {
        assert!(!got.failed, "a well-formed body was refused: {got:?}");
        let want: Vec<(Option<String>, Option<String>)> = form
            .iter()
            .map(|(k, v)| {
                let text =
                    PieceParams::is_param(k).then(|| v.strip_prefix('\u{feff}').unwrap_or(v).to_string());
                (Some(k.clone()), text)
            })
            .chain(file.as_ref().map(|_| (Some("file".to_string()), None)))
            .collect();
        assert_eq!(got.fields, want);
        assert_eq!(got.file, file);
        let mut server: Vec<(String, String)> = query.to_vec();
        server.extend(got.pairs.iter().cloned());
        let direct: Vec<(String, String)> = query
            .iter()
            .cloned()
            .chain(
                form.iter()
                    .filter(|(k, _)| PieceParams::is_param(k))
                    .map(|(k, v)| (k.clone(), v.strip_prefix('\u{feff}').unwrap_or(v).to_string())),
            )
            .collect();
        assert_eq!(check_pairs(&server), parse(&direct));
    }

    // Damage it: truncate, flip bytes, insert bytes.
    let mut bad = body.clone();
    for _ in 0..u.int_in_range(1..=4)? {
        match u.int_in_range(0..=2u8)? {
            0 => {
                let n = u.int_in_range(0..=bad.len())?;
                bad.truncate(n);
            }
            1 if !bad.is_empty() => {
                let i = u.int_in_range(0..=bad.len() - 1)?;
                bad[i] ^= u.int_in_range(1..=255u8)?;
            }
            _ => {
                let i = u.int_in_range(0..=bad.len())?;
                let ins = <&[u8]>::arbitrary(u)?;
                bad.splice(i..i, ins.iter().copied());
            }
        }
    }
    check_any_body(&bad, &cuts, &boundary, query);
    Ok(())
}

fn check_any_body(body: &[u8], cuts: &[usize], boundary: &str, query: &[(String, String)]) {
    let got = extract(body, cuts, boundary);
    assert_eq!(extract(body, &[], boundary), got, "the outcome depends on the reads");
    if !got.failed {
        let mut server: Vec<(String, String)> = query.to_vec();
        server.extend(got.pairs);
        let _ = check_pairs(&server);
    }
}

/// A query string as the libraries send it (`a=b&c=d`, percent-encoded).
fn query_pairs(q: &str) -> Vec<(String, String)> {
    let decode = |s: &str| -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                },
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    q.trim_end_matches(['\r', '\n'])
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode {
        // A literal query string (seeds: what resumable.js and flow.js send).
        b'q' => {
            let _ = check_pairs(&query_pairs(&String::from_utf8_lossy(rest)));
        }
        // A literal multipart body; the boundary is on its first line.
        b'm' => {
            let first = rest.split(|&b| b == b'\n').next().unwrap_or_default();
            let boundary = String::from_utf8_lossy(first);
            let boundary = boundary.trim_end_matches('\r');
            let boundary = boundary.strip_prefix("--").unwrap_or(boundary);
            let cuts: Vec<usize> = rest.iter().step_by(61).map(|&b| usize::from(b % 97)).collect();
            check_any_body(rest, &cuts, boundary, &[]);
        }
        _ => {
            let mut u = Unstructured::new(rest);
            match mode % 4 {
                0 => {
                    if let Ok(p) = pairs(&mut u) {
                        let _ = check_pairs(&p);
                    }
                }
                1 | 2 => {
                    let _ = check_multipart(&mut u);
                }
                // Arbitrary bytes as the body.
                _ => {
                    let Ok(cuts) = splits(&mut u) else { return };
                    check_any_body(u.take_rest(), &cuts, "X-BOUNDARY", &[]);
                }
            }
        }
    }
});
