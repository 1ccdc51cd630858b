//! Periodic convergence, end to end: trellisd runs as a process in the seed
//! lab's host with `--reconcile-interval 1`, containers are attached to a
//! bridge network (with a published port) and a routed one, and what trellis
//! made is then removed behind its back with `ip` and `nft` — a veth, a
//! routed /32, the bridge's address, the bridge, a published port's element,
//! the whole nftables table — one at a time and then together. Each must
//! come back within a few intervals with traffic passing again, while the
//! daemon stays the same process; and a node at rest must see nothing
//! changed by the rounds in between.

mod daemons;
mod util;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use trellis_proto::v1 as pb;
use trellis_proto::v1::AgentClient;
use trellis_testlab::daemon::{Daemon, free_log};
use trellis_testlab::seed::{HOST_IP, SeedLab};
use trellis_testlab::{Netns, TcpServer, report, require_root, tcp_request};

/// The pause between two convergences the daemon is given.
const INTERVAL: Duration = Duration::from_secs(1);
/// How long a removed object may take to come back: a few intervals.
const WITHIN: Duration = Duration::from_secs(8);
const BRIDGE: &str = "trcvweb";
const PUBLISHED: u16 = 8091;
/// The line trellisd logs when a periodic convergence changed something.
const CONVERGED: &str = "converged: the node had drifted";
/// Where trellisd serves metrics, inside the lab's host.
const METRICS: &str = "127.0.0.1:9464";

/// The value of `series` in trellisd's metrics, scraped from inside `ns`.
fn metric(ns: &Netns, series: &str) -> Option<f64> {
    let reply = ns.enter(|| {
        let mut s = std::net::TcpStream::connect(METRICS).expect("connect to metrics");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: trellisd\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).expect("read metrics");
        reply
    });
    reply
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().expect("a number"))
}

/// trellisd in the lab's host, converging every [`INTERVAL`].
fn start(host: &Netns, dir: &Path) -> Daemon {
    let bin = daemons::binary("TRELLISD_BIN", "trellisd");
    let socket = dir.join("trellisd.sock");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", host.name()])
        .arg(bin)
        .args(["--node", "cv1", "--reconcile-interval", "1"])
        .args(["--metrics-addr", METRICS])
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--socket")
        .arg(&socket)
        .env("RUST_LOG", "info");
    let mut d = Daemon::spawn("trellisd", cmd, socket, free_log(dir, "trellisd"));
    d.wait_ready();
    d
}

/// The attached endpoints and the servers behind them.
struct Lab {
    lab: SeedLab,
    c1: Netns,
    p1: Netns,
    p2: Netns,
    /// c1's endpoint (bridge network, port [`PUBLISHED`] published).
    web: pb::Endpoint,
    /// p2's endpoint (routed network).
    pod: pb::Endpoint,
}

impl Lab {
    fn web_addr(&self) -> IpAddr {
        first_addr(&self.web)
    }

    fn pod_addr(&self) -> IpAddr {
        first_addr(&self.pod)
    }

