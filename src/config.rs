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
//! | `ACCTSTREAM_PSEUDONYM_KEYS` | a key schedule by month, `2027-01:<key B>,<key A>` (key B from January 2027, key A before) |
//! | `ACCTSTREAM_API_TOKENS` | comma-separated bearer tokens, `[name=]token[:scope]`: `token` may read, `token:read+write` may also ingest, `+identities` sees raw identities, `+audit` reads the audit trail |
//! | `ACCTSTREAM_POOL_SIZE` | maximum database connections (default 16) |
//! | `ACCTSTREAM_PARTITIONS` | time partitions of the instant kinds' tables: `monthly` (default), `daily` or `none` |
//! | `ACCTSTREAM_READ_DATABASE_URL` | streaming replicas (one or several hosts, libpq syntax) that serve reads |
//! | `ACCTSTREAM_MAX_REPLICA_LAG` | a replica lagging more is skipped (default 30 s) |
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
/// Environment variable holding a schedule of pseudonymisation keys by month.
pub const ENV_PSEUDONYM_KEYS: &str = "ACCTSTREAM_PSEUDONYM_KEYS";
/// Environment variable naming a file that holds the pseudonymisation key.
pub const ENV_PSEUDONYM_KEY_FILE: &str = "ACCTSTREAM_PSEUDONYM_KEY_FILE";
/// Environment variable holding the comma-separated bearer tokens.
pub const ENV_API_TOKENS: &str = "ACCTSTREAM_API_TOKENS";
/// Environment variable holding the token that protects `/metrics`.
pub const ENV_METRICS_TOKEN: &str = "ACCTSTREAM_METRICS_TOKEN";
/// Environment variable choosing the log format (`json`, or text).
pub const ENV_LOG_FORMAT: &str = "ACCTSTREAM_LOG_FORMAT";

/// The environment variables read directly rather than as command-line
/// settings (secrets, which have no flag, and logging, set up before the
/// command line is parsed). With the `env` of every command-line setting,
/// these are all the variables acctstream reads: the configuration table of
/// the docs is checked against both.
pub const ENVIRONMENT: [&str; 7] = [
    ENV_PSEUDONYM_KEY,
    ENV_PSEUDONYM_KEY_FILE,
    ENV_PSEUDONYM_KEYS,
    ENV_API_TOKENS,
    ENV_METRICS_TOKEN,
    ENV_LOG_FORMAT,
    "RUST_LOG",
];

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
    /// `ACCTSTREAM_POOL_SIZE` leaves a worker or the jobs without a connection.
    #[error(
        "ACCTSTREAM_POOL_SIZE is {size}: it must be at least {least} (a connection for an HTTP worker, and 2 for the background jobs)"
    )]
    PoolTooSmall {
        /// The size configured.
        size: usize,
        /// The least that works.
        least: usize,
    },
    /// No key was configured.
    #[error("no pseudonymisation key: set {ENV_PSEUDONYM_KEY} or {ENV_PSEUDONYM_KEY_FILE}")]
    MissingKey,
    /// Several ways of giving the key were used.
    #[error(
        "set only one of {ENV_PSEUDONYM_KEY}, {ENV_PSEUDONYM_KEY_FILE} and {ENV_PSEUDONYM_KEYS}"
    )]
    AmbiguousKey,
    /// The key schedule is unusable.
    #[error("{ENV_PSEUDONYM_KEYS}: {0}")]
    BadKeySchedule(crate::core::pseudonym::ScheduleError),
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
    /// The replicas' URL names no server.
    #[error("ACCTSTREAM_READ_DATABASE_URL names no host: give one or several, e.g. postgresql://acct@replica1,replica2/acct")]
    NoReplicaHost,
    /// The replica lag bound is not a duration.
    #[error("ACCTSTREAM_MAX_REPLICA_LAG must be a duration such as 30, 30s, 2m or 1h (1 second to 1 day), got {0:?}")]
    BadReplicaLag(String),
    /// The OAuth2 settings are incomplete or wrong.
    #[error("{0}")]
    BadOAuth(String),
    /// `ACCTSTREAM_RATE_LIMIT` is not `<n>/s` or `<n>/min`.
    #[error("ACCTSTREAM_RATE_LIMIT and ACCTSTREAM_RATE_LIMIT_PER_TENANT must be <n>/s or <n>/min with n from 1 to 1000000, got {0:?}")]
    BadRateLimit(String),
    /// A CORS origin is not `scheme://host[:port]`.
    #[error("ACCTSTREAM_CORS_ORIGINS: entry {0} is not an origin such as https://dashboard.example.com (scheme, host and optional port; no path), or `*`")]
    BadCorsOrigin(usize),
    /// The report file name prefix has characters outside `[A-Za-z0-9._-]`.
    #[error("ACCTSTREAM_REPORT_FILENAME_PREFIX: {0}, got {1:?}")]
    BadReportFilenamePrefix(crate::core::filename::InvalidPrefix, String),
}

