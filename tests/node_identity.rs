//! Node identity end to end: trellis-controller serving TCP with mutual TLS
//! (`--tls-client-ca`) in the cluster lab, trellisd on h1 joining with node
//! h1's certificate (`--controller-cert`/`--controller-key`) and claiming
//! blocks, and trellisd on h2 given h1's certificate refused: it stops at
//! start saying its certificate names another node, and never registers. The certificates are made by
//! `scripts/certs`, as the README says.

mod daemons;
mod mtls;

use daemons::{Daemon, binary};
use mtls::{certs, eventually};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use trellis_proto::v1 as pb;
use trellis_testlab::cluster::{CONTROLLER_IP, ClusterLab, HOST_IPS};
use trellis_testlab::require_root;

const PORT: u16 = 7443;

/// trellisd on `host` as node `name`, with the certificate of node `cert`.
fn trellisd(lab: &ClusterLab, dir: &Path, host: usize, name: &str, cert: &str) -> Daemon {
    let socket = dir.join(format!("{name}.sock"));
    Daemon::start(
        &lab.hosts[host],
        &binary("TRELLISD_BIN", "trellisd"),
        &args(dir, host, name, cert),
        socket,
        dir.join(format!("{name}.log")),
    )
}

/// trellisd's arguments on `host` as node `name` with node `cert`'s
/// certificate.
fn args(dir: &Path, host: usize, name: &str, cert: &str) -> Vec<String> {
    let p = |s: &str| dir.join(s).display().to_string();
    let socket = dir.join(format!("{name}.sock"));
    vec![
        "--node".into(),
        name.into(),
        "--state-dir".into(),
        p(name),
        "--socket".into(),
        socket.display().to_string(),
        "--controller".into(),
        format!("https://{CONTROLLER_IP}:{PORT}"),
        "--controller-ca".into(),
        p("pki/ca.pem"),
        "--controller-cert".into(),
        p(&format!("pki/node-{cert}.pem")),
        "--controller-key".into(),
        p(&format!("pki/node-{cert}.key")),
        "--node-address".into(),
        HOST_IPS[host].to_string(),
    ]
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[test]
fn trellisd_joins_with_its_node_certificate_and_not_with_another_nodes() {
    require_root();
    let lab = ClusterLab::build();
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    certs(&pki, &["ca"]);
    certs(&pki, &["controller", &CONTROLLER_IP.to_string()]);
    certs(&pki, &["node", "h1"]);
    let ctl = mtls::controller(&lab, dir.path(), PORT);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The unix socket is the admin: it defines the pool nodes claim from.
    rt.block_on(mtls::define_pods(&ctl));

    let h1 = trellisd(&lab, dir.path(), 0, "h1", "h1");
    // trellisd h2 given h1's certificate stops at once, saying why: the
    // controller would refuse each of its calls (bins/trellis-controller's
    // identity test shows that refusal: PERMISSION_DENIED).
    let impostor = Command::new("ip")
        .args(["netns", "exec", lab.hosts[1].name()])
        .arg(binary("TRELLISD_BIN", "trellisd"))
        .args(args(dir.path(), 1, "h2", "h1"))
        .output()
        .expect("run trellisd");
    let said = String::from_utf8_lossy(&impostor.stderr);
    assert!(!impostor.status.success(), "{said}");
    assert!(
        said.contains("names node:h1, not node:h2"),
        "trellisd did not say why: {said}"
    );

    let nodes = || {
        let mut admin = rt.block_on(ctl.controller());
        let r = rt.block_on(admin.list_nodes(pb::ListNodesRequest {}));
        let nodes = r.unwrap().into_inner().nodes;
        let names = nodes.into_iter().filter_map(|n| n.spec.map(|s| s.name));
        names.collect::<Vec<_>>()
    };
    let blocks = || {
        let mut admin = rt.block_on(ctl.controller());
        let req = pb::ListBlocksRequest {
            node: "h1".into(),
            ..Default::default()
        };
        let r = rt.block_on(admin.list_blocks(req));
        r.unwrap().into_inner().blocks.len()
    };
    eventually(Duration::from_secs(15), "h1 registered", || {
        nodes().contains(&"h1".to_owned())
    });
    eventually(Duration::from_secs(15), "h1 holds a block", || blocks() > 0);

    let warnings = |d: &Daemon| {
        let mut a = rt.block_on(d.agent());
        let s = rt.block_on(a.status(pb::StatusRequest {})).unwrap();
        s.into_inner().warnings.join("\n")
    };
    assert_eq!(nodes(), ["h1"], "h2 registered with h1's certificate");
    // A sync that raced trellisd's first reconcile (which rebuilds its
    // nftables table) reports it until the next sync, a lease interval
    // later: h1 settles with no cluster warning.
    eventually(
        Duration::from_secs(15),
        "h1 without cluster warnings",
        || !warnings(&h1).contains("cluster:"),
    );
}
