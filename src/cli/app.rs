//! The commands behind the command line: where the database comes from (a
//! URL or the embedded cluster), migrations at start-up, the `Settings` of
//! `serve` and `demo` (the application itself is `crate::app`), the demo
//! (keys, tokens, data, trickles), `seed` and `purge`. Stop signals are
//! installed here, not in `http::run`, so test servers never take over the
//! test process's signals.

use std::net::TcpListener;

use chrono::{DateTime, Utc};
use rand::RngCore;
use tokio_util::sync::CancellationToken;

use super::{io, CliError, Common, PurgeArgs, SeedArgs, ServeArgs};
use crate::{
    config::{self, ApiTokens, ConfigError},
    core::{
        pseudonym::Pseudonymiser,
        scope::{Grant, Scope},
    },
    db::{
        self,
        embedded::{EmbeddedOptions, EmbeddedPostgres},
    },
    demo, http, kinds,
    registry::Entry,
};

/// Where the data lives: a server named by URL, or our own embedded cluster
/// (stopped when this is dropped).
pub(super) struct Database {
    partitions: Option<crate::core::partition::Interval>,
    config: tokio_postgres::Config,
    tls: db::tls::Tls,
    embedded: Option<EmbeddedPostgres>,
}

impl Database {
    pub(super) async fn open(common: &Common, durable: bool) -> Result<Database, CliError> {
        if let Some(url) = &common.database_url {
            let (config, settings) = db::tls::parse(url).map_err(CliError::DatabaseUrl)?;
            let tls = db::tls::connector(&settings).map_err(CliError::DatabaseUrl)?;
            return Ok(Database {
                partitions: common.partitions.0,
                config,
                tls,
                embedded: None,
            });
        }
        // A cluster that a running `acctstream demo` (or `serve`) started in
        // this data directory, or in its fallback: use it rather than fail on
        // its lock, so that admin commands work beside a running demo.
        for dir in [
            common.data_dir.clone(),
            fallback_cluster_dir(&common.data_dir),
        ] {
            if let Some(config) = db::embedded::running_cluster(&dir, "acctstream") {
                tracing::info!(
                    data_dir = %dir.display(),
                    "using the embedded PostgreSQL that another acctstream process runs"
                );
                return Ok(Database {
                    partitions: common.partitions.0,
                    config,
                    tls: db::tls::default_connector(),
                    embedded: None,
                });
            }
        }
        let start = |data_dir: std::path::PathBuf| async move {
            tracing::info!(data_dir = %data_dir.display(), "starting embedded PostgreSQL");
            let options = EmbeddedOptions {
                data_dir,
                durable,
                ..Default::default()
            };
            tokio::task::spawn_blocking(move || EmbeddedPostgres::start(options))
                .await
                .map_err(|e| io("starting embedded PostgreSQL")(std::io::Error::other(e)))
        };
        let embedded = match start(common.data_dir.clone()).await? {
            Err(db::embedded::EmbeddedError::NotReachable { path, user, .. }) => {
                // We are root and PostgreSQL's user cannot enter the data
                // directory (a clone under /root, mode 700): keep the cluster
                // in a directory of its own for this data directory instead.
                let fallback = fallback_cluster_dir(&common.data_dir);
                tracing::warn!(
                    unreachable = %path.display(),
                    postgres_user = %user,
                    cluster_dir = %fallback.display(),
                    "PostgreSQL's user cannot enter the data directory; the embedded cluster lives in {} instead",
                    fallback.display()
                );
                start(fallback).await??
            }
            started => started?,
        };
        tracing::info!(url = %embedded.url("acctstream"), "embedded PostgreSQL ready");
        let config = embedded.pg_config("acctstream");
        let database = Database {
            partitions: common.partitions.0,
            config,
            tls: db::tls::default_connector(),
            embedded: Some(embedded),
        };
        database.ensure_database().await?;
        Ok(database)
    }

    /// The embedded cluster starts with only the `postgres` database.
    async fn ensure_database(&self) -> Result<(), CliError> {
        let mut admin = self.config.clone();
        admin.dbname("postgres");
        let client = connect_with(&admin, &self.tls).await?;
        let exists = client
            .query_opt(
                "SELECT 1 FROM pg_database WHERE datname = 'acctstream'",
                &[],
            )
            .await
            .map_err(CliError::Connect)?
            .is_some();
        if !exists {
            client
                .batch_execute("CREATE DATABASE acctstream")
                .await
                .map_err(CliError::Connect)?;
        }
        Ok(())
    }

