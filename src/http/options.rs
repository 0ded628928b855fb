//! The settings of the HTTP layer, gathered in [`AppOptions`]: plain data
//! that the handlers read and the state holds. Nothing here imports a
//! handler, so handlers and the state depend on this module, not on each
//! other.

use std::{fmt, time::Duration};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::core::filename::FilenamePrefix;

/// Settings of the HTTP layer beyond the essentials. `Default` gives what
/// `serve` uses when nothing is configured, so tests set only what they test.
#[derive(Clone, Debug, Default)]
pub struct AppOptions {
    /// Levels of the gzip and zstd compression of streamed bodies.
    pub compression: crate::core::compress::Levels,
    /// What this process knows to be in the identity directory (RADIUS
    /// ingest skips writing it again).
    pub directory: std::sync::Arc<crate::db::directory::Recorded>,
    /// Where the background catch-up of rows others write stands (lookups
    /// by pseudonym and `/readyz` read it).
    pub directory_progress: std::sync::Arc<crate::db::directory::Progress>,
    /// The metrics every worker records into and `/metrics` shows.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// `/metrics` protection and the shutdown grace period.
    pub ops: OpsOptions,
    /// The report endpoints' settings.
    pub reports: ReportOptions,
    /// The ingest endpoint's settings (body size limit).
    pub ingest: IngestOptions,
    /// What CSV bodies do with formula-like text (`ACCTSTREAM_CSV_FORMULA_GUARD`).
    pub csv_formula_guard: crate::core::encode::FormulaGuard,
    /// Origins browsers may call the API from (`ACCTSTREAM_CORS_ORIGINS`,
    /// checked by `config::parse_cors_origins`); empty: no CORS.
    pub cors_origins: Vec<String>,
    /// OAuth2 access tokens, when an issuer is configured.
    pub oauth: Option<std::sync::Arc<super::jwks::OAuth>>,
    /// Per-client request-rate and stream limits (off by default).
    pub limits: std::sync::Arc<crate::core::limits::Limits>,
    /// Where audited requests leave their entries (`None`: not audited).
    pub audit: Option<crate::db::audit::AuditSink>,
    /// `ACCTSTREAM_AUDIT_REQUIRED`: an API request whose entry the audit
    /// buffer cannot take is refused (503) instead of served unaudited.
    pub audit_required: bool,
    /// Cancelled when the service starts stopping: open event streams end.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Which kinds' change feeds can be read (learnt once each).
    pub changes: std::sync::Arc<crate::db::changes::Tracking>,
    /// Tests of the second layer of organizations only: a caller's
    /// organization is left out of the queries, to row security alone.
    /// Never set by the service.
    #[doc(hidden)]
    pub tenants_by_row_security_only: bool,
}

/// The default time in-flight responses get to finish after a stop signal.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Settings of the operations endpoints and of shutdown.
#[derive(Clone, Debug)]
pub struct OpsOptions {
    /// When set, `/metrics` requires `Authorization: Bearer <token>`.
    pub metrics_token: Option<MetricsToken>,
    /// How long in-flight responses may run after a stop signal before the
    /// server closes their connections.
    pub shutdown_grace: Duration,
}

impl Default for OpsOptions {
    fn default() -> Self {
        OpsOptions {
            metrics_token: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// The token that protects `/metrics`, kept only as its SHA-256 digest and
/// compared in constant time.
#[derive(Clone)]
pub struct MetricsToken([u8; 32]);

impl MetricsToken {
    /// Keeps the digest of `token`.
    pub fn new(token: &str) -> MetricsToken {
        MetricsToken(Sha256::digest(token.as_bytes()).into())
    }

    /// True when `presented` is the token.
    pub fn allows(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.0.ct_eq(&digest).into()
    }
}

impl fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MetricsToken(..)")
    }
}

/// Settings of the report endpoints.
#[derive(Clone, Debug, Default)]
pub struct ReportOptions {
    /// Prefix of the CSV download file names
    /// (`ACCTSTREAM_REPORT_FILENAME_PREFIX`).
    pub filename_prefix: FilenamePrefix,
}

/// The default of `ACCTSTREAM_MAX_BODY_BYTES`: 64 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// Settings of the ingest endpoint.
#[derive(Clone, Debug)]
pub struct IngestOptions {
    /// Largest accepted request body, in bytes (after any `Content-Encoding`
    /// is decoded); larger bodies are answered 413 and nothing is stored.
    pub max_body_bytes: u64,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}
