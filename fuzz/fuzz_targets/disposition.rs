//! A multipart part's `Content-Disposition`: `parse_form_disposition`.
//!
//! Invariants:
//! - never panics, whatever the bytes;
//! - a name a browser encodes (the HTML standard's form-data encoding:
//!   `"`, CR, LF escaped as `%22`, `%0D`, `%0A`) into `filename="…"` reads
//!   back exactly, beside `name="file"`, whatever comes before or after it
//!   (names with `%` or `\` aside: the encoding itself is ambiguous there);
//! - a name sent as RFC 8187 `filename*=UTF-8''…` reads back exactly, and
//!   wins over a plain `filename` in either order.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use depot::protocol::disposition::parse_form_disposition;
use libfuzzer_sys::fuzz_target;

fn browser(name: &str) -> String {
    name.replace('"', "%22").replace('\r', "%0D").replace('\n', "%0A")
}

fn rfc8187(name: &str) -> String {
    let mut out = String::from("UTF-8''");
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        let _ = parse_form_disposition(rest);
        return;
    }
    let mut u = Unstructured::new(rest);
    let (Ok(name), Ok(other), Ok(order)) = (String::arbitrary(&mut u), String::arbitrary(&mut u), bool::arbitrary(&mut u))
    else {
        return;
    };
    if !name.contains(['%', '\\']) {
        let v = format!("form-data; name=\"file\"; filename=\"{}\"", browser(&name));
        let d = parse_form_disposition(v.as_bytes());
        assert_eq!(d.name.as_deref(), Some("file"), "{v:?}");
        assert_eq!(d.filename.as_deref(), Some(name.as_str()), "{v:?}");
    }
    let plain = format!("filename=\"{}\"", browser(&other).replace('\\', "\\\\"));
    let ext = format!("filename*={}", rfc8187(&name));
    let v = if order {
        format!("form-data; name=\"file\"; {ext}; {plain}")
    } else {
        format!("form-data; {plain}; name=\"file\"; {ext}")
    };
    let d = parse_form_disposition(v.as_bytes());
    assert_eq!(d.filename.as_deref(), Some(name.as_str()), "{v:?}");
    assert_eq!(d.name.as_deref(), Some("file"), "{v:?}");
});