    /// Applies the migrations; with the key, also converts the usage
    /// rollups to keyed digests when that is still to do (migration 0009).
    pub(super) async fn migrate(&self, key: Option<&Pseudonymiser>) -> Result<(), CliError> {
        let mut client = connect_with(&self.config, &self.tls).await?;
        let applied = db::migrate::run_with(
            &mut client,
            &crate::kinds::REGISTRY.kinds(),
            self.partitions,
        )
        .await?;
        tracing::info!(?applied, "migrations up to date");
        if let Some(key) = key {
            db::upkeep::prepare_all(&client, &crate::kinds::REGISTRY.upkeeps(), key).await?;
        }
        Ok(())
    }

    /// Installs the change feed of every kind, on tables of other programs
    /// too (`migrate --track-changes`), and says which feeds can be read.
    pub(super) async fn track_changes(&self) -> Result<(), CliError> {
        let mut client = connect_with(&self.config, &self.tls).await?;
        let kinds = crate::kinds::REGISTRY.kinds();
        let tracked = db::migrate::track_changes(&mut client, &kinds, true).await?;
        tracing::info!(?tracked, "change feeds installed");
        println!("change feeds installed: {}", tracked.join(", "));
        Ok(())
    }

    /// Makes the partitions of every partitioned kind's table from
    /// `keep_from` to those ahead ([`db::partition::prepare`]).
    pub(super) async fn prepare_partitions(
        &self,
        keep_from: chrono::DateTime<Utc>,
    ) -> Result<(), CliError> {
        let Some(interval) = self.partitions else {
            return Ok(());
        };
        let mut client = connect_with(&self.config, &self.tls).await?;
        for kind in crate::kinds::REGISTRY.kinds() {
            db::partition::prepare(&mut client, kind, interval, Utc::now(), Some(keep_from))
                .await
                .map_err(|source| db::migrate::MigrateError {
                    name: "partitions",
                    source,
                })?;
        }
        Ok(())
    }

    /// Converts the table of every partitioned kind that is not yet into
    /// time partitions (`migrate --partition`), printing each step.
    pub(super) async fn partition(&self) -> Result<(), CliError> {
        let Some(interval) = self.partitions else {
            println!("ACCTSTREAM_PARTITIONS=none: no table is converted");
            return Ok(());
        };
        let mut client = connect_with(&self.config, &self.tls).await?;
        for kind in crate::kinds::REGISTRY.kinds() {
            if kind.partition_column().is_none() {
                continue;
            }
            let started = std::time::Instant::now();
            let converted =
                db::partition::convert(&mut client, kind, interval, false, &mut |step| {
                    println!("{:>7.1} s  {step}", started.elapsed().as_secs_f64());
                })
                .await
                .map_err(|source| db::migrate::MigrateError {
                    name: "partitions",
                    source,
                })?;
            match converted {
                db::partition::Converted::Already => {
                    println!("{}: partitioned already", kind.table);
                }
                db::partition::Converted::Missing => {
                    println!("{}: no such table", kind.table);
                }
                // The swap made the partitions from the bound on (and the
                // migration before it those ahead of a partitioned table).
                db::partition::Converted::HasRows | db::partition::Converted::Now => {}
            }
        }
        Ok(())
    }

    pub(super) async fn stop(self) {
        if let Some(embedded) = self.embedded {
            match tokio::task::spawn_blocking(move || embedded.stop()).await {
                Ok(Ok(())) => tracing::info!("embedded PostgreSQL stopped"),
                Ok(Err(error)) => tracing::warn!(%error, "stopping embedded PostgreSQL"),
                Err(error) => tracing::warn!(%error, "stopping embedded PostgreSQL"),
            }
        }
    }
}

/// Opens one connection whose driver task runs until the client is dropped
/// (TLS as the configuration's `sslmode` says, unverified: for URLs without
/// TLS options).
pub async fn connect(config: &tokio_postgres::Config) -> Result<tokio_postgres::Client, CliError> {
    connect_with(config, &db::tls::default_connector()).await
}

/// Like [`connect`], through `tls`.
pub async fn connect_with(
    config: &tokio_postgres::Config,
    tls: &db::tls::Tls,
) -> Result<tokio_postgres::Client, CliError> {
    let (client, connection) = config
        .connect(tls.clone())
        .await
        .map_err(CliError::Connect)?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "database connection ended");
        }
    });
    Ok(client)
}

