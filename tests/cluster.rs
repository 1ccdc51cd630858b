//! Cluster mode end to end, with the real daemons: trellis-controller on
//! its own machine, trellisd on three hosts joined to it over the underlay
//! (TCP), containers in routed and bridge networks on different hosts
//! reaching each other with their true source addresses through host-gw
//! routes, a removed node's routes gone from the others, a node's trellisd
//! killed and restarted with no traffic lost, and attaches going on from
//! held blocks while the controller is down.

mod daemons;

use daemons::{Daemon, binary};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use trellis_proto::v1 as pb;
use trellis_testlab::cluster::{CONTROLLER_IP, ClusterLab, HOST_IPS};
use trellis_testlab::seed::EXTERNAL_IP;
use trellis_testlab::{Counts, Netns, TcpServer, require_root, seen_ip, tcp_request, tcp_traffic};

const PORT: u16 = 7443;

/// Polls `ok` every 100 ms until it holds, at most `limit`.
fn eventually(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Cluster {
    lab: ClusterLab,
    _dir: tempfile::TempDir,
    ctl: Daemon,
    nodes: Vec<Daemon>,
    rt: tokio::runtime::Runtime,
}

impl Cluster {
    /// The lab, the controller (lease `ttl`, `grace`) and trellisd on each
    /// host, joined over TCP.
    fn start(ttl: &str, grace: &str) -> Self {
        let lab = ClusterLab::build();
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let p = |s: &str| dir.path().join(s);
        let ctl = Daemon::start(
            &lab.ctl,
            &binary("TRELLIS_CONTROLLER_BIN", "trellis-controller"),
            &[
                "--state-dir".into(),
                p("ctl").display().to_string(),
                "--socket".into(),
                p("ctl.sock").display().to_string(),
                "--listen".into(),
                format!("{CONTROLLER_IP}:{PORT}"),
                "--insecure-tcp".into(),
                "--lease-ttl".into(),
                ttl.into(),
                "--grace".into(),
                grace.into(),
            ],
            p("ctl.sock"),
            p("ctl.log"),
        );
        let trellisd = binary("TRELLISD_BIN", "trellisd");
        let nodes = lab
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let name = format!("h{}", i + 1);
                Daemon::start(
                    h,
                    &trellisd,
                    &[
                        "--node".into(),
                        name.clone(),
                        "--state-dir".into(),
                        p(&name).display().to_string(),
                        "--socket".into(),
                        p(&format!("{name}.sock")).display().to_string(),
                        "--controller".into(),
                        format!("http://{CONTROLLER_IP}:{PORT}"),
                        "--node-address".into(),
                        HOST_IPS[i].to_string(),
                        "--claim-ahead".into(),
                        "4".into(),
                    ],
                    p(&format!("{name}.sock")),
                    p(&format!("{name}.log")),
                )
            })
            .collect();
        Cluster {
            lab,
            _dir: dir,
            ctl,
            nodes,
            rt,
        }
    }

    fn controller(&self) -> pb::ControllerClient<tonic::transport::Channel> {
        self.rt.block_on(self.ctl.controller())
    }

    fn agent(&self, i: usize) -> pb::AgentClient<tonic::transport::Channel> {
        self.rt.block_on(self.nodes[i].agent())
    }

    fn networks(&self, i: usize) -> Vec<String> {
        let mut a = self.agent(i);
        let r = self
            .rt
            .block_on(a.list_networks(pb::ListNetworksRequest {}))
            .map(|r| r.into_inner().networks)
            .unwrap_or_default();
        r.into_iter()
            .filter_map(|n| n.spec.map(|s| s.name))
            .collect()
    }

    fn attach(&self, i: usize, network: &str, c: &Netns) -> Result<IpAddr, tonic::Status> {
        let mut a = self.agent(i);
        let ep = self.rt.block_on(a.attach(pb::AttachRequest {
            network: network.into(),
            container_id: c.name().into(),
            netns: c.path_str(),
            ..Default::default()
        }))?;
        let addr = &ep.into_inner().addresses[0];
        Ok(addr.split('/').next().unwrap().parse().unwrap())
    }

    fn status(&self, i: usize) -> pb::StatusResponse {
        let mut a = self.agent(i);
        self.rt
            .block_on(a.status(pb::StatusRequest {}))
            .unwrap()
            .into_inner()
    }

    fn blocks_of(&self, node: &str) -> Vec<String> {
        let mut c = self.controller();
        let r = self.rt.block_on(c.list_blocks(pb::ListBlocksRequest {
            node: node.into(),
            ..Default::default()
        }));
        r.unwrap()
            .into_inner()
            .blocks
            .into_iter()
            .map(|b| b.prefix)
            .collect()
    }

    /// trellis's peer routes on host `i`, as `ip route` prints them.
    fn peer_routes(&self, i: usize) -> String {
        self.lab.hosts[i].ip("route show proto 116")
    }

    fn define(&self) {
        let mut c = self.controller();
        self.rt.block_on(async {
            for (name, prefix, mode) in [
                ("pods-v4", "10.244.0.0/16", pb::PoolMode::Routed),
                ("web-v4", "10.10.0.0/16", pb::PoolMode::Bridge),
            ] {
                c.create_pool(pb::CreatePoolRequest {
                    spec: Some(pb::PoolSpec {
                        name: name.into(),
                        prefix: prefix.into(),
                        mode: mode.into(),
                        outgoing_nat: true,
                        ..Default::default()
                    }),
                })
                .await
                .unwrap();
            }
            c.create_cluster_network(pb::CreateClusterNetworkRequest {
                spec: Some(pb::ClusterNetworkSpec {
                    name: "pods".into(),
                    pools: vec!["pods-v4".into()],
                    mtu: 0,
                }),
            })
            .await
            .unwrap();
        });
    }

    fn bridge_network(&self, i: usize) -> pb::Network {
        let mut a = self.agent(i);
        self.rt
            .block_on(a.create_network(pb::CreateNetworkRequest {
                spec: Some(pb::NetworkSpec {
                    name: "web".into(),
                    mode: pb::NetworkMode::Bridge.into(),
                    bridge: "trweb0".into(),
                    outgoing_nat: true,
                    subnet_pool: "web-v4".into(),
                    ..Default::default()
                }),
            }))
            .unwrap()
            .into_inner()
    }
}

