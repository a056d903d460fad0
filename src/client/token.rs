//! Where the client's bearer token comes from: `--token-file PATH`, else
//! `DEPOT_TOKEN`, else the default file `${XDG_CONFIG_HOME:-~/.config}/depot/token`
//! when it exists. A token file must be private to its owner (mode 0600, as
//! ssh insists for a private key): one that others can read or write is
//! refused, not merely warned about, because by then the token may already
//! be someone else's. The token itself never appears in a message or in
//! `Debug` output; only its id (the middle of `dpt_<id>_<secret>`) may.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{ClientError, Result};

/// The environment variable that carries a token.
pub const TOKEN_ENV: &str = "DEPOT_TOKEN";

/// A bearer token, as sent in `Authorization: Bearer …`, and where it
/// came from.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    secret: String,
    source: TokenSource,
}

/// Where a token was found, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `DEPOT_TOKEN`.
    Env,
    /// `--token-file`, or the default file.
    File(PathBuf),
    /// Handed over by the program using the library.
    Given,
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::Env => write!(f, "{TOKEN_ENV}"),
            TokenSource::File(p) => write!(f, "{}", p.display()),
            TokenSource::Given => f.write_str("the caller"),
        }
    }
}

impl Token {
    /// Checks that `text` can be a token: printable ASCII without spaces
    /// (what a header value and every depot token are). Surrounding
    /// whitespace, such as a file's trailing newline, is dropped. The shape
    /// `dpt_<id>_<secret>` is not required here: the server decides.
    ///
    /// # Errors
    /// [`ClientError::Usage`] naming `source` (never the text) when it is
    /// empty or has other characters.
    pub fn parse(text: &str, source: TokenSource) -> Result<Self> {
        let t = text.trim();
        if t.is_empty() {
            return Err(ClientError::Usage(format!("the token in {source} is empty")));
        }
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ClientError::Usage(format!(
                "the token in {source} has spaces or characters a token never has (is it one token on one line?)"
            )));
        }
        Ok(Self { secret: t.to_string(), source })
    }

    /// The whole token, for the `Authorization` header. Do not print it.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Where it came from.
    pub fn source(&self) -> &TokenSource {
        &self.source
    }

    /// The token's id (the ULID in `dpt_<id>_<secret>`), when it has that shape.
    pub fn id(&self) -> Option<&str> {
        let rest = self.secret.strip_prefix("dpt_")?;
        let (id, secret) = rest.split_once('_')?;
        (!id.is_empty() && !secret.is_empty()).then_some(id)
    }

    /// The token to use: `flag` (`--token-file`), else `DEPOT_TOKEN` (an
    /// empty value counts as unset), else the default file when it exists;
    /// `None` when there is none (a server in `local` mode needs none).
    ///
    /// # Errors
    /// [`ClientError::Io`] when the named file cannot be read or others may
    /// read or write it; [`ClientError::Usage`] when it holds no token.
    pub fn resolve(flag: Option<&Path>) -> Result<Option<Self>> {
        Self::resolve_from(flag, std::env::var(TOKEN_ENV).ok(), default_file())
    }

    /// [`Token::resolve`] with the environment passed in (for tests).
    ///
    /// # Errors
    /// As [`Token::resolve`].
    pub fn resolve_from(
        flag: Option<&Path>,
        env: Option<String>,
        default: Option<PathBuf>,
    ) -> Result<Option<Self>> {
        if let Some(path) = flag {
            return read_file(path).map(Some);
        }
        if let Some(text) = env.filter(|t| !t.trim().is_empty()) {
            return Self::parse(&text, TokenSource::Env).map(Some);
        }
        match default {
            Some(path) if path.exists() => read_file(&path).map(Some),
            _ => Ok(None),
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id() {
            Some(id) => write!(f, "Token(dpt_{id}_…)"),
            None => f.write_str("Token(…)"),
        }
    }
}