pub(super) async fn serve(common: &Common, args: &ServeArgs) -> Result<(), CliError> {
    let pseudonymiser = config::pseudonymiser_from_env()?.ok_or(ConfigError::MissingKey)?;
    let tokens = ApiTokens::from_env()?;
    if tokens.is_empty() {
        return Err(ConfigError::NoTokens.into());
    }
    let public_url = args.public_url()?;
    let database = Database::open(common, true).await?;
    let result = async {
        database.migrate(Some(&pseudonymiser)).await?;
        serve_with(
            common,
            args,
            &database,
            pseudonymiser,
            tokens,
            public_url,
            None,
        )
        .await
    }
    .await;
    database.stop().await;
    result
}

/// `ACCTSTREAM_READ_DATABASE_URL` with its lag bound (the bound is checked
/// even without replicas).
fn read_database(args: &ServeArgs) -> Result<Option<crate::app::ReadDatabase>, CliError> {
    let max_lag = config::parse_replica_lag(&args.max_replica_lag)?;
    let Some(url) = &args.read_database_url else {
        return Ok(None);
    };
    let (config, settings) = db::tls::parse(url).map_err(CliError::ReadDatabaseUrl)?;
    if config.get_hosts().is_empty() {
        return Err(CliError::Config(config::ConfigError::NoReplicaHost));
    }
    Ok(Some(crate::app::ReadDatabase {
        config,
        tls: db::tls::connector(&settings).map_err(CliError::ReadDatabaseUrl)?,
        max_lag,
    }))
}

/// What the demo adds to serving: its banner, and its own OAuth2 issuer.
struct DemoServing<'a> {
    banner: &'a dyn Fn(&str),
    oauth: Option<http::jwks::OAuth>,
}

async fn serve_with(
    common: &Common,
    args: &ServeArgs,
    database: &Database,
    pseudonymiser: Pseudonymiser,
    tokens: ApiTokens,
    public_url: Option<String>,
    demo: Option<DemoServing<'_>>,
) -> Result<(), CliError> {
    let (banner, demo_oauth) = match demo {
        Some(demo) => (Some(demo.banner), demo.oauth),
        None => (None, None),
    };
    let oauth = match demo_oauth {
        Some(oauth) => Some(oauth),
        None => args.oauth.build()?,
    };
    let settings = crate::app::Settings {
        kinds: kinds::REGISTRY,
        database: database.config.clone(),
        tls: database.tls.clone(),
        pool_size: common.pool_size,
        workers: None,
        pseudonymiser,
        tokens,
        public_url,
        session_stale_after: args
            .session_stale_after
            .as_deref()
            .map(config::parse_stale_after)
            .transpose()?,
        http: http::AppOptions {
            reports: http::options::ReportOptions {
                filename_prefix: config::parse_report_filename_prefix(
                    &args.report_filename_prefix,
                )?,
            },
            ops: http::ops::OpsOptions {
                metrics_token: config::metrics_token_from_env()
                    .map(|t| http::ops::MetricsToken::new(&t)),
                shutdown_grace: std::time::Duration::from_secs(args.shutdown_grace_seconds),
            },
            ingest: http::IngestOptions {
                max_body_bytes: args.max_body_bytes,
            },
            csv_formula_guard: args.csv_formula_guard.parse().unwrap_or_default(),
            cors_origins: config::parse_cors_origins(&args.cors_origins)?,
            compression: crate::core::compress::Levels::parse(&args.gzip_level, &args.zstd_level)
                .map_err(|e| config::ConfigError::BadCompressionLevel(e.to_string()))?,
            oauth: oauth.map(std::sync::Arc::new),
            limits: std::sync::Arc::new(args.limits()?),
            audit_required: args.audit_required,
            ..http::AppOptions::default()
        },
        audit: true,
        retention: args.retention.options(),
        rollup_interval: Some(std::time::Duration::from_millis(args.rollup_interval_ms)),
        read_database: read_database(args)?,
        partitions: common.partitions.0,
    };
    let listener =
        TcpListener::bind(&args.bind).map_err(io(format!("cannot listen on {}", args.bind)))?;
    let application = crate::app::Application::build(settings, listener)?;
    http::ops::stop_on_signals(application.handle(), application.stopping());
    if let Some(banner) = banner {
        banner(&format!("http://{}", application.address()));
    }
    application.run_until_stopped().await.map_err(io("serving"))
}

