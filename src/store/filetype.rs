//! File-type policy: what a file is (from its first bytes, then its name) and
//! whether the store accepts it. A file whose magic bytes contradict its
//! extension (an ELF named `.png`) is refused whatever the allow-lists say.

use serde::{Deserialize, Serialize};

use super::error::{Error, Result};

/// How many leading bytes detection looks at.
pub const SNIFF_LEN: usize = 8192;

/// Which files are accepted: empty lists allow everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypePolicy {
    /// Allowed file-name extensions, without the dot, case-insensitive
    /// (`["png", "pdf"]`). Empty: any.
    #[serde(default)]
    pub allowed_extensions: Vec<String>,
    /// Allowed MIME types; `*` and `type/*` patterns match (`["image/*"]`).
    /// Empty: any.
    #[serde(default)]
    pub allowed_types: Vec<String>,
}

/// Extension → MIME type for common files, used when the bytes say nothing
/// (text) and to notice contradictions.
const BY_EXTENSION: &[(&str, &str)] = &[
    ("txt", "text/plain"),
    ("log", "text/plain"),
    ("md", "text/markdown"),
    ("csv", "text/csv"),
    ("tsv", "text/tab-separated-values"),
    ("html", "text/html"),
    ("htm", "text/html"),
    ("css", "text/css"),
    ("js", "text/javascript"),
    ("mjs", "text/javascript"),
    ("json", "application/json"),
    ("xml", "application/xml"),
    ("yaml", "application/yaml"),
    ("yml", "application/yaml"),
    ("toml", "application/toml"),
    ("svg", "image/svg+xml"),
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
    ("bmp", "image/bmp"),
    ("ico", "image/vnd.microsoft.icon"),
    ("tif", "image/tiff"),
    ("tiff", "image/tiff"),
    ("avif", "image/avif"),
    ("heic", "image/heic"),
    ("pdf", "application/pdf"),
    ("zip", "application/zip"),
    ("gz", "application/gzip"),
    ("tgz", "application/gzip"),
    ("bz2", "application/x-bzip2"),
    ("xz", "application/x-xz"),
    ("zst", "application/zstd"),
    ("7z", "application/x-7z-compressed"),
    ("rar", "application/vnd.rar"),
    ("tar", "application/x-tar"),
    ("mp3", "audio/mpeg"),
    ("wav", "audio/x-wav"),
    ("ogg", "audio/ogg"),
    ("flac", "audio/x-flac"),
    ("mp4", "video/mp4"),
    ("m4a", "audio/m4a"),
    ("mov", "video/quicktime"),
    ("webm", "video/webm"),
    ("mkv", "video/x-matroska"),
    ("avi", "video/x-msvideo"),
    ("wasm", "application/wasm"),
    ("exe", "application/vnd.microsoft.portable-executable"),
    ("dll", "application/vnd.microsoft.portable-executable"),
    ("iso", "application/x-iso9660-image"),
];

/// Containers other formats are built on: a `.docx` is a zip, and so on. A
/// detected container type does not contradict these extensions.
const CONTAINER_OF: &[(&str, &[&str])] = &[
    (
        "application/zip",
        &[
            "docx", "xlsx", "pptx", "odt", "ods", "odp", "jar", "apk", "epub", "whl", "xpi", "nupkg", "vsix",
            "ipa", "kmz",
        ],
    ),
    ("application/gzip", &["tgz", "gz", "crate"]),
    ("application/x-ole-storage", &["doc", "xls", "ppt", "msi"]),
];

fn extension(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let (stem, ext) = base.rsplit_once('.')?;
    if stem.is_empty() || ext.is_empty() {
        return None;
    }
    Some(ext.to_ascii_lowercase())
}

fn mime_for_extension(ext: &str) -> Option<&'static str> {
    BY_EXTENSION.iter().find(|(e, _)| *e == ext).map(|(_, m)| *m)
}

fn mime_matches(pattern: &str, mime: &str) -> bool {
    let pattern = pattern.trim().to_ascii_lowercase();
    if pattern == "*" || pattern == "*/*" {
        return true;
    }
    match pattern.strip_suffix("/*") {
        Some(top) => mime.split('/').next() == Some(top),
        None => pattern == mime,
    }
}

/// Whether a detected type and an extension tell different stories.
fn contradicts(detected: &infer::Type, ext: &str) -> bool {
    if detected.extension() == ext {
        return false;
    }
    let Some(by_ext) = mime_for_extension(ext) else {
        // An extension we do not know proves nothing, unless it belongs to a
        // container family the bytes disagree with.
        return false;
    };
    if by_ext == detected.mime_type() {
        return false;
    }
    if CONTAINER_OF.iter().any(|(m, exts)| *m == detected.mime_type() && exts.contains(&ext)) {
        return false;
    }
    // Text formats carry no magic; if the bytes have one, they are not text.
    true
}

