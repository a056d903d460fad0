//! The `Content-Disposition` header of a `multipart/form-data` part, read
//! the way senders in the field write it (RFC 7578 §4.2, RFC 6266, RFC 8187,
//! and the HTML standard's form-data encoding). Pure: fuzzed by
//! `fuzz/fuzz_targets/disposition.rs`.
//!
//! Why not the multipart parser's own reading: it stops at the first
//! parameter that starts with `filename`, so a part that sends
//! `filename*=…` before `filename="…"` (as many HTTP libraries do) has "no
//! filename", and it does not undo the browsers' escapes.
//!
//! What is accepted:
//! - `name` and `filename` as a quoted string or a token, in any order,
//!   parameter names case-insensitive; the first of a repeated one counts;
//! - inside quotes, browsers' escapes `%22`, `%0D`, `%0A` (and only those:
//!   browsers send every other byte as it is) and the quoted-pairs `\"` and
//!   `\\` that older curl and RFC-minded senders write; any other backslash
//!   is kept (a Windows path);
//! - `filename*` in RFC 8187 form (`UTF-8''…` or `ISO-8859-1''…`), preferred
//!   over `filename` when both are sent and it decodes; RFC 7578 tells
//!   senders not to use it, but receivers in the field accept it alone too.
//!
//! Names come out decoded and otherwise untouched: checking them (control
//! characters, path separators) is [`crate::store::FileName::parse`].

/// The parameters of a form-data part that matter to an upload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormDisposition {
    /// The form field's name.
    pub name: Option<String>,
    /// The file name the sender gave, decoded.
    pub filename: Option<String>,
}

/// Reads a part's `Content-Disposition` value. Never fails: what cannot be
/// read is left out, and the caller refuses a part that lacks what it needs.
pub fn parse_form_disposition(value: &[u8]) -> FormDisposition {
    let mut name = None;
    let mut filename = None;
    let mut filename_ext = None;
    // The disposition type (`form-data`) comes first; parameters follow.
    let mut rest = match value.iter().position(|&b| b == b';') {
        Some(i) => &value[i..],
        None => return FormDisposition::default(),
    };
    while let Some((key, raw, after)) = next_param(rest) {
        rest = after;
        if key.eq_ignore_ascii_case(b"name") && name.is_none() {
            name = raw.text();
        } else if key.eq_ignore_ascii_case(b"filename") && filename.is_none() {
            filename = raw.text();
        } else if key.eq_ignore_ascii_case(b"filename*") && filename_ext.is_none() {
            if let Raw::Token(t) = raw {
                filename_ext = ext_value(t);
            }
        }
    }
    FormDisposition { name, filename: filename_ext.or(filename) }
}

/// A parameter value as sent.
enum Raw<'a> {
    Token(&'a [u8]),
    Quoted(&'a [u8]),
}

impl Raw<'_> {
    /// The value as text: quoted-pairs and browsers' escapes undone; `None`
    /// when the bytes are not UTF-8.
    fn text(&self) -> Option<String> {
        match self {
            Raw::Token(t) => String::from_utf8(t.to_vec()).ok(),
            Raw::Quoted(q) => {
                let mut out = Vec::with_capacity(q.len());
                let mut i = 0;
                while i < q.len() {
                    match q[i] {
                        b'\\' if matches!(q.get(i + 1), Some(b'"' | b'\\')) => {
                            out.push(q[i + 1]);
                            i += 2;
                        }
                        b'%' => match browser_escape(&q[i..]) {
                            Some(b) => {
                                out.push(b);
                                i += 3;
                            }
                            None => {
                                out.push(b'%');
                                i += 1;
                            }
                        },
                        b => {
                            out.push(b);
                            i += 1;
                        }
                    }
                }
                String::from_utf8(out).ok()
            }
        }
    }
}

/// `%22`, `%0D`, `%0A` (either case) at the start of `s`: the three bytes the
/// HTML standard's form-data encoding escapes in names and filenames.
fn browser_escape(s: &[u8]) -> Option<u8> {
    let code = s.get(1..3)?;
    match [code[0].to_ascii_uppercase(), code[1].to_ascii_uppercase()] {
        [b'2', b'2'] => Some(b'"'),
        [b'0', b'D'] => Some(b'\r'),
        [b'0', b'A'] => Some(b'\n'),
        _ => None,
    }
}

fn trim_start(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    s
}

