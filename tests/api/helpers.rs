//! The test harness: a private PostgreSQL cluster per test binary, a fresh
//! migrated database per test, and the real app on port 0.

use std::{
    net::TcpListener,
    sync::{
        atomic::{AtomicU32, Ordering},
        OnceLock,
    },
};

use acctstream::{
    config::ApiTokens,
    core::pseudonym::Pseudonymiser,
    db::{
        self,
        embedded::{test_cluster_dir, EmbeddedOptions, EmbeddedPostgres},
    },
    http,
};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;

/// The bearer token every test app accepts (read only).
pub const TOKEN: &str = "test-token-0123456789";
/// The read+write (ingest) token every test app accepts.
pub const WRITE_TOKEN: &str = "test-write-token-0123456789";
/// A read token with the `identities` scope (sees raw identities).
pub const IDENTITIES_TOKEN: &str = "test-identities-token-0123456789";
/// A read+audit token, labelled `auditor`.
pub const AUDIT_TOKEN: &str = "test-audit-token-0123456789";
/// The pseudonymisation key of every test app.
pub const KEY: &str = "test-pseudonym-key";

struct Cluster {
    pg: EmbeddedPostgres,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);
const TEMPLATE: &str = "acctstream_template";

fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        // Started on a plain thread: the caller may be inside a runtime.
        std::thread::spawn(start_cluster)
            .join()
            .unwrap_or_else(|_| panic!("starting the test PostgreSQL cluster panicked"))
    })
}

fn start_cluster() -> Cluster {
    let dir = test_cluster_dir()
        .unwrap_or_else(|e| panic!("cannot create the test cluster directory: {e}"));
    let pg = EmbeddedPostgres::start(EmbeddedOptions {
        data_dir: dir,
        durable: false,
        ..Default::default()
    })
    .unwrap_or_else(|e| {
        panic!(
            "the integration tests need the PostgreSQL server binaries (initdb, postgres): \
             install them, e.g. `apt-get install postgresql`. Starting the test cluster failed: {e}"
        )
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let admin = connect(&pg.pg_config("postgres")).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {TEMPLATE}"))
            .await
            .expect("create the template database");
        let mut template = connect(&pg.pg_config(TEMPLATE)).await;
        db::migrate::run(&mut template, &acctstream::kinds::REGISTRY.kinds())
            .await
            .expect("migrate the template database");
    });
    Cluster { pg }
}

/// Opens one connection, its driver task on the current runtime.
pub async fn connect(config: &tokio_postgres::Config) -> tokio_postgres::Client {
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to the test cluster");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Options for [`spawn_app_with`].
#[derive(Clone, Debug)]
pub struct AppOptions {
    /// Pool size of the app.
    pub pool_size: usize,
    /// `ACCTSTREAM_PUBLIC_URL`.
    pub public_url: Option<String>,
    /// Where the app's pool connects, when not the test database.
    pub app_database: Option<tokio_postgres::Config>,
    /// The app's own options (`AppState::options`).
    pub http: http::AppOptions,
    /// `ACCTSTREAM_PSEUDONYM_KEYS` instead of the one test key.
    pub key_schedule: Option<String>,
    /// The kinds served (the built-in ones unless a test adds its own).
    pub kinds: acctstream::registry::Registry,
    /// Replicas that serve reads (`ACCTSTREAM_READ_DATABASE_URL`).
    pub read_database: Option<acctstream::app::ReadDatabase>,
    /// HTTP workers (each with its pool).
    pub workers: usize,
    /// Run the background jobs as `serve` does (the audit writer,
    /// retention, the rollups; quickly, for tests).
    pub jobs: bool,
    /// Static tokens beside the test's own (`ACCTSTREAM_API_TOKENS`
    /// entries, e.g. of organizations).
    pub more_tokens: &'static str,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            pool_size: 4,
            public_url: None,
            app_database: None,
            http: http::AppOptions::default(),
            key_schedule: None,
            kinds: acctstream::kinds::REGISTRY,
            workers: 1,
            jobs: false,
            read_database: None,
            more_tokens: "",
        }
    }
}

/// A running app with its own database.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// The port the app listens on.
    pub port: u16,
    /// The app's pool (a clone: the same connections the app uses).
    pub pool: Pool,
    /// A separate connection to the test database.
    pub db: tokio_postgres::Client,
    /// Name of the test database.
    pub db_name: String,
    /// The app's pseudonymiser.
    pub pseudonymiser: Pseudonymiser,
    server: actix_web::dev::ServerHandle,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let stop = self.server.stop(false);
        drop(actix_web::rt::spawn(stop));
    }
}

