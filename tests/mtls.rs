//! The cluster lab with mutual TLS, as the identity tests need it: the
//! PKI made by `scripts/certs` (as the README says), trellis-controller on
//! TCP asking every client for a certificate, and the pool and cluster
//! network nodes claim from, defined over its unix socket (the admin).
#![allow(dead_code)]

use crate::daemons::{Daemon, binary};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use trellis_proto::v1 as pb;
use trellis_testlab::cluster::{CONTROLLER_IP, ClusterLab};

/// Polls `ok` every 100 ms until it holds, at most `limit`.
pub fn eventually(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `scripts/certs --dir pki args…`.
pub fn certs(pki: &Path, args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/certs");
    let out = Command::new(script)
        .arg("--dir")
        .arg(pki)
        .args(args)
        .output()
        .expect("run scripts/certs (needs openssl)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "scripts/certs {args:?}: {err}");
}

/// trellis-controller in the lab's controller namespace, state and unix
/// socket under `dir`, serving `CONTROLLER_IP:port` with the certificate
/// `dir/pki/controller.pem` and asking clients for one the CA signed.
pub fn controller(lab: &ClusterLab, dir: &Path, port: u16) -> Daemon {
    let p = |s: &str| dir.join(s).display().to_string();
    Daemon::start(
        &lab.ctl,
        &binary("TRELLIS_CONTROLLER_BIN", "trellis-controller"),
        &[
            "--state-dir".into(),
            p("ctl"),
            "--socket".into(),
            p("ctl.sock"),
            "--listen".into(),
            format!("{CONTROLLER_IP}:{port}"),
            "--tls-cert".into(),
            p("pki/controller.pem"),
            "--tls-key".into(),
            p("pki/controller.key"),
            "--tls-client-ca".into(),
            p("pki/ca.pem"),
        ],
        dir.join("ctl.sock"),
        dir.join("ctl.log"),
    )
}

/// The routed pool `pods-v4` (10.244.0.0/16) and the cluster network
/// `pods` on it, defined over `ctl`'s unix socket (the admin).
pub async fn define_pods(ctl: &Daemon) {
    let mut admin = ctl.controller().await;
    let spec = pb::PoolSpec {
        name: "pods-v4".into(),
        prefix: "10.244.0.0/16".into(),
        mode: pb::PoolMode::Routed.into(),
        ..Default::default()
    };
    let pool = pb::CreatePoolRequest { spec: Some(spec) };
    admin.create_pool(pool).await.unwrap();
    let spec = pb::ClusterNetworkSpec {
        name: "pods".into(),
        pools: vec!["pods-v4".into()],
        mtu: 0,
    };
    let net = pb::CreateClusterNetworkRequest { spec: Some(spec) };
    admin.create_cluster_network(net).await.unwrap();
}