pub(super) async fn run_demo(
    common: &Common,
    args: &ServeArgs,
    events: Option<u64>,
    days: Option<u32>,
) -> Result<(), CliError> {
    std::fs::create_dir_all(&common.data_dir)
        .map_err(io(format!("cannot create {}", common.data_dir.display())))?;
    let pseudonymiser = match config::pseudonymiser_from_env()? {
        Some(p) => p,
        None => {
            let key = read_or_create_secret(&common.data_dir.join("pseudonym.key"))?;
            Pseudonymiser::new(key.as_bytes()).map_err(|_| ConfigError::EmptyKey)?
        }
    };
    let mut tokens = ApiTokens::from_env()?;
    let token = read_or_create_secret(&common.data_dir.join("api-token"))?;
    // The demo's operator reads every organization and is its auditor.
    let operator = Scope::READ.with(Grant::Audit).with(Grant::Tenants);
    tokens.add_named("demo-read", &token, operator, None);
    let write_token = read_or_create_secret(&common.data_dir.join("api-token-write"))?;
    let writer = Scope::READ_WRITE.with(Grant::Tenants);
    tokens.add_named("demo-write", &write_token, writer, None);
    // A read token of each of the demo's organizations.
    let mut organization_tokens = Vec::new();
    for organization in demo::ORGANIZATIONS {
        let secret =
            read_or_create_secret(&common.data_dir.join(format!("api-token-{organization}")))?;
        tokens.add_named(
            &format!("demo-{organization}"),
            &secret,
            Scope::READ,
            Some(organization),
        );
        organization_tokens.push((organization, secret));
    }
    let public_url = args.public_url()?;

    let database = Database::open(common, true).await?;
    let result = async {
        database.migrate(Some(&pseudonymiser)).await?;
        let demo_pool = db::pool::build(database.config.clone(), database.tls.clone(), 2)?;
        let mut options = demo::SeedOptions::default();
        if let Some(events) = events {
            options.events = events;
        }
        if let Some(days) = days {
            options.days = days;
        }
        // The demo's span gets its partitions before its records come.
        database
            .prepare_partitions(options.end - chrono::Duration::days(i64::from(options.days) + 1))
            .await?;
        fill_demo(&demo_pool, options, &pseudonymiser).await?;
        let (stop_trickle, stopped) = tokio::sync::watch::channel(false);
        let trickles: Vec<_> = kinds::REGISTRY
            .entries()
            .iter()
            .filter_map(|entry| entry.demo)
            .map(|demo| {
                let mut stopped = stopped.clone();
                tokio::spawn(demo.trickle(
                    demo_pool.clone(),
                    pseudonymiser.clone(),
                    Box::pin(async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    }),
                ))
            })
            .collect();
        // The demo's own OAuth2 issuer, unless one is configured.
        let issuer_server = match args.oauth.oauth_issuer {
            Some(_) => None,
            None => {
                let issuer = demo::issuer::Issuer::load_or_create(&common.data_dir)?;
                Some(demo::issuer::serve(&issuer, &common.data_dir)?)
            }
        };
        let demo_oauth = issuer_server.as_ref().map(|(url, _)| {
            http::jwks::OAuth::new(
                crate::core::jwt::Policy {
                    issuer: url.clone(),
                    audience: demo::issuer::AUDIENCE.to_owned(),
                    scopes: crate::core::jwt::ScopeMap::default(),
                    leeway: crate::core::jwt::DEFAULT_LEEWAY_SECONDS,
                    tenant_claim: None,
                },
                http::jwks::KeySource::Discover,
            )
            .with_sign_in(http::jwks::SignIn {
                client_id: demo::issuer::DASHBOARD_CLIENT.to_owned(),
                // The demo's organizations: the dashboard shows them all.
                scope: "read tenants".to_owned(),
            })
        });
        let issuer_handle = issuer_server.map(|(_, server)| {
            let handle = server.handle();
            tokio::spawn(server);
            handle
        });
        let banner = |base: &str| {
            println!(
                "{}",
                demo_banner(base, &token, &write_token, &organization_tokens)
            )
        };
        let served = serve_with(
            common,
            args,
            &database,
            pseudonymiser,
            tokens,
            public_url,
            Some(DemoServing {
                banner: &banner,
                oauth: demo_oauth,
            }),
        )
        .await;
        if let Some(handle) = issuer_handle {
            handle.stop(false).await;
        }
        let _ = stop_trickle.send(true);
        for trickle in trickles {
            let _ = trickle.await;
        }
        served
    }
    .await;
    database.stop().await;
    result
}

