//! The controller reads nodes, end to end (issue 13, item 4): in the
//! cluster lab, trellis-controller and two trellisd serve TCP with mutual
//! TLS, certificates made by `scripts/certs`. Each trellisd registers its
//! Agent API address (by default its TLS listener at its node address);
//! the controller lists h1's endpoints through h1's Agent API with its own
//! certificate; h2's node certificate is refused by h1's Agent API, and so
//! is the controller's certificate calling a method that writes; the IPAM
//! check finds nothing while all agrees, then the block h1 still holds
//! after the controller took it back, and h2 once it cannot be read.

mod daemons;
mod mtls;

use daemons::{Daemon, binary};
use mtls::{certs, eventually};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use trellis_proto::v1 as pb;
use trellis_testlab::cluster::{CONTROLLER_IP, ClusterLab, HOST_IPS};
use trellis_testlab::{Netns, require_root};

const CONTROLLER_PORT: u16 = 7443;
const AGENT_PORT: u16 = 7444;

/// trellisd on host `i` (node `h<i+1>`), joined to the controller and
/// serving its Agent API on TCP with mutual TLS, with no --agent-address:
/// the default is registered.
fn trellisd(lab: &ClusterLab, dir: &Path, i: usize) -> Daemon {
    let name = format!("h{}", i + 1);
    let p = |s: &str| dir.join(s).display().to_string();
    let socket = dir.join(format!("{name}.sock"));
    let ip = HOST_IPS[i];
    Daemon::start(
        &lab.hosts[i],
        &binary("TRELLISD_BIN", "trellisd"),
        &[
            "--node".into(),
            name.clone(),
            "--state-dir".into(),
            p(&name),
            "--socket".into(),
            socket.display().to_string(),
            "--listen".into(),
            format!("{ip}:{AGENT_PORT}"),
            "--tls-cert".into(),
            p(&format!("pki/node-{name}.pem")),
            "--tls-key".into(),
            p(&format!("pki/node-{name}.key")),
            "--tls-client-ca".into(),
            p("pki/ca.pem"),
            "--controller".into(),
            format!("https://{CONTROLLER_IP}:{CONTROLLER_PORT}"),
            "--controller-ca".into(),
            p("pki/ca.pem"),
            "--controller-cert".into(),
            p(&format!("pki/node-{name}.pem")),
            "--controller-key".into(),
            p(&format!("pki/node-{name}.key")),
            "--node-address".into(),
            ip.to_string(),
        ],
        socket,
        dir.join(format!("{name}.log")),
    )
}

/// What a test asks of a node's Agent API over TCP.
#[derive(Debug, Clone, Copy)]
enum Call {
    ListEndpoints,
    Status,
    CreateNetwork,
}

/// Calls `call` on the Agent API at `url` from namespace `ns`, with the
/// certificate `pki/<who>.pem`: the status of the answer.
fn agent_call(
    ns: &Netns,
    pki: &Path,
    who: &str,
    url: String,
    call: Call,
) -> Result<(), tonic::Status> {
    let read = |f: String| std::fs::read(pki.join(f)).expect("a file scripts/certs made");
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem".into())))
        .identity(Identity::from_pem(
            read(format!("{who}.pem")),
            read(format!("{who}.key")),
        ));
    ns.enter(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let channel = Endpoint::from_shared(url)
                .unwrap()
                .tls_config(tls)
                .unwrap()
                .connect()
                .await
                .map_err(|e| tonic::Status::unavailable(format!("{e:?}")))?;
            let mut a = pb::AgentClient::new(channel);
            match call {
                Call::ListEndpoints => a
                    .list_endpoints(pb::ListEndpointsRequest::default())
                    .await
                    .map(drop),
                Call::Status => a.status(pb::StatusRequest {}).await.map(drop),
                Call::CreateNetwork => {
                    let spec = pb::NetworkSpec {
                        name: "sneaky".into(),
                        mode: pb::NetworkMode::Bridge.into(),
                        subnets: vec!["192.168.77.0/24".into()],
                        ..Default::default()
                    };
                    let req = pb::CreateNetworkRequest { spec: Some(spec) };
                    a.create_network(req).await.map(drop)
                }
            }
        })
    })
}

