//! Which metadata backend a store opens (`storage.meta`): RocksDB under the
//! data dir (the default) or a PostgreSQL server named by a URL. It owns the
//! parsing of the setting and the redaction of the URL's password wherever
//! it is shown (`Display`, `Debug`, errors, logs); opening the backend is
//! the store's job. Pure: no database code here.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where the store's metadata lives.
///
/// As text (config, `DEPOT_META`): `rocksdb`, or a `postgres://` /
/// `postgresql://` URL such as `postgres://depot:secret@db.example:5432/depot`.
/// Serializes back to the same text (the URL with its password: it is the
/// setting); shows with the password replaced by `***`.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum MetaBackend {
    /// RocksDB in `meta/` under the data dir.
    #[default]
    RocksDb,
    /// PostgreSQL at this URL (kept whole; shown redacted).
    Postgres(String),
}

impl MetaBackend {
    /// The setting as text with any password replaced by `***`: safe to log.
    pub fn redacted(&self) -> String {
        match self {
            MetaBackend::RocksDb => "rocksdb".into(),
            MetaBackend::Postgres(url) => redact_url(url),
        }
    }
}

impl FromStr for MetaBackend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "rocksdb" {
            return Ok(MetaBackend::RocksDb);
        }
        let rest = s.strip_prefix("postgres://").or_else(|| s.strip_prefix("postgresql://"));
        match rest {
            Some(rest) if !rest.is_empty() => Ok(MetaBackend::Postgres(s.to_string())),
            _ => {
                Err(format!("`{}` is not `rocksdb` or a `postgres://` / `postgresql://` URL", redact_url(s)))
            }
        }
    }
}

impl fmt::Display for MetaBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for MetaBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaBackend::RocksDb => f.write_str("RocksDb"),
            MetaBackend::Postgres(_) => write!(f, "Postgres({:?})", self.redacted()),
        }
    }
}

impl Serialize for MetaBackend {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MetaBackend::RocksDb => s.serialize_str("rocksdb"),
            MetaBackend::Postgres(url) => s.serialize_str(url),
        }
    }
}

impl<'de> Deserialize<'de> for MetaBackend {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// `url` with the password of its user info (`user:PASSWORD@`) and any
/// `password=` query parameter replaced by `***`. Text that is not a URL
/// is returned with everything after `scheme://` hidden when it holds an `@`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // The authority ends at the first `/` or `?` after the last `@` of the
    // user info (a password may itself hold `/`, `?` or `@`).
    let (authority_end, query_start) = {
        let at = rest.rfind('@');
        let after = at.map_or(0, |i| i + 1);
        let end = rest[after..].find(['/', '?']).map_or(rest.len(), |i| after + i);
        (end, rest[end..].find('?').map(|i| end + i))
    };
    let authority = &rest[..authority_end];
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let mut out = format!("{scheme}://{authority}");
    match query_start {
        None => out.push_str(&rest[authority_end..]),
        Some(q) => {
            out.push_str(&rest[authority_end..=q]);
            let params: Vec<String> = rest[q + 1..]
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => p.to_string(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
    }
    out
}

/// `text` with every URL in it (a run of non-blank, non-quote characters
/// around `://`) passed through [`redact_url`]: for messages that may quote
/// a setting, such as a TOML parser's error with its source line.
pub fn redact_urls_in(text: &str) -> String {
    let is_edge = |c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let start = rest[..i].rfind(is_edge).map_or(0, |j| j + 1);
        let end = rest[i..].find(is_edge).map_or(rest.len(), |j| i + j);
        out.push_str(&rest[..start]);
        out.push_str(&redact_url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_redacts() {
        assert_eq!("rocksdb".parse::<MetaBackend>().unwrap(), MetaBackend::RocksDb);
        let url = "postgres://depot:s3cr@t/x@db:5432/depot?sslmode=disable&password=other";
        let m: MetaBackend = url.parse().unwrap();
        assert_eq!(m, MetaBackend::Postgres(url.into()));
        let shown = format!("{m} {m:?} {}", m.redacted());
        assert!(!shown.contains("s3cr") && !shown.contains("other"), "{shown}");
        assert_eq!(m.redacted(), "postgres://depot:***@db:5432/depot?sslmode=disable&password=***");
        assert_eq!(redact_url("postgresql://depot@db/depot"), "postgresql://depot@db/depot");
        assert_eq!(redact_url("postgresql://db"), "postgresql://db");
        let err = "mysql://u:hunter2@db".parse::<MetaBackend>().unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        assert!("postgres://".parse::<MetaBackend>().is_err());
        assert_eq!(
            redact_urls_in("2 | meta = \"postgres://u:pw@h/d\" and ftp://x"),
            "2 | meta = \"postgres://u:***@h/d\" and ftp://x"
        );
    }
}
