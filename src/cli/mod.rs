//! The command line: `serve` (the default), `migrate`, `demo`, `seed`,
//! `purge` and `healthcheck`. This module parses arguments and dispatches;
//! [`app`] builds and runs the application they describe (where the
//! database comes from, the HTTP server and its jobs, the demo). `main` only
//! calls [`run`].

mod app;

pub use app::connect;
use app::{purge, run_demo, seed, serve, Database};

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};

use crate::{config::ConfigError, core::retention::RetentionPolicy, db, demo, http};

/// acctstream: streams accounting (authentication event) data out of
/// PostgreSQL as chunked JSON or CSV.
#[derive(Debug, Parser)]
#[command(name = "acctstream", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    common: Common,
}

/// Options every subcommand shares.
#[derive(Debug, Args)]
struct Common {
    /// PostgreSQL URL. When absent, an embedded PostgreSQL is started under
    /// the data directory (its server binaries must be installed).
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    /// Directory of the embedded PostgreSQL cluster (and of the demo's key
    /// and token).
    #[arg(
        long,
        env = "ACCTSTREAM_DATA_DIR",
        global = true,
        default_value = ".acctstream"
    )]
    data_dir: PathBuf,
    /// Maximum number of database connections.
    #[arg(
        long,
        env = "ACCTSTREAM_POOL_SIZE",
        global = true,
        default_value_t = 16
    )]
    pool_size: usize,
    /// Time partitions of the tables of authentication events, Wi-Fi client
    /// events and the audit trail: `monthly`, `daily` or `none`. A new
    /// database's tables are made so at its first migration; an existing
    /// one's by `migrate --partition`. The service makes partitions ahead.
    #[arg(
        long,
        env = "ACCTSTREAM_PARTITIONS",
        global = true,
        default_value = "monthly",
        value_parser = parse_partitions
    )]
    partitions: Partitions,
}

/// The value of `ACCTSTREAM_PARTITIONS`.
#[derive(Debug, Clone, Copy)]
struct Partitions(Option<crate::core::partition::Interval>);

