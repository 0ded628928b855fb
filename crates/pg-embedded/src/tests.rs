//! Tests of the cluster's life: binaries, directories, start, stop, orphans.

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
