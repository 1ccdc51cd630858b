//! Crash soak in cluster mode (issue 15, item 1): concurrent attaches and
//! detaches on three nodes while their trellisd processes *and* the
//! controller are killed with SIGKILL at random moments and restarted;
//! afterwards the controller's store keeps every invariant, no address was
//! given twice, nothing has leaked and everything attached works.
//!
//! The lab is the cluster lab (a controller's machine, three hosts on an
//! underlay, the upstream router with the "internet" server). The
//! controller (redb store) defines `pods-v4`, a routed pool of /30 blocks
//! (four addresses: attaches claim new blocks often, and nodes give empty
//! ones back after a second, so blocks move between nodes), and `web-v4`,
//! a bridge pool each node takes its `web` subnet from. Each host runs
//! trellisd joined to the controller. Two clients per node each own four
//! containers of that node and toggle them at random between detached and
//! attached to `pods` or `web`; one call in ten is repeated once answered,
//! and must be answered alike. Meanwhile a killer SIGKILLs, 100–400 ms
//! after each restart, the controller (one time in three) or a random
//! node's trellisd, and starts it again after up to 200 ms. Each time the
//! controller is down its store is read and checked
//! ([`trellis_cluster::check_invariants`]: counts, caps, pools, owners).
//!
//! A call cut off (connection lost, socket refusing, UNAVAILABLE — also a
//! node that cannot claim a block while the controller is down, or is
//! fenced) is sent again, the same request, until answered; any other
//! answer fails the soak. While it runs, an attach answered must have
//! plumbed the container's `eth0` (up, with the address answered), and an
//! address answered to a container while another container anywhere holds
//! it fails the soak.
//!
//! Afterwards, with every daemon up and ready:
//! - the controller's invariants hold, and its IPAM check finds nothing;
//! - each node's endpoints are exactly what its clients were last answered,
//!   no address appears twice across the nodes, each lies in a block its
//!   node holds, and every block a node holds is the controller's block of
//!   that node (no block with two owners);
//! - each host holds exactly its endpoints' veths and /32 routes, the
//!   blackholes of its own blocks and a route to each other node's blocks
//!   via that node, and the nftables elements it had before the soak;
//! - every attached endpoint passes traffic: from its host, to the
//!   internet masqueraded behind its host, and to an endpoint of its network
//!   on another node with its own address;
//! - each node's store holds exactly its endpoints' records and addresses;
//! - after detaching everything, nothing of any endpoint is left on any host
//!   or in any store, the invariants still hold, and no daemon panicked.
//!
//! Two forms, both bounded in time: **short** (default; scripts/test): ≥ 300
//! operations and ≥ 30 kills of which ≥ 8 of the controller, about 15 s,
//! failing after 4 minutes; **long**: `TRELLIS_SOAK=long` — ≥ 3000
//! operations and ≥ 300 kills of which ≥ 80 of the controller, failing
//! after 40 minutes: `TRELLIS_SOAK=long cargo test -p trellis-tests
//! --features privileged --test cluster_soak -- --nocapture`.
//! `TRELLIS_SOAK_SEED=<n>` replays the random choices; `TRELLIS_KEEP_LOGS=1`
//! keeps the daemons' logs and state (they are kept anyway on a failure).
//!
//! The clients, the killer, the watch and the checks of containers, traffic
//! and stores are tests/soak.rs's, shared with tests/crash_soak.rs.

mod daemons;
mod soak;

use daemons::{Daemon, HostObjects, KeptOnFailure, Retrying, binary, panics_in_log, percentile};
use soak::{NodeStore, Slot, Soak, Tally, Vantage, bare, detach, list_endpoints, sorted};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use trellis_proto::v1 as pb;
use trellis_store::RedbStore;
use trellis_testlab::cluster::{CONTROLLER_IP, ClusterLab, HOST_IPS};
use trellis_testlab::seed::EXTERNAL_IP;
use trellis_testlab::{Netns, require_root};

const PORT: u16 = 7443;
const NODES: usize = 3;
/// Containers per node, and clients per node sharing them out.
const PER_NODE: usize = 8;
const CLIENTS_PER_NODE: usize = 2;
const PODS_POOL: &str = "10.244.0.0/16";
const BLOCK_LEN: u32 = 30;

