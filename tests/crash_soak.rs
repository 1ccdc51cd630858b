//! Crash soak of a standalone trellisd (issue 15, item 1): concurrent
//! clients attach and detach containers while trellisd is killed with
//! SIGKILL at random moments and restarted each time; afterwards nothing
//! has leaked and everything attached works.
//!
//! The lab is the seed's (a host, its upstream router with the "internet"
//! server, a PC) with 24 container namespaces. trellisd on the host serves
//! two networks: `web`, a bridge with masquerade, and `pods`, routed with
//! outgoing NAT. Four clients each own six containers (so the state they
//! should leave is known exactly) and toggle them at random: a detached one
//! is attached to either network (on `web`, half the time with a published
//! port), an attached one detached; one call in ten is repeated once
//! answered, and must be answered alike. Meanwhile a killer SIGKILLs
//! trellisd 50–350 ms after each restart and starts it again after a pause
//! of up to 100 ms, until both the operations and the kills are done.
//!
//! A call that is cut off (the connection lost under it, the socket refusing
//! while the daemon is down, UNAVAILABLE) is sent again — the same request —
//! after reconnecting, until it is answered; any other answer fails the
//! soak. So every retry of a call that was cut off must succeed: attach and
//! detach are idempotent across crashes. An attach answered means plumbed:
//! at once, the container must have its `eth0`, up, with the address
//! answered; and no address may be answered to two containers at a time.
//!
//! Afterwards, with trellisd ready again:
//! - its endpoints are exactly what the clients were last answered;
//! - the host holds exactly their veths, their routes (/32s of `pods`) and
//!   their published ports' nftables elements, the network's own elements
//!   unchanged; each container namespace exactly its `eth0` or nothing;
//! - every attached endpoint passes traffic: from the host, to the internet
//!   (masqueraded), to its neighbour on the same network, and through its
//!   published port from the PC;
//! - its store, read after one more SIGKILL, holds exactly their records and
//!   addresses (every answered call was durable);
//! - then everything is detached, and the host, the containers and the store
//!   are left with nothing of any endpoint;
//! - no panic in the daemon's log.
//!
//! Two forms, both bounded in time (the soak runs until both counts are
//! reached):
//! - **short** (default; scripts/test runs it): ≥ 1000 operations and ≥ 50
//!   kills, about 20 s, failing after 4 minutes;
//! - **long** (on demand): `TRELLIS_SOAK=long` — ≥ 10000 operations and ≥
//!   500 kills, a few minutes, failing after 40 minutes:
//!   `TRELLIS_SOAK=long cargo test -p trellis-tests --features privileged
//!   --test crash_soak -- --nocapture`.
//!
//! `TRELLIS_SOAK_SEED=<n>` replays a run's random choices (the seed is
//! printed; the timing of kills against calls still varies);
//! `TRELLIS_KEEP_LOGS=1` keeps the daemon's log and state (kept anyway on a
//! failure). The figures (operations, kills, retries, time,
//! restart-to-serving p50/p99) are printed at the end and recorded in the
//! robustness report.
//!
//! The clients, the killer, the watch and the checks of containers, traffic
//! and stores are tests/soak.rs's, shared with tests/cluster_soak.rs.

mod daemons;
mod soak;

use daemons::{Daemon, HostObjects, KeptOnFailure, Retrying, binary, panics_in_log, percentile};
use soak::{NodeStore, Slot, Soak, Tally, Vantage, bare, detach, list_endpoints, sorted};
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use trellis_proto::v1 as pb;
use trellis_testlab::Netns;
use trellis_testlab::require_root;
use trellis_testlab::seed::{EXTERNAL_IP, HOST_IP, SeedLab};

/// The node's name.
const NODE: &str = "soak";
/// Container namespaces, and the clients that share them out.
const CONTAINERS: usize = 24;
const CLIENTS: usize = 4;
/// The bridge network's subnet and the routed network's pool.
const WEB_SUBNET: &str = "192.168.201.0/24";
const PODS_POOL: &str = "10.248.0.0/16";
/// Container `i` publishes `PORT_BASE + i` → 80 when it asks to.
const PORT_BASE: u16 = 30000;

/// How much soaking: operations, kills, and how long it may take.
#[derive(Debug, Clone, Copy)]
struct Form {
    name: &'static str,
    ops: usize,
    kills: usize,
    within: Duration,
}