/// Fills every kind's demo data up to now (the whole span the first time,
/// the gap since the newest record on later runs), rolls the events up so
/// the first report answers at once, then tops every kind up once more to
/// the present: seeding and the rollup take a while, and without this
/// second pass their duration would stay a hole in the demo's data just
/// before the server starts listening (issue 26).
async fn fill_demo(
    pool: &deadpool_postgres::Pool,
    mut options: demo::SeedOptions,
    pseudonymiser: &Pseudonymiser,
) -> Result<(), CliError> {
    eprintln!(
        "Filling demo data up to now ({} days the first time; later runs top it up)...",
        options.days
    );
    fill_every_kind(pool, &options, pseudonymiser).await?;
    settle(pool, pseudonymiser).await?;
    options.end = Utc::now();
    fill_every_kind(pool, &options, pseudonymiser).await?;
    eprintln!(
        "  demo data reach {}",
        options.end.format("%Y-%m-%dT%H:%M:%SZ")
    );
    Ok(())
}

/// One pass of [`demo::fill`] over every kind with a demo, up to
/// `options.end`.
async fn fill_every_kind(
    pool: &deadpool_postgres::Pool,
    options: &demo::SeedOptions,
    pseudonymiser: &Pseudonymiser,
) -> Result<(), CliError> {
    let fill = demo::Fill {
        pool,
        options,
        pseudonymiser: Some(pseudonymiser),
    };
    for entry in kinds::REGISTRY.entries() {
        let Some(demo) = entry.demo else { continue };
        let started = std::time::Instant::now();
        let written = demo::fill(entry.kind, demo, &fill).await?;
        eprintln!(
            "\r  {}: {written} written in {:.1} s{:30}",
            entry.kind.name,
            started.elapsed().as_secs_f64(),
            ""
        );
    }
    Ok(())
}

/// Brings every kind's upkeep up to date (the usage rollups), saying so.
async fn settle(
    pool: &deadpool_postgres::Pool,
    pseudonymiser: &Pseudonymiser,
) -> Result<(), CliError> {
    for (name, caught) in db::upkeep::settle_all(
        pool,
        &kinds::REGISTRY.upkeeps(),
        pseudonymiser,
        &crate::metrics::Metrics::default(),
    )
    .await?
    {
        eprintln!(
            "  {name} brought up to date in {:.1} s ({} rows)",
            caught.elapsed.as_secs_f64(),
            caught.rows
        );
    }
    Ok(())
}

