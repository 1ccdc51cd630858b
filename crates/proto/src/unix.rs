//! Connecting to trellisd over its unix socket.
//!
//! gRPC over HTTP/2 needs a URI even when the transport is a unix socket; the
//! URI here is a placeholder and the custom connector ignores it, dialling the
//! socket path instead (the approach of tonic's `uds` example).

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tower::service_fn;

use crate::v1::AgentClient;

/// Why a client could not connect to the agent's socket.
#[derive(Debug)]
pub struct ConnectError {
    path: PathBuf,
    source: tonic::transport::Error,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot connect to {}: {}",
            self.path.display(),
            self.source
        )?;
        // tonic's transport error hides the io error (ENOENT, EACCES) one level
        // down; show it, since that is what the user can act on.
        if let Some(inner) = std::error::Error::source(&self.source) {
            write!(f, ": {inner}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Connects an [`AgentClient`] to the agent listening on the unix socket `path`.
pub async fn connect_unix(path: impl AsRef<Path>) -> Result<AgentClient<Channel>, ConnectError> {
    Ok(AgentClient::new(channel_unix(path).await?))
}

/// A channel to the unix socket `path`, for clients of other services on the
/// same server (health, reflection) or to share one connection.
pub async fn channel_unix(path: impl AsRef<Path>) -> Result<Channel, ConnectError> {
    let path = path.as_ref().to_path_buf();
    let dial = path.clone();
    Endpoint::from_static("http://trellisd.invalid")
        .connect_with_connector(service_fn(move |_: Uri| {
            let dial = dial.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(dial).await?)) }
        }))
        .await
        .map_err(|source| ConnectError { path, source })
}

/// A channel to the unix socket `path` that dials on first use and again
/// after every lost connection: for daemons that must start, and keep
/// going, while the other side is down (a node's link to its controller).
pub fn channel_unix_lazy(path: impl AsRef<Path>) -> Channel {
    let dial = path.as_ref().to_path_buf();
    Endpoint::from_static("http://trellis.invalid").connect_with_connector_lazy(service_fn(
        move |_: Uri| {
            let dial = dial.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(dial).await?)) }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_socket_is_named_with_the_io_error() {
        let e = connect_unix("/nonexistent/trellis.sock").await.unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("/nonexistent/trellis.sock"), "{msg}");
        assert!(msg.contains("No such file"), "{msg}");
    }
}
