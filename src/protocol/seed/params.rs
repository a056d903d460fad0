//! The parameters of a resumable.js / flow.js / plain chunked-upload request,
//! from the query string and the multipart form fields. Pure: fuzzed by
//! `fuzz/fuzz_targets/chunk_request.rs`.

use crate::store::ChunkId;

/// Which parameter names the client used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `resumableChunkNumber`, … (resumable.js)
    Resumable,
    /// `flowChunkNumber`, … (flow.js)
    Flow,
    /// `chunkNumber`, … (scripts, the Python client)
    Plain,
}

impl Flavor {
    fn prefix(self) -> &'static str {
        match self {
            Flavor::Resumable => "resumable",
            Flavor::Flow => "flow",
            Flavor::Plain => "",
        }
    }

    /// Whether the client is one of the browser libraries, which stop only on
    /// some statuses (see the seed protocol's error mapping).
    pub fn is_library(self) -> bool {
        !matches!(self, Flavor::Plain)
    }
}

/// One piece request, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PieceParams {
    pub flavor: Flavor,
    /// 1-based.
    pub number: u32,
    /// Nominal piece size.
    pub chunk_size: u64,
    /// This piece's size, when sent.
    pub current_size: Option<u64>,
    pub total_size: u64,
    pub identifier: String,
    pub filename: String,
    pub relative_path: Option<String>,
    pub total_chunks: u32,
    /// MIME type the client claims (resumable.js; may be empty).
    pub mime: Option<String>,
    /// The piece's BLAKE3 (a depot extension).
    pub hash: Option<ChunkId>,
}

/// A parameter is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParamError(pub String);

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

/// Longest value accepted for any parameter (names are checked again later).
pub const MAX_VALUE: usize = 4096;

fn key_for(flavor: Flavor, name: &str) -> String {
    match flavor {
        Flavor::Plain => {
            let mut c = name.chars();
            c.next().map(|f| f.to_ascii_lowercase().to_string() + c.as_str()).unwrap_or_default()
        }
        f => format!("{}{name}", f.prefix()),
    }
}

impl PieceParams {
    /// Parses key/value pairs (query string first, then form fields; a later
    /// value for the same key wins). The flavor is the one whose chunk
    /// number is present.
    ///
    /// # Errors
    /// [`ParamError`] naming the missing or malformed parameter.
    pub fn parse<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, ParamError> {
        let pairs: Vec<(&str, &str)> = pairs.into_iter().collect();
        let flavor = [Flavor::Resumable, Flavor::Flow, Flavor::Plain]
            .into_iter()
            .find(|f| pairs.iter().any(|(k, _)| *k == key_for(*f, "ChunkNumber")))
            .ok_or_else(|| {
                ParamError(
                    "missing chunk number (resumableChunkNumber, flowChunkNumber or chunkNumber)".into(),
                )
            })?;
        let get = |name: &str| -> Result<Option<&str>, ParamError> {
            let key = key_for(flavor, name);
            match pairs.iter().rev().find(|(k, _)| *k == key) {
                Some((_, v)) if v.len() > MAX_VALUE => Err(ParamError(format!("{key} is too long"))),
                Some((_, v)) => Ok(Some(v)),
                None => Ok(None),
            }
        };
        let required = |name: &str| -> Result<&str, ParamError> {
            get(name)?.ok_or_else(|| ParamError(format!("missing {}", key_for(flavor, name))))
        };
        let number = |name: &str, v: &str| -> Result<u64, ParamError> {
            // Digits only, as everywhere on the wire: ` 1` is not a number.
            crate::decimal::parse_u64(v).map_err(|e| match e {
                crate::decimal::DecimalError::Malformed => {
                    ParamError(format!("{} must be a non-negative integer", key_for(flavor, name)))
                }
                crate::decimal::DecimalError::OutOfRange => {
                    ParamError(format!("{} is out of range", key_for(flavor, name)))
                }
            })
        };
        let small = |name: &str, v: u64| -> Result<u32, ParamError> {
            u32::try_from(v).map_err(|_| ParamError(format!("{} is out of range", key_for(flavor, name))))
        };

        let n = small("ChunkNumber", number("ChunkNumber", required("ChunkNumber")?)?)?;
        let total_chunks = small("TotalChunks", number("TotalChunks", required("TotalChunks")?)?)?;
        let chunk_size = number("ChunkSize", required("ChunkSize")?)?;
        let total_size = number("TotalSize", required("TotalSize")?)?;
        let current_size = get("CurrentChunkSize")?.map(|v| number("CurrentChunkSize", v)).transpose()?;
        let identifier = required("Identifier")?.to_string();
        let filename = required("Filename")?.to_string();
        if n == 0 {
            return Err(ParamError(format!("{} starts at 1", key_for(flavor, "ChunkNumber"))));
        }
        if total_chunks == 0 {
            return Err(ParamError(format!("{} must be at least 1", key_for(flavor, "TotalChunks"))));
        }
        if n > total_chunks {
            return Err(ParamError(format!("chunk {n} is beyond the {total_chunks} chunks of the upload")));
        }
        if chunk_size == 0 {
            return Err(ParamError(format!("{} must be positive", key_for(flavor, "ChunkSize"))));
        }
        if identifier.is_empty() {
            return Err(ParamError(format!("{} is empty", key_for(flavor, "Identifier"))));
        }
        if filename.is_empty() {
            return Err(ParamError(format!("{} is empty", key_for(flavor, "Filename"))));
        }
        let hash = match get("ChunkHash")?.map(str::trim).filter(|h| !h.is_empty()) {
            Some(h) => Some(
                h.parse::<ChunkId>()
                    .map_err(|e| ParamError(format!("{}: {e}", key_for(flavor, "ChunkHash"))))?,
            ),
            None => None,
        };
        Ok(PieceParams {
            flavor,
            number: n,
            chunk_size,
            current_size,
            total_size,
            identifier,
            filename,
            relative_path: get("RelativePath")?.filter(|s| !s.is_empty()).map(str::to_string),
            total_chunks,
            mime: get("Type")?.map(str::trim).filter(|s| !s.is_empty()).map(str::to_string),
            hash,
        })
    }

