//! The errors of creating, starting and stopping a cluster.

use super::*;

/// Everything that can go wrong while creating, starting or stopping the cluster.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// Neither `PATH` nor the versioned library directories hold `initdb` and `postgres`.
    #[error(
        "PostgreSQL server binaries (initdb, postgres) not found on PATH or in {}/*/bin: \
         install them (e.g. `apt-get install postgresql`) or set DATABASE_URL to use an existing server",
        lib_root.display()
    )]
    BinariesNotFound {
        /// The directory whose `<N>/bin` subdirectories were searched.
        lib_root: PathBuf,
    },
    /// We run as root, which PostgreSQL refuses, and there is no user to switch to.
    #[error(
        "running as root, but there is neither a `postgres` nor a `nobody` user to run PostgreSQL as: \
         create one (e.g. `useradd --system postgres`), run as a non-root user, or set DATABASE_URL"
    )]
    NoUnprivilegedUser,
    /// Looking up the unprivileged user in the password database failed.
    #[error("cannot look up user `{name}` in the password database: {source}")]
    UserLookup {
        /// The user name looked up.
        name: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A file-system operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What we tried to do, e.g. "create directory".
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The unprivileged user PostgreSQL runs as cannot reach the data directory.
    #[error(
        "PostgreSQL must run as user `{user}` (uid {uid}) because we are root, but that user cannot \
         enter {} (mode {mode:o}, owner uid {owner}): choose a data directory under a world-searchable \
         path (e.g. /tmp) or run `chmod o+x` on that directory",
        path.display()
    )]
    NotReachable {
        /// The directory the user cannot search.
        path: PathBuf,
        /// The user PostgreSQL runs as.
        user: String,
        /// That user's id.
        uid: u32,
        /// The directory's permission bits.
        mode: u32,
        /// The directory owner's user id.
        owner: u32,
    },
    /// A server program could not be executed at all.
    #[error("cannot run {}: {source}", program.display())]
    Spawn {
        /// The program we tried to run.
        program: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The process-wide spawner thread is not available.
    #[error("cannot start the thread that launches PostgreSQL (out of threads?); retry or set DATABASE_URL")]
    SpawnerUnavailable,
    /// `initdb` ran but failed.
    #[error("initdb failed ({status}); last lines of {}:\n{tail}", log.display())]
    Initdb {
        /// How initdb exited.
        status: ExitStatus,
        /// The log file holding initdb's output.
        log: PathBuf,
        /// The last lines initdb wrote.
        tail: String,
    },
    /// The server exited before it accepted connections.
    #[error("PostgreSQL exited during startup ({status}); last lines of {}:\n{tail}", log.display())]
    StartExited {
        /// How the postmaster exited.
        status: ExitStatus,
        /// The log file holding the server's output.
        log: PathBuf,
        /// The last lines the server wrote.
        tail: String,
    },
    /// The server did not accept connections in time.
    #[error(
        "PostgreSQL did not become ready within {} s (it was stopped again); last lines of {}:\n{tail}",
        timeout.as_secs(),
        log.display()
    )]
    StartTimeout {
        /// How long we waited.
        timeout: Duration,
        /// The log file holding the server's output.
        log: PathBuf,
        /// The last lines the server wrote.
        tail: String,
    },
    /// The server survived SIGINT, SIGQUIT and SIGKILL.
    #[error(
        "PostgreSQL (pid {pid}) did not exit even after SIGKILL; check `ps` for a stuck process"
    )]
    StopTimeout {
        /// The postmaster's process id.
        pid: u32,
    },
}

pub(crate) fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> EmbeddedError + 'a {
    move |source| EmbeddedError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}