/// `${XDG_CONFIG_HOME:-$HOME/.config}/depot/token`, when there is a home.
pub fn default_file() -> Option<PathBuf> {
    let config =
        std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()).map(PathBuf::from).or_else(|| {
            std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(config.join("depot").join("token"))
}

fn read_file(path: &Path) -> Result<Token> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ClientError::io(format_args!("token file {}", path.display()), e))?;
    check_private(path)?;
    Token::parse(&text, TokenSource::File(path.to_path_buf()))
}

/// Refuses a token file that its group or others may read or write.
#[cfg(unix)]
fn check_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| ClientError::io(format_args!("token file {}", path.display()), e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(ClientError::Io(format!(
            "token file {} is accessible by others (mode {:04o}); it must be private: chmod 600 {}",
            path.display(),
            mode & 0o7777,
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "dpt_01JDX3E5C9R2T7VQ4M8N6P0WAB_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA";

    fn file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        #[cfg(not(unix))]
        let _ = mode;
        p
    }

    #[test]
    fn flag_beats_env_beats_default_file() {
        let dir = tempfile::tempdir().unwrap();
        let flag = file(dir.path(), "flag", "dpt_A_flag\n", 0o600);
        let default = file(dir.path(), "default", "dpt_C_default\n", 0o600);
        let env = Some("dpt_B_env".to_string());
        let pick = |f: Option<&Path>, e: Option<String>, d: Option<PathBuf>| {
            Token::resolve_from(f, e, d).unwrap().map(|t| t.secret().to_string())
        };
        assert_eq!(pick(Some(&flag), env.clone(), Some(default.clone())).as_deref(), Some("dpt_A_flag"));
        assert_eq!(pick(None, env.clone(), Some(default.clone())).as_deref(), Some("dpt_B_env"));
        assert_eq!(pick(None, None, Some(default.clone())).as_deref(), Some("dpt_C_default"));
        assert_eq!(pick(None, Some("  ".into()), Some(default)).as_deref(), Some("dpt_C_default"));
        assert_eq!(pick(None, None, Some(dir.path().join("absent"))), None);
        assert_eq!(pick(None, None, None), None);
    }

    #[test]
    fn a_named_file_that_is_missing_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = Token::resolve_from(Some(&dir.path().join("nope")), None, None).unwrap_err();
        assert!(matches!(e, ClientError::Io(_)), "{e}");
        assert!(e.to_string().contains("nope"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_file_others_can_read_or_write_is_refused_without_showing_the_token() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602] {
            let p = file(dir.path(), "t", T, mode);
            let e = Token::resolve_from(Some(&p), None, None).unwrap_err();
            let text = e.to_string();
            assert!(text.contains(&format!("mode {mode:04o}")) && text.contains("chmod 600"), "{text}");
            assert!(!text.contains("c2Vj"), "the message shows the secret: {text}");
            assert_eq!(e.exit_code(), super::super::exit::LOCAL);
        }
        let p = file(dir.path(), "t", T, 0o400);
        assert!(Token::resolve_from(Some(&p), None, None).is_ok());
    }

    #[test]
    fn a_token_is_one_word_and_never_printed() {
        let src = TokenSource::Env;
        let t = Token::parse(&format!("  {T}\n"), src.clone()).unwrap();
        assert_eq!(t.secret(), T);
        assert_eq!(t.id(), Some("01JDX3E5C9R2T7VQ4M8N6P0WAB"));
        assert_eq!(format!("{t:?}"), "Token(dpt_01JDX3E5C9R2T7VQ4M8N6P0WAB_…)");
        assert_eq!(Token::parse("opaque", src.clone()).unwrap().id(), None);
        for bad in ["", "\n", "two words", "dpt_a\u{e9}_b", "a\tb"] {
            let e = Token::parse(bad, src.clone()).unwrap_err();
            assert!(e.to_string().contains("DEPOT_TOKEN"), "{e}");
            assert!(matches!(e, ClientError::Usage(_)));
        }
    }
}