    /// The parameters as the client would send them (the inverse of
    /// [`PieceParams::parse`]).
    pub fn render(&self) -> Vec<(String, String)> {
        let f = self.flavor;
        let mut out = vec![
            (key_for(f, "ChunkNumber"), self.number.to_string()),
            (key_for(f, "ChunkSize"), self.chunk_size.to_string()),
            (key_for(f, "TotalSize"), self.total_size.to_string()),
            (key_for(f, "Identifier"), self.identifier.clone()),
            (key_for(f, "Filename"), self.filename.clone()),
            (key_for(f, "TotalChunks"), self.total_chunks.to_string()),
        ];
        if let Some(c) = self.current_size {
            out.push((key_for(f, "CurrentChunkSize"), c.to_string()));
        }
        if let Some(r) = &self.relative_path {
            out.push((key_for(f, "RelativePath"), r.clone()));
        }
        if let Some(m) = &self.mime {
            out.push((key_for(f, "Type"), m.clone()));
        }
        if let Some(h) = &self.hash {
            out.push((key_for(f, "ChunkHash"), h.to_string()));
        }
        out
    }

    /// Whether `key` is one of this protocol's parameter names (any flavor).
    pub fn is_param(key: &str) -> bool {
        [Flavor::Resumable, Flavor::Flow, Flavor::Plain]
            .iter()
            .any(|f| NAMES.iter().any(|n| key_for(*f, n) == key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resumable() -> Vec<(&'static str, &'static str)> {
        vec![
            ("resumableChunkNumber", "2"),
            ("resumableChunkSize", "1048576"),
            ("resumableCurrentChunkSize", "1048576"),
            ("resumableTotalSize", "5242880"),
            ("resumableType", ""),
            ("resumableIdentifier", "5242880-datbin"),
            ("resumableFilename", "dat.bin"),
            ("resumableRelativePath", "dat.bin"),
            ("resumableTotalChunks", "5"),
        ]
    }

    #[test]
    fn parses_each_flavor() {
        let p = PieceParams::parse(resumable()).unwrap();
        assert_eq!(p.flavor, Flavor::Resumable);
        assert_eq!((p.number, p.total_chunks, p.chunk_size, p.total_size), (2, 5, 1 << 20, 5 << 20));
        assert_eq!(p.mime, None);
        let flow: Vec<(String, String)> =
            resumable().iter().map(|(k, v)| (k.replace("resumable", "flow"), v.to_string())).collect();
        let p = PieceParams::parse(flow.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(p.flavor, Flavor::Flow);
        let plain = [
            ("chunkNumber", "1"),
            ("totalChunks", "1"),
            ("chunkSize", "10"),
            ("totalSize", "3"),
            ("identifier", "x"),
            ("filename", "a.txt"),
            ("chunkHash", "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"),
        ];
        let p = PieceParams::parse(plain).unwrap();
        assert_eq!(p.flavor, Flavor::Plain);
        assert_eq!(p.hash, Some(ChunkId::of(b"")));
    }

    #[test]
    fn rejects_bad_numbers() {
        for (k, v) in [
            ("resumableChunkNumber", "0"),
            ("resumableChunkNumber", "-1"),
            ("resumableChunkNumber", "6"),
            ("resumableChunkNumber", "1e3"),
            ("resumableChunkNumber", "99999999999"),
            ("resumableTotalChunks", "0"),
            ("resumableChunkSize", "0"),
            ("resumableTotalSize", "lots"),
            ("resumableIdentifier", ""),
            ("resumableFilename", ""),
        ] {
            let mut p = resumable();
            p.push((k, v));
            assert!(PieceParams::parse(p).is_err(), "{k}={v} accepted");
        }
        let mut p = resumable();
        p.retain(|(k, _)| *k != "resumableTotalSize");
        assert!(PieceParams::parse(p).unwrap_err().0.contains("resumableTotalSize"));
        assert!(PieceParams::parse([("flowChunkHash", "zz")]).is_err());
    }

    #[test]
    fn render_round_trips() {
        let p = PieceParams::parse(resumable()).unwrap();
        let r = p.render();
        let again = PieceParams::parse(r.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(p, again);
    }
}