fn parse_partitions(text: &str) -> Result<Partitions, String> {
    crate::core::partition::Interval::parse(text).map(Partitions)
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (the default). Needs ACCTSTREAM_PSEUDONYM_KEY (or
    /// ACCTSTREAM_PSEUDONYM_KEY_FILE) and ACCTSTREAM_API_TOKENS.
    Serve(ServeArgs),
    /// Apply the migrations in sql/ that are not yet applied, then exit.
    Migrate(MigrateArgs),
    /// Serve with an embedded PostgreSQL and realistic demo data: 30 days of
    /// events (seeded once, topped up on later runs) plus a live trickle.
    /// Generates a key, a read token and a read+write token once and keeps
    /// them in the data directory.
    Demo(DemoArgs),
    /// Ask a running server's /healthz (for container health checks): exit
    /// status 0 when it answers 200 within 5 seconds.
    Healthcheck(HealthcheckArgs),
    /// Insert generated events (for benchmarks), then exit.
    Seed(SeedArgs),
    /// Mint an access token from the demo's local OAuth2 issuer (while
    /// `acctstream demo` runs in the same data directory), and print it.
    Token(TokenArgs),
    /// Run one retention pass now: delete the records of every kind older
    /// than ACCTSTREAM_RETENTION_DAYS whole UTC days (the usage reports keep
    /// their figures), and audit entries older than
    /// ACCTSTREAM_AUDIT_RETENTION_DAYS, then exit. With --dry-run, only
    /// print, per kind and table, the cutoff and how many rows (and from
    /// when to when) would be deleted.
    Purge(PurgeArgs),
}

#[derive(Debug, Args, Default)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "ACCTSTREAM_BIND", default_value = "127.0.0.1:8080")]
    bind: String,
    /// Base URL for links, e.g. https://acct.example.com (default: the
    /// request's Host).
    #[arg(long, env = "ACCTSTREAM_PUBLIC_URL")]
    public_url: Option<String>,
    /// Prefix of the report CSV file names, e.g. MyCompany-B2B- (only
    /// A-Z a-z 0-9 . _ -).
    #[arg(long, env = "ACCTSTREAM_REPORT_FILENAME_PREFIX", default_value = "")]
    report_filename_prefix: String,
    #[command(flatten)]
    retention: RetentionArgs,
    /// gzip level of streamed bodies, 1 (fastest) to 9 (smallest).
    #[arg(long, env = "ACCTSTREAM_GZIP_LEVEL", default_value_t = crate::core::compress::DEFAULT_GZIP_LEVEL.to_string())]
    gzip_level: String,
    /// zstd level of streamed bodies, 1 (fastest) to 19 (smallest).
    #[arg(long, env = "ACCTSTREAM_ZSTD_LEVEL", default_value_t = crate::core::compress::DEFAULT_ZSTD_LEVEL.to_string())]
    zstd_level: String,
    /// When an open session counts as stale (not heard of for this long):
    /// seconds, or with s, m or h (e.g. 15m). Default: three of its interim
    /// intervals when known, else one hour.
    #[arg(long, env = "ACCTSTREAM_SESSION_STALE_AFTER")]
    session_stale_after: Option<String>,
    /// Streaming replicas that serve reads (windows, histories, reports,
    /// counts): a PostgreSQL URL or libpq string with one or several hosts
    /// (`postgresql://r1:5432,r2:5432/acct`). Writes and the change feed
    /// stay on DATABASE_URL.
    #[arg(long, env = "ACCTSTREAM_READ_DATABASE_URL", hide_env_values = true)]
    read_database_url: Option<String>,
    /// A replica lagging more than this is skipped: seconds, or with s, m
    /// or h.
    #[arg(long, env = "ACCTSTREAM_MAX_REPLICA_LAG", default_value = "30s")]
    max_replica_lag: String,
    /// Milliseconds between two runs of the job that rolls newly inserted
    /// events up into the usage report counters (reports also bring them up
    /// to date before answering, so this only bounds their work).
    #[arg(
        long,
        env = "ACCTSTREAM_ROLLUP_INTERVAL_MS",
        default_value_t = db::upkeep::DEFAULT_INTERVAL.as_millis() as u64,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    rollup_interval_ms: u64,
    /// Seconds in-flight responses may take to finish after SIGTERM/SIGINT
    /// (a second signal stops at once).
    #[arg(
        long,
        env = "ACCTSTREAM_SHUTDOWN_GRACE_SECONDS",
        default_value_t = http::ops::DEFAULT_SHUTDOWN_GRACE.as_secs()
    )]
    shutdown_grace_seconds: u64,
    /// Largest accepted ingest request body in bytes (every POST ingest path);
    /// larger bodies are answered 413 and nothing is stored.
    #[arg(
        long,
        env = "ACCTSTREAM_MAX_BODY_BYTES",
        default_value_t = http::DEFAULT_MAX_BODY_BYTES,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    max_body_bytes: u64,
    /// What CSV downloads do with text cells that start like a spreadsheet
    /// formula (=, +, -, @, tab, CR): `quote` prefixes them with ', `off`
    /// writes every value exactly.
    #[arg(
        long,
        env = "ACCTSTREAM_CSV_FORMULA_GUARD",
        default_value = "quote",
        value_parser = ["quote", "off"]
    )]
    csv_formula_guard: String,
    /// Comma-separated origins browsers may call the API from (e.g.
    /// https://dashboard.example.com), or `*`; none by default (no CORS).
    #[arg(long, env = "ACCTSTREAM_CORS_ORIGINS", default_value = "")]
    cors_origins: String,
    #[command(flatten)]
    oauth: OAuthArgs,
    /// Requests per client and window, `<n>/s` or `<n>/min` (default: no
    /// limit). Answers carry RateLimit-* headers; beyond it, 429.
    #[arg(long, env = "ACCTSTREAM_RATE_LIMIT")]
    rate_limit: Option<String>,
    /// Requests per organization (every client of it together) and window,
    /// `<n>/s` or `<n>/min` (default: no limit); beyond it, 429.
    #[arg(long, env = "ACCTSTREAM_RATE_LIMIT_PER_TENANT")]
    rate_limit_per_tenant: Option<String>,
    /// Responses one client may have streaming at once (default: no limit);
    /// beyond it, 429.
    #[arg(long, env = "ACCTSTREAM_STREAMS_PER_CLIENT", value_parser = clap::value_parser!(u32).range(1..))]
    streams_per_client: Option<u32>,
    /// `true`: an API request whose audit entry cannot be buffered (the
    /// database down past what the buffer holds) is refused with 503
    /// rather than served unaudited. `false`: it is served, and the entry
    /// is dropped and counted.
    #[arg(
        long,
        env = "ACCTSTREAM_AUDIT_REQUIRED",
        default_value = "false",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::Set
    )]
    audit_required: bool,
}

