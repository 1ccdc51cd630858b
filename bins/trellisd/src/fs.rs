//! The daemon's places on disk: the private state directory and the unix
//! socket that only root may connect to, as every trellis daemon keeps them
//! ([`trellis_daemon::fs`]).

use std::path::Path;
use tokio::net::UnixListener;
pub use trellis_daemon::fs::{SOCKET_MODE, STATE_DIR_MODE, ensure_state_dir, remove_socket};

/// Binds trellisd's gRPC unix socket at `path` with mode 0600: see
/// [`trellis_daemon::fs::bind_unix`] (a socket that still answers means
/// another trellisd runs).
pub fn bind_unix(path: &Path) -> Result<UnixListener, trellis_daemon::Error> {
    trellis_daemon::fs::bind_unix(path, "trellisd")
}
