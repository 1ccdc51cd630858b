//! Node identity over TCP with mutual TLS (`--tls-client-ca`): each client
//! is who its certificate names, a node may act only for itself, admin
//! methods are the admin's; the unix socket is the admin. The certificates
//! are made by `scripts/certs`, the script the README documents, so that
//! what it makes is what these tests accept.

use crate::util::{Daemon, claim, node, routed_pool};
use std::path::{Path, PathBuf};
use std::process::Command;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use trellis_proto::v1 as pb;
use trellis_proto::v1::ControllerClient;

/// `scripts/certs` of this workspace.
const CERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/certs");

/// A cluster's certificates, made by `scripts/certs` in a temporary
/// directory: the CA, the controller's for 127.0.0.1, nodes h1 and h2, the
/// admin.
struct Pki(tempfile::TempDir);

impl Pki {
    fn new() -> Self {
        let pki = Pki(tempfile::tempdir().unwrap());
        pki.certs(&["ca"]);
        pki.certs(&["controller", "127.0.0.1", "localhost"]);
        pki.certs(&["node", "h1", "h2"]);
        pki.certs(&["admin"]);
        pki
    }

    fn certs(&self, args: &[&str]) {
        let out = Command::new(CERTS)
            .arg("--dir")
            .arg(self.0.path())
            .args(args)
            .output()
            .expect("run scripts/certs (needs openssl)");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "scripts/certs {args:?}: {err}");
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    /// The controller with mutual TLS on 127.0.0.1, port 0.
    fn controller(&self, dir: &Path) -> Daemon {
        let arg = |name: &str| self.path(name).display().to_string();
        let (cert, key, ca) = (arg("controller.pem"), arg("controller.key"), arg("ca.pem"));
        Daemon::start(
            dir,
            &[
                "--listen=127.0.0.1:0",
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
                "--tls-client-ca",
                &ca,
            ],
        )
    }

    /// A client of `d` over TCP with the certificate `who` (`node-h1`,
    /// `admin`; `None`: no client certificate).
    async fn client(
        &self,
        d: &Daemon,
        who: Option<&str>,
    ) -> Result<ControllerClient<Channel>, tonic::transport::Error> {
        let ca = Certificate::from_pem(std::fs::read(self.path("ca.pem")).unwrap());
        let mut tls = ClientTlsConfig::new().ca_certificate(ca);
        if let Some(who) = who {
            let read = |ext: &str| std::fs::read(self.path(&format!("{who}.{ext}"))).unwrap();
            tls = tls.identity(Identity::from_pem(read("pem"), read("key")));
        }
        let channel = Endpoint::from_shared(format!("https://{}", d.tcp_addr()))?
            .tls_config(tls)?
            .connect()
            .await?;
        Ok(ControllerClient::new(channel))
    }
}

/// The status of a refused call, which must have the code `want`.
fn refused<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>, want: Code) -> String {
    let s = r.expect_err("refused");
    assert_eq!(s.code(), want, "{}", s.message());
    s.message().to_owned()
}

