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

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> EmbeddedError + 'a {
    move |source| EmbeddedError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// How to create and run a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EmbeddedOptions {
    /// The directory holding the cluster (`pgdata`), its socket directory and its log file.
    pub data_dir: PathBuf,
    /// Whether committed data must survive a crash; tests pass `false` to trade safety for speed.
    pub durable: bool,
    /// Also listen on 127.0.0.1 at this port (default: the private socket only).
    pub tcp_port: Option<u16>,
    /// More server settings, `-c name=value` after ours (e.g. `ssl=on`).
    pub settings: Vec<(String, String)>,
}

/// The locations of the PostgreSQL server programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBinaries {
    /// The `initdb` program.
    pub initdb: PathBuf,
    /// The `postgres` server program.
    pub postgres: PathBuf,
}

/// Finds `initdb` and `postgres` on `PATH`, else in the highest-numbered `/usr/lib/postgresql/<N>/bin`.
pub fn find_binaries() -> Result<PgBinaries, EmbeddedError> {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    find_binaries_in(&path_var, Path::new(DEFAULT_LIB_ROOT))
}

/// Finds `initdb` and `postgres` in the first directory of `path_var` holding both, else in the
/// highest-numbered `<lib_root>/<N>/bin` holding both.
pub fn find_binaries_in(path_var: &OsStr, lib_root: &Path) -> Result<PgBinaries, EmbeddedError> {
    let on_path = std::env::split_paths(path_var)
        .filter(|dir| dir.is_absolute())
        .find_map(|dir| binaries_in_dir(&dir));
    if let Some(found) = on_path {
        return Ok(found);
    }
    let mut versions: Vec<(Vec<u32>, PathBuf)> = match fs::read_dir(lib_root) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name();
                let version = name
                    .to_str()?
                    .split('.')
                    .map(|part| part.parse::<u32>().ok())
                    .collect::<Option<Vec<u32>>>()?;
                Some((version, entry.path().join("bin")))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions
        .iter()
        .find_map(|(_, dir)| binaries_in_dir(dir))
        .ok_or_else(|| EmbeddedError::BinariesNotFound {
            lib_root: lib_root.to_path_buf(),
        })
}

fn binaries_in_dir(dir: &Path) -> Option<PgBinaries> {
    let initdb = dir.join("initdb");
    let postgres = dir.join("postgres");
    (is_executable(&initdb) && is_executable(&postgres)).then_some(PgBinaries { initdb, postgres })
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|md| md.is_file() && md.mode() & 0o111 != 0)
}

/// The unprivileged account PostgreSQL runs as when we are root.
#[derive(Debug, Clone)]
struct RunAs {
    name: String,
    uid: u32,
    gid: u32,
}

/// Returns the user to switch to, or `None` when we are not root and run PostgreSQL as ourselves.
fn unprivileged_user() -> Result<Option<RunAs>, EmbeddedError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        if let Some(user) = lookup_user(name)? {
            return Ok(Some(user));
        }
    }
    Err(EmbeddedError::NoUnprivilegedUser)
}

fn lookup_user(name: &str) -> Result<Option<RunAs>, EmbeddedError> {
    let lookup_err = |source| EmbeddedError::UserLookup {
        name: name.to_owned(),
        source,
    };
    let c_name = CString::new(name)
        .map_err(|e| lookup_err(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    let mut buf: Vec<libc::c_char> = vec![0; 4096];
    loop {
        // SAFETY: an all-zero passwd is a valid value to be overwritten by getpwnam_r.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the duration of the call and buf.len() is its size.
        let rc = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 {
            return Err(lookup_err(io::Error::from_raw_os_error(rc)));
        }
        if result.is_null() {
            return Ok(None);
        }
        return Ok(Some(RunAs {
            name: name.to_owned(),
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        }));
    }
}

/// Creates `path` (and missing parents with default permissions) as a 0700 directory owned by
/// `owner`; an existing directory is left as it is.
fn create_private_dir(path: &Path, owner: Option<&RunAs>) -> Result<(), EmbeddedError> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_err("create directory", parent))?;
    }
    fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(io_err("create directory", path))?;
    if let Some(user) = owner {
        std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
            .map_err(io_err("change the owner of", path))?;
    }
    Ok(())
}