/// The lab, the controller and the two nodes of the test.
struct Cluster {
    lab: ClusterLab,
    dir: tempfile::TempDir,
    ctl: Daemon,
    nodes: Vec<Daemon>,
    rt: tokio::runtime::Runtime,
}

impl Cluster {
    fn start() -> Self {
        let lab = ClusterLab::build();
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        certs(&pki, &["ca"]);
        certs(&pki, &["controller", &CONTROLLER_IP.to_string()]);
        let node_cert = |i: usize| format!("h{}={}", i + 1, HOST_IPS[i]);
        certs(&pki, &["node", &node_cert(0), &node_cert(1)]);
        // No --node-ca/--node-client-cert: the controller reads nodes with
        // its server certificate, which names it, by its client CA.
        let ctl = mtls::controller(&lab, dir.path(), CONTROLLER_PORT);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(mtls::define_pods(&ctl));
        let nodes = (0..2).map(|i| trellisd(&lab, dir.path(), i)).collect();
        Cluster {
            lab,
            dir,
            ctl,
            nodes,
            rt,
        }
    }

    fn admin(&self) -> pb::ControllerClient<tonic::transport::Channel> {
        self.rt.block_on(self.ctl.controller())
    }

    fn pki(&self) -> PathBuf {
        self.dir.path().join("pki")
    }

    fn nodes(&self) -> Vec<pb::Node> {
        let r = self
            .rt
            .block_on(self.admin().list_nodes(pb::ListNodesRequest {}));
        r.unwrap().into_inner().nodes
    }

    fn blocks_of(&self, node: &str) -> Vec<pb::Block> {
        let req = pb::ListBlocksRequest {
            node: node.into(),
            ..Default::default()
        };
        let r = self.rt.block_on(self.admin().list_blocks(req));
        r.unwrap().into_inner().blocks
    }

    fn node_endpoints(&self, node: &str) -> Result<Vec<pb::Endpoint>, tonic::Status> {
        let req = pb::ListNodeEndpointsRequest {
            node: node.into(),
            filter: None,
        };
        let r = self.rt.block_on(self.admin().list_node_endpoints(req));
        r.map(|r| r.into_inner().endpoints)
    }

    fn check(&self) -> Vec<pb::IpamProblem> {
        let r = self
            .rt
            .block_on(self.admin().check_ipam(pb::CheckIpamRequest {}));
        r.unwrap().into_inner().problems
    }

    fn has_network(&self, i: usize, name: &str) -> bool {
        let mut a = self.rt.block_on(self.nodes[i].agent());
        let r = self
            .rt
            .block_on(a.list_networks(pb::ListNetworksRequest {}));
        let nets = r.map(|r| r.into_inner().networks).unwrap_or_default();
        nets.iter()
            .any(|n| n.spec.as_ref().is_some_and(|s| s.name == name))
    }

    fn logs(&self) -> String {
        let logs = self.nodes.iter().map(Daemon::log);
        std::iter::once(self.ctl.log())
            .chain(logs)
            .collect::<Vec<_>>()
            .join("\n---\n")
    }
}

fn agent_url(i: usize) -> String {
    format!("https://{}:{AGENT_PORT}", HOST_IPS[i])
}