/// OAuth2 access tokens (JWTs) beside the static tokens.
#[derive(Debug, Args, Default)]
struct OAuthArgs {
    /// The issuer (`iss`) whose access tokens are accepted; OAuth2 is off
    /// without it.
    #[arg(long, env = "ACCTSTREAM_OAUTH_ISSUER")]
    oauth_issuer: Option<String>,
    /// The audience (`aud`) tokens must name.
    #[arg(long, env = "ACCTSTREAM_OAUTH_AUDIENCE")]
    oauth_audience: Option<String>,
    /// The issuer's JWKS URL (default: the `jwks_uri` of
    /// `<issuer>/.well-known/openid-configuration`).
    #[arg(long, env = "ACCTSTREAM_OAUTH_JWKS_URL")]
    oauth_jwks_url: Option<String>,
    /// A JWKS file instead of a URL.
    #[arg(long, env = "ACCTSTREAM_OAUTH_JWKS_FILE")]
    oauth_jwks_file: Option<PathBuf>,
    /// Token scopes to acctstream's grants: `read:accounting.read,write:…,
    /// identities:…,audit:…` (an unmapped grant is the scope of its own name).
    #[arg(long, env = "ACCTSTREAM_OAUTH_SCOPES", default_value = "")]
    oauth_scopes: String,
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    #[arg(long, env = "ACCTSTREAM_OAUTH_LEEWAY_SECONDS", default_value_t = crate::core::jwt::DEFAULT_LEEWAY_SECONDS, value_parser = clap::value_parser!(u64).range(0..=300))]
    oauth_leeway_seconds: u64,
    /// The claim naming an access token's organization (issue 28), e.g.
    /// `org_id`: the deployment then has tenants, and a token reads and
    /// writes its organization's records only (unless it holds `tenants`).
    #[arg(long, env = "ACCTSTREAM_OAUTH_TENANT_CLAIM")]
    oauth_tenant_claim: Option<String>,
    /// The dashboard's `client_id` at the issuer (a public client with the
    /// authorization code flow and PKCE, redirect URI
    /// `<public URL>/dashboard/`); without it the dashboard takes an API
    /// token only.
    #[arg(long, env = "ACCTSTREAM_OAUTH_CLIENT_ID")]
    oauth_client_id: Option<String>,
    /// The scope the dashboard asks for when it signs in (default: the
    /// token scope that gives `read`).
    #[arg(long, env = "ACCTSTREAM_OAUTH_DASHBOARD_SCOPE")]
    oauth_dashboard_scope: Option<String>,
}

#[derive(Debug, Args)]
struct DemoArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// Number of events seeded over the last 30 days on the first run
    /// (default 1,200,000; a small number keeps contract tests quick).
    #[arg(long)]
    events: Option<u64>,
    /// Days of demo data before now on the first run (default 30).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=366))]
    days: Option<u32>,
}