    /// Traffic through the published port (from the PC), host to the
    /// bridge container, and pod to pod: each must pass, within a few tries
    /// (neighbours are learnt anew after a veth is made again).
    fn traffic_passes(&self) -> Duration {
        let started = Instant::now();
        let published = SocketAddr::new(HOST_IP.into(), PUBLISHED);
        let web = SocketAddr::new(self.web_addr(), 80);
        let pod = SocketAddr::new(self.pod_addr(), 80);
        for (what, from, to, tag) in [
            ("published port", &self.lab.pc, published, "c1 "),
            ("host to the bridge container", &self.lab.host, web, "c1 "),
            ("pod to pod", &self.p1, pod, "p2 "),
        ] {
            let mut last = None;
            for _ in 0..5 {
                match tcp_request(from, to) {
                    Ok(reply) if reply.starts_with(tag) => {
                        last = None;
                        break;
                    }
                    other => last = Some(other),
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            if let Some(last) = last {
                panic!("{what} ({to}) does not pass: {last:?}");
            }
        }
        started.elapsed()
    }
}

fn first_addr(ep: &pb::Endpoint) -> IpAddr {
    let a = ep.addresses[0].split('/').next().unwrap();
    a.parse().unwrap()
}

async fn create(agent: &mut AgentClient<Channel>, spec: pb::NetworkSpec) {
    let name = spec.name.clone();
    let req = pb::CreateNetworkRequest { spec: Some(spec) };
    let e = agent.create_network(req).await;
    e.unwrap_or_else(|s| panic!("create {name}: {s}"));
}

async fn attach(
    agent: &mut AgentClient<Channel>,
    network: &str,
    ns: &Netns,
    ports: Vec<pb::PortMapping>,
) -> pb::Endpoint {
    let req = pb::AttachRequest {
        network: network.into(),
        container_id: ns.name().into(),
        netns: ns.path_str(),
        ports,
        ..Default::default()
    };
    let ep = agent.attach(req).await;
    ep.unwrap_or_else(|s| panic!("attach {}: {s}", ns.name()))
        .into_inner()
}

/// Whether `argv` run in `ns` succeeds and prints `needle`.
fn shows(ns: &Netns, argv: &[&str], needle: &str) -> bool {
    let out = ns.exec(argv);
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains(needle)
}

/// One fault: what is done behind trellis's back, and how to see it undone.
struct Fault<'a> {
    what: String,
    /// What convergence does about it.
    undone: &'static str,
    inject: Box<dyn Fn() + 'a>,
    back: Box<dyn Fn() -> bool + 'a>,
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[test]
fn objects_removed_behind_trellisds_back_are_put_back_without_a_restart() {
    require_root();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let lab = SeedLab::build();
    let dir = tempfile::tempdir().unwrap();
    let mut d = start(&lab.host, dir.path());
    let pid = d.pid();
    let (c1, p1, p2) = (Netns::new("cvc1"), Netns::new("cvp1"), Netns::new("cvp2"));
    // A container that dies without a detach: its namespace goes.
    let c2 = Netns::new("cvc2");
    let c2_id = c2.name().to_owned();
    let (web, pod) = rt.block_on(async {
        let mut agent = trellis_proto::connect_unix(&d.socket).await.unwrap();
        let bridge = pb::NetworkSpec {
            name: "web".into(),
            mode: pb::NetworkMode::Bridge.into(),
            subnets: vec!["192.168.181.0/24".into()],
            bridge: BRIDGE.into(),
            outgoing_nat: true,
            ..Default::default()
        };
        create(&mut agent, bridge).await;
        let routed = pb::NetworkSpec {
            name: "pods".into(),
            mode: pb::NetworkMode::Routed.into(),
            subnets: vec!["10.245.0.0/16".into()],
            outgoing_nat: true,
            ..Default::default()
        };
        create(&mut agent, routed).await;
        let port = pb::PortMapping {
            protocol: pb::Protocol::Tcp.into(),
            host_port: PUBLISHED.into(),
            container_port: 80,
            ..Default::default()
        };
        let web = attach(&mut agent, "web", &c1, vec![port]).await;
        attach(&mut agent, "web", &c2, Vec::new()).await;
        attach(&mut agent, "pods", &p1, Vec::new()).await;
        let pod = attach(&mut agent, "pods", &p2, Vec::new()).await;
        (web, pod)
    });
    let lab = Lab {
        lab,
        c1,
        p1,
        p2,
        web,
        pod,
    };
    let _c1 = TcpServer::start(&lab.c1, SocketAddr::new(lab.web_addr(), 80), "c1");
    let _p2 = TcpServer::start(&lab.p2, SocketAddr::new(lab.pod_addr(), 80), "p2");
    lab.traffic_passes();

    // At rest, the rounds change nothing: no veth made again, no element
    // rewritten (a convergence that churned would break traffic every
    // interval).
    std::thread::sleep(INTERVAL * 3);
    assert!(
        !d.log().contains(CONVERGED),
        "rounds at rest changed something:\n{}",
        d.log()
    );

    let host = &lab.lab.host;
    let (web_veth, pod_veth) = (lab.web.host_ifname.clone(), lab.pod.host_ifname.clone());
    let (web_addr, pod_addr) = (lab.web.addresses[0].clone(), lab.pod_addr());
    let pod_route = format!("{pod_addr}/32");
    let veth_back = || {
        shows(
            host,
            &["ip", "-o", "link", "show", "dev", &web_veth],
            &format!("master {BRIDGE}"),
        ) && shows(
            &lab.c1,
            &["ip", "-o", "addr", "show", "dev", "eth0"],
            &web_addr,
        )
    };
    let route_back = || {
        shows(
            host,
            &["ip", "route", "show", &pod_route, "proto", "116"],
            &pod_veth,
        )
    };
    let gateway_back = || {
        shows(
            host,
            &["ip", "-o", "addr", "show", "dev", BRIDGE],
            "192.168.181.1/24",
        )
    };
    let element = format!("tcp . {PUBLISHED}");
    let element_back = || {
        shows(
            host,
            &["nft", "list", "map", "inet", "trellis", "ports4"],
            &element,
        )
    };
    let c2 = std::sync::Mutex::new(Some(c2));
    let socket = d.socket.clone();
    let forgotten = || {
        rt.block_on(async {
            let mut agent = trellis_proto::connect_unix(&socket).await.unwrap();
            let req = pb::GetEndpointRequest {
                container_id: c2_id.clone(),
                ifname: "eth0".into(),
            };
            match agent.get_endpoint(req).await {
                Err(s) => s.code() == tonic::Code::NotFound,
                Ok(_) => false,
            }
        })
    };
    let faults = [
        Fault {
            undone: "detached (record gone, GetEndpoint NOT_FOUND)",
            what: "an attached container's network namespace deleted (`ip netns del`) without a detach, as when a container dies unseen".into(),
            inject: Box::new(|| drop(c2.lock().unwrap().take())),
            back: Box::new(forgotten),
        },
        Fault {
            undone: "put back",
            what: "host-side veth (tr…) of an attached bridge container (published port) deleted with `ip link del`, which takes the container's eth0 with it".into(),
            inject: Box::new(|| {
                host.ip(&format!("link del {web_veth}"));
            }),
            back: Box::new(veth_back),
        },
        Fault {
            undone: "put back",
            what: format!("routed container's host route {pod_route} deleted with `ip route del`"),
            inject: Box::new(|| {
                host.ip(&format!("route del {pod_route} dev {pod_veth}"));
            }),
            back: Box::new(route_back),
        },
        Fault {
            undone: "put back",
            what: format!("bridge {BRIDGE}'s gateway address flushed with `ip addr flush`"),
            inject: Box::new(|| {
                host.ip(&format!("addr flush dev {BRIDGE}"));
            }),
            back: Box::new(gateway_back),
        },
        Fault {
            undone: "put back",
            what: format!(
                "bridge {BRIDGE} deleted with `ip link del` (its container's veth falls off it)"
            ),
            inject: Box::new(|| {
                host.ip(&format!("link del {BRIDGE}"));
            }),
            back: Box::new(|| gateway_back() && veth_back()),
        },
        Fault {
            undone: "put back",
            what: format!(
                "published port's nftables element `{element}` deleted from map inet trellis ports4 with `nft delete element`"
            ),
            inject: Box::new(|| {
                let elem = format!("{{ {element} }}");
                host.exec_ok(&[
                    "nft", "delete", "element", "inet", "trellis", "ports4", &elem,
                ]);
            }),
            back: Box::new(element_back),
        },
        Fault {
            undone: "put back",
            what: "the whole `inet trellis` nftables table deleted with `nft delete table`".into(),
            inject: Box::new(|| {
                host.exec_ok(&["nft", "delete", "table", "inet", "trellis"]);
            }),
            back: Box::new(element_back),
        },
        Fault {
            undone: "put back",
            what: format!(
                "all at once: a container's host-side veth deleted, route {pod_route} deleted, the `inet trellis` table deleted, bridge {BRIDGE}'s address flushed"
            ),
            inject: Box::new(|| {
                host.ip(&format!("link del {web_veth}"));
                host.ip(&format!("route del {pod_route} dev {pod_veth}"));
                host.exec_ok(&["nft", "delete", "table", "inet", "trellis"]);
                host.ip(&format!("addr flush dev {BRIDGE}"));
            }),
            back: Box::new(|| veth_back() && route_back() && gateway_back() && element_back()),
        },
    ];

    for fault in &faults {
        let logged = d.log().matches(CONVERGED).count();
        let started = Instant::now();
        (fault.inject)();
        // The commands above fail loudly if there was nothing to remove;
        // a round that runs at this very moment may put it back before
        // this first look, so that is told, not asserted.
        let seen_gone = !(fault.back)();
        let back = loop {
            if (fault.back)() {
                break started.elapsed();
            }
            assert!(
                started.elapsed() < WITHIN,
                "{}: not put back within {WITHIN:?}:\n{}",
                fault.what,
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let traffic = lab.traffic_passes();
        // The same process throughout: it never exited (nothing restarts it).
        assert_eq!(d.try_wait(), None, "trellisd exited:\n{}", d.log());
        // The daemon says what it put back.
        let said = loop {
            let log = d.log();
            if log.matches(CONVERGED).count() > logged {
                break log
                    .lines()
                    .rfind(|l| l.contains(CONVERGED))
                    .unwrap()
                    .to_owned();
            }
            assert!(started.elapsed() < WITHIN, "no {CONVERGED:?} line:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        };
        println!(
            "{}: back in {back:?} (seen gone: {seen_gone})\n  {said}",
            fault.what
        );
        let seen = if seen_gone {
            format!("seen gone at once, then {}", fault.undone)
        } else {
            format!("{} (by a round that ran at once)", fault.undone)
        };
        report::record(
            "trellisd",
            &fault.what,
            &format!(
                "{seen} within {:.1} s by periodic convergence (interval 1 s; logged at info); traffic (published port, host to container, pod to pod) passes again {} ms later; same process (pid {pid}, never exited)",
                back.as_secs_f64(),
                traffic.as_millis(),
            ),
        );
    }

    // Counted: the dead container detached, at least one object repaired
    // for every other fault, nothing failed.
    let series = |action| format!("trellis_reconcile_objects_total{{action=\"{action}\"}}");
    let count = |action| metric(host, &series(action));
    let repaired = count("repaired").expect("the repaired series");
    assert!(repaired >= (faults.len() - 1) as f64, "{repaired} repaired");
    assert_eq!(count("detached"), Some(1.0));
    assert_eq!(count("failed"), Some(0.0));

    // Nothing is left wrong: every endpoint checks clean.
    rt.block_on(async {
        let mut agent = trellis_proto::connect_unix(&d.socket).await.unwrap();
        for ep in [&lab.web, &lab.pod] {
            let req = pb::CheckRequest {
                container_id: ep.container_id.clone(),
                ifname: ep.ifname.clone(),
            };
            let check = agent.check(req).await.unwrap().into_inner();
            assert!(check.ok, "{}: {:?}", ep.container_id, check.problems);
        }
    });
    assert_eq!(d.try_wait(), None, "trellisd exited:\n{}", d.log());
}

/// Network definitions made and deleted while convergence rounds run back
/// to back (an in-process agent, as trellisd's loop runs it): no round may
/// put back a bridge a deletion just took (a bridge no record explains is
/// never removed, and would refuse the next network of that name) or take
/// the nftables elements a creation just made.
#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networks_made_and_deleted_during_rounds_are_left_as_their_calls_left_them() {
    require_root();
    let host = Netns::new("cvrh");
    let agent = std::sync::Arc::new(util::agent_in(&host).await);
    agent.reconcile().await.unwrap();
    // A network that stays, so the table stays between the others.
    let spec = util::bridge_spec("keep", "192.168.182.0/24", "trkeep");
    agent.create_network(spec).await.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rounds = {
        let (agent, stop) = (agent.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                agent.reconcile().await.unwrap();
                n += 1;
            }
            n
        })
    };
    const CYCLES: usize = 150;
    let mut missing = 0;
    for i in 0..CYCLES {
        let spec = util::bridge_spec("churn", "192.168.183.0/24", "trchurn");
        agent
            .create_network(spec)
            .await
            .unwrap_or_else(|e| panic!("cycle {i}: create: {e}"));
        let table = host.exec_ok(&["nft", "list", "table", "inet", "trellis"]);
        if !table.contains("trchurn") {
            missing += 1;
        }
        agent.delete_network("churn").await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = rounds.await.unwrap();
    // A round still under way when the last deletion ended has finished.
    agent.reconcile().await.unwrap();
    let leaked = host.exec(&["ip", "link", "show", "dev", "trchurn"]);
    assert!(
        !leaked.status.success(),
        "bridge trchurn outlived its network ({rounds} rounds, {CYCLES} cycles)"
    );
    let table = host.exec_ok(&["nft", "list", "table", "inet", "trellis"]);
    assert!(!table.contains("trchurn"), "{table}");
    assert_eq!(missing, 0, "created networks found without their elements");
    println!(
        "{CYCLES} create/delete cycles beside {rounds} convergence rounds: nothing left behind"
    );
    report::record(
        "trellisd",
        &format!(
            "a bridge network created and deleted {CYCLES} times while convergence rounds run back to back (network changes racing periodic convergence)"
        ),
        &format!(
            "{rounds} rounds ran beside them; every created network had its nftables elements, no bridge outlived its network, every re-create succeeded (before rounds were serialised with network changes, a round made a deleted bridge again and cycle 17's create was refused)"
        ),
    );
}
