//! How the controller reads nodes' Agent APIs (`netctl node endpoints`,
//! the IPAM check's comparison with each node): the flags, and the client
//! they make.
//!
//! Each flag defaults to its server counterpart: one CA signs every
//! certificate of a cluster (so nodes' server certificates chain to the
//! `--tls-client-ca` that nodes' client certificates do), and
//! `scripts/certs controller` puts the controller's identity
//! (`spiffe://trellis/controller`) in the certificate it serves with (so
//! `--tls-cert` is also the certificate it reads nodes with).

use crate::config::Args;
use anyhow::{Result, bail, ensure};
use std::path::PathBuf;
use trellis_grpc::controller::NodeClients;

/// The flags of reading nodes, flattened into [`Args`].
#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// PEM CA bundle that nodes' Agent API certificates chain to, for
    /// reading nodes at https:// addresses (`netctl node endpoints`, the
    /// IPAM check) [default: --tls-client-ca].
    #[arg(long, env = "TRELLIS_CONTROLLER_NODE_CA", value_name = "FILE")]
    pub node_ca: Option<PathBuf>,
    /// PEM certificate the controller reads nodes with: it must name
    /// `spiffe://trellis/controller` [default: --tls-cert, which
    /// `scripts/certs controller` makes so].
    #[arg(long, env = "TRELLIS_CONTROLLER_NODE_CLIENT_CERT", value_name = "FILE")]
    pub node_client_cert: Option<PathBuf>,
    /// PEM private key of --node-client-cert [default: --tls-key].
    #[arg(long, env = "TRELLIS_CONTROLLER_NODE_CLIENT_KEY", value_name = "FILE")]
    pub node_client_key: Option<PathBuf>,
}

/// TLS material for reading nodes at https:// addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeTls {
    /// PEM CA bundle nodes' certificates chain to (`None`: https:// nodes
    /// cannot be read).
    pub ca: Option<PathBuf>,
    /// The controller's certificate and key, naming
    /// `spiffe://trellis/controller` (`None`: it shows none, and a node
    /// that asks for one refuses it).
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl NodeTls {
    /// The settings `args` give, each defaulting to its server counterpart.
    pub fn resolve(args: &Args) -> Result<Self> {
        let n = &args.nodes;
        let ca = n.node_ca.clone().or(args.tls_client_ca.clone());
        let identity = match (&n.node_client_cert, &n.node_client_key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => args.tls_cert.clone().zip(args.tls_key.clone()),
            _ => bail!("--node-client-cert and --node-client-key go together"),
        };
        ensure!(
            ca.is_some() || n.node_client_cert.is_none(),
            "--node-client-cert is for reading nodes at https:// addresses, which needs their CA \
             (--node-ca or --tls-client-ca)"
        );
        Ok(NodeTls { ca, identity })
    }

    /// The controller's client of nodes' Agent APIs with these settings
    /// (see `trellis_grpc::controller::nodes`); files are read now, and an
    /// unreadable one is named.
    pub fn clients(&self) -> Result<NodeClients> {
        let Some(ca) = &self.ca else {
            return Ok(NodeClients::new(None));
        };
        let identity = self
            .identity
            .as_ref()
            .map(|(c, k)| (c.as_path(), k.as_path()));
        let tls = trellis_daemon::tls::client_config(ca, identity)?;
        Ok(NodeClients::new(Some(tls)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use clap::Parser;

    fn resolve(argv: &[&str]) -> Result<NodeTls> {
        let argv = std::iter::once("trellis-controller").chain(argv.iter().copied());
        Ok(Config::resolve(Args::try_parse_from(argv)?)?.nodes)
    }

    #[test]
    fn nodes_are_read_with_the_servers_tls_unless_told_otherwise() {
        assert_eq!(resolve(&[]).unwrap(), NodeTls::default());
        let tls = [
            "--listen=127.0.0.1:1",
            "--tls-cert=c",
            "--tls-key=k",
            "--tls-client-ca=ca",
        ];
        let p = PathBuf::from;
        assert_eq!(
            resolve(&tls).unwrap(),
            NodeTls {
                ca: Some(p("ca")),
                identity: Some((p("c"), p("k"))),
            }
        );
        let own = [
            "--node-ca=nca",
            "--node-client-cert=nc",
            "--node-client-key=nk",
        ];
        assert_eq!(
            resolve(&[&tls[..], &own[..]].concat()).unwrap(),
            NodeTls {
                ca: Some(p("nca")),
                identity: Some((p("nc"), p("nk"))),
            }
        );
        let refused = |argv: &[&str], says: &str| {
            let e = format!("{:#}", resolve(argv).unwrap_err());
            assert!(e.contains(says), "{argv:?}: {e}");
        };
        refused(&["--node-client-cert=nc"], "go together");
        refused(
            &["--node-client-cert=nc", "--node-client-key=nk"],
            "needs their CA",
        );
    }

    #[test]
    fn an_unreadable_file_is_named() {
        let tls = NodeTls {
            ca: Some("/nonexistent/ca.pem".into()),
            identity: None,
        };
        let e = format!("{:#}", tls.clients().unwrap_err());
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        assert!(NodeTls::default().clients().is_ok());
    }
}
