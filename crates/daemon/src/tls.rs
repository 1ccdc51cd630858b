//! TLS for gRPC over TCP, from PEM files named in a daemon's
//! configuration: a server's, and a client's (the controller reading
//! nodes' Agent APIs).

use crate::Error;
use crate::error::IoContext;
use std::path::Path;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, Server, ServerTlsConfig};

/// Loads the server's identity — the PEM certificate chain `cert` and its
/// PEM private key `key` — and, when `client_ca` is given, the PEM CA bundle
/// that clients' certificates must chain to (no client certificate is asked
/// for otherwise). Errors name the file that could not be read.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<ServerTlsConfig, Error> {
    let read = |p: &Path, what: &str| {
        std::fs::read(p).or_io(|| format!("read TLS {what} {}", p.display()))
    };
    let identity = Identity::from_pem(read(cert, "certificate")?, read(key, "key")?);
    let mut cfg = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = client_ca {
        cfg = cfg.client_ca_root(Certificate::from_pem(read(ca, "client CA")?));
    }
    Ok(cfg)
}

/// Loads a client's TLS settings: the PEM CA bundle `ca` that servers'
/// certificates must chain to, and, when given, the client's own identity
/// (`cert`, `key`) for servers that ask for one (mutual TLS). Errors name
/// the file that could not be read.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<ClientTlsConfig, Error> {
    let read = |p: &Path, what: &str| {
        std::fs::read(p).or_io(|| format!("read TLS {what} {}", p.display()))
    };
    let mut cfg = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca, "CA")?));
    if let Some((cert, key)) = identity {
        cfg = cfg.identity(Identity::from_pem(
            read(cert, "client certificate")?,
            read(key, "client key")?,
        ));
    }
    Ok(cfg)
}

/// A gRPC server builder with TLS when `tls` is given, in plaintext
/// otherwise (which a daemon's configuration allows only when asked for).
pub fn server(tls: Option<ServerTlsConfig>) -> Result<Server, Error> {
    let builder = Server::builder();
    match tls {
        Some(tls) => builder.tls_config(tls).map_err(Error::Tls),
        None => Ok(builder),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("server.pem");
        std::fs::write(&cert, "").unwrap();
        let key = dir.path().join("server.key");
        let e = server_config(&cert, &key, None).unwrap_err();
        assert_eq!(e.to_string(), format!("read TLS key {}", key.display()));
        let e = client_config(&key, None).unwrap_err();
        assert_eq!(e.to_string(), format!("read TLS CA {}", key.display()));
        let e = client_config(&cert, Some((&cert, &key))).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("read TLS client key {}", key.display())
        );
    }
}
