//! Every setting the service reads from its environment, in one place.
//!
//! | variable | meaning |
//! |---|---|
//! | `DATABASE_URL` | PostgreSQL URL; when absent an embedded cluster is started under the data directory |
//! | `ACCTSTREAM_DATA_DIR` | data directory of the embedded cluster, demo key and token (default `./.acctstream`) |
//! | `ACCTSTREAM_BIND` | address to listen on (default `127.0.0.1:8080`) |
//! | `ACCTSTREAM_PUBLIC_URL` | base URL for links (default: the request's scheme and `Host`) |
//! | `ACCTSTREAM_PSEUDONYM_KEY` | the pseudonymisation key (its UTF-8 bytes) |
//! | `ACCTSTREAM_PSEUDONYM_KEY_FILE` | a file holding the key (one trailing newline is ignored) |
//! | `ACCTSTREAM_API_TOKENS` | comma-separated bearer tokens: `token` may read, `token:read+write` may also ingest |
//! | `ACCTSTREAM_POOL_SIZE` | maximum database connections (default 16) |
//! | `ACCTSTREAM_MAX_BODY_BYTES` | largest ingest request body in bytes (default 64 MiB) |
//! | `ACCTSTREAM_REPORT_FILENAME_PREFIX` | prefix of the report CSV file names, `[A-Za-z0-9._-]` only (default empty) |
//! | `ACCTSTREAM_RETENTION_DAYS` | whole UTC days of raw events kept; `0` disables retention (default 180) |
//! | `ACCTSTREAM_RETENTION_INTERVAL_SECONDS` | time between two retention runs of `serve`/`demo` (default 3600) |
//! | `ACCTSTREAM_ROLLUP_INTERVAL_MS` | time between two runs of the usage-rollup catch-up job of `serve`/`demo` (default 1000) |
//! | `ACCTSTREAM_METRICS_TOKEN` | when set, `/metrics` requires `Authorization: Bearer <this token>` |
//! | `ACCTSTREAM_SHUTDOWN_GRACE_SECONDS` | how long in-flight responses may finish after SIGTERM/SIGINT (default 30) |
//! | `ACCTSTREAM_LOG_FORMAT` | `json` for one JSON object per log line (default: human-readable) |
//! | `RUST_LOG` | log level and filter (default `info`) |
//!
//! Secrets (the key and the tokens) are read from the environment or a file
//! only, never from the command line, where `ps` would show them.

use std::{fmt, path::Path};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::core::pseudonym::Pseudonymiser;

/// Environment variable holding the pseudonymisation key.
pub const ENV_PSEUDONYM_KEY: &str = "ACCTSTREAM_PSEUDONYM_KEY";
/// Environment variable naming a file that holds the pseudonymisation key.
pub const ENV_PSEUDONYM_KEY_FILE: &str = "ACCTSTREAM_PSEUDONYM_KEY_FILE";
/// Environment variable holding the comma-separated bearer tokens.
pub const ENV_API_TOKENS: &str = "ACCTSTREAM_API_TOKENS";
/// Environment variable holding the token that protects `/metrics`.
pub const ENV_METRICS_TOKEN: &str = "ACCTSTREAM_METRICS_TOKEN";

