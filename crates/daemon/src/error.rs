//! What can go wrong while a daemon sets itself up on its host, or while its
//! servers run.

use std::path::PathBuf;

/// An error of a daemon's host plumbing. Every message names the path,
/// filter or server at fault; the cause, if any, is the [`source`].
///
/// [`source`]: std::error::Error::source
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file-system or socket operation failed; `what` says which, and on
    /// what path (`create state directory /var/lib/trellis`).
    #[error("{what}")]
    Io {
        /// The operation and its path.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The state directory's path names something that is not a directory.
    #[error("state directory {} exists and is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// A socket path that ends in `..` or `/`.
    #[error("socket path {} has no file name", .0.display())]
    NoFileName(PathBuf),
    /// The socket path names a file that is not a socket: it is never
    /// removed.
    #[error("{} exists and is not a socket; refusing to replace it", .0.display())]
    NotASocket(PathBuf),
    /// The socket still answers: another daemon serves on it.
    #[error("{} is in use: another {daemon} is listening on it", path.display())]
    InUse {
        /// The socket.
        path: PathBuf,
        /// Who the other daemon presumably is (`trellisd`).
        daemon: String,
    },
    /// A log filter that `EnvFilter` does not accept.
    #[error("log level {filter:?} is not a valid filter: {reason}")]
    LogFilter {
        /// The directive string given.
        filter: String,
        /// Why it was refused. Part of the message, not a source: the
        /// parser's error already repeats its own cause.
        reason: tracing_subscriber::filter::ParseError,
    },
    /// A global log subscriber was installed already.
    #[error("install the log subscriber")]
    LogSubscriber(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The TLS settings were refused by the server.
    #[error("TLS configuration")]
    Tls(#[source] tonic::transport::Error),
    /// A server failed; `what` names it (`gRPC over TCP`).
    #[error("{what}")]
    Server {
        /// Which server.
        what: &'static str,
        /// Its error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A server's task panicked or was cancelled.
    #[error("server task")]
    Task(#[source] tokio::task::JoinError),
    /// A server returned before it was told to stop.
    #[error("a server stopped unexpectedly")]
    ServerStopped,
}

/// Says what an I/O operation was doing when it failed, as `anyhow`'s
/// `with_context` would; the message is built only on failure.
pub(crate) trait IoContext<T> {
    /// The error as [`Error::Io`] with `what`.
    fn or_io(self, what: impl FnOnce() -> String) -> Result<T, Error>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn or_io(self, what: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|source| Error::Io {
            what: what(),
            source,
        })
    }
}