#[derive(Debug, Clone, Copy)]
struct Form {
    name: &'static str,
    ops: usize,
    kills: usize,
    controller_kills: usize,
    within: Duration,
}

fn form() -> Form {
    soak::form(
        Form {
            name: "short",
            ops: 300,
            kills: 30,
            controller_kills: 8,
            within: Duration::from_secs(4 * 60),
        },
        Form {
            name: "long",
            ops: 3000,
            kills: 300,
            controller_kills: 80,
            within: Duration::from_secs(40 * 60),
        },
    )
}

/// The controller's kills, besides the soak's counts ([`Soak`]).
#[derive(Default)]
struct ControllerKills {
    kills: AtomicUsize,
    /// Invariant checks of the controller's store while it was down.
    checks: AtomicUsize,
}

/// A detached container's attach: to `pods` or `web` at random.
fn attach_request(slot: &Slot, rng: &mut fastrand::Rng) -> pb::AttachRequest {
    pb::AttachRequest {
        network: if rng.bool() { "pods" } else { "web" }.into(),
        container_id: slot.id.clone(),
        netns: slot.netns.clone(),
        ifname: "eth0".into(),
        ..Default::default()
    }
}

/// The lab, the controller and trellisd on each host.
struct Cluster {
    lab: ClusterLab,
    dir: KeptOnFailure,
    ctl: Daemon,
    nodes: Vec<Daemon>,
}

impl Cluster {
    fn start() -> Self {
        let lab = ClusterLab::build();
        let dir = KeptOnFailure::new("cluster-soak");
        let p = |s: &str| dir.path().join(s).display().to_string();
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
                "--insecure-tcp".into(),
                "--lease-ttl".into(),
                "3s".into(),
                "--grace".into(),
                "60s".into(),
            ],
            dir.path().join("ctl.sock"),
            dir.path().join("ctl.log"),
        );
        let trellisd = binary("TRELLISD_BIN", "trellisd");
        let nodes = (0..NODES)
            .map(|i| {
                let name = format!("h{}", i + 1);
                Daemon::start(
                    &lab.hosts[i],
                    &trellisd,
                    &[
                        "--node".into(),
                        name.clone(),
                        "--state-dir".into(),
                        p(&name),
                        "--socket".into(),
                        p(&format!("{name}.sock")),
                        "--controller".into(),
                        format!("http://{CONTROLLER_IP}:{PORT}"),
                        "--node-address".into(),
                        HOST_IPS[i].to_string(),
                        "--claim-ahead".into(),
                        "2".into(),
                        "--release-empty-after".into(),
                        "1".into(),
                    ],
                    dir.path().join(format!("{name}.sock")),
                    dir.path().join(format!("{name}.log")),
                )
            })
            .collect();
        Cluster {
            lab,
            dir,
            ctl,
            nodes,
        }
    }

    fn node_socket(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("h{}.sock", i + 1))
    }

    fn node_store(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("h{}/trellis.redb", i + 1))
    }

    fn controller_store(&self) -> PathBuf {
        self.dir.path().join("ctl/controller.redb")
    }

    fn logs(&self) -> Vec<PathBuf> {
        let mut logs = vec![self.dir.path().join("ctl.log")];
        logs.extend((0..NODES).map(|i| self.dir.path().join(format!("h{}.log", i + 1))));
        logs
    }
}

/// The killer: SIGKILL of the controller (one time in three) or a node at a
/// random moment, a pause, a restart, until told to stop (all left
/// running). The controller's store is checked each time it is down.
/// Returns the restart-to-serving times.
fn killer(c: &mut Cluster, sh: &Soak, ctl: &ControllerKills, seed: u64) -> Vec<Duration> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = c.controller_store();
    // 0: the controller; 1 + i: node i.
    let mut daemons: Vec<&mut Daemon> = std::iter::once(&mut c.ctl)
        .chain(c.nodes.iter_mut())
        .collect();
    soak::killer(
        sh,
        &mut daemons,
        seed,
        100..400,
        0..200,
        |rng| {
            (rng.u8(..3) != 0)
                .then(|| rng.usize(..NODES))
                .map_or(0, |i| 1 + i)
        },
        |target| {
            if target == 0 {
                ctl.kills.fetch_add(1, Ordering::SeqCst);
                let bad = rt.block_on(invariants(&store));
                ctl.checks.fetch_add(1, Ordering::SeqCst);
                if !bad.is_empty() {
                    sh.fail(format!(
                        "invariants broken after a controller crash: {bad:?}"
                    ));
                }
            }
        },
    )
}