/// Checks `ACCTSTREAM_REPORT_FILENAME_PREFIX` (empty is allowed).
pub fn parse_report_filename_prefix(
    raw: &str,
) -> Result<crate::core::filename::FilenamePrefix, ConfigError> {
    crate::core::filename::FilenamePrefix::parse(raw)
        .map_err(|e| ConfigError::BadReportFilenamePrefix(e, raw.to_owned()))
}

/// Reads the pseudonymisation key from `ACCTSTREAM_PSEUDONYM_KEY`, the file
/// named by `ACCTSTREAM_PSEUDONYM_KEY_FILE`, or a key schedule from
/// `ACCTSTREAM_PSEUDONYM_KEYS`. Returns `Ok(None)` when none is set.
pub fn pseudonymiser_from_env() -> Result<Option<Pseudonymiser>, ConfigError> {
    let inline = std::env::var(ENV_PSEUDONYM_KEY)
        .ok()
        .filter(|v| !v.is_empty());
    let file = std::env::var(ENV_PSEUDONYM_KEY_FILE)
        .ok()
        .filter(|v| !v.is_empty());
    if let Some(schedule) = std::env::var(ENV_PSEUDONYM_KEYS)
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        if inline.is_some() || file.is_some() {
            return Err(ConfigError::AmbiguousKey);
        }
        return Pseudonymiser::schedule(&schedule)
            .map(Some)
            .map_err(ConfigError::BadKeySchedule);
    }
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

use crate::core::scope::{Grant, Scope};
use crate::core::tenant::{is_tenant_name, TENANT_NAME_RULE};

/// One configured static token: its digest, scope and label.
#[derive(Clone)]
struct StaticToken {
    digest: [u8; 32],
    scope: Scope,
    label: String,
    /// The organization it reads and writes (`token:read@acme`).
    tenant: Option<String>,
}

/// The bearer tokens allowed to use the API, each with its [`Scope`] and a
/// label (`name=token`, or `token-` and the first 8 hex digits of the
/// token's SHA-256) that names the client in the audit trail and the
/// per-client limits.
///
/// Tokens are kept only as SHA-256 digests, and a presented token is compared
/// against every one of them in constant time, so neither the comparison time
/// nor a memory dump reveals a token (or which scope matched).
#[derive(Clone, Default)]
pub struct ApiTokens {
    tokens: Vec<StaticToken>,
}

impl fmt::Debug for ApiTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiTokens({} configured)", self.tokens.len())
    }
}

