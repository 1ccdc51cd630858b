//! systemd readiness notification (`Type=notify`), without libsystemd: one
//! datagram to `$NOTIFY_SOCKET`. Outside systemd the variable is unset and
//! this does nothing.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `state` (`READY=1`, `STOPPING=1`) to the service manager, if any.
/// Failures are logged, never fatal: the daemon works without systemd.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = (|| {
        let addr = match path.to_string_lossy().strip_prefix('@') {
            // A leading '@' names a socket in the abstract namespace.
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
            None => SocketAddr::from_pathname(&path)?,
        };
        UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &addr)
    })();
    if let Err(e) = sent {
        tracing::warn!(error = %e, state, "cannot notify systemd");
    }
}