/// Starts the app on port 0 with a fresh database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

/// Creates a fresh database from the migrated template.
pub async fn fresh_database() -> (String, tokio_postgres::Config) {
    let cluster = cluster();
    let name = format!(
        "test_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed)
    );
    let admin = connect(&cluster.pg.pg_config("postgres")).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE}"))
        .await
        .expect("create a test database");
    let config = cluster.pg.pg_config(&name);
    (name, config)
}

/// The connection settings of the test database `name`.
pub fn database_config(name: &str) -> tokio_postgres::Config {
    cluster().pg.pg_config(name)
}

/// A libpq URL of the test database `name` (for driving the binary).
pub fn database_url(name: &str) -> String {
    cluster().pg.url(name)
}

/// Creates an empty database (no migrations applied).
pub async fn fresh_database_unmigrated() -> (String, tokio_postgres::Config) {
    let cluster = cluster();
    let name = format!(
        "bare_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed)
    );
    let admin = connect(&cluster.pg.pg_config("postgres")).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create a database");
    let config = cluster.pg.pg_config(&name);
    (name, config)
}

/// Starts the app on port 0 with a fresh database and the given options.
pub async fn spawn_app_with(options: AppOptions) -> TestApp {
    let (db_name, db_config) = fresh_database().await;
    spawn_app_on(db_name, db_config, options).await
}

/// Starts the app against the given database configuration.
pub async fn spawn_app_on(
    db_name: String,
    db_config: tokio_postgres::Config,
    options: AppOptions,
) -> TestApp {
    let app_database = options.app_database.unwrap_or_else(|| db_config.clone());
    let pseudonymiser = match &options.key_schedule {
        Some(schedule) => Pseudonymiser::schedule(schedule).expect("a key schedule"),
        None => Pseudonymiser::new(KEY.as_bytes()).expect("a key"),
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let port = listener.local_addr().expect("local address").port();
    // The application `serve` runs, by default with one worker (one pool,
    // so the test's `pool` is the app's) and no background job (tests run
    // the rollups and retention themselves, when they mean to).
    let days = if options.jobs { 180 } else { 0 };
    let settings = acctstream::app::Settings {
        kinds: options.kinds,
        database: app_database,
        tls: acctstream::db::tls::default_connector(),
        pool_size: options.pool_size,
        workers: Some(options.workers),
        pseudonymiser: pseudonymiser.clone(),
        tokens: ApiTokens::parse(&format!(
            "{TOKEN},{WRITE_TOKEN}:read+write,{IDENTITIES_TOKEN}:read+identities,auditor={AUDIT_TOKEN}:read+audit,{}",
            options.more_tokens
        ))
        .expect("tokens"),
        public_url: options.public_url,
        session_stale_after: None,
        http: options.http,
        audit: options.jobs,
        retention: acctstream::db::retention::RetentionOptions {
            policy: acctstream::core::retention::RetentionPolicy::new(days),
            audit_policy: acctstream::core::retention::RetentionPolicy::new(days),
            first_run_delay: std::time::Duration::from_millis(10),
            interval: std::time::Duration::from_millis(200),
            ..Default::default()
        },
        rollup_interval: options
            .jobs
            .then_some(std::time::Duration::from_millis(50)),
        read_database: options.read_database,
        partitions: options
            .jobs
            .then_some(acctstream::core::partition::Interval::Monthly),
    };
    let application =
        acctstream::app::Application::build(settings, listener).expect("start the app");
    let pool = application.pools().current().clone();
    let handle = application.handle();
    actix_web::rt::spawn(application.run_until_stopped());
    let db = connect(&db_config).await;
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        pool,
        db,
        db_name,
        pseudonymiser,
        server: handle,
    }
}

/// One event to insert.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub occurred_at: DateTime<Utc>,
    pub auth_method_type: String,
    pub auth_method_name: String,
    pub auth_request_origin: String,
    pub user_id: String,
}

/// One Wi-Fi client event to insert.
#[derive(Clone, Debug)]
pub struct ClientEvent {
    pub at: String,
    pub mac: String,
    pub event_type: String,
    pub ssid: Option<String>,
    pub ap: Option<String>,
    pub failure_code: Option<i32>,
    pub failure: Option<String>,
    pub ip: Option<String>,
    pub category: Option<i32>,
}