/// Checks that `user` can search `dir` and all its ancestors (supplementary groups are dropped
/// when we switch users, so only the primary group counts).
fn check_reachable(dir: &Path, user: &RunAs) -> Result<(), EmbeddedError> {
    for ancestor in dir.ancestors() {
        let md = fs::metadata(ancestor).map_err(io_err("inspect", ancestor))?;
        let mode = md.mode();
        let searchable = if md.uid() == user.uid {
            mode & 0o100 != 0
        } else if md.gid() == user.gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !searchable {
            return Err(EmbeddedError::NotReachable {
                path: ancestor.to_path_buf(),
                user: user.name.clone(),
                uid: user.uid,
                mode: mode & 0o7777,
                owner: md.uid(),
            });
        }
    }
    Ok(())
}

/// Gives `path` and everything below it to `user` (without following symbolic links).
fn chown_recursive(path: &Path, user: &RunAs) -> Result<(), EmbeddedError> {
    std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid))
        .map_err(io_err("change the owner of", path))?;
    let md = fs::symlink_metadata(path).map_err(io_err("inspect", path))?;
    if md.is_dir() {
        for entry in fs::read_dir(path).map_err(io_err("list", path))? {
            let entry = entry.map_err(io_err("list", path))?;
            chown_recursive(&entry.path(), user)?;
        }
    }
    Ok(())
}

/// A request to the spawner thread: the command to spawn and where to send the child.
struct SpawnRequest {
    command: Command,
    reply: mpsc::Sender<io::Result<Child>>,
}

/// The process-wide spawner thread's request queue (`None` if the thread could not be started).
static SPAWNER: OnceLock<Option<mpsc::Sender<SpawnRequest>>> = OnceLock::new();

/// Spawns `command` from a thread that lives as long as the process.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, so children that must
/// outlive the calling thread (e.g. a test's thread) but not the process are forked from here.
fn spawn_from_spawner_thread(command: Command) -> Result<io::Result<Child>, EmbeddedError> {
    let sender = SPAWNER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<SpawnRequest>();
            std::thread::Builder::new()
                .name("acctstream-pg-spawner".to_owned())
                .spawn(move || {
                    // The sender lives in a static that is never dropped, so recv only fails if
                    // that invariant breaks; park forever rather than exit (which would kill the
                    // children through their parent-death signal).
                    while let Ok(mut request) = rx.recv() {
                        let result = request.command.spawn();
                        if let Err(mpsc::SendError(Ok(mut orphan))) = request.reply.send(result) {
                            let _ = orphan.kill();
                            let _ = orphan.wait();
                        }
                    }
                    loop {
                        std::thread::park();
                    }
                })
                .ok()
                .map(|_| tx)
        })
        .as_ref()
        .ok_or(EmbeddedError::SpawnerUnavailable)?;
    let (reply_tx, reply_rx) = mpsc::channel();
    sender
        .send(SpawnRequest {
            command,
            reply: reply_tx,
        })
        .map_err(|_| EmbeddedError::SpawnerUnavailable)?;
    reply_rx
        .recv()
        .map_err(|_| EmbeddedError::SpawnerUnavailable)
}

/// Makes the child receive SIGINT (PostgreSQL's fast shutdown) when its parent thread dies.
fn bind_to_parent(command: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure only calls async-signal-safe functions (prctl, getppid, _exit) and does
    // not allocate. std runs it after setgid/setuid, which matters because changing credentials
    // clears the parent-death signal.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGINT as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then no signal would ever come.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Returns true if `pid` names a live process (zombies count as alive, as kill(2) sees them).
fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks whether the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Removes directories in [`std::env::temp_dir`] named `<prefix>…-<pid>` whose process is gone.
#[cfg(any(test, feature = "test-support"))]
///
/// This cleans up after test processes that were killed or exited without destructors. Errors
/// are ignored: the sweep is best effort.
pub fn sweep_stale_test_dirs(prefix: &str) {
    sweep_stale_dirs_in(&std::env::temp_dir(), prefix);
}

#[cfg(any(test, feature = "test-support"))]
fn sweep_stale_dirs_in(root: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let pid_text = rest.rsplit('-').next().unwrap_or(rest);
        let Ok(pid) = pid_text.parse::<u32>() else {
            continue;
        };
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && pid != 0 && !pid_alive(pid) {
            if let Err(e) = fs::remove_dir_all(entry.path()) {
                tracing::debug!(path = %entry.path().display(), error = %e, "cannot remove stale test directory");
            }
        }
    }
}

