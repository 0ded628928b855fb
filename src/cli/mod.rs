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
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (the default). Needs ACCTSTREAM_PSEUDONYM_KEY (or
    /// ACCTSTREAM_PSEUDONYM_KEY_FILE) and ACCTSTREAM_API_TOKENS.
    Serve(ServeArgs),
    /// Apply the migrations in sql/ that are not yet applied, then exit.
    Migrate,
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
    /// Run one retention pass now: delete the raw events older than
    /// ACCTSTREAM_RETENTION_DAYS whole UTC days (the usage reports keep their
    /// figures), then exit. With --dry-run, only print the cutoff and how
    /// many events (and from when to when) would be deleted.
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
    /// Milliseconds between two runs of the job that rolls newly inserted
    /// events up into the usage report counters (reports also bring them up
    /// to date before answering, so this only bounds their work).
    #[arg(
        long,
        env = "ACCTSTREAM_ROLLUP_INTERVAL_MS",
        default_value_t = db::rollup::DEFAULT_INTERVAL.as_millis() as u64,
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
}

#[derive(Debug, Args)]
struct DemoArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// Number of events seeded over the last 30 days on the first run
    /// (default 1,200,000; a small number keeps contract tests quick).
    #[arg(long)]
    events: Option<u64>,
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
    /// Whole UTC days of raw events kept; older events are deleted (the
    /// usage reports keep their figures). 0 disables retention.
    #[arg(long, env = "ACCTSTREAM_RETENTION_DAYS", default_value_t = db::retention::DEFAULT_DAYS)]
    retention_days: u32,
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
            interval: std::time::Duration::from_secs(self.retention_interval_seconds),
            ..db::retention::RetentionOptions::default()
        }
    }
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
    /// Number of events to insert.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Days the events are spread over, ending at --end.
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// End of the seeded span (RFC 3339); default now.
    #[arg(long)]
    end: Option<DateTime<Utc>>,
    /// Seed of the random generator (same seed, same data).
    #[arg(long, default_value_t = 42)]
    rng_seed: u64,
    /// Number of Wi-Fi client events to insert besides (over the same span;
    /// their pseudonyms are recorded when ACCTSTREAM_PSEUDONYM_KEY is set).
    #[arg(long, default_value_t = 0)]
    client_events: u64,
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
    #[error("DATABASE_URL is not a valid PostgreSQL URL: {0}")]
    DatabaseUrl(tokio_postgres::Error),
    /// The database could not be reached.
    #[error("cannot connect to PostgreSQL: {0}")]
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
    /// Seeding the demo data failed.
    #[error(transparent)]
    Demo(#[from] demo::DemoError),
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
        Some(Command::Migrate) => {
            let database = Database::open(&cli.common, true).await?;
            let result = database.migrate().await;
            database.stop().await;
            result
        }
        Some(Command::Demo(args)) => run_demo(&cli.common, &args.serve, args.events).await,
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
    }
}

impl ServeArgs {
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