/// What `demo` prints once it listens: the tokens and example commands,
/// every one of them valid today (current times, a fresh `eventId`).
fn demo_banner(
    base: &str,
    token: &str,
    write_token: &str,
    organizations: &[(&str, String)],
) -> String {
    let day = (Utc::now() - chrono::Duration::days(1)).format("%Y-%m-%d");
    let now = Utc::now().format("%Y-%m-%dT%H:%M:%SZ");
    let month = Utc::now().format("%Y-%m");
    let mut tenants = String::new();
    for (organization, secret) in organizations {
        tenants.push_str(&format!(
            "  curl -H 'Authorization: Bearer {secret}' '{base}/api/v1/sessions/online?limit=3'   # {organization}\n"
        ));
    }
    format!(
        r#"
acctstream demo is running at {base}  (Ctrl-C stops it)

  # charts of every kind: open {base}/dashboard/ and press Sign in (the demo's issuer), or paste the read token T

  export T={token}
  curl -H "Authorization: Bearer $T" '{base}/api/v1/statistics/events/minute?sort=-'
  curl -H "Authorization: Bearer $T" '{base}/api/v1/statistics/events/hour'
  curl -H "Authorization: Bearer $T" -H 'Accept: text/csv' '{base}/api/v1/statistics/events/day/{day}' -o day.csv

  # reports: the previous month's unique users per method, and this month's daily figures
  curl -H "Authorization: Bearer $T" '{base}/api/v1/accounting/report'
  curl -H "Authorization: Bearer $T" '{base}/api/v1/accounting/verify/daily-users/{month}?format=csv'

  # Wi-Fi client events: who failed to connect in the last hour, where and why
  curl -H "Authorization: Bearer $T" '{base}/api/v1/statistics/client-events/summary/hour'
  curl -H "Authorization: Bearer $T" '{base}/api/v1/statistics/client-events/hour?eventType=Failure&format=ndjson'

  # network access sessions (RADIUS accounting): who is online now, a day of sessions as CSV
  curl -H "Authorization: Bearer $T" '{base}/api/v1/sessions/online?limit=5'
  curl -H "Authorization: Bearer $T" -H 'Accept: text/csv' '{base}/api/v1/statistics/sessions/day/{day}' -o sessions.csv

  # the access audit trail: who read what today (the read token may read it)
  curl -H "Authorization: Bearer $T" "{base}/api/v1/audit/day/$(date -u +%F)?format=ndjson"

  # three organizations (acme, globex, initech): each token reads its own records only, with its own pseudonyms;
  # T reads them all (the tenants grant) and narrows with tenant=
{tenants}  curl -H "Authorization: Bearer $T" '{base}/api/v1/statistics/events/hour?tenant=acme&format=ndjson'

  # OAuth2: an access token from the demo's local issuer (the static tokens keep working)
  export J=$(cargo run --release -q -- token --scope read+tenants)
  curl -H "Authorization: Bearer $J" '{base}/api/v1/statistics/events/hour?format=ndjson'

  # ingest (needs the read+write token); a fresh eventId each time, so a rerun stores again
  export W={write_token}
  printf '%s\n' "{{\"timestamp\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\",\"authMethodType\":\"PASSWORD\",\"authMethodName\":\"password.1\",\"authRequestOrigin\":\"CN=Appl-1,DC=demo\",\"userId\":\"jane@example.com\",\"eventId\":\"demo-$(date +%s%N)\"}}" |
    curl -H "Authorization: Bearer $W" -H 'Content-Type: application/x-ndjson' --data-binary @- '{base}/api/v1/events'
  # {{"received":1,"inserted":1,"duplicates":0}}   (started at {now})
"#
    )
}

/// The key of an admin command: the environment's, else the demo's key in
/// the data directory (so admin commands work beside `acctstream demo`).
pub(super) fn admin_key(common: &Common) -> Result<Option<Pseudonymiser>, CliError> {
    if let Some(key) = config::pseudonymiser_from_env()? {
        return Ok(Some(key));
    }
    let demo_key = common.data_dir.join("pseudonym.key");
    match std::fs::read_to_string(&demo_key) {
        Ok(key) if !key.trim().is_empty() => Ok(Some(
            Pseudonymiser::new(key.trim().as_bytes()).map_err(|_| ConfigError::EmptyKey)?,
        )),
        _ => Ok(None),
    }
}

/// Reads a secret kept in the data directory, creating a random one (32
/// random bytes as hex, file mode 0600) the first time.
fn read_or_create_secret(path: &std::path::Path) -> Result<String, CliError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Ok(existing) = std::fs::read_to_string(path) {
        let existing = existing.trim().to_owned();
        if !existing.is_empty() {
            return Ok(existing);
        }
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(format!("cannot write {}", path.display())))?;
    writeln!(file, "{secret}").map_err(io(format!("cannot write {}", path.display())))?;
    Ok(secret)
}

pub(super) async fn seed(common: &Common, args: &SeedArgs) -> Result<(), CliError> {
    let counts = seed_counts(&args.rows)?;
    let key = config::pseudonymiser_from_env()?;
    let database = Database::open(common, true).await?;
    let result = async {
        database.migrate(key.as_ref()).await?;
        let pool = db::pool::build(database.config.clone(), database.tls.clone(), 2)?;
        let options = demo::SeedOptions {
            days: args.days,
            end: args.end.unwrap_or_else(Utc::now),
            rng_seed: args.rng_seed,
            ..demo::SeedOptions::default()
        };
        // The seeded span gets its partitions before its rows come.
        database
            .prepare_partitions(options.end - chrono::Duration::days(i64::from(options.days) + 1))
            .await?;
        let fill = demo::Fill {
            pool: &pool,
            options: &options,
            pseudonymiser: key.as_ref(),
        };
        for (entry, rows) in counts {
            let Some(demo) = entry.demo else { continue };
            let started = std::time::Instant::now();
            let inserted = demo.seed(&fill, rows).await?;
            eprintln!(
                "\r  {}: {inserted} rows inserted in {:.1} s{:30}",
                entry.kind.name,
                started.elapsed().as_secs_f64(),
                ""
            );
            let client = pool.get().await.map_err(db::DbError::from)?;
            client
                .batch_execute(&format!("VACUUM ANALYZE {}", entry.kind.table))
                .await
                .map_err(CliError::Connect)?;
        }
        // The upkeep needs the key: without one it is brought up to date
        // by `serve` (or before the first report).
        if let Some(key) = &key {
            settle(&pool, key).await?;
        }
        Ok(())
    }
    .await;
    database.stop().await;
    result
}