fn server(ns: &Netns, ip: IpAddr, tag: &str) -> TcpServer {
    TcpServer::start(ns, SocketAddr::new(ip, 80), tag)
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[test]
fn containers_on_three_hosts_reach_each_other_with_their_own_addresses() {
    require_root();
    let c = Cluster::start("3s", "60s");
    c.define();
    for i in 0..3 {
        eventually(
            Duration::from_secs(10),
            "the cluster network on every node",
            || c.networks(i).contains(&"pods".to_owned()),
        );
    }
    // Routed pods, one per host.
    let pods: Vec<Netns> = (1..=3).map(|i| Netns::new(&format!("p{i}"))).collect();
    let ips: Vec<IpAddr> = (0..3)
        .map(|i| c.attach(i, "pods", &pods[i]).unwrap())
        .collect();
    // Bridge networks with one subnet per node from the bridge pool.
    let subnets: Vec<String> = (0..3)
        .map(|i| c.bridge_network(i).spec.unwrap().subnets[0].clone())
        .collect();
    let mut distinct = subnets.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{subnets:?}");
    let webs: Vec<Netns> = (1..=2).map(|i| Netns::new(&format!("w{i}"))).collect();
    let wips: Vec<IpAddr> = (0..2)
        .map(|i| c.attach(i, "web", &webs[i]).unwrap())
        .collect();

    // Every host routes every other host's blocks via that host.
    for i in 0..3 {
        eventually(Duration::from_secs(10), "host-gw routes", || {
            let routes = c.peer_routes(i);
            (0..3).filter(|j| *j != i).all(|j| {
                c.blocks_of(&format!("h{}", j + 1))
                    .iter()
                    .all(|b| routes.contains(&format!("{b} via {}", HOST_IPS[j])))
            })
        });
    }

    // Pod to pod across hosts, and bridge container to bridge container:
    // each side sees the other's own address.
    let s2 = server(&pods[1], ips[1], "p2");
    let s3 = server(&pods[2], ips[2], "p3");
    let reply = tcp_request(&pods[0], s2.addr()).expect("p1 reaches p2 on another host");
    assert_eq!(seen_ip(&reply), ips[0]);
    let reply = tcp_request(&pods[0], s3.addr()).expect("p1 reaches p3");
    assert_eq!(seen_ip(&reply), ips[0]);
    let w2 = server(&webs[1], wips[1], "w2");
    let reply = tcp_request(&webs[0], w2.addr()).expect("w1 reaches w2 on another host");
    assert_eq!(
        seen_ip(&reply),
        wips[0],
        "no NAT between the cluster's subnets:\n{}\n{:?}",
        c.lab.hosts[0].exec_ok(&["nft", "list", "set", "inet", "trellis", "pools4"]),
        c.nodes[0].log()
    );
    let reply = tcp_request(&webs[0], s2.addr()).expect("w1 reaches pod p2");
    assert_eq!(seen_ip(&reply), wips[0]);
    // Leaving the cluster, traffic is masqueraded behind the host.
    let ext = c.lab.external_server(80);
    let reply = tcp_request(&webs[0], ext.addr()).expect("w1 reaches the internet");
    assert_eq!(seen_ip(&reply), IpAddr::V4(HOST_IPS[0]));
    let reply = tcp_request(&pods[0], ext.addr()).expect("p1 reaches the internet");
    assert_eq!(seen_ip(&reply), IpAddr::V4(HOST_IPS[0]));
    let _ = EXTERNAL_IP;

    // h2's trellisd killed and restarted while p1 talks to p2: nothing lost.
    let stop = AtomicBool::new(false);
    let counts = Counts::default();
    let mut c = c;
    std::thread::scope(|s| {
        s.spawn(|| tcp_traffic(&pods[0], s2.addr(), &stop, &counts));
        std::thread::sleep(Duration::from_millis(300));
        c.nodes[1].kill();
        std::thread::sleep(Duration::from_millis(300));
        c.nodes[1].start_again();
        eventually(Duration::from_secs(15), "h2 ready again", || {
            c.status(1).ready
        });
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::SeqCst);
    });
    let (ok, failed) = counts.get();
    assert!(
        ok > 20 && failed == 0,
        "through h2's restart: {ok} answered, {failed} failed"
    );
    trellis_testlab::report::record(
        "cluster",
        "a node's trellisd SIGKILLed and restarted while a pod on another node talks to a pod on it",
        &format!("{ok} requests answered, {failed} failed; the node ready again"),
    );

    // h3 removed: the others forget its blocks.
    let h3_blocks = c.blocks_of("h3");
    assert!(!h3_blocks.is_empty());
    c.nodes[2].kill();
    let mut ctl = c.controller();
    c.rt.block_on(ctl.remove_node(pb::RemoveNodeRequest {
        name: "h3".into(),
        force: true,
    }))
    .unwrap();
    for i in 0..2 {
        eventually(Duration::from_secs(10), "h3's routes gone", || {
            let routes = c.peer_routes(i);
            h3_blocks.iter().all(|b| !routes.contains(b.as_str()))
        });
    }

    // The controller stopped: h1 attaches on from the blocks it holds, and
    // says the controller is out of reach.
    c.ctl.stop();
    let late = Netns::new("p4");
    let ip = c
        .attach(0, "pods", &late)
        .expect("an attach with the controller down");
    assert!(c.blocks_of_cached(&ip));
    eventually(
        Duration::from_secs(15),
        "h1 reports the controller unreachable",
        || {
            c.status(0)
                .warnings
                .iter()
                .any(|w| w.contains("controller unreachable"))
        },
    );
    trellis_testlab::report::record(
        "cluster",
        "the controller stopped, then a pod attached on a node",
        "attached from a block the node holds; the node's status warns \"controller unreachable\"",
    );
}

