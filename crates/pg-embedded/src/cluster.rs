//! A running cluster: initdb, start, connect, stop; and finding one another
//! process started.

use super::*;

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

pub(crate) static SOCK_DIRS: AtomicU32 = AtomicU32::new(0);

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
pub(crate) fn wait_with_timeout(child: &mut Child, timeout: Duration) -> io::Result<bool> {
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
pub(crate) fn prepare_server_command(
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

pub(crate) fn run_initdb(
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
pub(crate) enum InitdbFailure {
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
pub(crate) fn postmaster_ready(pid_file: &Path, pid: u32) -> bool {
    let Ok(text) = fs::read_to_string(pid_file) else {
        return false;
    };
    let mut lines = text.lines();
    let pid_matches = lines.next().map(str::trim) == Some(pid.to_string().as_str());
    pid_matches && lines.nth(6).map(str::trim) == Some("ready")
}

/// Returns the last lines written to `log` since byte offset `start`.
pub(crate) fn log_tail(log: &Path, start: u64) -> String {
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