#[derive(Debug, Args)]
struct TokenArgs {
    /// The scopes, joined by `+`, spaces or commas: read, write,
    /// identities, audit.
    #[arg(long, default_value = "read")]
    scope: String,
    /// The client the token is issued to (`client_id` and `sub`).
    #[arg(long, default_value = "demo-client")]
    client: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    ttl_seconds: u64,
}

#[derive(Debug, Args)]
struct HealthcheckArgs {
    /// Address of the server (an unspecified address like 0.0.0.0 means
    /// this host).
    #[arg(long, env = "ACCTSTREAM_BIND", default_value = "127.0.0.1:8080")]
    bind: String,
}

/// Retention settings, shared by `serve`, `demo` and `purge`.
#[derive(Debug, Args, Default)]
struct RetentionArgs {
    /// Whole UTC days of records kept, of every kind that holds raw
    /// identities (authentication and Wi-Fi client events, closed sessions,
    /// quarantined RADIUS requests, identity directory entries); older ones
    /// are deleted (the usage reports keep their figures). 0 disables it.
    #[arg(long, env = "ACCTSTREAM_RETENTION_DAYS", default_value_t = db::retention::DEFAULT_DAYS)]
    retention_days: u32,
    /// Whole UTC days the access audit trail is kept (0 keeps it forever).
    #[arg(long, env = "ACCTSTREAM_AUDIT_RETENTION_DAYS", default_value_t = db::retention::DEFAULT_AUDIT_DAYS)]
    audit_retention_days: u32,
    /// Seconds between two retention runs of serve and demo (the first run
    /// comes shortly after start).
    #[arg(
        long,
        env = "ACCTSTREAM_RETENTION_INTERVAL_SECONDS",
        default_value_t = db::retention::DEFAULT_INTERVAL.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    retention_interval_seconds: u64,
}

impl RetentionArgs {
    fn options(&self) -> db::retention::RetentionOptions {
        db::retention::RetentionOptions {
            policy: RetentionPolicy::new(self.retention_days),
            audit_policy: RetentionPolicy::new(self.audit_retention_days),
            interval: std::time::Duration::from_secs(self.retention_interval_seconds),
            kinds: crate::kinds::REGISTRY.kinds(),
            ..db::retention::RetentionOptions::default()
        }
    }
}

#[derive(Debug, Args)]
struct MigrateArgs {
    /// Also install the change feed's triggers on tables another program
    /// owns that were there before acctstream (FreeRADIUS's radacct): a
    /// side table and three statement triggers, never a new column.
    #[arg(long)]
    track_changes: bool,
    /// Also convert the tables of partitioned kinds that have rows into
    /// time partitions (ACCTSTREAM_PARTITIONS, monthly unless set), while
    /// reads and writes go on; prints each step.
    #[arg(long)]
    partition: bool,
}

#[derive(Debug, Args)]
struct PurgeArgs {
    /// Print what would be deleted; delete nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    retention: RetentionArgs,
}

#[derive(Debug, Args)]
struct SeedArgs {
    /// Rows of one kind to insert, as KIND=N with KIND a kind's name
    /// (events, client_events, sessions); repeat it for several kinds.
    /// Without it: events=1000000. Pseudonyms are recorded in the identity
    /// directory when ACCTSTREAM_PSEUDONYM_KEY is set (sessions need it).
    #[arg(long, value_name = "KIND=N")]
    rows: Vec<String>,
    /// Days the rows are spread over, ending at --end.
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// End of the seeded span (RFC 3339); default now.
    #[arg(long)]
    end: Option<DateTime<Utc>>,
    /// Seed of the random generator (same seed, same data).
    #[arg(long, default_value_t = 42)]
    rng_seed: u64,
}