impl Cluster {
    /// Whether `ip` lies in 10.244.0.0/16 (a pods address from a held block).
    fn blocks_of_cached(&self, ip: &IpAddr) -> bool {
        let pods: ipnet::IpNet = "10.244.0.0/16".parse().unwrap();
        pods.contains(ip)
    }
}

/// Drops everything `ns` sends to the controller (a partition), or stops
/// dropping it.
fn partition(ns: &Netns, on: bool) {
    if on {
        ns.exec_ok(&["nft", "add", "table", "ip", "partition"]);
        ns.exec_ok(&[
            "nft",
            "add chain ip partition out { type filter hook output priority 0; }",
        ]);
        let rule = format!("add rule ip partition out ip daddr {CONTROLLER_IP} drop");
        ns.exec_ok(&["nft", &rule]);
    } else {
        ns.exec_ok(&["nft", "delete", "table", "ip", "partition"]);
    }
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[test]
fn a_partitioned_node_stops_handing_out_addresses_before_its_blocks_can_go() {
    require_root();
    // Lease 1 s, grace 4 s: the controller may give h3's blocks away 5 s
    // after it last heard from it; h3 stops a margin (1 s) before.
    let c = Cluster::start("1s", "4s");
    c.define();
    eventually(Duration::from_secs(10), "the cluster network on h3", || {
        c.networks(2).contains(&"pods".to_owned())
    });
    let first = Netns::new("q1");
    c.attach(2, "pods", &first).unwrap();
    let held = c.blocks_of("h3");
    assert!(!held.is_empty());

    partition(&c.lab.hosts[2], true);
    let cut = Instant::now();
    // Out of contact but within its lease and grace: attaches go on.
    let during = Netns::new("q2");
    c.attach(2, "pods", &during)
        .expect("an attach just after the partition");
    // Then fenced: refused, while the controller still counts the blocks
    // as h3's — the node stopped first.
    let late = Netns::new("q3");
    let fenced = loop {
        match c.attach(2, "pods", &late) {
            Ok(_) => {
                let mut a = c.agent(2);
                c.rt.block_on(a.detach(pb::DetachRequest {
                    container_id: late.name().into(),
                    ifname: String::new(),
                }))
                .unwrap();
            }
            Err(s) => break s,
        }
        assert!(cut.elapsed() < Duration::from_secs(20), "never fenced");
        std::thread::sleep(Duration::from_millis(100));
    };
    let fenced_after = cut.elapsed();
    assert_eq!(fenced.code(), tonic::Code::Unavailable, "{fenced:?}");
    assert!(fenced.message().contains("fenced"), "{}", fenced.message());
    assert_eq!(
        c.blocks_of("h3"),
        held,
        "fenced before the controller let go"
    );
    assert!(
        c.status(2).warnings.iter().any(|w| w.contains("fenced")),
        "{:?}",
        c.status(2).warnings
    );
    // The controller lets go only later.
    eventually(Duration::from_secs(15), "h3's blocks released", || {
        c.blocks_of("h3").is_empty()
    });
    let released_after = cut.elapsed();
    assert!(
        fenced_after < released_after,
        "fenced after {fenced_after:?}, released after {released_after:?}"
    );
    // The other nodes attach on, undisturbed; h1 comes to hold h3's old
    // block (claims take the lowest free blocks).
    let other = Netns::new("q4");
    c.attach(0, "pods", &other).unwrap();
    let mut ctl = c.controller();
    for _ in 0..32 {
        let b =
            c.rt.block_on(ctl.claim_block(pb::ClaimBlockRequest {
                node: "h1".into(),
                pool: "pods-v4".into(),
            }))
            .unwrap()
            .into_inner();
        if b.prefix == held[0] {
            break;
        }
    }
    assert!(
        c.blocks_of("h1").contains(&held[0]),
        "h1 never got {}",
        held[0]
    );

    // Healed: h3 renews and attaches again (from a block claimed anew).
    // Its old block, with addresses still in use, is h1's now: h3 hands out
    // nothing more from it, and both sides say so.
    partition(&c.lab.hosts[2], false);
    eventually(
        Duration::from_secs(10),
        "h3 reports its orphaned block",
        || {
            c.status(2)
                .warnings
                .iter()
                .any(|w| w.contains(&format!("block {} holds", held[0])))
        },
    );
    let again = loop {
        match c.attach(2, "pods", &late) {
            Ok(ip) => break ip,
            Err(e) => assert!(
                cut.elapsed() < Duration::from_secs(40),
                "h3 never back: {e:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // From a block the controller counts as h3's now.
    let now: Vec<ipnet::IpNet> = c
        .blocks_of("h3")
        .iter()
        .map(|b| b.parse().unwrap())
        .collect();
    assert!(
        now.iter().any(|b| b.contains(&again)),
        "{again} outside h3's blocks {now:?}"
    );
    eventually(
        Duration::from_secs(10),
        "the controller's IPAM check finds it",
        || {
            let problems =
                c.rt.block_on(ctl.check_ipam(pb::CheckIpamRequest {}))
                    .unwrap()
                    .into_inner()
                    .problems;
            problems.iter().any(|p| {
                p.kind == pb::ipam_problem::Kind::UsageWithoutBlock as i32
                    && p.node == "h3"
                    && p.prefix == held[0]
            })
        },
    );
}
