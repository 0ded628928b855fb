//! Spawning the server bound to the life of this process.

use super::*;

/// A request to the spawner thread: the command to spawn and where to send the child.
pub(crate) struct SpawnRequest {
    command: Command,
    reply: mpsc::Sender<io::Result<Child>>,
}

/// The process-wide spawner thread's request queue (`None` if the thread could not be started).
pub(crate) static SPAWNER: OnceLock<Option<mpsc::Sender<SpawnRequest>>> = OnceLock::new();

/// Spawns `command` from a thread that lives as long as the process.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, so children that must
/// outlive the calling thread (e.g. a test's thread) but not the process are forked from here.
pub(crate) fn spawn_from_spawner_thread(
    command: Command,
) -> Result<io::Result<Child>, EmbeddedError> {
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
pub(crate) fn bind_to_parent(command: &mut Command) {
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
pub(crate) fn pid_alive(pid: u32) -> bool {
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