/// True for a token label: 1 to 64 of `[A-Za-z0-9._-]`.
fn is_label(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl ApiTokens {
    /// Parses a comma-separated list of `[name=]token[:scope[@tenant]]`
    /// entries: `token` reads, `token:read+write` also ingests (see
    /// [`Scope::parse`]), `token:read@acme` reads organization `acme`'s
    /// records only (issue 28; the tenant follows the scope, so a token
    /// may itself hold `@`).
    /// Empty entries are skipped; whitespace around entries is trimmed. An
    /// entry with inner whitespace, an empty token, a bad name or an unknown
    /// scope is rejected with an error naming the entry's 1-based position
    /// in the list, never the token.
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
            let (name, entry) = match entry.split_once('=') {
                Some((name, rest)) => {
                    if !is_label(name) {
                        return Err(ConfigError::BadToken(format!(
                            "entry {position} has a name that is not 1 to 64 of [A-Za-z0-9._-] \
                             (write `name=token:scope`)"
                        )));
                    }
                    (Some(name), rest)
                }
                None => (None, entry),
            };
            let (token, scope, tenant) = match entry.rsplit_once(':') {
                None => (entry, Scope::READ, None),
                Some((token, scope)) => {
                    let (scope, tenant) = match scope.split_once('@') {
                        Some((scope, tenant)) if is_tenant_name(tenant) => (scope, Some(tenant)),
                        Some(_) => {
                            return Err(ConfigError::BadToken(format!(
                                "entry {position} names an organization that is not \
                                 {TENANT_NAME_RULE} (write `token:read@acme`)"
                            )))
                        }
                        None => (scope, None),
                    };
                    match Scope::parse(scope) {
                        Some(scope) => (token, scope, tenant),
                        None => {
                            return Err(ConfigError::BadToken(format!(
                                "entry {position} has an unknown scope: write `token` (read only), \
                                 or `token:read` joined by `+` with any of `write`, `identities`, \
                                 `audit` and `tenants` (e.g. `token:read+write`), then \
                                 optionally `@` and its organization"
                            )))
                        }
                    }
                }
            };
            if token.is_empty() {
                return Err(ConfigError::BadToken(format!(
                    "entry {position} has an empty token before its scope"
                )));
            }
            match name {
                Some(name) => tokens.add_named(name, token, scope, tenant),
                None => {
                    tokens.add_scoped(token, scope);
                    if let Some(added) = tokens.tokens.last_mut() {
                        added.tenant = tenant.map(str::to_owned);
                    }
                }
            }
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

    /// Allows one more token with the given scope, labelled by its digest.
    pub fn add_scoped(&mut self, token: &str, scope: Scope) {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let label = format!(
            "token-{}",
            digest[..4]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        self.tokens.push(StaticToken {
            digest,
            scope,
            label,
            tenant: None,
        });
    }

    /// Allows one more token with the given scope, label and organization.
    pub fn add_named(&mut self, name: &str, token: &str, scope: Scope, tenant: Option<&str>) {
        self.tokens.push(StaticToken {
            digest: Sha256::digest(token.as_bytes()).into(),
            scope,
            label: name.to_owned(),
            tenant: tenant.map(str::to_owned),
        });
    }

    /// True when some token names its organization: the deployment has
    /// tenants.
    pub fn names_tenants(&self) -> bool {
        self.tokens.iter().any(|t| t.tenant.is_some())
    }

    /// True when no token is configured.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// True when `presented` is one of the configured tokens (any scope may
    /// read). Every configured digest is compared, in constant time.
    pub fn allows(&self, presented: &str) -> bool {
        self.scope_of(presented).is_some()
    }

    /// The scope of `presented`, or `None` when it is not a configured token.
    pub fn scope_of(&self, presented: &str) -> Option<Scope> {
        self.lookup(presented).map(|(scope, _, _)| scope)
    }

    /// The scope, label and organization of `presented`, or `None` when it
    /// is not a configured token. Every configured digest is compared,
    /// whatever matches, in constant time; when a token is listed twice,
    /// the scopes are joined and the last entry's label and organization
    /// are used.
    pub fn lookup(&self, presented: &str) -> Option<(Scope, &str, Option<&str>)> {
        use subtle::ConditionallySelectable;
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = subtle::Choice::from(0);
        const GRANTS: [Grant; 4] = [
            Grant::Write,
            Grant::Identities,
            Grant::Audit,
            Grant::Tenants,
        ];
        let mut flags = [subtle::Choice::from(0); 4];
        let mut matched = 0u32;
        for (index, known) in self.tokens.iter().enumerate() {
            let matches = known.digest.ct_eq(&digest);
            found |= matches;
            let scope = known.scope;
            for (flag, on) in flags.iter_mut().zip(GRANTS.map(|g| scope.has(g))) {
                *flag |= matches & subtle::Choice::from(u8::from(on));
            }
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            matched = u32::conditional_select(&matched, &index, matches);
        }
        if !bool::from(found) {
            return None;
        }
        let token = self.tokens.get(matched as usize)?;
        Some((
            GRANTS
                .into_iter()
                .zip(flags)
                .filter(|(_, on)| bool::from(*on))
                .fold(Scope::READ, |scope, (grant, _)| scope.with(grant)),
            token.label.as_str(),
            token.tenant.as_deref(),
        ))
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

/// `ACCTSTREAM_MAX_REPLICA_LAG`: seconds, or a number with `s`, `m` or `h`;
/// 1 second to 1 day.
pub fn parse_replica_lag(raw: &str) -> Result<std::time::Duration, ConfigError> {
    parse_stale_after(raw)
        .ok()
        .filter(|secs| *secs <= 86_400)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| ConfigError::BadReplicaLag(raw.to_owned()))
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
    fn replica_lag_takes_seconds_or_units_up_to_a_day() {
        use std::time::Duration;
        assert_eq!(parse_replica_lag("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_replica_lag("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(
            parse_replica_lag("24h").unwrap(),
            Duration::from_secs(86_400)
        );
        for bad in ["", "0", "25h", "1.5s", "fast"] {
            let error = parse_replica_lag(bad).unwrap_err().to_string();
            assert!(
                error.contains("ACCTSTREAM_MAX_REPLICA_LAG"),
                "{bad}: {error}"
            );
        }
    }

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
        assert_eq!(all.scope_of("i"), Some(Scope::READ.with(Grant::Identities)));
        assert_eq!(
            all.scope_of("w"),
            Some(Scope::READ_WRITE.with(Grant::Identities))
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
            "t:audit",
            "t:read+admin",
            "bad name=t",
            "=t",
        ] {
            assert!(ApiTokens::parse(bad).is_err(), "{bad}");
        }
        let empty = ApiTokens::parse(":read+write").unwrap_err().to_string();
        assert!(empty.contains("entry 1"), "{empty}");
    }

    #[test]
    fn tokens_may_name_their_organization_after_their_scope() {
        let tokens =
            ApiTokens::parse("a=ta:read+write@acme, o=to:read+tenants, tx@y:read@globex.eu, plain")
                .unwrap();
        assert!(tokens.names_tenants());
        let (scope, label, tenant) = tokens.lookup("ta").unwrap();
        assert_eq!(
            (scope, label, tenant),
            (Scope::READ_WRITE, "a", Some("acme"))
        );
        let (scope, _, tenant) = tokens.lookup("to").unwrap();
        assert!(scope.has(Grant::Tenants) && tenant.is_none());
        // The token itself may hold `@`: the organization follows the scope.
        assert_eq!(tokens.lookup("tx@y").unwrap().2, Some("globex.eu"));
        assert_eq!(tokens.lookup("plain").unwrap().2, None);
        assert!(!ApiTokens::parse("a:read,b:read+tenants")
            .unwrap()
            .names_tenants());
        for bad in [
            "t:read@",
            "t:read@two words",
            "t:read@a/b",
            "t:@acme",
            "t:read@acme@x",
        ] {
            let message = ApiTokens::parse(bad).unwrap_err().to_string();
            assert!(message.contains("entry 1"), "{bad}: {message}");
        }
    }

    #[test]
    fn tokens_have_labels() {
        let tokens = ApiTokens::parse("billing=b1:read+audit, plain, e=tok=en:read").unwrap();
        let (scope, label, tenant) = tokens.lookup("b1").unwrap();
        assert_eq!(tenant, None);
        assert_eq!(label, "billing");
        assert!(scope.has(Grant::Read) && scope.has(Grant::Audit) && !scope.has(Grant::Write));
        assert_eq!(scope.names(), "read+audit");
        // Unnamed: `token-` and the first 8 hex digits of its SHA-256.
        let (_, label, _) = tokens.lookup("plain").unwrap();
        let digest = Sha256::digest(b"plain");
        assert_eq!(
            label,
            format!(
                "token-{:02x}{:02x}{:02x}{:02x}",
                digest[0], digest[1], digest[2], digest[3]
            )
        );
        // A token may hold `=` once it is named.
        assert_eq!(tokens.lookup("tok=en").unwrap().1, "e");
        assert!(tokens.lookup("billing").is_none());
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