/// Reads `ACCTSTREAM_METRICS_TOKEN` (absent or blank means `/metrics` is open).
pub fn metrics_token_from_env() -> Option<String> {
    std::env::var(ENV_METRICS_TOKEN)
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// A configuration problem that stops the service from starting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No key was configured.
    #[error("no pseudonymisation key: set {ENV_PSEUDONYM_KEY} or {ENV_PSEUDONYM_KEY_FILE}")]
    MissingKey,
    /// Both ways of giving the key were used.
    #[error("set only one of {ENV_PSEUDONYM_KEY} and {ENV_PSEUDONYM_KEY_FILE}, not both")]
    AmbiguousKey,
    /// The key is empty.
    #[error("the pseudonymisation key is empty")]
    EmptyKey,
    /// The key file could not be read.
    #[error("cannot read the pseudonymisation key file {path}: {source}")]
    KeyFile {
        /// The file named by the environment.
        path: String,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// No bearer token was configured, so nobody could read.
    #[error("no API tokens: set {ENV_API_TOKENS} to a comma-separated list of bearer tokens")]
    NoTokens,
    /// A token is unusable.
    #[error("invalid entry in {ENV_API_TOKENS}: {0}")]
    BadToken(String),
    /// The public URL is not an absolute http(s) URL.
    #[error("ACCTSTREAM_PUBLIC_URL must be an absolute http:// or https:// URL without query or fragment, got {0:?}")]
    BadPublicUrl(String),
    /// A compression level is out of range.
    #[error("{0}")]
    BadCompressionLevel(String),
    /// The stale threshold of sessions is not a duration.
    #[error("ACCTSTREAM_SESSION_STALE_AFTER must be a duration such as 900, 90s, 15m or 2h (1 second to 30 days), got {0:?}")]
    BadStaleAfter(String),
    /// A CORS origin is not `scheme://host[:port]`.
    #[error("ACCTSTREAM_CORS_ORIGINS: entry {0} is not an origin such as https://dashboard.example.com (scheme, host and optional port; no path), or `*`")]
    BadCorsOrigin(usize),
    /// The report file name prefix has characters outside `[A-Za-z0-9._-]`.
    #[error("ACCTSTREAM_REPORT_FILENAME_PREFIX: {0}, got {1:?}")]
    BadReportFilenamePrefix(crate::core::report::InvalidPrefix, String),
}

/// Checks `ACCTSTREAM_REPORT_FILENAME_PREFIX` (empty is allowed).
pub fn parse_report_filename_prefix(
    raw: &str,
) -> Result<crate::core::report::FilenamePrefix, ConfigError> {
    crate::core::report::FilenamePrefix::parse(raw)
        .map_err(|e| ConfigError::BadReportFilenamePrefix(e, raw.to_owned()))
}

/// Reads the pseudonymisation key from `ACCTSTREAM_PSEUDONYM_KEY` or the file
/// named by `ACCTSTREAM_PSEUDONYM_KEY_FILE`. Returns `Ok(None)` when neither is set.
pub fn pseudonymiser_from_env() -> Result<Option<Pseudonymiser>, ConfigError> {
    let inline = std::env::var(ENV_PSEUDONYM_KEY)
        .ok()
        .filter(|v| !v.is_empty());
    let file = std::env::var(ENV_PSEUDONYM_KEY_FILE)
        .ok()
        .filter(|v| !v.is_empty());
    let key = match (inline, file) {
        (Some(_), Some(_)) => return Err(ConfigError::AmbiguousKey),
        (Some(key), None) => key.into_bytes(),
        (None, Some(path)) => read_key_file(Path::new(&path))?,
        (None, None) => return Ok(None),
    };
    Pseudonymiser::new(&key)
        .map(Some)
        .map_err(|_| ConfigError::EmptyKey)
}

/// Reads a key file: its bytes, less one trailing `\n` or `\r\n`.
pub fn read_key_file(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let mut key = std::fs::read(path).map_err(|source| ConfigError::KeyFile {
        path: path.display().to_string(),
        source,
    })?;
    if key.ends_with(b"\n") {
        key.pop();
        if key.ends_with(b"\r") {
            key.pop();
        }
    }
    if key.is_empty() {
        return Err(ConfigError::EmptyKey);
    }
    Ok(key)
}

/// What a bearer token may do. Every token may read (pseudonymised data);
/// `write` may also ingest; `identities` sees raw identities (user ids, MAC
/// and IP addresses) instead of pseudonyms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Scope {
    /// May ingest (`token:read+write`).
    pub write: bool,
    /// Sees raw identities (`token:read+identities`).
    pub identities: bool,
}

impl Scope {
    /// Read only (an entry without a scope, or `token:read`).
    pub const READ: Scope = Scope {
        write: false,
        identities: false,
    };
    /// Read and ingest (`token:read+write`).
    pub const READ_WRITE: Scope = Scope {
        write: true,
        identities: false,
    };