/// The controller's store (the controller stopped) checked by the
/// invariant checker.
async fn invariants(path: &Path) -> Vec<String> {
    let store = RedbStore::open(path).expect("open the controller's store");
    trellis_cluster::check_invariants(&store).await.unwrap()
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[test]
fn nodes_and_controller_killed_at_random_keep_every_invariant_and_leak_nothing() {
    require_root();
    let form = form();
    let seed = soak::seed();
    eprintln!(
        "cluster soak, {} form: seed {seed} (TRELLIS_SOAK_SEED)",
        form.name
    );
    let rt = soak::runtime();
    let mut c = Cluster::start();
    let sockets: Vec<PathBuf> = (0..NODES).map(|i| c.node_socket(i)).collect();
    let mut agents: Vec<Retrying> = sockets.iter().map(|s| Retrying::new(s)).collect();
    rt.block_on(define(&c, &mut agents));
    let nets: Vec<Netns> = (0..NODES * PER_NODE)
        .map(|i| Netns::new(&format!("n{}c{}", i / PER_NODE + 1, i % PER_NODE)))
        .collect();
    let baseline: Vec<HostObjects> = c.lab.hosts.iter().map(HostObjects::read).collect();

    let sh = Arc::new(Soak::new());
    let ctl = ControllerKills::default();
    let started = Instant::now();
    let clients = (0..NODES * CLIENTS_PER_NODE)
        .map(|k| {
            let node = k / CLIENTS_PER_NODE;
            let mine: Vec<Slot> = (0..PER_NODE)
                .filter(|j| j % CLIENTS_PER_NODE == k % CLIENTS_PER_NODE)
                .map(|j| {
                    let i = node * PER_NODE + j;
                    Slot {
                        node,
                        i,
                        id: format!("n{}c{j}", node + 1),
                        netns: nets[i].path_str(),
                    }
                })
                .collect();
            (sockets[node].clone(), mine, seed + k as u64)
        })
        .collect();
    let tally = || {
        let ops = sh.ops.load(Ordering::SeqCst);
        let kills = sh.kills.load(Ordering::SeqCst);
        let n = ctl.kills.load(Ordering::SeqCst);
        let f = form;
        Tally {
            done: ops >= f.ops && kills >= f.kills && n >= f.controller_kills,
            of: format!(
                "{ops} of {} operations, {kills} of {} kills, {n} of {} of the controller",
                f.ops, f.kills, f.controller_kills
            ),
            now: format!("{ops} operations, {kills} kills ({n} of the controller)"),
        }
    };
    let (finals, retries, mut serving) = soak::run(
        &rt,
        &sh,
        clients,
        attach_request,
        || killer(&mut c, &sh, &ctl, seed ^ 0x5eed),
        soak::watch(&sh, started, form.within, tally),
    );
    let soaked = started.elapsed();
    let ops = sh.ops.load(Ordering::SeqCst);
    let kills = sh.kills.load(Ordering::SeqCst);
    let ctl_kills = ctl.kills.load(Ordering::SeqCst);
    let repeats = sh.repeats.load(Ordering::SeqCst);
    sh.print_soaked(
        soaked,
        &retries,
        &format!("{ctl_kills} of the controller; "),
    );
    sh.assert_no_failures(seed, || format!("logs:\n{}", tails(&c)));

    let attached = soak::attached(&finals);
    eprintln!(
        "{} of {} containers attached at the end: {:?}",
        attached.len(),
        nets.len(),
        attached
            .iter()
            .map(|(s, e)| format!("{} {}", s.id, e.network))
            .collect::<Vec<_>>()
    );
    rt.block_on(check_cluster(&c, &mut agents, &attached));
    for (i, (host, before)) in c.lab.hosts.iter().zip(&baseline).enumerate() {
        let mine: Vec<(&Slot, &pb::Endpoint)> = attached
            .iter()
            .filter(|(s, _)| s.node == i)
            .copied()
            .collect();
        check_host(host, before, &mine, i, &mut || {
            rt.block_on(held(&mut agents))
        });
    }
    soak::check_containers(&finals, &nets);
    let passed = soak::traffic(
        &finals,
        &nets,
        || c.lab.external_server(80),
        &Vantage {
            external: SocketAddr::new(IpAddr::V4(EXTERNAL_IP), 80),
            host: &|s| {
                (
                    &c.lab.hosts[s.node],
                    format!("h{}", s.node + 1),
                    HOST_IPS[s.node],
                )
            },
            neighbours: |s, n| n.node != s.node,
            pc: None,
        },
    );
    check_stores(&mut c, &rt, &attached);

    // Everything detached: nothing of any endpoint is left anywhere.
    rt.block_on(async {
        for (s, _) in &attached {
            detach(&mut agents[s.node], &s.id).await.unwrap();
        }
    });
    let blocks = rt.block_on(check_cluster(&c, &mut agents, &[]));
    for (i, (host, before)) in c.lab.hosts.iter().zip(&baseline).enumerate() {
        check_host(host, before, &[], i, &mut || rt.block_on(held(&mut agents)));
    }
    soak::check_containers(&soak::detached(&finals), &nets);
    check_stores(&mut c, &rt, &[]);
    for log in c.logs() {
        let panics = panics_in_log(&log);
        assert!(
            panics.is_empty(),
            "{} panicked:\n{}",
            log.display(),
            panics.join("\n")
        );
    }

    let took = started.elapsed();
    let p50 = percentile(&mut serving, 50);
    let p99 = percentile(&mut serving, 99);
    let checks = ctl.checks.load(Ordering::SeqCst);
    let claimed: usize = blocks.values().map(|h| h.pods.len()).sum();
    eprintln!(
        "cluster soak ({} form, seed {seed}): {ops} ops, {kills} kills ({ctl_kills} of the \
         controller, its store checked each time), {} cut-off calls retried (all answered), \
         {repeats} repeated calls answered alike, {passed} endpoints attached at the end pass \
         traffic, 0 leaks; {claimed} pods blocks held at the end; soak {soaked:.1?}, all \
         {took:.1?}; restart to serving p50 {p50:?}, p99 {p99:?}",
        form.name, retries.cut_off
    );
    trellis_testlab::report::record(
        "cluster",
        &format!(
            "SIGKILL of the controller and of trellisd on {NODES} nodes at random moments during \
             {ops} attach/detach calls by {} concurrent clients, /30 blocks ({kills} kills, \
             {ctl_kills} of the controller, {} form)",
            NODES * CLIENTS_PER_NODE,
            form.name
        ),
        &format!(
            "restarted each time (serving again after p50 {} ms, p99 {} ms); invariants held at \
             each of {checks} controller crashes and at the end; no address given twice; every \
             block a node holds is the controller's block of that node; {} cut-off calls sent \
             again and all answered, {repeats} repeated calls answered alike; every attach \
             answered had plumbed its container; {passed} endpoints pass traffic across nodes; \
             after detaching all, 0 veths, routes, nft elements, addresses or endpoint records \
             left; no panic",
            p50.as_millis(),
            p99.as_millis(),
            retries.cut_off
        ),
    );
}

/// The pools, the cluster network `pods` on every node, and each node's
/// `web` bridge network from the bridge pool.
async fn define(c: &Cluster, agents: &mut [Retrying]) {
    let mut ctl = c.ctl.controller().await;
    for (name, prefix, mode, block_size) in [
        ("pods-v4", PODS_POOL, pb::PoolMode::Routed, BLOCK_LEN),
        ("web-v4", "10.10.0.0/16", pb::PoolMode::Bridge, 0),
    ] {
        ctl.create_pool(pb::CreatePoolRequest {
            spec: Some(pb::PoolSpec {
                name: name.into(),
                prefix: prefix.into(),
                mode: mode.into(),
                outgoing_nat: true,
                block_size,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    }
    ctl.create_cluster_network(pb::CreateClusterNetworkRequest {
        spec: Some(pb::ClusterNetworkSpec {
            name: "pods".into(),
            pools: vec!["pods-v4".into()],
            mtu: 0,
        }),
    })
    .await
    .unwrap();
    for r in agents.iter_mut() {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let nets = r
                .call("list networks", |mut c| async move {
                    c.list_networks(pb::ListNetworksRequest {}).await
                })
                .await
                .unwrap();
            if nets
                .networks
                .iter()
                .any(|n| n.spec.as_ref().is_some_and(|s| s.name == "pods"))
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no cluster network pods on a node"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let req = pb::CreateNetworkRequest {
            spec: Some(pb::NetworkSpec {
                name: "web".into(),
                mode: pb::NetworkMode::Bridge.into(),
                bridge: "trweb0".into(),
                outgoing_nat: true,
                subnet_pool: "web-v4".into(),
                ..Default::default()
            }),
        };
        r.call("create web", |mut c| {
            let req = req.clone();
            async move { c.create_network(req).await }
        })
        .await
        .unwrap();
    }
}

/// The cluster-wide checks, every daemon up: each node ready with exactly
/// the endpoints `attached` says, no address twice, each in a block its node
/// holds, every held block the controller's block of that node and of no
/// other, the invariants and the controller's IPAM check clean. Polled a
/// while (nodes sync their blocks with the controller in the background).
/// Returns the blocks each node holds.
async fn check_cluster(
    c: &Cluster,
    agents: &mut [Retrying],
    attached: &[(&Slot, &pb::Endpoint)],
) -> BTreeMap<usize, Held> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ctl = c.ctl.controller().await;
    loop {
        let mut wrong = Vec::new();
        let mut held: BTreeMap<usize, Held> = BTreeMap::new();
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for (i, r) in agents.iter_mut().enumerate() {
            let status = r
                .call("status", |mut c| async move {
                    c.status(pb::StatusRequest {}).await
                })
                .await
                .unwrap();
            if !status.ready {
                wrong.push(format!("h{} not ready: {:?}", i + 1, status.reasons));
            }
            let listed = list_endpoints(r).await;
            let want = sorted(
                attached
                    .iter()
                    .filter(|(s, _)| s.node == i)
                    .map(|(_, e)| (*e).clone())
                    .collect(),
            );
            if listed != want {
                wrong.push(format!("h{} endpoints {listed:#?}, want {want:#?}", i + 1));
            }
            let blocks = held_blocks(r).await;
            let name = format!("h{}", i + 1);
            let given: BTreeSet<String> = ctl
                .list_blocks(pb::ListBlocksRequest {
                    node: name.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .blocks
                .into_iter()
                .map(|b| b.prefix)
                .collect();
            for b in &blocks {
                if !given.contains(&b.prefix) {
                    wrong.push(format!(
                        "{name} holds {} ({}), which the controller does not give it",
                        b.prefix, b.pool
                    ));
                }
                if b.frozen {
                    wrong.push(format!("{name}'s block {} is frozen", b.prefix));
                }
            }
            let mine = Held::of(&blocks);
            for ep in &listed {
                let ip: IpAddr = bare(&ep.addresses[0]).parse().unwrap();
                if let Some(other) = seen.insert(ip.to_string(), ep.container_id.clone()) {
                    wrong.push(format!("address {ip} on {other} and {}", ep.container_id));
                }
                let inside = blocks.iter().any(|b| {
                    b.prefix
                        .parse::<ipnet::IpNet>()
                        .is_ok_and(|n| n.contains(&ip))
                });
                if !inside {
                    wrong.push(format!(
                        "{name}: {} has {ip}, in no block {name} holds",
                        ep.container_id
                    ));
                }
            }
            held.insert(i, mine);
        }
        let all: Vec<&String> = held.values().flat_map(|h| &h.all).collect();
        let distinct: BTreeSet<&String> = all.iter().copied().collect();
        if distinct.len() != all.len() {
            wrong.push(format!("a block held by two nodes: {held:?}"));
        }
        let problems = ctl
            .check_ipam(pb::CheckIpamRequest {})
            .await
            .unwrap()
            .into_inner()
            .problems;
        if !problems.is_empty() {
            wrong.push(format!("the controller's IPAM check: {problems:#?}"));
        }
        if wrong.is_empty() {
            return held;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster after the soak:\n{}\n{}",
            wrong.join("\n"),
            tails(c)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The blocks a node holds (its own IPAM's, as `ListHeldBlocks` answers):
/// of the routed pool, and of every pool (a bridge network's subnet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Held {
    pods: BTreeSet<String>,
    all: BTreeSet<String>,
}

impl Held {
    fn of(blocks: &[pb::HeldBlock]) -> Self {
        Held {
            pods: blocks
                .iter()
                .filter(|b| b.pool == "pods-v4")
                .map(|b| b.prefix.clone())
                .collect(),
            all: blocks.iter().map(|b| b.prefix.clone()).collect(),
        }
    }
}

/// What each node holds now.
async fn held(agents: &mut [Retrying]) -> BTreeMap<usize, Held> {
    let mut out = BTreeMap::new();
    for (i, r) in agents.iter_mut().enumerate() {
        out.insert(i, Held::of(&held_blocks(r).await));
    }
    out
}

/// The blocks a node's IPAM holds.
async fn held_blocks(r: &mut Retrying) -> Vec<pb::HeldBlock> {
    r.call("held blocks", |mut c| async move {
        c.list_held_blocks(pb::ListHeldBlocksRequest {}).await
    })
    .await
    .unwrap()
    .blocks
}

/// Host `i` holds exactly what its `attached` endpoints need beside
/// `baseline`: their veths, their /32 routes, a blackhole for each block of
/// the routed pool it holds, a route to each other node's blocks (and
/// bridge subnets) via that node; its nft elements as before the soak.
/// Polled a while, with the blocks read afresh each time (`blocks`): nodes
/// give back blocks empty for a second, and sync in the background.
fn check_host(
    host: &Netns,
    baseline: &HostObjects,
    attached: &[(&Slot, &pb::Endpoint)],
    i: usize,
    blocks: &mut dyn FnMut() -> BTreeMap<usize, Held>,
) {
    let (veths, routes) = soak::endpoint_objects(attached);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let blocks = blocks();
        let now = HostObjects::read(host);
        let blackholes: BTreeSet<String> = blocks[&i]
            .pods
            .iter()
            .map(|b| format!("blackhole {b}"))
            .collect();
        let peers: BTreeSet<String> = blocks
            .iter()
            .filter(|(j, _)| **j != i)
            .flat_map(|(j, h)| {
                h.all
                    .iter()
                    .map(move |b| format!("{b} via {}", HOST_IPS[*j]))
            })
            .collect();
        let mut wrong = soak::endpoint_objects_wrong(&now, &veths, &routes);
        let holes: BTreeSet<String> = now
            .routes
            .iter()
            .filter(|l| l.starts_with("blackhole"))
            .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
            .collect();
        if holes != blackholes {
            wrong.push(format!("blackholes {holes:?}, want {blackholes:?}"));
        }
        let vias: BTreeSet<String> = now
            .routes
            .iter()
            .filter(|l| l.contains(" via "))
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .collect();
        if vias != peers {
            wrong.push(format!("peer routes {vias:?}, want {peers:?}"));
        }
        if now.nft != baseline.nft {
            wrong.push(format!(
                "nft elements {:?}, were {:?}",
                now.nft, baseline.nft
            ));
        }
        if wrong.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "host h{} after the soak:\n{}\nroutes: {:#?}",
            i + 1,
            wrong.join("\n"),
            now.routes
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Each node's store, read after a SIGKILL, holds exactly `attached`'s
/// records and addresses of that node; the controller's store keeps its
/// invariants. Every daemon is started again.
fn check_stores(
    c: &mut Cluster,
    rt: &tokio::runtime::Runtime,
    attached: &[(&Slot, &pb::Endpoint)],
) {
    for i in 0..NODES {
        c.nodes[i].kill();
        let node = format!("h{}", i + 1);
        let stored = rt.block_on(NodeStore::read(&c.node_store(i), &node));
        let (want, want_allocations) =
            NodeStore::want(attached.iter().filter(|(s, _)| s.node == i));
        assert_eq!(stored.records, want, "{node}'s endpoint records");
        assert_eq!(
            stored.allocations, want_allocations,
            "{node}'s addresses in use"
        );
        c.nodes[i].start_again();
    }
    c.ctl.kill();
    let bad = rt.block_on(invariants(&c.controller_store()));
    assert!(bad.is_empty(), "invariants: {bad:?}");
    c.ctl.start_again();
}

/// The last lines of every daemon's log.
fn tails(c: &Cluster) -> String {
    let mut out = format!("--- controller:\n{}\n", c.ctl.log());
    for (i, n) in c.nodes.iter().enumerate() {
        out.push_str(&format!("--- h{}:\n{}\n", i + 1, n.log()));
    }
    out
}