#[tokio::test]
async fn a_node_certificate_acts_only_for_its_node_and_admin_methods_are_the_admins() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let d = pki.controller(dir.path());
    let log = d.log();
    assert!(log.contains("mutual TLS"), "{log}");
    let mut admin = pki.client(&d, Some("admin")).await.unwrap();
    let mut h1 = pki.client(&d, Some("node-h1")).await.unwrap();
    let mut h2 = pki.client(&d, Some("node-h2")).await.unwrap();

    // Pools are the admin's: a node's certificate cannot make one.
    let m = refused(
        h1.create_pool(routed_pool("pods", "10.244.0.0/16", 24))
            .await,
        Code::PermissionDenied,
    );
    assert_eq!(
        m,
        "certificate of node \"h1\" cannot call CreatePool: only the admin may"
    );
    trellis_testlab::report::record(
        "cluster",
        "a node's client certificate calling an admin method (CreatePool)",
        &format!("PERMISSION_DENIED: \"{m}\""),
    );
    admin
        .create_pool(routed_pool("pods", "10.244.0.0/16", 24))
        .await
        .unwrap();

    // Node h1's certificate registering and claiming as h2 is refused,
    // naming both; as itself it is served.
    let m = refused(
        h1.register_node(node("h2", "10.1.253.102")).await,
        Code::PermissionDenied,
    );
    assert_eq!(m, "certificate of node \"h1\" cannot act for node \"h2\"");
    trellis_testlab::report::record(
        "cluster",
        "node h1's client certificate registering as node h2",
        &format!("PERMISSION_DENIED: \"{m}\""),
    );
    h1.register_node(node("h1", "10.1.253.101")).await.unwrap();
    h2.register_node(node("h2", "10.1.253.102")).await.unwrap();
    refused(
        h1.claim_block(claim("h2", "pods")).await,
        Code::PermissionDenied,
    );
    let b1 = h1
        .claim_block(claim("h1", "pods"))
        .await
        .unwrap()
        .into_inner();
    let b2 = h2
        .claim_block(claim("h2", "pods"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((b1.node.as_str(), b2.node.as_str()), ("h1", "h2"));

    // Renewing (with the usage report), releasing and reading its own
    // blocks: only as itself.
    let renew = |n: &str| pb::KeepAliveRequest {
        node: n.into(),
        usage: vec![],
    };
    h1.keep_alive(renew("h1")).await.unwrap();
    refused(h1.keep_alive(renew("h2")).await, Code::PermissionDenied);
    let release = |n: &str, b: &pb::Block| pb::ReleaseBlockRequest {
        node: n.into(),
        pool: "pods".into(),
        prefix: b.prefix.clone(),
    };
    refused(
        h1.release_block(release("h2", &b2)).await,
        Code::PermissionDenied,
    );
    let own = pb::ListBlocksRequest {
        node: "h1".into(),
        ..Default::default()
    };
    let blocks = h1.list_blocks(own).await.unwrap().into_inner().blocks;
    assert_eq!(blocks.len(), 1);
    refused(
        h1.list_blocks(pb::ListBlocksRequest::default()).await,
        Code::PermissionDenied,
    );
    let get = |n: &str| pb::GetNodeRequest { name: n.into() };
    h1.get_node(get("h1")).await.unwrap();
    refused(h1.get_node(get("h2")).await, Code::PermissionDenied);
    h1.release_block(release("h1", &b1)).await.unwrap();

    // What a node needs to do its work it may read: pools, the watch.
    h1.list_pools(pb::ListPoolsRequest {}).await.unwrap();
    let mut w = h1
        .watch(pb::ControllerWatchRequest { from_revision: 0 })
        .await
        .unwrap()
        .into_inner();
    assert!(w.message().await.unwrap().is_some(), "the snapshot");

    // Draining or removing a node is the admin's, even for the node itself.
    let drain = |n: &str| pb::DrainNodeRequest { name: n.into() };
    let m = refused(h1.drain_node(drain("h1")).await, Code::PermissionDenied);
    assert!(m.contains("DrainNode"), "{m}");
    let remove = pb::RemoveNodeRequest {
        name: "h2".into(),
        force: true,
    };
    refused(h1.remove_node(remove.clone()).await, Code::PermissionDenied);
    admin.drain_node(drain("h1")).await.unwrap();
    // The unix socket is the admin too.
    let mut local = d.client().await;
    local.remove_node(remove).await.unwrap();
    local.check_ipam(pb::CheckIpamRequest {}).await.unwrap();
}

#[tokio::test]
async fn a_client_without_a_certificate_is_not_served() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let d = pki.controller(dir.path());
    // rustls refuses the handshake: at connect, or at the first call.
    let served = match pki.client(&d, None).await {
        Err(_) => false,
        Ok(mut c) => c.list_pools(pb::ListPoolsRequest {}).await.is_ok(),
    };
    assert!(!served, "a client without a certificate was served");
}
