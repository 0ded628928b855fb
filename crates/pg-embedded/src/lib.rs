//! A private PostgreSQL cluster that the service and the tests start themselves.
//!
//! The cluster lives in `<data_dir>/pgdata` (created with `initdb` on first use and
//! reused afterwards), listens only on a Unix socket in a private directory, and
//! logs to `<data_dir>/postgres.log`. The postmaster is bound to the lifetime of
//! this process: it receives `SIGINT` (fast shutdown) when we die, even on
//! `SIGKILL` or when a test binary exits without running destructors.
//!
//! The API is synchronous because it is process management; async callers should
//! wrap it in `tokio::task::spawn_blocking`.

mod binaries;
mod cluster;
mod dirs;
mod error;
mod spawn;
#[cfg(test)]
mod tests;
mod user;

pub use binaries::{find_binaries, find_binaries_in, PgBinaries};
pub use cluster::{running_cluster, EmbeddedOptions, EmbeddedPostgres};
use dirs::*;
#[cfg(any(test, feature = "test-support"))]
pub use dirs::{sweep_stale_test_dirs, test_cluster_dir};
pub use error::EmbeddedError;
use error::*;
use spawn::*;
use user::*;

use std::ffi::{CString, OsStr};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// The superuser role `initdb` creates and clients connect as.
pub const SUPERUSER: &str = "acctstream";

/// The port of the embedded server; it only names the socket file in the private socket directory.
pub const PORT: u16 = 5432;

/// The directory where distribution packages install versioned server binaries.
pub const DEFAULT_LIB_ROOT: &str = "/usr/lib/postgresql";

/// The name prefix of the per-process directories made by [`test_cluster_dir`].
pub const TEST_DIR_PREFIX: &str = "acctstream-test-";

/// The name prefix of fallback socket directories under `/tmp`.
const SOCK_DIR_PREFIX: &str = "acctstream-sock-";

/// How long the server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a fast shutdown may take before we escalate to an immediate one.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long we wait after each escalation (SIGQUIT, SIGKILL).
const ESCALATION_TIMEOUT: Duration = Duration::from_secs(5);
/// Unix socket paths must fit in `sockaddr_un.sun_path`; stay well below its 108 bytes.
const MAX_SOCKET_PATH: usize = 100;
/// How many log lines an error message quotes.
const LOG_TAIL_LINES: usize = 20;

/// Characters left as they are when percent-encoding URL components.
const URL_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