fn form() -> Form {
    soak::form(
        Form {
            name: "short",
            ops: 1000,
            kills: 50,
            within: Duration::from_secs(4 * 60),
        },
        Form {
            name: "long",
            ops: 10_000,
            kills: 500,
            within: Duration::from_secs(40 * 60),
        },
    )
}

/// A detached container's attach: to `web` or `pods` at random, on `web`
/// half the time publishing its port.
fn attach_request(slot: &Slot, rng: &mut fastrand::Rng) -> pb::AttachRequest {
    let web = rng.bool();
    let publish = rng.bool();
    let ports = if web && publish {
        vec![pb::PortMapping {
            protocol: pb::Protocol::Tcp.into(),
            host_port: u32::from(PORT_BASE) + slot.i as u32,
            container_port: 80,
            ..Default::default()
        }]
    } else {
        Vec::new()
    };
    pb::AttachRequest {
        network: if web { "web" } else { "pods" }.into(),
        container_id: slot.id.clone(),
        netns: slot.netns.clone(),
        ifname: "eth0".into(),
        ports,
        ..Default::default()
    }
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[test]
fn trellisd_killed_at_random_during_concurrent_attaches_leaks_nothing() {
    require_root();
    let form = form();
    let seed = soak::seed();
    eprintln!(
        "crash soak, {} form: seed {seed} (TRELLIS_SOAK_SEED)",
        form.name
    );
    let rt = soak::runtime();
    let lab = SeedLab::build();
    let dir = KeptOnFailure::new("crash-soak");
    let p = |s: &str| dir.path().join(s);
    let (socket, log, state) = (p("trellisd.sock"), p("trellisd.log"), p("state"));
    let mut d = Daemon::start(
        &lab.host,
        &binary("TRELLISD_BIN", "trellisd"),
        &[
            "--node".into(),
            NODE.into(),
            "--state-dir".into(),
            state.display().to_string(),
            "--socket".into(),
            socket.display().to_string(),
        ],
        socket.clone(),
        log.clone(),
    );
    let nets: Vec<Netns> = (0..CONTAINERS)
        .map(|i| Netns::new(&format!("k{i}")))
        .collect();
    let mut r = Retrying::new(&socket);
    rt.block_on(async {
        wait_ready(&mut r).await;
        for spec in [
            pb::NetworkSpec {
                name: "web".into(),
                mode: pb::NetworkMode::Bridge.into(),
                subnets: vec![WEB_SUBNET.into()],
                bridge: "trsoak0".into(),
                outgoing_nat: true,
                ..Default::default()
            },
            pb::NetworkSpec {
                name: "pods".into(),
                mode: pb::NetworkMode::Routed.into(),
                subnets: vec![PODS_POOL.into()],
                outgoing_nat: true,
                ..Default::default()
            },
        ] {
            let req = pb::CreateNetworkRequest { spec: Some(spec) };
            r.call("create network", |mut c| {
                let req = req.clone();
                async move { c.create_network(req).await }
            })
            .await
            .unwrap();
        }
    });
    // What the networks alone hold: the soak's endpoints come and go on top.
    let baseline = HostObjects::read(&lab.host);
    assert!(baseline.veths.is_empty() && baseline.host_routes().is_empty());

    let sh = Arc::new(Soak::new());
    let started = Instant::now();
    let clients = (0..CLIENTS)
        .map(|c| {
            let mine: Vec<Slot> = (0..CONTAINERS)
                .filter(|i| i % CLIENTS == c)
                .map(|i| Slot {
                    node: 0,
                    i,
                    id: format!("c{i}"),
                    netns: nets[i].path_str(),
                })
                .collect();
            (socket.clone(), mine, seed + c as u64)
        })
        .collect();
    let tally = || {
        let (ops, kills) = (
            sh.ops.load(Ordering::SeqCst),
            sh.kills.load(Ordering::SeqCst),
        );
        Tally {
            done: ops >= form.ops && kills >= form.kills,
            of: format!(
                "{ops} of {} operations, {kills} of {} kills",
                form.ops, form.kills
            ),
            now: format!("{ops} operations, {kills} kills"),
        }
    };
    let (finals, retries, mut serving) = soak::run(
        &rt,
        &sh,
        clients,
        attach_request,
        || {
            soak::killer(
                &sh,
                &mut [&mut d],
                seed ^ 0x5eed,
                50..350,
                0..100,
                |_| 0,
                |_| (),
            )
        },
        soak::watch(&sh, started, form.within, tally),
    );
    let soaked = started.elapsed();
    let (ops, kills) = (
        sh.ops.load(Ordering::SeqCst),
        sh.kills.load(Ordering::SeqCst),
    );
    let repeats = sh.repeats.load(Ordering::SeqCst);
    sh.print_soaked(soaked, &retries, "");
    sh.assert_no_failures(seed, || format!("trellisd log:\n{}", d.log()));
    assert!(
        ops >= form.ops && kills >= form.kills,
        "{ops} ops, {kills} kills"
    );

    // The end state, with trellisd ready again.
    let attached = soak::attached(&finals);
    eprintln!(
        "{} of {CONTAINERS} containers attached at the end",
        attached.len()
    );
    rt.block_on(async {
        wait_ready(&mut r).await;
        let listed = list_endpoints(&mut r).await;
        let want: Vec<pb::Endpoint> = sorted(attached.iter().map(|(_, e)| (*e).clone()).collect());
        assert_eq!(
            listed, want,
            "trellisd's endpoints are not what the clients were answered"
        );
    });
    check_host(&lab.host, &baseline, &attached);
    soak::check_containers(&finals, &nets);
    let passed = soak::traffic(
        &finals,
        &nets,
        || lab.external_server(80),
        &Vantage {
            external: SocketAddr::new(IpAddr::V4(EXTERNAL_IP), 80),
            host: &|_| (&lab.host, "host".into(), HOST_IP),
            neighbours: |_, _| true,
            pc: Some((&lab.pc, IpAddr::V4(trellis_testlab::seed::PC_IP))),
        },
    );
    // Every answer was durable: the store after one more crash.
    d.kill();
    let store_path = state.join("trellis.redb");
    let stored = Stored::of(rt.block_on(NodeStore::read(&store_path, NODE)));
    let (want_handles, want_allocations) = NodeStore::want(attached.iter());
    assert_eq!(
        stored.records, want_handles,
        "endpoint records in the store"
    );
    assert_eq!(
        stored.allocations, want_allocations,
        "addresses in use in the store"
    );
    check_blackholes(&lab.host, &stored);

    // Everything detached: nothing of any endpoint is left.
    d.start_again();
    rt.block_on(async {
        wait_ready(&mut r).await;
        for (s, _) in &attached {
            detach(&mut r, &s.id).await.unwrap();
        }
        assert!(list_endpoints(&mut r).await.is_empty());
    });
    check_host(&lab.host, &baseline, &[]);
    soak::check_containers(&soak::detached(&finals), &nets);
    d.kill();
    let after = Stored::of(rt.block_on(NodeStore::read(&store_path, NODE)));
    assert!(
        after.records.is_empty(),
        "endpoint records left: {:?}",
        after.records
    );
    assert!(
        after.allocations.is_empty(),
        "addresses left in use: {:?}",
        after.allocations
    );
    assert_eq!(
        after.others, stored.others,
        "the store's other keys changed"
    );
    check_blackholes(&lab.host, &after);
    let panics = panics_in_log(&log);
    assert!(
        panics.is_empty(),
        "trellisd panicked:\n{}",
        panics.join("\n")
    );

    let took = started.elapsed();
    let p50 = percentile(&mut serving, 50);
    let p99 = percentile(&mut serving, 99);
    eprintln!(
        "crash soak ({} form, seed {seed}): {ops} ops, {kills} kills, {} cut-off calls retried \
         (all answered), {repeats} repeated calls answered alike, {} endpoints attached at the \
         end pass traffic, 0 leaks; soak {soaked:.1?}, all {took:.1?}; restart to serving \
         p50 {p50:?}, p99 {p99:?}; routed blocks held at the end {:?}, store keys besides \
         endpoints and blocks: {:?}",
        form.name,
        retries.cut_off,
        attached.len(),
        after.routed_blocks,
        after.others
    );
    trellis_testlab::report::record(
        "trellisd",
        &format!(
            "SIGKILL at random moments during {ops} attach/detach calls by {CLIENTS} \
             concurrent clients on a bridge and a routed network ({kills} kills, {} form)",
            form.name
        ),
        &format!(
            "restarted each time (serving again after p50 {} ms, p99 {} ms); {} cut-off calls \
             sent again and all answered, {repeats} repeated calls answered alike; every \
             attach answered had plumbed its container; endpoints, store records and \
             addresses exactly the answered ones; {passed} endpoints attached at the end pass \
             traffic; after detaching all, 0 veths, routes, nft elements, addresses or \
             endpoint records left; no panic",
            p50.as_millis(),
            p99.as_millis(),
            retries.cut_off
        ),
    );
}

async fn wait_ready(r: &mut Retrying) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = r
            .call("status", |mut c| async move {
                c.status(pb::StatusRequest {}).await
            })
            .await
            .unwrap();
        if s.ready {
            return;
        }
        assert!(Instant::now() < deadline, "not ready: {:?}", s.reasons);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The host holds exactly what `attached` needs beside `baseline` (the
/// networks' own objects): their veths, the routed ones' /32 routes, their
/// published ports' elements; no retired veth waits. Polled a while: the
/// reaper deletes retired veths in batches.
fn check_host(host: &Netns, baseline: &HostObjects, attached: &[(&Slot, &pb::Endpoint)]) {
    let (veths, routes) = soak::endpoint_objects(attached);
    let ports: Vec<(u32, String)> = attached
        .iter()
        .flat_map(|(_, e)| e.ports.iter().map(|p| (p.host_port, bare(&e.addresses[0]))))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = HostObjects::read(host);
        let mut wrong = soak::endpoint_objects_wrong(&now, &veths, &routes);
        // Blackholes of the routed network's blocks are the network's.
        let others: Vec<&String> = now
            .routes
            .iter()
            .filter(|l| !l.starts_with("blackhole") && l.contains('/'))
            .collect();
        if !others.is_empty() {
            wrong.push(format!("other routes: {others:?}"));
        }
        for (set, elems) in &now.nft {
            let base = baseline.nft.get(set).cloned().unwrap_or_default();
            if set == "ports4" {
                let ok = elems.len() == base.len() + ports.len()
                    && ports.iter().all(|(port, ip)| {
                        elems.iter().any(|e| {
                            e.contains(&port.to_string()) && e.contains(&format!("\"{ip}\""))
                        })
                    });
                if !ok {
                    wrong.push(format!("ports4 {elems:?}, want {ports:?} beside {base:?}"));
                }
            } else if *elems != base {
                wrong.push(format!("nft set {set}: {elems:?}, was {base:?}"));
            }
        }
        if now.nft.keys().ne(baseline.nft.keys()) {
            wrong.push(format!(
                "nft sets {:?}, were {:?}",
                now.nft.keys(),
                baseline.nft.keys()
            ));
        }
        if wrong.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the host holds other than the {} attached endpoints need:\n{}\nroutes: {:#?}",
            attached.len(),
            wrong.join("\n"),
            now.routes
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What the store holds (read with trellisd stopped).
struct Stored {
    /// Endpoint records, by handle.
    records: BTreeSet<String>,
    /// Addresses in use, as `(handle, address)`.
    allocations: BTreeSet<(String, String)>,
    /// The blocks of the routed network's pool (`10.248.0.0/26`).
    routed_blocks: BTreeSet<String>,
    /// Every other key but the IPAM blocks (whose contents the addresses
    /// are).
    others: BTreeSet<String>,
}

impl Stored {
    /// The store as [`NodeStore::read`] read it, its other keys sorted out.
    fn of(st: NodeStore) -> Self {
        let mut routed_blocks = BTreeSet::new();
        let mut others = BTreeSet::new();
        for key in st.others {
            if let Some(b) = key.strip_prefix("ipam/blocks/pods.v4/") {
                routed_blocks.insert(b.replace('-', "/"));
            } else if !key.starts_with("ipam/blocks/") {
                others.insert(key);
            }
        }
        Stored {
            records: st.records,
            allocations: st.allocations,
            routed_blocks,
            others,
        }
    }
}

/// The host's blackholes are exactly the routed network's blocks the store
/// holds: none missing (an address of a block not handed out goes nowhere
/// else), none left of a block no longer held.
fn check_blackholes(host: &Netns, stored: &Stored) {
    let holes: BTreeSet<String> = HostObjects::read(host)
        .routes
        .iter()
        .filter_map(|l| l.strip_prefix("blackhole "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    assert_eq!(
        holes, stored.routed_blocks,
        "blackholes against the routed blocks held"
    );
}
