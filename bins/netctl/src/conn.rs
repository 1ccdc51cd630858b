//! Reaching a server: trellisd (its unix socket by default, or `--endpoint`;
//! its agent and BGP services alike) or the cluster controller
//! (`--controller`, an HA controller's replicas comma-separated), with the
//! TLS options `--ca`, `--cert`, `--key`.
//!
//! The dialling is [`trellis_client`]'s, shared with trellis-cni; what is
//! netctl's own is the mapping of its failures onto exit codes: settings
//! that cannot work exit with [`USAGE`](crate::exit::USAGE), a server that
//! is not there with [`CONNECT`].

use anyhow::Result;
use tonic::transport::Channel;
use trellis_client::{Address, Error, Tls};
use trellis_proto::v1::{AgentClient, BgpClient, ControllerClient};

use crate::cli::Connection;
use crate::exit::{CONNECT, fail, usage};

/// Connects to trellisd as `conn` says: `--endpoint` if given, else `--socket`.
pub async fn agent(conn: &Connection) -> Result<AgentClient<Channel>> {
    let (addr, setting) = trellisd(conn);
    trellis_client::agent(&addr, setting, &tls(conn))
        .await
        .map_err(exit)
}

/// Connects to trellisd's BGP service, which it serves beside the agent's
/// on the same socket or endpoint.
pub async fn bgp(conn: &Connection) -> Result<BgpClient<Channel>> {
    let (addr, setting) = trellisd(conn);
    trellis_client::bgp(&addr, setting, &tls(conn))
        .await
        .map_err(exit)
}

/// Connects to the cluster controller at `--controller`, finding the leader
/// among an HA controller's replicas.
pub async fn controller(conn: &Connection) -> Result<ControllerClient<Channel>> {
    trellis_client::controller(&conn.controller, "--controller", &tls(conn))
        .await
        .map_err(exit)
}

/// trellisd's address and the flag it came from: `--endpoint` if given,
/// else `--socket`.
fn trellisd(conn: &Connection) -> (Address, &'static str) {
    match &conn.endpoint {
        Some(url) => (Address::Url(url.clone()), "--endpoint"),
        None => (Address::Unix(conn.socket.clone()), "--socket"),
    }
}

fn tls(conn: &Connection) -> Tls {
    Tls {
        ca: conn.ca.clone(),
        cert: conn.cert.clone(),
        key: conn.key.clone(),
    }
}

/// A failure to reach a server as `main` reports it.
fn exit(e: Error) -> anyhow::Error {
    match e {
        Error::Usage(e) => usage(e.to_string()),
        Error::Connect(e) => fail(CONNECT, e.to_string()),
        // TLS files that are not PEM: a local failure like any other (exit
        // code 1), with tonic's error and its cause.
        Error::Tls { source } => source.into(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::exit::{Failure, USAGE};

    /// The connection options with `controller` and `endpoint` as given, the
    /// TLS files none.
    fn conn(controller: &str, endpoint: Option<&str>) -> Connection {
        Connection {
            socket: PathBuf::from(crate::cli::DEFAULT_SOCKET),
            endpoint: endpoint.map(str::to_owned),
            controller: crate::parse::address(controller).unwrap(),
            ca: None,
            cert: None,
            key: None,
        }
    }

    fn failure(err: &anyhow::Error) -> (&str, u8) {
        let f = err.downcast_ref::<Failure>().expect("a Failure");
        (f.message.as_str(), f.code)
    }

    #[tokio::test]
    async fn settings_that_cannot_work_are_usage_errors_naming_the_flag() {
        let url = "https://ctl.invalid:7443";
        let err = controller(&conn(url, None)).await.unwrap_err();
        assert_eq!(failure(&err), ("--controller with https needs --ca", USAGE));
        let err = agent(&conn("/c.sock", Some(url))).await.unwrap_err();
        assert_eq!(failure(&err), ("--endpoint with https needs --ca", USAGE));
    }

    #[tokio::test]
    async fn a_missing_socket_is_a_connection_failure_naming_it() {
        let socket = "unix:/nonexistent/controller.sock";
        let err = controller(&conn(socket, None)).await.unwrap_err();
        let (msg, code) = failure(&err);
        assert_eq!(code, CONNECT);
        assert!(msg.contains("/nonexistent/controller.sock"), "{msg}");
        let mut trellisd = conn(socket, None);
        trellisd.socket = PathBuf::from("/nonexistent/trellisd.sock");
        let err = bgp(&trellisd).await.unwrap_err();
        let (msg, code) = failure(&err);
        assert_eq!(code, CONNECT);
        assert!(msg.contains("/nonexistent/trellisd.sock"), "{msg}");
    }
}