#[cfg(any(test, feature = "test-support"))]
static TEST_DIRS: AtomicU32 = AtomicU32::new(0);

/// Creates a fresh, empty directory for a test cluster and returns its path
/// (feature `test-support`).
///
/// The first call in a process returns `<tmp>/acctstream-test-<pid>`, later calls
/// `<tmp>/acctstream-test-<n>-<pid>`. Before that, directories left behind by dead test processes
/// are removed (see [`sweep_stale_test_dirs`]); the directories of the current process are left
/// for the next run to sweep, because test binaries never drop their statics. When we are root
/// the directory is given to the user PostgreSQL runs as.
#[cfg(any(test, feature = "test-support"))]
pub fn test_cluster_dir() -> Result<PathBuf, EmbeddedError> {
    sweep_stale_test_dirs(TEST_DIR_PREFIX);
    sweep_stale_dirs_in(Path::new("/tmp"), SOCK_DIR_PREFIX);
    let pid = std::process::id();
    let n = TEST_DIRS.fetch_add(1, Ordering::Relaxed);
    let name = if n == 0 {
        format!("{TEST_DIR_PREFIX}{pid}")
    } else {
        format!("{TEST_DIR_PREFIX}{n}-{pid}")
    };
    let dir = std::env::temp_dir().join(name);
    fresh_private_dir(&dir, unprivileged_user()?.as_ref())?;
    Ok(dir)
}

/// Creates `dir` empty, removing a leftover of a dead process that had the same pid.
fn fresh_private_dir(dir: &Path, owner: Option<&RunAs>) -> Result<(), EmbeddedError> {
    match fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("remove", dir)(e)),
    }
    create_private_dir(dir, owner)
}

static SOCK_DIRS: AtomicU32 = AtomicU32::new(0);

/// A running PostgreSQL cluster owned by this process.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    child: Option<Child>,
    pid: u32,
    data_dir: PathBuf,
    pgdata: PathBuf,
    socket_dir: PathBuf,
    /// Whether `socket_dir` is a fallback directory under /tmp that we must remove.
    owns_socket_dir: bool,
    log_file: PathBuf,
    port: u16,
}

impl EmbeddedPostgres {
    /// Creates the cluster if needed, starts the server and waits until it accepts connections.
    pub fn start(opts: EmbeddedOptions) -> Result<EmbeddedPostgres, EmbeddedError> {
        let binaries = find_binaries()?;
        let run_as = unprivileged_user()?;
        let run_as = run_as.as_ref();

        create_private_dir(&opts.data_dir, run_as)?;
        let data_dir = fs::canonicalize(&opts.data_dir)
            .map_err(io_err("resolve the path of", &opts.data_dir))?;
        if let Some(user) = run_as {
            check_reachable(&data_dir, user)?;
        }
        let log_path = data_dir.join("postgres.log");
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&log_path)
            .map_err(io_err("open the log file", &log_path))?;
        let log_start = log.metadata().map(|md| md.len()).unwrap_or(0);

        let pgdata = data_dir.join("pgdata");
        if pgdata.join("PG_VERSION").is_file() {
            if let Some(user) = run_as {
                let owner = fs::metadata(&pgdata)
                    .map_err(io_err("inspect", &pgdata))?
                    .uid();
                if owner != user.uid {
                    chown_recursive(&pgdata, user)?;
                }
            }
        } else {
            create_private_dir(&pgdata, run_as)?;
            run_initdb(
                &binaries,
                &pgdata,
                &data_dir,
                opts.durable,
                run_as,
                &mut log,
            )
            .map_err(|e| e.with_log(&log_path, log_start))?;
        }

