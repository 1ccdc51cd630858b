//! Why a server could not be reached: the settings are wrong
//! ([`UsageError`]), or the server is not there ([`ConnectError`]).

use std::fmt;
use std::path::PathBuf;

/// A failure to reach trellisd or the controller, by class: what a caller
/// does about it differs (fix the command line, or start the server).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The settings are wrong; nothing was dialled.
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// The settings are fine; the server could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The TLS files were read but the TLS library refused them (not PEM,
    /// no private key in the key file).
    #[error("the TLS files (--ca, --cert, --key): {}", with_cause(source))]
    Tls {
        /// tonic's error, its cause the TLS library's.
        source: tonic::transport::Error,
    },
}

/// Settings that cannot work, found before anything is dialled. `setting`
/// is the caller's name for the option the address came from
/// (`--controller`); every message names it, and the value when it has one.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// The URL does not parse as a URI.
    #[error("{setting} {url:?}: {source}")]
    Url {
        /// The option the URL came from.
        setting: String,
        /// The URL as given.
        url: String,
        /// Why tonic refused it.
        source: tonic::transport::Error,
    },
    /// A URL that is neither `https://` nor `http://`.
    #[error("{setting} {url:?}: expected https://HOST:PORT")]
    Scheme {
        /// The option the URL came from.
        setting: String,
        /// The URL as given.
        url: String,
    },
    /// An `https://` URL, but no CA to check the server's certificate with.
    #[error("{setting} with https needs --ca")]
    NoCa {
        /// The option the URL came from.
        setting: String,
    },
    /// A TLS file given for an address that is not `https://`.
    #[error("{file} needs an https:// {setting}")]
    NotHttps {
        /// The TLS file given (`--ca` or `--cert`).
        file: TlsFile,
        /// The option the address came from.
        setting: String,
    },
    /// A client certificate without its key, or a key without its
    /// certificate.
    #[error("{given} needs {missing}")]
    Unpaired {
        /// The one of the two that was given.
        given: TlsFile,
        /// The one that was not.
        missing: TlsFile,
    },
    /// A TLS file that cannot be read.
    #[error("{file} {}: {source}", path.display())]
    Unreadable {
        /// Which of the TLS files.
        file: TlsFile,
        /// Its path, as given.
        path: PathBuf,
        /// Why it cannot be read.
        source: std::io::Error,
    },
}

/// A server that could not be reached; each message names where it was
/// looked for and the I/O error underneath tonic's.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Nothing answers at a unix socket: `cannot connect to PATH: …: No such
    /// file or directory (os error 2)`.
    #[error(transparent)]
    Unix(#[from] trellis_proto::ConnectError),
    /// Nothing answers at a URL, or the TLS handshake failed: `cannot
    /// connect to URL: transport error: tcp connect error: Connection
    /// refused (os error 111)`.
    #[error("cannot connect to {url}: {}", with_cause(source))]
    Url {
        /// The URL dialled.
        url: String,
        /// tonic's error, its cause the I/O or TLS error.
        source: tonic::transport::Error,
    },
    /// No replica of an HA controller could be reached or would lead.
    #[error("no controller replica leads: {}", tried.join("; "))]
    NoLeader {
        /// Each replica tried, in order, as `URL: why`.
        tried: Vec<String>,
    },
}

/// One of the TLS files of [`crate::Tls`], named in messages by the flag
/// every trellis command line gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    /// The CA that signed the server's certificate: `--ca`.
    Ca,
    /// The client certificate: `--cert`.
    Cert,
    /// The client certificate's private key: `--key`.
    Key,
}

impl fmt::Display for TlsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsFile::Ca => "--ca",
            TlsFile::Cert => "--cert",
            TlsFile::Key => "--key",
        })
    }
}

/// tonic's message with its causes: tonic's transport error alone says
/// only `transport error`, and the next cause often only `tcp connect
/// error`; the I/O or TLS error at the bottom (ECONNREFUSED, a bad
/// certificate) is what the user can act on.
fn with_cause(e: &tonic::transport::Error) -> String {
    let mut message = e.to_string();
    let mut last = message.clone();
    let mut cause = std::error::Error::source(e);
    while let Some(inner) = cause {
        // hyper-util wraps its `tcp connect error` in an io::Error saying
        // the same: say it once.
        let text = inner.to_string();
        if text != last {
            message.push_str(&format!(": {text}"));
        }
        last = text;
        cause = inner.source();
    }
    message
}
