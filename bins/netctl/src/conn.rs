//! Reaching trellisd: its unix socket by default, or a TCP endpoint with TLS.

use std::path::Path;

use anyhow::Result;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use trellis_proto::v1::AgentClient;

use crate::cli::Connection;
use crate::exit::{CONNECT, Failure, USAGE};

/// Connects to trellisd as `conn` says: `--endpoint` if given, else `--socket`.
/// Failing to connect exits with [`CONNECT`]; a malformed URL or a missing CA
/// with [`USAGE`].
pub async fn connect(conn: &Connection) -> Result<AgentClient<Channel>> {
    match &conn.endpoint {
        Some(url) => tcp(url, conn).await,
        None => trellis_proto::connect_unix(&conn.socket)
            .await
            .map_err(|e| fail(CONNECT, e.to_string())),
    }
}

fn fail(code: u8, message: String) -> anyhow::Error {
    Failure { code, message }.into()
}

async fn tcp(url: &str, conn: &Connection) -> Result<AgentClient<Channel>> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| fail(USAGE, format!("--endpoint {url:?}: {e}")))?;
    if conn.cert.is_some() && endpoint.uri().scheme_str() != Some("https") {
        return Err(fail(USAGE, "--cert needs an https:// --endpoint".into()));
    }
    let endpoint = match (endpoint.uri().scheme_str(), conn.ca.as_deref()) {
        (Some("https"), Some(ca)) => endpoint.tls_config(tls(ca, conn)?)?,
        (Some("https"), None) => {
            return Err(fail(USAGE, "--endpoint with https needs --ca".into()));
        }
        (Some("http"), None) => endpoint,
        (Some("http"), Some(_)) => {
            return Err(fail(USAGE, "--ca needs an https:// --endpoint".into()));
        }
        _ => {
            let why = format!("--endpoint {url:?}: expected https://HOST:PORT");
            return Err(fail(USAGE, why));
        }
    };
    let channel = endpoint.connect().await.map_err(|e| {
        let mut message = format!("cannot connect to {url}: {e}");
        if let Some(inner) = std::error::Error::source(&e) {
            message.push_str(&format!(": {inner}"));
        }
        fail(CONNECT, message)
    })?;
    Ok(AgentClient::new(channel))
}

fn tls(ca: &Path, conn: &Connection) -> Result<ClientTlsConfig> {
    let cfg = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("--ca", ca)?));
    match (&conn.cert, &conn.key) {
        (Some(cert), Some(key)) => {
            let identity = Identity::from_pem(read("--cert", cert)?, read("--key", key)?);
            Ok(cfg.identity(identity))
        }
        _ => Ok(cfg),
    }
}

fn read(flag: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| fail(USAGE, format!("{flag} {}: {e}", path.display())))
}