        let port = opts.tcp_port.unwrap_or(PORT);
        let (socket_dir, owns_socket_dir) = Self::make_socket_dir(&data_dir, port, run_as)?;
        let socket_file = socket_dir.join(format!(".s.PGSQL.{port}"));

        let _ = writeln!(
            log,
            "---- acctstream: starting {}",
            binaries.postgres.display()
        );
        let mut command = Command::new(&binaries.postgres);
        command
            .arg("-D")
            .arg(&pgdata)
            .arg("-k")
            .arg(&socket_dir)
            .arg("-p")
            .arg(port.to_string())
            .args(["-c", "unix_socket_permissions=0777"]);
        match opts.tcp_port {
            Some(_) => command.args(["-c", "listen_addresses=127.0.0.1"]),
            None => command.args(["-c", "listen_addresses="]),
        };
        for (name, value) in &opts.settings {
            command.arg("-c").arg(format!("{name}={value}"));
        }
        if !opts.durable {
            command.args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]);
        }
        prepare_server_command(&mut command, &data_dir, &log, &log_path, run_as)?;
        bind_to_parent(&mut command);
        let spawned = spawn_from_spawner_thread(command).and_then(|result| {
            result.map_err(|source| EmbeddedError::Spawn {
                program: binaries.postgres.clone(),
                source,
            })
        });
        let child = match spawned {
            Ok(child) => child,
            Err(e) => {
                if owns_socket_dir {
                    let _ = fs::remove_dir_all(&socket_dir);
                }
                return Err(e);
            }
        };

        let mut cluster = EmbeddedPostgres {
            pid: child.id(),
            child: Some(child),
            data_dir,
            pgdata,
            socket_dir,
            owns_socket_dir,
            log_file: log_path,
            port,
        };
        cluster.wait_ready(&socket_file, log_start)?;
        Ok(cluster)
    }

    /// Picks `<data_dir>/sock`, or a fresh directory under /tmp when that path is too long for a
    /// Unix socket.
    fn make_socket_dir(
        data_dir: &Path,
        port: u16,
        run_as: Option<&RunAs>,
    ) -> Result<(PathBuf, bool), EmbeddedError> {
        let preferred = data_dir.join("sock");
        let socket_name = format!(".s.PGSQL.{port}");
        if preferred.join(&socket_name).as_os_str().len() < MAX_SOCKET_PATH {
            create_private_dir(&preferred, run_as)?;
            if let Some(user) = run_as {
                let owner = fs::metadata(&preferred)
                    .map_err(io_err("inspect", &preferred))?
                    .uid();
                if owner != user.uid {
                    chown_recursive(&preferred, user)?;
                }
            }
            return Ok((preferred, false));
        }
        let n = SOCK_DIRS.fetch_add(1, Ordering::Relaxed);
        let dir = PathBuf::from(format!("/tmp/{SOCK_DIR_PREFIX}{n}-{}", std::process::id()));
        fresh_private_dir(&dir, run_as)?;
        Ok((dir, true))
    }

    /// Polls `postmaster.pid` until the server reports `ready` and the socket exists.
    fn wait_ready(&mut self, socket_file: &Path, log_start: u64) -> Result<(), EmbeddedError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let pid_file = self.pgdata.join("postmaster.pid");
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child
                    .try_wait()
                    .map_err(io_err("wait for PostgreSQL started from", &self.pgdata))?
                {
                    self.child = None;
                    self.remove_own_socket_dir();
                    return Err(EmbeddedError::StartExited {
                        status,
                        log: self.log_file.clone(),
                        tail: log_tail(&self.log_file, log_start),
                    });
                }
            }
            if postmaster_ready(&pid_file, self.pid) && socket_file.exists() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let tail = log_tail(&self.log_file, log_start);
                if let Err(e) = self.shutdown(ESCALATION_TIMEOUT) {
                    tracing::warn!(error = %e, "cannot stop PostgreSQL after a failed start");
                }
                return Err(EmbeddedError::StartTimeout {
                    timeout: START_TIMEOUT,
                    log: self.log_file.clone(),
                    tail,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Returns connection settings for `dbname` as the superuser over the Unix socket.
    pub fn pg_config(&self, dbname: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.socket_dir)
            .port(self.port)
            .user(SUPERUSER)
            .dbname(dbname);
        config
    }

    /// Returns a libpq connection URL for `dbname` that `psql` and `tokio_postgres` both accept.
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "postgresql://{SUPERUSER}@/{}?host={}&port={}",
            percent_encode(dbname.as_bytes(), URL_COMPONENT),
            percent_encode(self.socket_dir.as_os_str().as_bytes(), URL_COMPONENT),
            self.port
        )
    }

    /// Returns the directory holding the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// Returns the port number that names the server's socket file.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Returns the absolute directory holding `pgdata`, the socket directory and the log file.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Returns the file the server's output is appended to.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// Returns the process id of the postmaster.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Stops the server with a fast shutdown (escalating to an immediate one after 15 s) and
    /// waits for it to exit.
    pub fn stop(mut self) -> Result<(), EmbeddedError> {
        self.shutdown(STOP_TIMEOUT)
    }

    /// Sends SIGINT, then SIGQUIT, then SIGKILL, each time waiting for the postmaster to exit.
    fn shutdown(&mut self, fast_timeout: Duration) -> Result<(), EmbeddedError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let steps = [
            (libc::SIGINT, fast_timeout),
            (libc::SIGQUIT, ESCALATION_TIMEOUT),
            (libc::SIGKILL, ESCALATION_TIMEOUT),
        ];
        let mut result = Err(EmbeddedError::StopTimeout { pid: self.pid });
        for (signal, timeout) in steps {
            if signal != libc::SIGINT {
                tracing::warn!(
                    pid = self.pid,
                    signal,
                    "PostgreSQL did not stop in time; escalating"
                );
            }
            if let Ok(pid) = libc::pid_t::try_from(self.pid) {
                // SAFETY: the child is not reaped yet, so its pid cannot have been reused.
                unsafe { libc::kill(pid, signal) };
            }
            match wait_with_timeout(&mut child, timeout) {
                Ok(true) => {
                    result = Ok(());
                    break;
                }
                Ok(false) => {}
                Err(source) => {
                    result = Err(EmbeddedError::Io {
                        action: "wait for PostgreSQL started from",
                        path: self.pgdata.clone(),
                        source,
                    });
                    break;
                }
            }
        }
        self.remove_own_socket_dir();
        result
    }

    fn remove_own_socket_dir(&mut self) {
        if self.owns_socket_dir {
            self.owns_socket_dir = false;
            if let Err(e) = fs::remove_dir_all(&self.socket_dir) {
                tracing::debug!(path = %self.socket_dir.display(), error = %e, "cannot remove socket directory");
            }
        }
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown(STOP_TIMEOUT) {
            tracing::warn!(error = %e, "cannot stop the embedded PostgreSQL");
        }
    }
}