fn kinds(problems: &[pb::IpamProblem]) -> Vec<(String, String, String)> {
    use pb::ipam_problem::Kind;
    problems
        .iter()
        .map(|p| {
            let kind = Kind::try_from(p.kind).map_or("?", |k| k.as_str_name());
            (kind.to_owned(), p.node.clone(), p.prefix.clone())
        })
        .collect()
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[test]
fn the_controller_reads_nodes_through_their_agent_api_and_only_reads() {
    require_root();
    let mut c = Cluster::start();
    let limit = Duration::from_secs(20);

    // Both registered where their Agent API is read, and hold a block.
    eventually(limit, "h1 and h2 registered with their Agent API", || {
        let mut got: Vec<_> = c
            .nodes()
            .into_iter()
            .filter_map(|n| n.spec)
            .map(|s| (s.name, s.agent_address))
            .collect();
        got.sort();
        got == [("h1".into(), agent_url(0)), ("h2".into(), agent_url(1))]
    });
    eventually(limit, "h1 and h2 hold a block", || {
        !c.blocks_of("h1").is_empty() && !c.blocks_of("h2").is_empty()
    });
    eventually(limit, "h1 serves the cluster network", || {
        c.has_network(0, "pods")
    });

    // A container on h1, listed by the controller through h1's Agent API.
    let pod = Netns::new("p1");
    let mut h1 = c.rt.block_on(c.nodes[0].agent());
    let attach = pb::AttachRequest {
        network: "pods".into(),
        container_id: "pod-1".into(),
        netns: pod.path_str(),
        ..Default::default()
    };
    let ep = c.rt.block_on(h1.attach(attach)).unwrap().into_inner();
    let eps = c
        .node_endpoints("h1")
        .unwrap_or_else(|e| panic!("{e:?}\n{}", c.logs()));
    let ids: Vec<_> = eps
        .iter()
        .map(|e| (e.container_id.as_str(), &e.addresses))
        .collect();
    assert_eq!(ids, [("pod-1", &ep.addresses)]);
    assert_eq!(c.node_endpoints("h2").unwrap(), []);
    let e = c.node_endpoints("nosuch").unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");

    // h1's Agent API: the controller reads; h2's node certificate reads
    // nothing; the controller's certificate writes nothing.
    let pki = c.pki();
    let h2_ns = &c.lab.hosts[1];
    let e = agent_call(h2_ns, &pki, "node-h2", agent_url(0), Call::ListEndpoints).unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(
        e.message()
            .contains("certificate of node \"h2\" cannot call trellis.v1.Agent/ListEndpoints"),
        "{}",
        e.message()
    );
    let ctl_ns = &c.lab.ctl;
    agent_call(ctl_ns, &pki, "controller", agent_url(0), Call::Status)
        .expect("the controller's certificate reads a node's status");
    let e = agent_call(
        ctl_ns,
        &pki,
        "controller",
        agent_url(0),
        Call::CreateNetwork,
    )
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(
        e.message().contains("cannot call CreateNetwork"),
        "{}",
        e.message()
    );
    assert!(!c.has_network(0, "sneaky"));

    // All agrees: the check finds nothing, having read both nodes.
    eventually(limit, "a clean IPAM check", || c.check().is_empty());

    // The controller takes h1's block back while h1 still uses it (h1
    // drained first, so that it claims no block in its place): h1 holds a
    // block the controller does not give it.
    let block = c.blocks_of("h1").remove(0);
    let mut admin = c.admin();
    c.rt.block_on(admin.drain_node(pb::DrainNodeRequest { name: "h1".into() }))
        .unwrap();
    let release = pb::ReleaseBlockRequest {
        node: "h1".into(),
        pool: block.pool.clone(),
        prefix: block.prefix.clone(),
    };
    c.rt.block_on(admin.release_block(release)).unwrap();
    let want = (
        "KIND_HELD_WITHOUT_GRANT".to_owned(),
        "h1".to_owned(),
        block.prefix.clone(),
    );
    eventually(limit, "the check finds the block h1 still holds", || {
        kinds(&c.check()) == [want.clone()]
    });
    let p = c.check().remove(0);
    assert!(
        p.detail.contains("1 addresses in use") && p.detail.contains("gives it to no node"),
        "{}",
        p.detail
    );

    // h2 stops: within its lease it is alive, but cannot be read.
    c.nodes[1].stop();
    let problems = c.check();
    let unread = problems
        .iter()
        .find(|p| p.node == "h2")
        .unwrap_or_else(|| panic!("h2 not named: {problems:?}"));
    assert_eq!(unread.kind, pb::ipam_problem::Kind::NodeUnreadable as i32);
    assert!(unread.detail.contains(&agent_url(1)), "{}", unread.detail);
    let e = c.node_endpoints("h2").unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(
        e.message().contains("node \"h2\"") && e.message().contains(&agent_url(1)),
        "{}",
        e.message()
    );
}
