//! A daemon's places on disk: the private state directory and the unix
//! socket that only its owner may connect to.

use crate::error::{Error, IoContext};
use std::fs::{DirBuilder, Permissions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::Path;
use tokio::net::UnixListener;

/// Mode of the gRPC socket: connecting needs write permission, so only the
/// owner (root, for trellisd) can drive the daemon through it.
pub const SOCKET_MODE: u32 = 0o600;
/// Mode of the state directory.
pub const STATE_DIR_MODE: u32 = 0o700;

/// Creates the state directory (and its parents) with mode 0700. An existing
/// directory is kept as it is, with a warning if others can read it.
pub fn ensure_state_dir(dir: &Path) -> Result<(), Error> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {
            let mode = m.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                tracing::warn!(dir = %dir.display(), mode = format!("{mode:o}"),
                    "state directory is accessible to others; 0700 is recommended");
            }
            Ok(())
        }
        Ok(_) => Err(Error::NotADirectory(dir.to_owned())),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            DirBuilder::new()
                .recursive(true)
                .mode(STATE_DIR_MODE)
                .create(dir)
                .or_io(|| format!("create state directory {}", dir.display()))?;
            // The mode passed to mkdir is filtered by the umask: set it outright.
            std::fs::set_permissions(dir, Permissions::from_mode(STATE_DIR_MODE))
                .or_io(|| format!("chmod state directory {}", dir.display()))
        }
        Err(e) => Err(e).or_io(|| format!("state directory {}", dir.display())),
    }
}

/// Binds `daemon`'s gRPC unix socket at `path` with mode [`SOCKET_MODE`],
/// creating its parent directory (0755) if needed. A stale socket left by a
/// crash is replaced; a socket that still answers means another daemon runs
/// (the error says "another `daemon`"); a path that is not a socket is never
/// removed.
///
/// The socket is bound inside a fresh private (0700) directory, made 0600,
/// and only then renamed into place, so it is never connectable by others,
/// not even for an instant, whatever the umask (which is process-wide and
/// therefore not touched).
pub fn bind_unix(path: &Path, daemon: &str) -> Result<UnixListener, Error> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| Error::NoFileName(path.to_owned()))?;
    DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(parent)
        .or_io(|| format!("create socket directory {}", parent.display()))?;
    remove_stale(path, daemon)?;
    let private = parent.join(format!(
        ".{}.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    if private.exists() {
        std::fs::remove_dir_all(&private)
            .or_io(|| format!("remove leftover {}", private.display()))?;
    }
    DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .or_io(|| format!("create {}", private.display()))?;
    let bound = bind_private(&private.join("s"), path);
    let _ = std::fs::remove_dir_all(&private);
    bound
}

fn bind_private(tmp: &Path, path: &Path) -> Result<UnixListener, Error> {
    let listener =
        UnixListener::bind(tmp).or_io(|| format!("bind unix socket {}", tmp.display()))?;
    std::fs::set_permissions(tmp, Permissions::from_mode(SOCKET_MODE))
        .or_io(|| format!("chmod unix socket {}", tmp.display()))?;
    std::fs::rename(tmp, path)
        .or_io(|| format!("move the socket into place at {}", path.display()))?;
    Ok(listener)
}

fn remove_stale(path: &Path, daemon: &str) -> Result<(), Error> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).or_io(|| format!("inspect {}", path.display())),
    };
    if !meta.file_type().is_socket() {
        return Err(Error::NotASocket(path.to_owned()));
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(Error::InUse {
            path: path.to_owned(),
            daemon: daemon.to_owned(),
        });
    }
    tracing::info!(socket = %path.display(), "removing a stale socket");
    std::fs::remove_file(path).or_io(|| format!("remove stale socket {}", path.display()))
}

/// Removes the socket at shutdown (best effort: it may already be gone).
pub fn remove_socket(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(socket = %path.display(), error = %e, "cannot remove the socket"),
    }
}

#[cfg(test)]
mod tests {
    //! The unix socket's life cycle and the state directory's mode.

    use super::*;

    /// Mode bits of `path`.
    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[tokio::test]
    async fn the_socket_is_created_0600_with_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/trellis/trellisd.sock");
        let listener = bind_unix(&path, "trellisd").unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o755);
        let client = tokio::net::UnixStream::connect(&path).await.unwrap();
        let (_server_side, _) = listener.accept().await.unwrap();
        drop(client);
        remove_socket(&path);
        assert!(!path.exists());
        remove_socket(&path); // gone already: fine
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        // A crashed daemon leaves its socket file behind, with nobody listening.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let listener = bind_unix(&path, "trellisd").unwrap();
        assert_eq!(mode(&path), 0o600);
        tokio::net::UnixStream::connect(&path).await.unwrap();
        listener.accept().await.unwrap();
    }

    #[tokio::test]
    async fn a_live_socket_is_not_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let _other = bind_unix(&path, "trellisd").unwrap();
        let err = bind_unix(&path, "trellis-controller")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("in use") && err.contains("s.sock") && err.contains("trellis-controller"),
            "{err}"
        );
        assert!(path.exists());
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_socket_is_never_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("important");
        std::fs::write(&path, "keep me").unwrap();
        let err = bind_unix(&path, "trellisd").unwrap_err().to_string();
        assert!(err.contains("not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
    }

    #[test]
    fn the_state_directory_is_created_0700() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("var/lib/trellis");
        ensure_state_dir(&state).unwrap();
        assert_eq!(mode(&state), 0o700);
        ensure_state_dir(&state).unwrap(); // existing: kept

        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = ensure_state_dir(&file).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
    }

    #[test]
    fn io_errors_name_what_was_done_and_keep_their_cause() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        // A directory cannot be made below a regular file.
        let err = ensure_state_dir(&file.join("state")).unwrap_err();
        assert!(err.to_string().starts_with("state directory "), "{err}");
        assert!(std::error::Error::source(&err).is_some(), "{err:?}");
    }
}