/// Waits up to `timeout` for `child` to exit; returns whether it did.
fn wait_with_timeout(child: &mut Child, timeout: Duration) -> io::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait()?.is_some() {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sets the working directory, I/O, environment and credentials shared by initdb and postgres.
fn prepare_server_command(
    command: &mut Command,
    data_dir: &Path,
    log: &File,
    log_path: &Path,
    run_as: Option<&RunAs>,
) -> Result<(), EmbeddedError> {
    let stdout = log
        .try_clone()
        .map_err(io_err("duplicate the handle of", log_path))?;
    let stderr = log
        .try_clone()
        .map_err(io_err("duplicate the handle of", log_path))?;
    command
        .current_dir(data_dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .env("LC_ALL", "C")
        .env_remove("PGDATA");
    if let Some(user) = run_as {
        command.uid(user.uid).gid(user.gid);
    }
    Ok(())
}

fn run_initdb(
    binaries: &PgBinaries,
    pgdata: &Path,
    data_dir: &Path,
    durable: bool,
    run_as: Option<&RunAs>,
    log: &mut File,
) -> Result<(), InitdbFailure> {
    let log_path = data_dir.join("postgres.log");
    let _ = writeln!(
        log,
        "---- acctstream: {} -D {}",
        binaries.initdb.display(),
        pgdata.display()
    );
    let mut command = Command::new(&binaries.initdb);
    command.arg("-D").arg(pgdata).args([
        "-U",
        SUPERUSER,
        "--auth=trust",
        "-E",
        "UTF8",
        "--locale=C",
    ]);
    if !durable {
        command.arg("--no-sync");
    }
    prepare_server_command(&mut command, data_dir, log, &log_path, run_as)
        .map_err(InitdbFailure::Other)?;
    let status = command.status().map_err(|source| {
        InitdbFailure::Other(EmbeddedError::Spawn {
            program: binaries.initdb.clone(),
            source,
        })
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(InitdbFailure::Status(status))
    }
}

/// An initdb failure before the log tail is attached.
enum InitdbFailure {
    Status(ExitStatus),
    Other(EmbeddedError),
}

impl InitdbFailure {
    fn with_log(self, log: &Path, log_start: u64) -> EmbeddedError {
        match self {
            InitdbFailure::Status(status) => EmbeddedError::Initdb {
                status,
                log: log.to_path_buf(),
                tail: log_tail(log, log_start),
            },
            InitdbFailure::Other(e) => e,
        }
    }
}

/// Connection settings for `dbname` on a cluster that another process
/// (e.g. a running `acctstream demo`) started in `data_dir` and that is up:
/// read from its `postmaster.pid` (pid alive, status `ready`, then the
/// port and socket directory lines). `None` when no such server runs.
pub fn running_cluster(data_dir: &Path, dbname: &str) -> Option<tokio_postgres::Config> {
    let text = fs::read_to_string(data_dir.join("pgdata").join("postmaster.pid")).ok()?;
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let pid: u32 = lines.first()?.parse().ok()?;
    let port: u16 = lines.get(3)?.parse().ok()?;
    let socket_dir = lines.get(4)?;
    let ready = lines.get(7) == Some(&"ready");
    if !ready || socket_dir.is_empty() || !pid_alive(pid) {
        return None;
    }
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(socket_dir)
        .port(port)
        .user(SUPERUSER)
        .dbname(dbname);
    Some(config)
}

/// Returns true when `postmaster.pid` names `pid` and its status line (the 8th) says `ready`.
fn postmaster_ready(pid_file: &Path, pid: u32) -> bool {
    let Ok(text) = fs::read_to_string(pid_file) else {
        return false;
    };
    let mut lines = text.lines();
    let pid_matches = lines.next().map(str::trim) == Some(pid.to_string().as_str());
    pid_matches && lines.nth(6).map(str::trim) == Some("ready")
}

/// Returns the last lines written to `log` since byte offset `start`.
fn log_tail(log: &Path, start: u64) -> String {
    const MAX_BYTES: u64 = 64 * 1024;
    let read = || -> io::Result<String> {
        let mut file = File::open(log)?;
        let len = file.metadata()?.len();
        let from = start.max(len.saturating_sub(MAX_BYTES)).min(len);
        file.seek(SeekFrom::Start(from))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
            if tail.trim().is_empty() {
                "(the log is empty)".to_owned()
            } else {
                tail
            }
        }
        Err(e) => format!("(cannot read the log: {e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    const ORPHAN_ENV: &str = "ACCTSTREAM_TEST_ORPHAN_DIR";

    /// Returns true when `pid` is gone or only a zombie (our container's init may not reap).
    fn process_gone(pid: u32) -> bool {
        if !pid_alive(pid) {
            return true;
        }
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state == "Z" || state == "X"),
            Err(_) => true,
        }
    }

    fn wait_gone(pid: u32, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if process_gone(pid) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        process_gone(pid)
    }

    fn start_in(dir: &Path) -> EmbeddedPostgres {
        match EmbeddedPostgres::start(EmbeddedOptions {
            data_dir: dir.to_path_buf(),
            durable: false,
            ..Default::default()
        }) {
            Ok(pg) => pg,
            Err(e) => panic!("cannot start the embedded cluster: {e}"),
        }
    }

    async fn select_one(config: &tokio_postgres::Config) -> i32 {
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect to the embedded cluster");
        tokio::spawn(connection);
        let row = client.query_one("SELECT 1", &[]).await.expect("SELECT 1");
        row.get(0)
    }

    #[test]
    fn missing_binaries_give_one_clear_line() {
        let empty = tempfile::tempdir().expect("tempdir");
        let err = find_binaries_in(OsStr::new("/nonexistent/bin"), empty.path())
            .expect_err("nothing to find");
        let text = err.to_string();
        assert!(!text.contains('\n'), "{text}");
        assert!(text.contains("not found on PATH"), "{text}");
        assert!(text.contains("apt-get install postgresql"), "{text}");
        assert!(text.contains("DATABASE_URL"), "{text}");
        let default = EmbeddedError::BinariesNotFound {
            lib_root: PathBuf::from(DEFAULT_LIB_ROOT),
        };
        assert!(default.to_string().starts_with(
            "PostgreSQL server binaries (initdb, postgres) not found on PATH or in /usr/lib/postgresql/*/bin: "
        ));
    }

    fn fake_bin_dir(dir: &Path, with_postgres: bool) {
        use std::os::unix::fs::PermissionsExt;
        fs::create_dir_all(dir).expect("mkdir");
        let mut names = vec!["initdb"];
        if with_postgres {
            names.push("postgres");
        }
        for name in names {
            let path = dir.join(name);
            fs::write(&path, "#!/bin/sh\n").expect("write fake binary");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        }
    }

    #[test]
    fn binaries_are_found_on_path_first_then_in_highest_version() {
        let root = tempfile::tempdir().expect("tempdir");
        let lib = root.path().join("lib");
        fake_bin_dir(&lib.join("9.6/bin"), true);
        fake_bin_dir(&lib.join("15/bin"), true);
        fake_bin_dir(&lib.join("16/bin"), false); // incomplete: skipped
        fs::create_dir_all(lib.join("common")).expect("mkdir");
        let found = find_binaries_in(OsStr::new("/nonexistent"), &lib).expect("found in lib");
        assert_eq!(found.initdb, lib.join("15/bin/initdb"));
        assert_eq!(found.postgres, lib.join("15/bin/postgres"));

        let path_dir = root.path().join("path");
        fake_bin_dir(&path_dir, true);
        let path_var = std::env::join_paths([Path::new("/nonexistent"), &path_dir]).expect("PATH");
        let found = find_binaries_in(&path_var, &lib).expect("found on PATH");
        assert_eq!(found.postgres, path_dir.join("postgres"));
    }

    #[tokio::test]
    async fn starts_serves_restarts_and_stops() {
        let dir = test_cluster_dir().expect("test dir");
        // Start from a short-lived thread: the server must outlive it.
        let start_dir = dir.clone();
        let pg = std::thread::spawn(move || start_in(&start_dir))
            .join()
            .expect("start thread");
        assert!(pg.log_file().starts_with(pg.data_dir()));
        assert!(pg.socket_dir().starts_with(pg.data_dir()));
        assert_eq!(select_one(&pg.pg_config("postgres")).await, 1);

        let url = pg.url("postgres");
        let from_url: tokio_postgres::Config = url.parse().expect("URL parses");
        assert_eq!(select_one(&from_url).await, 1);
        match Command::new("psql")
            .arg(&url)
            .args(["-Atc", "select 1"])
            .output()
        {
            Ok(out) => {
                assert!(out.status.success(), "psql {url}: {out:?}");
                assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
            }
            Err(e) => eprintln!("skipping the psql check: cannot run psql: {e}"),
        }
        let (client, connection) = pg
            .pg_config("postgres")
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect");
        let conn = tokio::spawn(connection);
        client
            .batch_execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (7);")
            .await
            .expect("create table");
        drop(client);
        let _ = conn.await;

        let pid = pg.pid();
        let pgdata = pg.data_dir().join("pgdata");
        pg.stop().expect("stop");
        assert!(
            !pid_alive(pid),
            "postmaster {pid} still exists after stop()"
        );
        assert!(!pgdata.join("postmaster.pid").exists());

        // Restart on the same directory: the cluster is reused, not re-created.
        let pg = start_in(&dir);
        let (client, connection) = pg
            .pg_config("postgres")
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        let row = client
            .query_one("SELECT x FROM kept", &[])
            .await
            .expect("kept");
        assert_eq!(row.get::<_, i32>(0), 7);

        // A second server on the same data directory fails and quotes PostgreSQL's reason.
        let err = EmbeddedPostgres::start(EmbeddedOptions {
            data_dir: dir.clone(),
            durable: false,
            ..Default::default()
        })
        .expect_err("data directory in use");
        let text = err.to_string();
        assert!(text.contains("lock file"), "{text}");
        drop(pg);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn long_data_dir_uses_a_socket_dir_under_tmp() {
        let dir = test_cluster_dir().expect("test dir");
        let long = dir.join("a-very-long-directory-name-".repeat(4));
        let pg = start_in(&long);
        assert!(
            pg.socket_dir()
                .to_string_lossy()
                .starts_with("/tmp/acctstream-sock-"),
            "{}",
            pg.socket_dir().display()
        );
        let socket_dir = pg.socket_dir().to_path_buf();
        let url = pg.url("postgres");
        assert!(url.contains("host=%2Ftmp%2Facctstream-sock-"), "{url}");
        pg.stop().expect("stop");
        assert!(!socket_dir.exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn sweeper_removes_only_dirs_of_dead_processes() {
        let root = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new("true").spawn().expect("spawn true");
        let dead = child.id();
        child.wait().expect("wait");
        let prefix = "acctstream-sweep-";
        let stale = root.path().join(format!("{prefix}3-{dead}"));
        let live = root.path().join(format!("{prefix}{}", std::process::id()));
        let other = root.path().join(format!("unrelated-{dead}"));
        for d in [&stale, &live, &other] {
            fs::create_dir(d).expect("mkdir");
        }
        sweep_stale_dirs_in(root.path(), prefix);
        assert!(!stale.exists() || pid_alive(dead));
        assert!(live.exists());
        assert!(other.exists());
    }

    /// Helper run in a child process by `postmaster_dies_with_a_killed_parent`.
    #[test]
    fn orphan_helper() {
        let Some(dir) = std::env::var_os(ORPHAN_ENV) else {
            return;
        };
        let pg = start_in(Path::new(&dir));
        println!("\nPOSTMASTER_PID={}", pg.pid());
        let _ = io::stdout().flush();
        std::thread::sleep(Duration::from_secs(120));
    }

    #[test]
    fn postmaster_dies_with_a_killed_parent() {
        let dir = test_cluster_dir().expect("test dir");
        let module = module_path!()
            .split_once("::")
            .map_or(module_path!(), |(_, rest)| rest);
        let mut child = Command::new(std::env::current_exe().expect("current exe"))
            .args([
                &format!("{module}::orphan_helper"),
                "--exact",
                "--nocapture",
            ])
            .args(["--test-threads=1"])
            .env(ORPHAN_ENV, &dir)
            .stdout(Stdio::piped())
            .spawn()
            .expect("re-run the test binary");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut pid = None;
        for line in io::BufReader::new(stdout).lines() {
            let line = line.expect("read child output");
            if let Some(p) = line.split_once("POSTMASTER_PID=").map(|(_, p)| p) {
                pid = Some(p.trim().parse::<u32>().expect("pid"));
                break;
            }
        }
        child.kill().expect("SIGKILL the child");
        child.wait().expect("reap the child");
        let pid = pid.expect("the child printed the postmaster pid");
        assert!(
            wait_gone(pid, Duration::from_secs(10)),
            "postmaster {pid} survived its SIGKILLed parent"
        );
        let pid_file = dir.join("pgdata/postmaster.pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        while pid_file.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            !pid_file.exists(),
            "no clean shutdown: {} remains",
            pid_file.display()
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
