//! Per-process test directories and the sweep of those of dead processes.

use super::*;

/// Removes directories in [`std::env::temp_dir`] named `<prefix>…-<pid>` whose process is gone.
#[cfg(any(test, feature = "test-support"))]
///
/// This cleans up after test processes that were killed or exited without destructors. Errors
/// are ignored: the sweep is best effort.
pub fn sweep_stale_test_dirs(prefix: &str) {
    sweep_stale_dirs_in(&std::env::temp_dir(), prefix);
}

#[cfg(any(test, feature = "test-support"))]
pub(crate) fn sweep_stale_dirs_in(root: &Path, prefix: &str) {
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
pub(crate) static TEST_DIRS: AtomicU32 = AtomicU32::new(0);

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
pub(crate) fn fresh_private_dir(dir: &Path, owner: Option<&RunAs>) -> Result<(), EmbeddedError> {
    match fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("remove", dir)(e)),
    }
    create_private_dir(dir, owner)
}