/// Anything that stops a subcommand.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A configuration problem.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The embedded PostgreSQL could not be started.
    #[error(transparent)]
    Embedded(#[from] db::embedded::EmbeddedError),
    /// The database URL is malformed.
    #[error("DATABASE_URL: {0}")]
    DatabaseUrl(db::tls::TlsError),
    /// The replicas' URL is malformed.
    #[error("ACCTSTREAM_READ_DATABASE_URL: {0}")]
    ReadDatabaseUrl(db::tls::TlsError),
    /// The database could not be reached.
    #[error("cannot connect to PostgreSQL: {}", db::tls::with_causes(.0))]
    Connect(tokio_postgres::Error),
    /// A migration failed.
    #[error(transparent)]
    Migrate(#[from] db::migrate::MigrateError),
    /// The pool could not be built.
    #[error(transparent)]
    Pool(#[from] db::pool::PoolBuildError),
    /// A database step (a retention pass, the rollup catch-up) failed.
    #[error(transparent)]
    Database(#[from] db::DbError),
    /// The application could not be assembled.
    #[error(transparent)]
    App(#[from] crate::app::BuildError),
    /// A command-line argument clap cannot check.
    #[error("{0}")]
    Usage(String),
    /// Seeding the demo data failed.
    #[error(transparent)]
    Demo(#[from] demo::DemoError),
    /// The demo's OAuth2 issuer failed.
    #[error(transparent)]
    Issuer(#[from] demo::issuer::IssuerError),
    /// Binding or serving failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CliError {
    let context = context.into();
    move |source| CliError::Io { context, source }
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        None => serve(&cli.common, &ServeArgs::parse_env()).await,
        Some(Command::Serve(args)) => serve(&cli.common, &args).await,
        Some(Command::Migrate(args)) => {
            let database = Database::open(&cli.common, true).await?;
            let result = match app::admin_key(&cli.common) {
                Ok(key) => database.migrate(key.as_ref()).await,
                Err(error) => Err(error),
            };
            let result = match result {
                Ok(()) if args.track_changes => database.track_changes().await,
                other => other,
            };
            let result = match result {
                Ok(()) if args.partition => database.partition().await,
                other => other,
            };
            database.stop().await;
            result
        }
        Some(Command::Demo(args)) => {
            run_demo(&cli.common, &args.serve, args.events, args.days).await
        }
        Some(Command::Healthcheck(args)) => {
            let bind = args.bind;
            tokio::task::spawn_blocking(move || {
                http::ops::healthcheck(&bind, std::time::Duration::from_secs(5))
            })
            .await
            .map_err(|e| io("checking health")(std::io::Error::other(e)))?
            .map_err(io("the health check failed"))
        }
        Some(Command::Seed(args)) => seed(&cli.common, &args).await,
        Some(Command::Purge(args)) => purge(&cli.common, &args).await,
        Some(Command::Token(args)) => {
            let token = demo::issuer::mint(
                &cli.common.data_dir,
                &args.scope,
                &args.client,
                args.ttl_seconds,
            )?;
            println!("{token}");
            Ok(())
        }
    }
}

impl OAuthArgs {
    /// The OAuth2 verifier these settings describe (`None`: OAuth2 off).
    fn build(&self) -> Result<Option<http::jwks::OAuth>, ConfigError> {
        let bad = |text: &str| ConfigError::BadOAuth(text.to_owned());
        let Some(issuer) = self.oauth_issuer.as_deref().filter(|i| !i.is_empty()) else {
            if self.oauth_audience.is_some()
                || self.oauth_jwks_url.is_some()
                || self.oauth_jwks_file.is_some()
                || self.oauth_client_id.is_some()
                || self.oauth_dashboard_scope.is_some()
                || self.oauth_tenant_claim.is_some()
            {
                return Err(bad(
                    "ACCTSTREAM_OAUTH_AUDIENCE, ACCTSTREAM_OAUTH_CLIENT_ID, ACCTSTREAM_OAUTH_DASHBOARD_SCOPE, ACCTSTREAM_OAUTH_TENANT_CLAIM and the JWKS settings need ACCTSTREAM_OAUTH_ISSUER",
                ));
            }
            return Ok(None);
        };
        if let Some(claim) = &self.oauth_tenant_claim {
            if claim.is_empty() || claim.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(bad(
                    "ACCTSTREAM_OAUTH_TENANT_CLAIM must be a claim name without spaces",
                ));
            }
        }
        let audience = self
            .oauth_audience
            .clone()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| bad("ACCTSTREAM_OAUTH_ISSUER needs ACCTSTREAM_OAUTH_AUDIENCE"))?;
        let source = match (&self.oauth_jwks_url, &self.oauth_jwks_file) {
            (Some(_), Some(_)) => {
                return Err(bad("set only one of ACCTSTREAM_OAUTH_JWKS_URL and ACCTSTREAM_OAUTH_JWKS_FILE"))
            }
            (Some(url), None) if url.starts_with("https://") || url.starts_with("http://") => {
                http::jwks::KeySource::Url(url.clone())
            }
            (Some(_), None) => return Err(bad("ACCTSTREAM_OAUTH_JWKS_URL must be an http(s) URL")),
            (None, Some(file)) => http::jwks::KeySource::File(file.clone()),
            (None, None) if issuer.starts_with("https://") || issuer.starts_with("http://") => {
                http::jwks::KeySource::Discover
            }
            (None, None) => {
                return Err(bad("ACCTSTREAM_OAUTH_ISSUER is not an http(s) URL, so its keys cannot be discovered: set ACCTSTREAM_OAUTH_JWKS_URL or ACCTSTREAM_OAUTH_JWKS_FILE"))
            }
        };
        let scopes = crate::core::jwt::ScopeMap::parse(&self.oauth_scopes)
            .map_err(|e| ConfigError::BadOAuth(format!("ACCTSTREAM_OAUTH_SCOPES: {e}")))?;
        let sign_in = match self.oauth_client_id.as_deref() {
            None => {
                if self.oauth_dashboard_scope.is_some() {
                    return Err(bad(
                        "ACCTSTREAM_OAUTH_DASHBOARD_SCOPE needs ACCTSTREAM_OAUTH_CLIENT_ID",
                    ));
                }
                None
            }
            Some(client) if client.is_empty() || client.chars().any(char::is_whitespace) => {
                return Err(bad("ACCTSTREAM_OAUTH_CLIENT_ID must be a client id without spaces"))
            }
            Some(_) if !(issuer.starts_with("https://") || issuer.starts_with("http://")) => {
                return Err(bad("ACCTSTREAM_OAUTH_CLIENT_ID needs an http(s) ACCTSTREAM_OAUTH_ISSUER, whose OpenID configuration names the sign-in endpoints"))
            }
            Some(client) => Some(http::jwks::SignIn {
                client_id: client.to_owned(),
                scope: match self.oauth_dashboard_scope.as_deref().map(str::trim) {
                    Some("") => {
                        return Err(bad("ACCTSTREAM_OAUTH_DASHBOARD_SCOPE is empty"));
                    }
                    Some(scope) => scope.to_owned(),
                    None => scopes
                        .scope_for(crate::core::scope::Grant::Read)
                        .to_owned(),
                },
            }),
        };
        let oauth = http::jwks::OAuth::new(
            crate::core::jwt::Policy {
                issuer: issuer.to_owned(),
                audience,
                scopes,
                leeway: self.oauth_leeway_seconds,
                tenant_claim: self.oauth_tenant_claim.clone(),
            },
            source,
        );
        Ok(Some(match sign_in {
            Some(client) => oauth.with_sign_in(client),
            None => oauth,
        }))
    }
}

impl ServeArgs {
    /// The per-client limits these settings describe.
    fn limits(&self) -> Result<crate::core::limits::Limits, ConfigError> {
        use crate::core::limits::{Limits, Rate, RateLimiter, StreamLimiter};
        let limiter = |setting: &Option<String>| match setting
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
        {
            None => Ok(None),
            Some(text) => Rate::parse(text)
                .map(|rate| Some(RateLimiter::new(rate)))
                .ok_or_else(|| ConfigError::BadRateLimit(text.to_owned())),
        };
        Ok(Limits {
            rate: limiter(&self.rate_limit)?,
            rate_per_tenant: limiter(&self.rate_limit_per_tenant)?,
            streams: self.streams_per_client.map(StreamLimiter::new),
        })
    }

    /// `ACCTSTREAM_PUBLIC_URL`, checked and without a trailing slash.
    fn public_url(&self) -> Result<Option<String>, ConfigError> {
        self.public_url
            .as_deref()
            .map(crate::config::parse_public_url)
            .transpose()
    }

    /// `acctstream` without a subcommand serves with the environment's settings.
    fn parse_env() -> ServeArgs {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            args: ServeArgs,
        }
        Only::parse_from(["acctstream"]).args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oauth_args(pairs: &[(&str, &str)]) -> OAuthArgs {
        let mut args = OAuthArgs {
            oauth_leeway_seconds: crate::core::jwt::DEFAULT_LEEWAY_SECONDS,
            oauth_tenant_claim: None,
            ..OAuthArgs::default()
        };
        for (name, text) in pairs {
            let value = Some((*text).to_owned());
            match *name {
                "issuer" => args.oauth_issuer = value,
                "audience" => args.oauth_audience = value,
                "jwks_file" => args.oauth_jwks_file = value.map(PathBuf::from),
                "scopes" => args.oauth_scopes = (*text).to_owned(),
                "client" => args.oauth_client_id = value,
                "scope" => args.oauth_dashboard_scope = value,
                other => panic!("{other}"),
            }
        }
        args
    }

    fn sign_in(pairs: &[(&str, &str)]) -> Result<Option<String>, String> {
        let oauth = oauth_args(pairs).build().map_err(|e| e.to_string())?;
        let oauth = oauth.expect("an issuer is configured");
        Ok(oauth
            .sign_in_client()
            .map(|c| format!("{} {}", c.client_id, c.scope)))
    }

    #[test]
    fn the_dashboards_client_needs_an_http_issuer_and_asks_for_read_by_default() {
        let base = [("issuer", "https://sso.example.com"), ("audience", "a")];
        assert_eq!(sign_in(&base), Ok(None));
        let with = |more: &[(&'static str, &'static str)]| {
            let mut pairs = base.to_vec();
            pairs.extend_from_slice(more);
            sign_in(&pairs)
        };
        assert_eq!(with(&[("client", "dash")]), Ok(Some("dash read".into())));
        assert_eq!(
            with(&[("client", "dash"), ("scopes", "read:accounting.read")]),
            Ok(Some("dash accounting.read".into()))
        );
        assert_eq!(
            with(&[("client", "dash"), ("scope", "a.read a.identities")]),
            Ok(Some("dash a.read a.identities".into()))
        );
        for bad in [
            vec![("scope", "read")],
            vec![("client", "")],
            vec![("client", "two words")],
            vec![("client", "dash"), ("scope", " ")],
        ] {
            assert!(with(&bad).is_err(), "{bad:?}");
        }
        let no_issuer = oauth_args(&[("client", "dash")]).build();
        assert!(no_issuer.is_err());
        let not_http = oauth_args(&[
            ("issuer", "urn:sso"),
            ("audience", "a"),
            ("jwks_file", "/dev/null"),
            ("client", "dash"),
        ])
        .build();
        assert!(
            not_http
                .as_ref()
                .is_err_and(|e| e.to_string().contains("http(s)")),
            "{not_http:?}"
        );
    }
}
