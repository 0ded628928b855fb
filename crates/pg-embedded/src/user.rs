//! The unprivileged account PostgreSQL runs as when we are root, and the
//! private directories it must own and reach.

use super::*;

/// The unprivileged account PostgreSQL runs as when we are root.
#[derive(Debug, Clone)]
pub(crate) struct RunAs {
    pub(crate) name: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// Returns the user to switch to, or `None` when we are not root and run PostgreSQL as ourselves.
pub(crate) fn unprivileged_user() -> Result<Option<RunAs>, EmbeddedError> {
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

pub(crate) fn lookup_user(name: &str) -> Result<Option<RunAs>, EmbeddedError> {
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
pub(crate) fn create_private_dir(path: &Path, owner: Option<&RunAs>) -> Result<(), EmbeddedError> {
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
pub(crate) fn check_reachable(dir: &Path, user: &RunAs) -> Result<(), EmbeddedError> {
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
pub(crate) fn chown_recursive(path: &Path, user: &RunAs) -> Result<(), EmbeddedError> {
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