    /// True when this scope may ingest events.
    pub fn can_write(self) -> bool {
        self.write
    }

    /// True when this scope sees raw identities.
    pub fn can_see_identities(self) -> bool {
        self.identities
    }

    /// Parses `read`, optionally joined by `+` with `write` and/or
    /// `identities` (any order, each once).
    pub fn parse(text: &str) -> Option<Scope> {
        let mut scope = Scope::READ;
        let mut read = false;
        for part in text.split('+') {
            let flag = match part {
                "read" => &mut read,
                "write" => &mut scope.write,
                "identities" => &mut scope.identities,
                _ => return None,
            };
            if std::mem::replace(flag, true) {
                return None;
            }
        }
        read.then_some(scope)
    }
}

/// The bearer tokens allowed to use the API, each with its [`Scope`].
///
/// Tokens are kept only as SHA-256 digests, and a presented token is compared
/// against every one of them in constant time, so neither the comparison time
/// nor a memory dump reveals a token (or which scope matched).
#[derive(Clone, Default)]
pub struct ApiTokens {
    digests: Vec<([u8; 32], Scope)>,
}

impl fmt::Debug for ApiTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiTokens({} configured)", self.digests.len())
    }
}

impl ApiTokens {
    /// Parses a comma-separated list of `token` (read only) or
    /// `token:read+write` (read and ingest) entries. Empty entries are
    /// skipped; whitespace around entries is trimmed. An entry with inner
    /// whitespace, an empty token or an unknown scope is rejected with an
    /// error naming the entry's 1-based position in the list, never the token.
    pub fn parse(list: &str) -> Result<ApiTokens, ConfigError> {
        let mut tokens = ApiTokens::default();
        for (index, entry) in list.split(',').map(str::trim).enumerate() {
            if entry.is_empty() {
                continue;
            }
            let position = index + 1;
            if entry.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(ConfigError::BadToken(format!(
                    "entry {position} contains whitespace or a control character"
                )));
            }
            let (token, scope) = match entry.split_once(':') {
                None => (entry, Scope::READ),
                Some((token, scope)) => match Scope::parse(scope) {
                    Some(scope) => (token, scope),
                    None => {
                        return Err(ConfigError::BadToken(format!(
                            "entry {position} has an unknown scope: write `token` (read only), \
                             `token:read+write`, `token:read+identities` or \
                             `token:read+write+identities`"
                        )))
                    }
                },
            };
            if token.is_empty() {
                return Err(ConfigError::BadToken(format!(
                    "entry {position} has an empty token before its scope"
                )));
            }
            tokens.add_scoped(token, scope);
        }
        Ok(tokens)
    }

    /// Reads `ACCTSTREAM_API_TOKENS` (absent means none).
    pub fn from_env() -> Result<ApiTokens, ConfigError> {
        ApiTokens::parse(&std::env::var(ENV_API_TOKENS).unwrap_or_default())
    }

    /// Allows one more token, read only.
    pub fn add(&mut self, token: &str) {
        self.add_scoped(token, Scope::READ);
    }

    /// Allows one more token with the given scope.
    pub fn add_scoped(&mut self, token: &str, scope: Scope) {
        self.digests
            .push((Sha256::digest(token.as_bytes()).into(), scope));
    }

    /// True when no token is configured.
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// True when `presented` is one of the configured tokens (any scope may
    /// read). Every configured digest is compared, in constant time.
    pub fn allows(&self, presented: &str) -> bool {
        self.scope_of(presented).is_some()
    }

    /// The scope of `presented`, or `None` when it is not a configured token.
    /// Every configured digest is compared, whatever matches, in constant
    /// time; when a token is listed twice, the wider scope wins.
    pub fn scope_of(&self, presented: &str) -> Option<Scope> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = subtle::Choice::from(0);
        let mut write = subtle::Choice::from(0);
        let mut identities = subtle::Choice::from(0);
        for (known, scope) in &self.digests {
            let matches = known.ct_eq(&digest);
            found |= matches;
            write |= matches & subtle::Choice::from(u8::from(scope.write));
            identities |= matches & subtle::Choice::from(u8::from(scope.identities));
        }
        bool::from(found).then_some(Scope {
            write: bool::from(write),
            identities: bool::from(identities),
        })
    }
}