/// The kinds `seed --rows KIND=N` names and their counts, in registry
/// order; none given: the first kind with a demo, a million rows.
fn seed_counts(rows: &[String]) -> Result<Vec<(&'static Entry, u64)>, CliError> {
    let with_demo = || {
        kinds::REGISTRY
            .entries()
            .iter()
            .filter(|e| e.demo.is_some())
    };
    let names = || {
        with_demo()
            .map(|e| e.kind.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    // The last count given for a kind wins; the kinds go in registry order.
    let mut asked: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for arg in rows {
        let bad = || {
            CliError::Usage(format!(
                "--rows {arg:?}: expected KIND=N, N a whole number, KIND one of {}",
                names()
            ))
        };
        let (name, n) = arg.split_once('=').ok_or_else(bad)?;
        let n: u64 = n.trim().parse().map_err(|_| bad())?;
        let entry = with_demo()
            .find(|e| e.kind.name == name.trim())
            .ok_or_else(bad)?;
        asked.insert(entry.kind.name, n);
    }
    if asked.is_empty() {
        return Ok(with_demo()
            .take(1)
            .map(|e| (*e, DEFAULT_SEED_ROWS))
            .collect());
    }
    Ok(with_demo()
        .filter_map(|e| asked.get(e.kind.name).map(|n| (*e, *n)))
        .collect())
}

/// Rows `seed` writes when no `--rows` is given.
const DEFAULT_SEED_ROWS: u64 = 1_000_000;

/// `acctstream purge [--dry-run]`: one retention pass now, on stdout, a
/// line per kind and table.
pub(super) async fn purge(common: &Common, args: &PurgeArgs) -> Result<(), CliError> {
    let mut options = args.retention.options();
    let cutoffs = db::retention::Cutoffs::at(&options, Utc::now());
    if cutoffs.is_none() {
        println!(
            "retention is disabled (ACCTSTREAM_RETENTION_DAYS=0, ACCTSTREAM_AUDIT_RETENTION_DAYS=0): nothing to delete"
        );
        return Ok(());
    }
    // The events are rolled up (with the key) before any is deleted.
    let pseudonymiser = admin_key(common)?.ok_or(ConfigError::MissingKey)?;
    options.pseudonymiser = Some(pseudonymiser.clone());
    options.upkeep = kinds::REGISTRY.upkeeps();
    let database = Database::open(common, true).await?;
    let result = async {
        // The rollups must hold every event before any is deleted.
        database.migrate(Some(&pseudonymiser)).await?;
        let pool = db::pool::build(database.config.clone(), database.tls.clone(), 1)?;
        let secs = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        match cutoffs.records {
            Some(cutoff) => println!(
                "retention: {} days; cutoff {} (records before it are deleted)",
                options.policy.days(),
                secs(cutoff)
            ),
            None => println!("retention of records is disabled (ACCTSTREAM_RETENTION_DAYS=0)"),
        }
        match cutoffs.audit {
            Some(cutoff) => println!(
                "audit retention: {} days; cutoff {}",
                options.audit_policy.days(),
                secs(cutoff)
            ),
            None => println!(
                "retention of the audit trail is disabled (ACCTSTREAM_AUDIT_RETENTION_DAYS=0)"
            ),
        }
        if args.dry_run {
            let previews = db::retention::preview(&pool, cutoffs, &options).await?;
            let when = |t: Option<DateTime<Utc>>| {
                t.map_or_else(String::new, |t| {
                    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                })
            };
            for preview in &previews {
                match preview.rows {
                    0 => println!(
                        "dry run: {} ({}): nothing would be deleted",
                        preview.name, preview.table
                    ),
                    n => println!(
                        "dry run: {} ({}): {n} rows would be deleted, from {} to {}",
                        preview.name,
                        preview.table,
                        when(preview.oldest),
                        when(preview.newest)
                    ),
                }
                if !preview.partitions.is_empty() {
                    println!(
                        "dry run: {} ({}): partitions that would be dropped whole: {}",
                        preview.name,
                        preview.table,
                        preview.partitions.join(", ")
                    );
                }
            }
            println!("dry run: nothing was deleted");
        } else {
            let outcome =
                db::retention::purge(&pool, cutoffs, &options, &CancellationToken::new()).await?;
            for (name, partition) in &outcome.dropped {
                println!("dropped the partition {partition} of {name} whole");
            }
            for table in &outcome.tables {
                println!(
                    "deleted {} rows of {} ({}) from before {}",
                    table.deleted,
                    table.name,
                    table.table,
                    secs(table.cutoff)
                );
            }
            println!(
                "retention pass done in {:.1} s; the usage reports keep their figures",
                outcome.elapsed.as_secs_f64()
            );
        }
        Ok(())
    }
    .await;
    database.stop().await;
    result
}

/// Where the embedded cluster of `data_dir` lives when PostgreSQL's
/// unprivileged user cannot enter `data_dir`: `/var/tmp/acctstream-<hash>`,
/// one per data directory (kept across reboots, like the data directory).
fn fallback_cluster_dir(data_dir: &std::path::Path) -> std::path::PathBuf {
    use sha2::{Digest, Sha256};
    let absolute = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let digest = Sha256::digest(absolute.as_os_str().as_encoded_bytes());
    let name: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    std::path::Path::new("/var/tmp").join(format!("acctstream-{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 11, item 7: the demo's examples do something useful on any day:
    /// no fixed dates or event IDs; the answer to expect is shown.
    #[test]
    fn the_demo_banner_examples_are_current() {
        let banner = demo_banner(
            "http://127.0.0.1:8080",
            "read-token",
            "write-token",
            &[("acme", "acme-token".to_owned())],
        );
        assert!(banner.contains("export T=read-token") && banner.contains("export W=write-token"));
        assert!(
            banner.contains("Bearer acme-token' 'http://127.0.0.1:8080/api/v1/sessions/online?limit=3'   # acme"),
            "{banner}"
        );
        assert!(
            banner.contains("$(date -u +%Y-%m-%dT%H:%M:%SZ)"),
            "{banner}"
        );
        assert!(
            banner.contains(r#"\"eventId\":\"demo-$(date +%s%N)\""#),
            "{banner}"
        );
        assert!(!banner.contains("2021-"), "{banner}");
        assert!(
            banner.contains(r#"{"received":1,"inserted":1,"duplicates":0}"#),
            "{banner}"
        );
        assert!(banner.contains("/api/v1/statistics/client-events/summary/hour"));
        assert!(
            banner.contains("http://127.0.0.1:8080/dashboard/"),
            "{banner}"
        );
    }

    /// Issue 26, item 3: the demo's data reach the moment it is filled, not
    /// the moment seeding began. A first pass that ends 90 seconds ago (as
    /// if seeding had taken that long) leaves no hole: the second pass
    /// tops every kind up to now.
    #[tokio::test]
    async fn the_demo_fill_leaves_no_hole_before_now() {
        let config = crate::demo::test_db::fresh_database().await;
        let pool = db::pool::build(config, db::tls::default_connector(), 2).expect("pool");
        let key = Pseudonymiser::new(b"demo-test-key").expect("key");
        let options = demo::SeedOptions {
            events: 400_000,
            days: 1,
            end: Utc::now() - chrono::Duration::seconds(90),
            ..demo::SeedOptions::default()
        };
        fill_demo(&pool, options, &key).await.expect("fill");
        let filled = Utc::now();
        let client = pool.get().await.expect("client");
        for table in ["auth_event", "client_event"] {
            // Every 30 seconds of the last 90 have records of the kind.
            let rows = client
                .query(
                    &format!(
                        "SELECT floor(extract(epoch FROM $1::timestamptz - occurred_at) / 30)::int8 AS slice, \
                         count(*) FROM {table} WHERE occurred_at > $1::timestamptz - interval '90 seconds' \
                         GROUP BY 1 ORDER BY 1"
                    ),
                    &[&filled],
                )
                .await
                .expect("slices");
            let slices: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
            assert_eq!(
                slices,
                vec![0, 1, 2],
                "{table}: 30-second slices with records"
            );
        }
    }
}
