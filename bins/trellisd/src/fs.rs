//! The daemon's places on disk: the private state directory and the unix
//! socket that only root may connect to.

use anyhow::{Context, Result, bail};
use nix::sys::stat::{Mode, umask};
use std::fs::{DirBuilder, Permissions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::Path;
use tokio::net::UnixListener;

/// Mode of the gRPC socket: connecting needs write permission, so only the
/// owner (root) can drive the daemon through it.
pub const SOCKET_MODE: u32 = 0o600;
/// Mode of the state directory.
pub const STATE_DIR_MODE: u32 = 0o700;

/// Creates the state directory (and its parents) with mode 0700. An existing
/// directory is kept as it is, with a warning if others can read it.
pub fn ensure_state_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {
            if m.permissions().mode() & 0o077 != 0 {
                tracing::warn!(dir = %dir.display(), mode = format!("{:o}", m.permissions().mode() & 0o7777),
                    "state directory is accessible to others; 0700 is recommended");
            }
            Ok(())
        }
        Ok(_) => bail!(
            "state directory {} exists and is not a directory",
            dir.display()
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            DirBuilder::new()
                .recursive(true)
                .mode(STATE_DIR_MODE)
                .create(dir)
                .with_context(|| format!("create state directory {}", dir.display()))?;
            // The mode passed to mkdir is filtered by the umask: set it outright.
            std::fs::set_permissions(dir, Permissions::from_mode(STATE_DIR_MODE))
                .with_context(|| format!("chmod state directory {}", dir.display()))
        }
        Err(e) => Err(e).with_context(|| format!("state directory {}", dir.display())),
    }
}

/// Binds the gRPC unix socket at `path` with mode 0600, creating its parent
/// directory (0755) if needed. A stale socket left by a crash is replaced; a
/// socket that still answers means another daemon runs, and is an error; a
/// path that is not a socket is never removed.
pub fn bind_unix(path: &Path) -> Result<UnixListener> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .with_context(|| format!("create socket directory {}", parent.display()))?;
    }
    remove_stale(path)?;
    // Bind with a umask that leaves only the owner's bits, so the socket is
    // never connectable by others, not even between bind and chmod. Nothing
    // else creates files while the daemon starts, so the process-wide umask
    // is safe to change for this one call.
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    umask(old);
    let listener = bound.with_context(|| format!("bind unix socket {}", path.display()))?;
    std::fs::set_permissions(path, Permissions::from_mode(SOCKET_MODE))
        .with_context(|| format!("chmod unix socket {}", path.display()))?;
    Ok(listener)
}

fn remove_stale(path: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("inspect {}", path.display())),
    };
    if !meta.file_type().is_socket() {
        bail!(
            "{} exists and is not a socket; refusing to replace it",
            path.display()
        );
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        bail!(
            "{} is in use: another trellisd is listening on it",
            path.display()
        );
    }
    tracing::info!(socket = %path.display(), "removing a stale socket");
    std::fs::remove_file(path).with_context(|| format!("remove stale socket {}", path.display()))
}

/// Removes the socket at shutdown (best effort: it may already be gone).
pub fn remove_socket(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(socket = %path.display(), error = %e, "cannot remove the socket"),
    }
}