impl TypePolicy {
    /// Decides a file's content type from its name and first bytes, and
    /// whether the policy accepts it. `declared` is what the client said
    /// (used only when neither bytes nor name tell).
    ///
    /// # Errors
    /// [`Error::TypeRejected`] naming the reason.
    pub fn check(&self, name: &str, head: &[u8], declared: Option<&str>) -> Result<String> {
        let ext = extension(name);
        let detected = infer::get(&head[..head.len().min(SNIFF_LEN)]);
        if let (Some(d), Some(e)) = (&detected, &ext) {
            if contradicts(d, e) {
                return Err(Error::TypeRejected(format!(
                    "content is {} but the name says .{e}",
                    d.mime_type()
                )));
            }
        }
        let content_type = match (&detected, ext.as_deref().and_then(mime_for_extension)) {
            (Some(d), _) => d.mime_type().to_string(),
            (None, Some(m)) => m.to_string(),
            (None, None) => declared
                .map(|d| d.trim().to_ascii_lowercase())
                .filter(|d| is_plausible_mime(d))
                .unwrap_or_else(|| {
                    if !head.is_empty() && std::str::from_utf8(head).is_ok() {
                        "text/plain".to_string()
                    } else {
                        "application/octet-stream".to_string()
                    }
                }),
        };
        if !self.allowed_extensions.is_empty() {
            let ok = ext.as_deref().is_some_and(|e| {
                self.allowed_extensions.iter().any(|a| a.trim_start_matches('.').eq_ignore_ascii_case(e))
            });
            if !ok {
                return Err(Error::TypeRejected(match ext {
                    Some(e) => format!("extension .{e} is not allowed"),
                    None => "files without an extension are not allowed".into(),
                }));
            }
        }
        if !self.allowed_types.is_empty()
            && !self.allowed_types.iter().any(|p| mime_matches(p, &content_type))
        {
            return Err(Error::TypeRejected(format!("type {content_type} is not allowed")));
        }
        Ok(content_type)
    }
}

fn is_plausible_mime(s: &str) -> bool {
    let mut parts = s.split('/');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| {
            !p.is_empty()
                && p.len() <= 127
                && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
        })
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0";
    // infer wants more than 52 bytes before it calls something ELF.
    const ELF: &[u8] = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0\x01\0\0\0\
        \0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

    #[test]
    fn detects_and_falls_back() {
        let p = TypePolicy::default();
        assert_eq!(p.check("a.png", PNG, None).unwrap(), "image/png");
        assert_eq!(p.check("notes.txt", b"hello", None).unwrap(), "text/plain");
        assert_eq!(p.check("data.csv", b"a,b\n1,2\n", None).unwrap(), "text/csv");
        assert_eq!(p.check("blob", b"\xff\xfe\x00\x01", None).unwrap(), "application/octet-stream");
        assert_eq!(p.check("README", b"plain words", None).unwrap(), "text/plain");
        assert_eq!(
            p.check("x.unknown", b"\x00\x01", Some("application/x-thing")).unwrap(),
            "application/x-thing"
        );
        assert_eq!(p.check("empty.txt", b"", None).unwrap(), "text/plain");
    }

    #[test]
    fn spoofed_extension_is_rejected() {
        let p = TypePolicy::default();
        assert!(matches!(p.check("cat.png", ELF, None), Err(Error::TypeRejected(_))));
        assert!(matches!(p.check("doc.pdf", PNG, None), Err(Error::TypeRejected(_))));
        assert!(p.check("report.txt", ELF, None).is_err());
        // A zip-based document is not a contradiction.
        let zip = b"PK\x03\x04\x14\0\0\0\x08\0";
        assert!(p.check("letter.docx", zip, None).is_ok());
        // An unknown extension proves nothing.
        assert!(p.check("firmware.bin", ELF, None).is_ok());
    }

    #[test]
    fn allow_lists_apply() {
        let p = TypePolicy { allowed_extensions: vec!["png".into(), ".TXT".into()], allowed_types: vec![] };
        assert!(p.check("a.PNG", PNG, None).is_ok());
        assert!(p.check("a.txt", b"x", None).is_ok());
        assert!(p.check("a.pdf", b"%PDF-1.4", None).is_err());
        assert!(p.check("noext", b"x", None).is_err());
        let p = TypePolicy { allowed_extensions: vec![], allowed_types: vec!["image/*".into()] };
        assert!(p.check("a.png", PNG, None).is_ok());
        assert!(p.check("a.txt", b"x", None).is_err());
    }
}
