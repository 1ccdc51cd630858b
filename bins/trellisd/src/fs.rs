//! The daemon's places on disk: the private state directory and the unix
//! socket that only root may connect to.

use anyhow::{Context, Result, bail};
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
///
/// The socket is bound inside a fresh private (0700) directory, made 0600,
/// and only then renamed into place, so it is never connectable by others,
/// not even for an instant, whatever the umask (which is process-wide and
/// therefore not touched).
pub fn bind_unix(path: &Path) -> Result<UnixListener> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .with_context(|| format!("socket path {} has no file name", path.display()))?;
    DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(parent)
        .with_context(|| format!("create socket directory {}", parent.display()))?;
    remove_stale(path)?;
    let private = parent.join(format!(
        ".{}.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    if private.exists() {
        std::fs::remove_dir_all(&private)
            .with_context(|| format!("remove leftover {}", private.display()))?;
    }
    DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .with_context(|| format!("create {}", private.display()))?;
    let bound = bind_private(&private.join("s"), path);
    let _ = std::fs::remove_dir_all(&private);
    bound
}

fn bind_private(tmp: &Path, path: &Path) -> Result<UnixListener> {
    let listener =
        UnixListener::bind(tmp).with_context(|| format!("bind unix socket {}", tmp.display()))?;
    std::fs::set_permissions(tmp, Permissions::from_mode(SOCKET_MODE))
        .with_context(|| format!("chmod unix socket {}", tmp.display()))?;
    std::fs::rename(tmp, path)
        .with_context(|| format!("move the socket into place at {}", path.display()))?;
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
