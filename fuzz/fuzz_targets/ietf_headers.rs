//! The IETF resumable-upload draft's request headers:
//! `Upload-Draft-Interop-Version`, `Upload-Complete` / `Upload-Incomplete`,
//! `Upload-Offset` / `Upload-Length`, `Content-Digest` / `Repr-Digest`.
//!
//! Invariants:
//! - `Interop::parse` accepts exactly one digit 3..=8 (after trimming); for
//!   every version, reading back the completeness it renders gives the
//!   same answer (version 3's inverted field too);
//! - `parse_bool` accepts exactly `?1` / `?0` (parameters and whitespace
//!   aside); `parse_int` agrees with a reference (1 to 15 digits);
//! - `Digests::parse` never panics; every digest it keeps has its
//!   algorithm's length; a dictionary built from well-formed members
//!   parses back to them (unknown algorithms skipped);
//! - problem bodies are JSON naming their type, and the offsets.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use depot::protocol::ietf::headers::{
    DigestAlgorithm, Digests, Interop, ProblemKind, parse_bool, parse_int,
};
use libfuzzer_sys::fuzz_target;

fn digest_len(a: DigestAlgorithm) -> usize {
    match a {
        DigestAlgorithm::Sha256 => 32,
        DigestAlgorithm::Sha512 => 64,
        DigestAlgorithm::Md5 => 16,
        DigestAlgorithm::Sha1 => 20,
    }
}

fn check_interop(s: &str) {
    let got = Interop::parse(s);
    let t = s.trim();
    let want = t.len() == 1 && (b'3'..=b'8').contains(&t.as_bytes()[0]);
    assert_eq!(got.is_ok(), want, "{s:?}");
    if let Ok(v) = got {
        for complete in [true, false] {
            let rendered = v.complete_value(complete);
            assert_eq!(v.read_complete(Some(rendered)), Ok(Some(complete)), "v{} {complete}", v.number());
        }
        let _ = v.read_complete(Some(s));
    }
}

fn check_bool(s: &str) {
    let got = parse_bool("Upload-Complete", s);
    let head = s.split(';').next().unwrap_or("").trim();
    match head {
        "?1" => assert_eq!(got, Ok(true)),
        "?0" => assert_eq!(got, Ok(false)),
        _ => assert!(got.is_err(), "{s:?}"),
    }
}

fn check_int(s: &str) {
    let t = s.trim();
    let want = (!t.is_empty() && t.len() <= 15 && t.bytes().all(|b| b.is_ascii_digit()))
        .then(|| t.parse::<u64>().expect("15 digits fit"));
    assert_eq!(parse_int("Upload-Offset", s).ok(), want, "{s:?}");
}

fn check_digests(s: &str) {
    if let Ok(d) = Digests::parse("Content-Digest", s) {
        for (a, bytes) in &d.0 {
            assert_eq!(bytes.len(), digest_len(*a), "{s:?}");
        }
        if let Some((a, _)) = d.best() {
            assert!(d.0.iter().any(|(b, _)| b == a));
        }
    }
}

fn check_all(s: &str) {
    check_interop(s);
    check_bool(s);
    check_int(s);
    check_digests(s);
}

const ALGS: [(&str, Option<DigestAlgorithm>); 6] = [
    ("sha-256", Some(DigestAlgorithm::Sha256)),
    ("sha-512", Some(DigestAlgorithm::Sha512)),
    ("md5", Some(DigestAlgorithm::Md5)),
    ("sha", Some(DigestAlgorithm::Sha1)),
    ("unixsum", None),
    ("crc32c", None),
];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut u = Unstructured::new(rest);
    match mode % 4 {
        // Any string through every parser.
        0 => {
            if let Ok(s) = std::str::from_utf8(rest) {
                check_all(s);
            }
        }
        // Well-formed digest dictionaries parse back to their known members.
        1 => {
            let Ok(n) = u.int_in_range(1..=4usize) else { return };
            let mut members = Vec::new();
            let mut want = Vec::new();
            for _ in 0..n {
                let Ok(&(name, alg)) = u.choose(&ALGS) else { return };
                let Ok(exact) = bool::arbitrary(&mut u) else { return };
                let len = match (alg, exact) {
                    (Some(a), true) => digest_len(a),
                    _ => u.int_in_range(1..=70usize).unwrap_or(1),
                };
                let Ok(bytes) = u.bytes(len) else { return };
                let param = if bool::arbitrary(&mut u).unwrap_or(false) { ";x=1" } else { "" };
                members.push(format!("{name}=:{}:{param}", STANDARD.encode(bytes)));
                if let Some(a) = alg {
                    want.push((a, bytes.to_vec()));
                }
            }
            let header = members.join(", ");
            let got = Digests::parse("Repr-Digest", &header);
            if want.iter().all(|(a, b)| b.len() == digest_len(*a)) {
                assert_eq!(got, Ok(Digests(want)), "{header:?}");
            } else {
                assert!(got.is_err(), "{header:?}: {got:?}");
            }
        }
        // Numbers with padding and whitespace.
        2 => {
            let (Ok(v), Ok(zeros)) = (u64::arbitrary(&mut u), u.int_in_range(0..=16usize)) else { return };
            let s = format!(" {}{v} ", "0".repeat(zeros));
            check_int(&s);
            check_interop(&s);
        }
        // Problem bodies.
        _ => {
            let (Ok(e), Ok(p), Ok(detail)) = (u64::arbitrary(&mut u), u64::arbitrary(&mut u), <&str>::arbitrary(&mut u))
            else {
                return;
            };
            for kind in [
                ProblemKind::MismatchingOffset { expected: e, provided: p },
                ProblemKind::CompletedUpload,
                ProblemKind::InconsistentLength,
            ] {
                let v: serde_json::Value = serde_json::from_str(&kind.body(detail)).expect("JSON");
                assert_eq!(v["type"], kind.type_uri());
                assert_eq!(v["detail"], detail);
                if let ProblemKind::MismatchingOffset { .. } = kind {
                    assert_eq!(v["expected-offset"], e);
                    assert_eq!(v["provided-offset"], p);
                }
            }
        }
    }
});
