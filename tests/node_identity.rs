//! Node identity end to end: trellis-controller serving TCP with mutual TLS
//! (`--tls-client-ca`) in the cluster lab, trellisd on h1 joining with node
//! h1's certificate (`--controller-cert`/`--controller-key`) and claiming
//! blocks, and trellisd on h2 given h1's certificate refused: it stops at
//! start saying its certificate names another node, and never registers. The certificates are made by
//! `scripts/certs`, as the README says.

mod daemons;

use daemons::{Daemon, binary};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use trellis_proto::v1 as pb;
use trellis_testlab::cluster::{CONTROLLER_IP, ClusterLab, HOST_IPS};
use trellis_testlab::require_root;

const PORT: u16 = 7443;

/// Polls `ok` every 100 ms until it holds, at most `limit`.
fn eventually(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `scripts/certs --dir pki args…`.
fn certs(pki: &Path, args: &[&str]) {
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
    let p = |s: &str| dir.path().join(s).display().to_string();
    let pki = dir.path().join("pki");
    certs(&pki, &["ca"]);
    certs(&pki, &["controller", &CONTROLLER_IP.to_string()]);
    certs(&pki, &["node", "h1"]);
    let ctl = Daemon::start(
        &lab.ctl,
        &binary("TRELLIS_CONTROLLER_BIN", "trellis-controller"),
        &[
            "--state-dir".into(),
            p("ctl"),
            "--socket".into(),
            p("ctl.sock"),
            "--listen".into(),
            format!("{CONTROLLER_IP}:{PORT}"),
            "--tls-cert".into(),
            p("pki/controller.pem"),
            "--tls-key".into(),
            p("pki/controller.key"),
            "--tls-client-ca".into(),
            p("pki/ca.pem"),
        ],
        dir.path().join("ctl.sock"),
        dir.path().join("ctl.log"),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The unix socket is the admin: it defines the pool nodes claim from.
    rt.block_on(async {
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
    });

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