/// A successful connection of `mac` at `at` to `ssid` at `ap`.
pub fn client_event(at: &str, mac: &str, ssid: &str, ap: &str) -> ClientEvent {
    ClientEvent {
        at: at.into(),
        mac: mac.into(),
        event_type: "Success".into(),
        ssid: Some(ssid.into()),
        ap: Some(ap.into()),
        failure_code: None,
        failure: None,
        ip: None,
        category: None,
    }
}

/// An ordinary event at `ts` for `user`.
pub fn event(ts: &str, user: &str) -> NewEvent {
    NewEvent {
        occurred_at: ts
            .parse()
            .unwrap_or_else(|e| panic!("bad test timestamp {ts}: {e}")),
        auth_method_type: "PASSWORD".into(),
        auth_method_name: "password.1".into(),
        auth_request_origin: "CN=Appl-1,CN=Server,OU=System,CN=Ubilogin,DC=test".into(),
        user_id: user.into(),
    }
}

impl TestApp {
    /// Inserts events.
    pub async fn insert(&self, events: &[NewEvent]) {
        let statement = self
            .db
            .prepare(
                "INSERT INTO auth_event (occurred_at, auth_method_type, auth_method_name, \
                 auth_request_origin, user_id) VALUES ($1, $2, $3, $4, $5)",
            )
            .await
            .expect("prepare insert");
        for e in events {
            self.db
                .execute(
                    &statement,
                    &[
                        &e.occurred_at,
                        &e.auth_method_type,
                        &e.auth_method_name,
                        &e.auth_request_origin,
                        &e.user_id,
                    ],
                )
                .await
                .expect("insert an event");
        }
    }

    /// Inserts `n` events one millisecond apart starting at `start`, server-side.
    pub async fn insert_many(&self, start: &str, n: i64) {
        self.db
            .execute(
                "INSERT INTO auth_event (occurred_at, auth_method_type, auth_method_name, \
                 auth_request_origin, user_id) \
                 SELECT $1::timestamptz + i * interval '1 millisecond', 'PASSWORD', 'password.1', \
                        'CN=Appl-' || (i % 50) || ',CN=Server,OU=System,CN=Ubilogin,DC=test', \
                        'user' || (i % 997) || '@example.com' \
                 FROM generate_series(0::bigint, $2::bigint - 1) AS i",
                &[&start.parse::<DateTime<Utc>>().expect("timestamp"), &n],
            )
            .await
            .expect("insert many events");
    }

    /// A client with a long timeout (streams can be large).
    pub fn client(&self) -> awc::Client {
        awc::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .finish()
    }

    /// `GET path` with the test token and extra headers.
    pub fn get(&self, path: &str) -> awc::ClientRequest {
        self.client()
            .get(format!("{}{path}", self.address))
            .insert_header(("Authorization", format!("Bearer {TOKEN}")))
    }

    /// `GET path` with the given bearer token.
    pub fn get_as(&self, token: &str, path: &str) -> awc::ClientRequest {
        self.client()
            .get(format!("{}{path}", self.address))
            .insert_header(("Authorization", format!("Bearer {token}")))
    }

    /// `GET path` with `token`: its headers and body; a status other than
    /// 200 fails the test with the body.
    pub async fn get_ok_as(
        &self,
        token: &str,
        path: &str,
    ) -> (awc::http::header::HeaderMap, Vec<u8>) {
        let mut response = self.get_as(token, path).send().await.expect("GET");
        let body = body_of(&mut response).await;
        assert_eq!(
            response.status(),
            200,
            "GET {path}: {}",
            String::from_utf8_lossy(&body)
        );
        (response.headers().clone(), body)
    }

    /// `GET path` with `token`, as JSON (see [`TestApp::get_ok_as`]).
    pub async fn get_json_as(&self, token: &str, path: &str) -> serde_json::Value {
        let (_, body) = self.get_ok_as(token, path).await;
        serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "GET {path}: not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        })
    }

