//! Finding the PostgreSQL server programs.

use super::*;

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

pub(crate) fn binaries_in_dir(dir: &Path) -> Option<PgBinaries> {
    let initdb = dir.join("initdb");
    let postgres = dir.join("postgres");
    (is_executable(&initdb) && is_executable(&postgres)).then_some(PgBinaries { initdb, postgres })
}

pub(crate) fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|md| md.is_file() && md.mode() & 0o111 != 0)
}