fn trim_end(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The next `; key=value` of `s` (which starts at a `;` or whitespace):
/// the key, the value and what follows. `None` when no parameter is left.
fn next_param(mut s: &[u8]) -> Option<(&[u8], Raw<'_>, &[u8])> {
    loop {
        s = trim_start(s);
        match s.first()? {
            b';' => s = &s[1..],
            _ => break,
        }
    }
    let eq = s.iter().position(|&b| b == b'=' || b == b';');
    let Some(eq) = eq.filter(|&i| s[i] == b'=') else {
        // A key without a value: skip it.
        let next = s.iter().position(|&b| b == b';').unwrap_or(s.len());
        return next_param(&s[next..]);
    };
    let key = trim_end(&s[..eq]);
    let v = trim_start(&s[eq + 1..]);
    if let Some(q) = v.strip_prefix(b"\"") {
        // Up to the first `"` not escaped by a backslash.
        let mut i = 0;
        while i < q.len() {
            match q[i] {
                b'\\' if matches!(q.get(i + 1), Some(b'"' | b'\\')) => i += 2,
                b'"' => return Some((key, Raw::Quoted(&q[..i]), &q[i + 1..])),
                _ => i += 1,
            }
        }
        // No closing quote: take the rest as the value.
        Some((key, Raw::Quoted(q), &[]))
    } else {
        let end = v.iter().position(|&b| b == b';').unwrap_or(v.len());
        Some((key, Raw::Token(trim_end(&v[..end])), &v[end..]))
    }
}

/// An RFC 8187 `ext-value`: `charset'[language]'value-chars`, UTF-8 or
/// ISO-8859-1 (case-insensitive); `None` when it is malformed.
fn ext_value(v: &[u8]) -> Option<String> {
    let mut it = v.splitn(3, |&b| b == b'\'');
    let (charset, _lang, encoded) = (it.next()?, it.next()?, it.next()?);
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut i = 0;
    while i < encoded.len() {
        if encoded[i] == b'%' {
            let hex = std::str::from_utf8(encoded.get(i + 1..i + 3)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            bytes.push(encoded[i]);
            i += 1;
        }
    }
    if charset.eq_ignore_ascii_case(b"utf-8") {
        String::from_utf8(bytes).ok()
    } else if charset.eq_ignore_ascii_case(b"iso-8859-1") {
        Some(bytes.into_iter().map(char::from).collect())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filename(v: &str) -> Option<String> {
        parse_form_disposition(v.as_bytes()).filename
    }

    #[test]
    fn plain_forms() {
        let d = parse_form_disposition(br#"form-data; name="file"; filename="a b.txt""#);
        assert_eq!(d, FormDisposition { name: Some("file".into()), filename: Some("a b.txt".into()) });
        let d = parse_form_disposition(b"form-data;name=file;filename=a.txt");
        assert_eq!(d, FormDisposition { name: Some("file".into()), filename: Some("a.txt".into()) });
        let d = parse_form_disposition(br#"form-data; FILENAME = "x" ; Name="f""#);
        assert_eq!(d, FormDisposition { name: Some("f".into()), filename: Some("x".into()) });
        assert_eq!(parse_form_disposition(br#"form-data; name="field""#).filename, None);
        assert_eq!(parse_form_disposition(b"form-data").name, None);
        // The first of a repeated parameter counts.
        assert_eq!(filename(r#"form-data; filename="one"; filename="two""#).as_deref(), Some("one"));
        // A semicolon inside quotes is part of the name, not a new parameter.
        let d = parse_form_disposition(br#"form-data; filename="a; name=evil"; name="file""#);
        assert_eq!(d.name.as_deref(), Some("file"));
        assert_eq!(d.filename.as_deref(), Some("a; name=evil"));
        assert_eq!(filename(r#"form-data; junk; filename="x""#).as_deref(), Some("x"));
    }

    #[test]
    fn extended_filename_is_preferred_and_accepted_alone() {
        let both = r#"form-data; name="file"; filename*=utf-8''t%C5%8Dky%C5%8D%20report.txt; filename="tokyo report.txt""#;
        assert_eq!(filename(both).as_deref(), Some("tōkyō report.txt"));
        let after =
            r#"form-data; name="file"; filename="tokyo report.txt"; filename*=UTF-8''t%C5%8Dky%C5%8D.txt"#;
        assert_eq!(filename(after).as_deref(), Some("tōkyō.txt"));
        assert_eq!(
            filename("form-data; name=\"file\"; filename*=utf-8''%E2%82%AC.txt").as_deref(),
            Some("€.txt")
        );
        assert_eq!(filename("form-data; filename*=iso-8859-1'en'%A3%20rates").as_deref(), Some("£ rates"));
        // A broken extended value falls back to the plain one, or to none.
        assert_eq!(filename(r#"form-data; filename*=utf-8''%ZZ; filename="ok""#).as_deref(), Some("ok"));
        assert_eq!(filename("form-data; filename*=koi8-r''abc"), None);
        assert_eq!(filename("form-data; filename*=utf-8''%FF"), None);
    }

    #[test]
    fn browser_escapes_are_undone_and_nothing_else() {
        assert_eq!(filename(r#"form-data; filename="say %22hi%22.txt""#).as_deref(), Some("say \"hi\".txt"));
        assert_eq!(filename(r#"form-data; filename="a%0D%0Ab""#).as_deref(), Some("a\r\nb"));
        assert_eq!(filename(r#"form-data; filename="a%0d%0ab""#).as_deref(), Some("a\r\nb"));
        assert_eq!(filename(r#"form-data; filename="100%25 %41.txt""#).as_deref(), Some("100%25 %41.txt"));
        assert_eq!(filename(r#"form-data; filename="50%""#).as_deref(), Some("50%"));
        assert_eq!(filename(r#"form-data; filename="ünï €.txt""#).as_deref(), Some("ünï €.txt"));
    }

    #[test]
    fn quoted_pairs_and_backslashes() {
        assert_eq!(filename(r#"form-data; filename="a\"b.txt""#).as_deref(), Some("a\"b.txt"));
        assert_eq!(filename(r#"form-data; filename="a\\b""#).as_deref(), Some("a\\b"));
        assert_eq!(filename(r#"form-data; filename="C:\files\x.txt""#).as_deref(), Some("C:\\files\\x.txt"));
        assert_eq!(filename(r#"form-data; filename="open"#).as_deref(), Some("open"));
    }
}