    /// `GET path` with the read token, as JSON.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.get_json_as(TOKEN, path).await
    }

    /// Inserts Wi-Fi client events and records their clients' pseudonyms
    /// in the identity directory, as ingest and the demo do.
    pub async fn insert_client_events(&self, events: &[ClientEvent]) {
        let statement = self
            .db
            .prepare(
                "INSERT INTO client_event (occurred_at, client_mac, event_type, ssid, ap_name, \
                 failure_code, failure, client_ip, category_code) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .await
            .expect("prepare insert");
        let mut entries = acctstream::db::directory::Entries::default();
        for e in events {
            let mac = acctstream::core::identity::IdentityType::Mac.normalise(&e.mac);
            let at: DateTime<Utc> = e.at.parse().expect("timestamp");
            entries.add(
                &self.pseudonymiser,
                acctstream::core::identity::IdentityType::Mac,
                &e.mac,
                at,
            );
            if let Some(ip) = &e.ip {
                entries.add(
                    &self.pseudonymiser,
                    acctstream::core::identity::IdentityType::Ip,
                    ip,
                    at,
                );
            }
            self.db
                .execute(
                    &statement,
                    &[
                        &at,
                        &mac.as_ref(),
                        &e.event_type,
                        &e.ssid,
                        &e.ap,
                        &e.failure_code,
                        &e.failure,
                        &e.ip,
                        &e.category,
                    ],
                )
                .await
                .expect("insert a client event");
        }
        entries.record(&self.db).await.expect("record pseudonyms");
    }

    /// The pseudonym the app gives `user`.
    pub fn pseudonym(&self, user: &str) -> String {
        self.pseudonymiser.pseudonymise(user).as_str().to_owned()
    }

    /// Number of our event queries the database is running right now.
    pub async fn running_event_queries(&self) -> i64 {
        self.db
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 \
                 AND state <> 'idle' AND query LIKE 'COPY (SELECT occurred_at%' AND pid <> pg_backend_pid()",
                &[&self.db_name],
            )
            .await
            .expect("query pg_stat_activity")
            .get(0)
    }
}

/// Reads a whole response body.
pub async fn body_of<S>(response: &mut awc::ClientResponse<S>) -> Vec<u8>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin,
{
    response
        .body()
        .limit(usize::MAX)
        .await
        .expect("read the whole body")
        .to_vec()
}

/// Polls `check` every 50 ms until it holds; fails after 20 seconds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

impl TestApp {
    /// Waits until the app runs exactly one event query, then terminates its
    /// backend: the database fails mid-stream.
    pub async fn terminate_event_query(&self) {
        eventually("the event query runs", || async {
            self.running_event_queries().await == 1
        })
        .await;
        let terminated: i64 = self
            .db
            .query_one(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND query LIKE 'COPY (SELECT occurred_at%' AND pid <> pg_backend_pid()) t",
                &[&self.db_name],
            )
            .await
            .expect("terminate the event query")
            .get(0);
        assert_eq!(terminated, 1, "exactly one event query was running");
    }
}

impl TestApp {
    /// Opens a raw connection and sends `GET path` with the test token and
    /// `headers`, leaving the response unread: the test sets the pace of
    /// reading (or disconnects).
    pub async fn open_raw(&self, path: &str, headers: &[(&str, &str)]) -> tokio::net::TcpStream {
        use tokio::io::AsyncWriteExt as _;
        let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect to the app");
        let mut request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        socket
            .write_all(request.as_bytes())
            .await
            .expect("send the request");
        socket
    }
}

/// Reads exactly `n` bytes of a raw response (the server must not close before).
pub async fn read_bytes(socket: &mut tokio::net::TcpStream, n: usize) -> Vec<u8> {
    use tokio::io::AsyncReadExt as _;
    let mut buffer = vec![0u8; n];
    socket
        .read_exact(&mut buffer)
        .await
        .expect("the server closed early");
    buffer
}

/// The test cluster's socket directory and port (for programs that connect
/// with libpq settings of their own, such as FreeRADIUS's rlm_sql).
pub fn cluster_socket() -> (std::path::PathBuf, u16) {
    let pg = &cluster().pg;
    (pg.socket_dir().to_path_buf(), pg.port())
}

/// The pseudonymisation key of every test app.
pub fn pseudonymiser() -> Pseudonymiser {
    Pseudonymiser::new(KEY.as_bytes()).expect("a key")
}

/// The usage-rollup keys of every test app (its pseudonymisation key).
pub fn rollup_keys() -> acctstream::core::pseudonym::RollupKeys {
    Pseudonymiser::new(KEY.as_bytes())
        .expect("a key")
        .rollup_keys()
}