/// Checks and normalises `ACCTSTREAM_PUBLIC_URL`: an absolute http(s) URL,
/// returned without a trailing slash.
pub fn parse_public_url(raw: &str) -> Result<String, ConfigError> {
    let bad = || ConfigError::BadPublicUrl(raw.to_owned());
    let rest = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"))
        .ok_or_else(bad)?;
    if rest.is_empty()
        || rest.starts_with('/')
        || raw.contains(['?', '#'])
        || raw.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad());
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

/// Parses `ACCTSTREAM_CORS_ORIGINS`: comma-separated origins
/// (`https://dashboard.example.com`, `http://localhost:3000`) that browsers
/// may call the API from, or `*` for any; empty means none (no CORS).
/// `ACCTSTREAM_SESSION_STALE_AFTER`: seconds, or a number with `s`, `m`
/// or `h`; 1 second to 30 days.
pub fn parse_stale_after(raw: &str) -> Result<u64, ConfigError> {
    let text = raw.trim();
    let (digits, unit) = match text.char_indices().last() {
        Some((i, 's')) => (&text[..i], 1),
        Some((i, 'm')) => (&text[..i], 60),
        Some((i, 'h')) => (&text[..i], 3600),
        _ => (text, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|secs| (1..=30 * 86_400).contains(secs))
        .ok_or_else(|| ConfigError::BadStaleAfter(raw.to_owned()))
}

/// `config` with every connection's `acctstream.session_stale_after` set
/// (read by `acctstream_session_stale` in `sql/0007_radacct.sql`), keeping
/// the options the URL gave.
pub fn with_stale_after(
    mut config: tokio_postgres::Config,
    seconds: Option<u64>,
) -> tokio_postgres::Config {
    if let Some(seconds) = seconds {
        let existing = config.get_options().unwrap_or_default().to_owned();
        let option = format!("-c acctstream.session_stale_after={seconds}");
        let options = if existing.is_empty() {
            option
        } else {
            format!("{existing} {option}")
        };
        config.options(&options);
    }
    config
}

pub fn parse_cors_origins(list: &str) -> Result<Vec<String>, ConfigError> {
    let mut origins = Vec::new();
    for (index, entry) in list.split(',').map(str::trim).enumerate() {
        if entry.is_empty() {
            continue;
        }
        if entry == "*" {
            origins.push(entry.to_owned());
            continue;
        }
        let bad = || ConfigError::BadCorsOrigin(index + 1);
        let rest = entry
            .strip_prefix("https://")
            .or_else(|| entry.strip_prefix("http://"))
            .ok_or_else(bad)?;
        let valid = !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
        if !valid {
            return Err(bad());
        }
        origins.push(entry.to_ascii_lowercase());
    }
    Ok(origins)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_after_takes_seconds_or_units() {
        assert_eq!(parse_stale_after("900").unwrap(), 900);
        assert_eq!(parse_stale_after("90s").unwrap(), 90);
        assert_eq!(parse_stale_after("15m").unwrap(), 900);
        assert_eq!(parse_stale_after(" 2h ").unwrap(), 7200);
        for bad in ["", "0", "m", "-5", "1.5h", "31d", "721h", "ten"] {
            assert!(parse_stale_after(bad).is_err(), "{bad}");
        }
        let config: tokio_postgres::Config =
            "postgresql://u@h/d?options=-c%20a.b%3D1".parse().unwrap();
        let config = with_stale_after(config, Some(60));
        assert_eq!(
            config.get_options(),
            Some("-c a.b=1 -c acctstream.session_stale_after=60")
        );
    }

    #[test]
    fn cors_origins_are_checked() {
        assert_eq!(parse_cors_origins("").unwrap(), Vec::<String>::new());
        assert_eq!(
            parse_cors_origins(" https://A.example.com , http://localhost:3000,,*").unwrap(),
            ["https://a.example.com", "http://localhost:3000", "*"]
        );
        for bad in [
            "example.com",
            "https://",
            "https://a.example.com/",
            "ftp://a",
            "https://a b",
        ] {
            assert!(parse_cors_origins(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_cors_origins("https://ok.example,nope").unwrap_err().to_string(),
            "ACCTSTREAM_CORS_ORIGINS: entry 2 is not an origin such as https://dashboard.example.com (scheme, host and optional port; no path), or `*`"
        );
    }

    #[test]
    fn tokens_match_exactly() {
        let tokens = ApiTokens::parse(" alpha , beta,,").unwrap();
        assert!(tokens.allows("alpha"));
        assert!(tokens.allows("beta"));
        assert!(!tokens.allows("alph"));
        assert!(!tokens.allows("alphaa"));
        assert!(!tokens.allows(""));
        assert!(!format!("{tokens:?}").contains("alpha"));
    }

    #[test]
    fn empty_token_list_allows_nothing() {
        let tokens = ApiTokens::parse("").unwrap();
        assert!(tokens.is_empty());
        assert!(!tokens.allows(""));
    }

    #[test]
    fn token_with_space_is_rejected() {
        assert!(ApiTokens::parse("a b").is_err());
    }

    #[test]
    fn scopes_are_parsed() {
        let tokens = ApiTokens::parse("a, b:read+write ,c:read").unwrap();
        assert_eq!(tokens.scope_of("a"), Some(Scope::READ));
        assert_eq!(tokens.scope_of("b"), Some(Scope::READ_WRITE));
        assert_eq!(tokens.scope_of("c"), Some(Scope::READ));
        assert_eq!(tokens.scope_of("b:read+write"), None);
        assert_eq!(tokens.scope_of("d"), None);
        assert!(tokens.allows("b"));
        // The same token listed read-only and read+write can write.
        let twice = ApiTokens::parse("x,x:read+write").unwrap();
        assert_eq!(twice.scope_of("x"), Some(Scope::READ_WRITE));
        // The identities scope, alone or with write, in any order.
        let all = ApiTokens::parse("i:read+identities,w:identities+read+write").unwrap();
        assert_eq!(
            all.scope_of("i"),
            Some(Scope {
                write: false,
                identities: true
            })
        );
        assert_eq!(
            all.scope_of("w"),
            Some(Scope {
                write: true,
                identities: true
            })
        );
    }

    #[test]
    fn bad_scope_names_the_entry_not_the_token() {
        let message = ApiTokens::parse("first,,secret-token:admin")
            .unwrap_err()
            .to_string();
        assert!(message.contains("entry 3"), "{message}");
        assert!(!message.contains("secret-token"), "{message}");
        assert!(!message.contains("admin"), "{message}");
        for bad in [
            "t:write",
            "t:",
            "t:read+write:x",
            "t:READ+WRITE",
            "t:read+read",
            "t:identities",
            "t:read+audit",
        ] {
            assert!(ApiTokens::parse(bad).is_err(), "{bad}");
        }
        let empty = ApiTokens::parse(":read+write").unwrap_err().to_string();
        assert!(empty.contains("entry 1"), "{empty}");
    }

    #[test]
    fn public_url_is_normalised() {
        assert_eq!(
            parse_public_url("https://acct.example.com/").unwrap(),
            "https://acct.example.com"
        );
        assert_eq!(
            parse_public_url("http://h:8080/base").unwrap(),
            "http://h:8080/base"
        );
        for bad in [
            "acct.example.com",
            "ftp://x",
            "https://",
            "https://x/?a",
            "https:///x",
        ] {
            assert!(parse_public_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_file_drops_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, b"secret\n").unwrap();
        assert_eq!(read_key_file(&path).unwrap(), b"secret");
        std::fs::write(&path, b"\n").unwrap();
        assert!(matches!(read_key_file(&path), Err(ConfigError::EmptyKey)));
        assert!(matches!(
            read_key_file(&dir.path().join("missing")),
            Err(ConfigError::KeyFile { .. })
        ));
    }
}
