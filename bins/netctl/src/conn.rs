//! Reaching a server: trellisd (its unix socket by default, or `--endpoint`;
//! its agent and BGP services alike) or the cluster controller
//! (`--controller`). Both go through [`channel`], so a unix socket, plaintext
//! and TLS (with `--ca`, `--cert`, `--key`) work the same for either client.

use std::path::Path;

use anyhow::Result;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use trellis_proto::v1::{AgentClient, BgpClient, ControllerClient};

use crate::cli::Connection;
use crate::exit::{CONNECT, fail, usage};
use crate::parse::Address;

/// Connects to trellisd as `conn` says: `--endpoint` if given, else `--socket`.
pub async fn agent(conn: &Connection) -> Result<AgentClient<Channel>> {
    Ok(AgentClient::new(trellisd(conn).await?))
}

/// Connects to trellisd's BGP service, which it serves beside the agent's
/// on the same socket or endpoint.
pub async fn bgp(conn: &Connection) -> Result<BgpClient<Channel>> {
    Ok(BgpClient::new(trellisd(conn).await?))
}

/// A channel to trellisd: `--endpoint` if given, else `--socket`.
async fn trellisd(conn: &Connection) -> Result<Channel> {
    let addr = match &conn.endpoint {
        Some(url) => Address::Url(url.clone()),
        None => Address::Unix(conn.socket.clone()),
    };
    channel(&addr, "--endpoint", conn).await
}

/// Connects to the cluster controller at `--controller`. Several URLs,
/// comma-separated, are the replicas of an HA controller: the first that
/// answers ControllerStatus is the leader; a follower's refusal naming the
/// leader (`the leader is <url>`) goes straight there.
pub async fn controller(conn: &Connection) -> Result<ControllerClient<Channel>> {
    let urls: Vec<String> = match &conn.controller {
        Address::Url(list) if list.contains(',') => {
            list.split(',').map(|u| u.trim().to_owned()).collect()
        }
        one => {
            let channel = channel(one, "--controller", conn).await?;
            return Ok(ControllerClient::new(channel));
        }
    };
    let mut tried = Vec::new();
    let mut next = 0;
    for _ in 0..=urls.len() {
        let url = &urls[next % urls.len()];
        next += 1;
        let mut client = match channel(&Address::Url(url.clone()), "--controller", conn).await {
            Ok(ch) => ControllerClient::new(ch),
            Err(e) => {
                tried.push(format!("{url}: {e}"));
                continue;
            }
        };
        match client
            .controller_status(trellis_proto::v1::ControllerStatusRequest {})
            .await
        {
            Ok(_) => return Ok(client),
            Err(s) if s.code() == tonic::Code::Unavailable => {
                if let Some(leader) = s
                    .message()
                    .split_once("the leader is ")
                    .and_then(|(_, rest)| rest.split_whitespace().next())
                    && let Some(i) = urls.iter().position(|u| u == leader)
                {
                    next = i;
                }
                tried.push(format!("{url}: {}", s.message()));
            }
            // Answered, if only to refuse this caller: the leader.
            Err(_) => return Ok(client),
        }
    }
    Err(fail(
        CONNECT,
        format!("no controller replica leads: {}", tried.join("; ")),
    ))
}

/// A channel to `addr`, with the TLS options of `conn` for an https URL;
/// `flag` names the option `addr` came from, for messages. Failing to
/// connect exits with [`CONNECT`]; a malformed URL or a missing CA with
/// [`USAGE`].
pub async fn channel(addr: &Address, flag: &str, conn: &Connection) -> Result<Channel> {
    match addr {
        Address::Unix(path) => trellis_proto::channel_unix(path)
            .await
            .map_err(|e| fail(CONNECT, e.to_string())),
        Address::Url(url) => tcp(url, flag, conn).await,
    }
}

async fn tcp(url: &str, flag: &str, conn: &Connection) -> Result<Channel> {
    let endpoint =
        Endpoint::from_shared(url.to_owned()).map_err(|e| usage(format!("{flag} {url:?}: {e}")))?;
    let scheme = endpoint.uri().scheme_str();
    if conn.cert.is_some() && scheme != Some("https") {
        return Err(usage(format!("--cert needs an https:// {flag}")));
    }
    let endpoint = match (scheme, conn.ca.as_deref()) {
        (Some("https"), Some(ca)) => endpoint.tls_config(tls(ca, conn)?)?,
        (Some("https"), None) => return Err(usage(format!("{flag} with https needs --ca"))),
        (Some("http"), None) => endpoint,
        (Some("http"), Some(_)) => return Err(usage(format!("--ca needs an https:// {flag}"))),
        _ => {
            return Err(usage(format!("{flag} {url:?}: expected https://HOST:PORT")));
        }
    };
    endpoint.connect().await.map_err(|e| {
        let mut message = format!("cannot connect to {url}: {e}");
        if let Some(inner) = std::error::Error::source(&e) {
            message.push_str(&format!(": {inner}"));
        }
        fail(CONNECT, message)
    })
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
    std::fs::read(path).map_err(|e| usage(format!("{flag} {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::exit::USAGE;

    /// The connection options `--ca`, `--cert`, `--key` as `args` pairs give
    /// them (the environment plays no part).
    fn conn(args: &[&str]) -> Connection {
        let flag = |name: &str| {
            let i = args.iter().position(|a| *a == name)?;
            Some(PathBuf::from(args[i + 1]))
        };
        Connection {
            socket: PathBuf::from(crate::cli::DEFAULT_SOCKET),
            endpoint: None,
            controller: Address::Unix(PathBuf::from(crate::cli::DEFAULT_CONTROLLER)),
            ca: flag("--ca"),
            cert: flag("--cert"),
            key: flag("--key"),
        }
    }

    async fn refused(addr: &str, flag: &str, args: &[&str]) -> (String, u8) {
        let addr = crate::parse::address(addr).unwrap();
        let err = channel(&addr, flag, &conn(args)).await.unwrap_err();
        let f = err
            .downcast_ref::<crate::exit::Failure>()
            .expect("a Failure");
        (f.message.clone(), f.code)
    }

    #[tokio::test]
    async fn tls_options_are_checked_for_either_server_before_dialling() {
        let url = "https://ctl.invalid:7443";
        let (msg, code) = refused(url, "--controller", &[]).await;
        assert_eq!(
            (msg.as_str(), code),
            ("--controller with https needs --ca", USAGE)
        );
        let (msg, _) = refused(url, "--endpoint", &[]).await;
        assert_eq!(msg, "--endpoint with https needs --ca");
        let plain = "http://ctl.invalid:7443";
        let (msg, code) = refused(plain, "--controller", &["--ca", "/x.pem"]).await;
        assert_eq!(
            (msg.as_str(), code),
            ("--ca needs an https:// --controller", USAGE)
        );
        let args = ["--cert", "/c.pem", "--key", "/k.pem"];
        let (msg, _) = refused(plain, "--controller", &args).await;
        assert_eq!(msg, "--cert needs an https:// --controller");
        let (msg, code) = refused(url, "--controller", &["--ca", "/nonexistent/ca.pem"]).await;
        assert!(msg.starts_with("--ca /nonexistent/ca.pem: "), "{msg}");
        assert_eq!(code, USAGE);
    }

    #[tokio::test]
    async fn a_missing_socket_is_a_connection_failure_naming_it() {
        let (msg, code) = refused("unix:/nonexistent/controller.sock", "--controller", &[]).await;
        assert_eq!(code, CONNECT);
        assert!(msg.contains("/nonexistent/controller.sock"), "{msg}");
    }
}
