//! `trellis-lab bgp`: the seed's closing step — the physical network learns
//! where the containers live by BGP, and a PC outside reaches them directly.
//!
//! The cluster lab's machines (underlay, controller, router, PC) with two
//! hosts: trellis-controller hands out /26 blocks of the routed pool
//! `pods-v4` (outgoing NAT off: every packet keeps its true addresses), and
//! trellisd on h1 and h2 announces its blocks by BGP to BIRD 2 on the router,
//! which installs them in its kernel. The PC knows only its default route
//! (the router); nobody types a route to a container subnet. The lab then
//! shows BIRD's table and probes both ways: the PC's requests to a container
//! on each host must be seen from the PC's own address, and each container's
//! request to the PC from the container's own address.

use crate::cluster::api;
use crate::cluster::{SERVER_PORT, Stop, client_address, start_controller, start_nodes};
use crate::daemon::{self, Binaries, Daemon};
use anyhow::{Context, Result, anyhow, bail};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use trellis_proto::v1 as pb;
use trellis_testlab::cluster::{ClusterLab, HOST_IPS};
use trellis_testlab::routers::{Router, RouterConfig, RouterKind};
use trellis_testlab::seed::{PC_IP, ROUTER_IP};
use trellis_testlab::{Netns, TcpServer, require_root, tcp_request};

/// The nodes' AS (one private AS for the cluster, as Calico's default).
const NODE_AS: u32 = 64512;
/// The router's AS.
const ROUTER_AS: u32 = 65000;
/// How long BIRD gets to learn both hosts' blocks.
const LEARN_WITHIN: Duration = Duration::from_secs(30);

/// Everything the lab made, removed on drop: servers, containers, the
/// nodes' daemons, the controller, the router, the machines.
struct Lab {
    servers: Vec<TcpServer>,
    containers: Vec<(String, Netns, IpAddr)>,
    nodes: Vec<Daemon>,
    ctl: Option<Daemon>,
    router: Option<Router>,
    dir: tempfile::TempDir,
    net: ClusterLab,
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.servers.clear();
        self.containers.clear();
        daemon::stop_all(&mut self.nodes);
        self.ctl = None;
        self.router = None;
    }
}

/// One probe: who asked whom, and the address the server saw (or why not).
struct Probe {
    from: String,
    to: String,
    want: IpAddr,
    seen: Result<IpAddr, String>,
}

/// Runs the lab; with `check`, exits after the probes, else waits for a
/// signal first. An error if any probe was not as expected.
pub async fn run(check: bool) -> Result<()> {
    require_root();
    let bins = Binaries::find()?;
    let mut stop = Stop::install()?;
    println!(
        "building the BGP lab in namespaces: underlay, ctl, h1 {} and h2 {}, router {ROUTER_IP} (BIRD), pc {PC_IP}",
        HOST_IPS[0], HOST_IPS[1]
    );
    let mut lab = Lab {
        servers: Vec::new(),
        containers: Vec::new(),
        nodes: Vec::new(),
        ctl: None,
        router: None,
        net: ClusterLab::build(),
        dir: tempfile::Builder::new()
            .prefix("trellis-lab-")
            .tempdir()
            .context("a temporary directory")?,
    };
    let up = tokio::select! {
        biased;
        signal = stop.wait() => Err(signal),
        p = bring_up(&mut lab, &bins) => Ok(p),
    };
    let result = match up {
        Err(signal) => Err(anyhow!(
            "{signal} while the lab was being built: nothing checked"
        )),
        Ok(Err(e)) => {
            for d in lab.ctl.iter().chain(&lab.nodes) {
                let tail = d.log_tail();
                if !tail.is_empty() {
                    eprintln!("--- the end of {}'s log:\n{tail}", d.name);
                }
            }
            if let Some(r) = &lab.router {
                eprintln!("--- BIRD's log:\n{}", r.log());
            }
            Err(e)
        }
        Ok(Ok(probes)) => {
            let mut failed = Vec::new();
            println!("\nwho saw whom (the server's view of the client's address):");
            for p in &probes {
                let (seen, ok) = match &p.seen {
                    Ok(ip) => (ip.to_string(), *ip == p.want),
                    Err(e) => (format!("FAILED: {e}"), false),
                };
                let mark = if ok { "ok" } else { "NOT AS EXPECTED" };
                println!(
                    "  {:>3} → {:<3} seen as {seen:<15} (want {}) {mark}",
                    p.from, p.to, p.want
                );
                if !ok {
                    failed.push(format!("{} → {}", p.from, p.to));
                }
            }
            if !check {
                print_hints(&lab);
                let signal = stop.wait().await;
                println!("\n{signal}");
            }
            if failed.is_empty() {
                Ok(())
            } else {
                Err(anyhow!(
                    "{} of {} probes not as expected: {}",
                    failed.len(),
                    probes.len(),
                    failed.join(", ")
                ))
            }
        }
    };
    println!("removing the lab: stopping the daemons and BIRD, deleting the namespaces");
    drop(lab);
    println!("removed");
    result
}

fn node_config(i: usize) -> String {
    format!(
        "# h{}: announce this node's blocks to the router\n[bgp]\nasn = {NODE_AS}\nhold_time = 9\n\
         [[bgp.peers]]\naddress = \"{ROUTER_IP}\"\nasn = {ROUTER_AS}\n",
        i + 1
    )
}

async fn bring_up(lab: &mut Lab, bins: &Binaries) -> Result<Vec<Probe>> {
    let (ext, pc) = (&lab.net.ext, &lab.net.pc);
    ext.sysctl("net.ipv4.ip_forward", "1");
    pc.ip(&format!("route add default via {ROUTER_IP}"));
    let mut cfg = RouterConfig::new(RouterKind::Bird, ROUTER_IP, ROUTER_AS, ROUTER_IP.into())
        .neighbor_range("10.1.253.0/24".parse().expect("a prefix"), NODE_AS);
    cfg.install_kernel = true;
    lab.router = Some(Router::start(ext, cfg));
    println!(
        "router: BIRD 2, AS {ROUTER_AS}, accepts any node of 10.1.253.0/24 in AS {NODE_AS}, installs what it learns"
    );

    let dir = lab.dir.path().to_path_buf();
    lab.ctl = Some(start_controller(&lab.net.ctl, &dir, bins).await?);
    let ctl = lab.ctl.as_ref().expect("started").socket.clone();
    let mut ctl = pb::ControllerClient::new(trellis_proto::channel_unix(&ctl).await?);
    define(&mut ctl).await?;
    lab.nodes = start_nodes(&lab.net.hosts[..2], &dir, bins, node_config).await?;
    println!(
        "trellisd up on h1 and h2, joined to the controller, each peering with the router (AS {NODE_AS} → {ROUTER_AS})"
    );

    let mut agents = Vec::new();
    for node in &lab.nodes {
        agents.push(trellis_proto::connect_unix(&node.socket).await?);
    }
    for (i, agent) in agents.iter_mut().enumerate() {
        api::wait_for_pods(agent, i).await?;
        let name = format!("p{}", i + 1);
        let ns = Netns::new(&name);
        let addr = api::attach(agent, "pods", &name, &ns).await?;
        println!("h{}: container {name} on pods, {addr}", i + 1);
        lab.containers.push((name, ns, addr));
    }

    // BIRD learns each container's block from its host.
    let router = lab.router.as_ref().expect("started");
    let want: Vec<(IpAddr, IpAddr)> = lab
        .containers
        .iter()
        .enumerate()
        .map(|(i, (_, _, a))| (*a, IpAddr::V4(HOST_IPS[i])))
        .collect();
    let deadline = std::time::Instant::now() + LEARN_WITHIN;
    let learned = loop {
        let routes = router.routes();
        let all = want.iter().all(|(addr, via)| {
            routes
                .iter()
                .any(|r| r.prefix.contains(addr) && r.next_hop == *via && !r.stale)
        });
        if all {
            break routes;
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "BIRD did not learn every container's block in {LEARN_WITHIN:?}; it has: {routes:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("\nBIRD learned, by BGP:");
    for r in &learned {
        println!("  {r}");
    }
    println!(
        "router's kernel:\n{}",
        indent(&lab.net.ext.ip("route show proto bird"))
    );

    // Servers in each container and on the PC, then probes both ways.
    for (name, ns, addr) in &lab.containers {
        lab.servers.push(TcpServer::start(
            ns,
            SocketAddr::new(*addr, SERVER_PORT),
            name,
        ));
    }
    lab.servers.push(TcpServer::start(
        pc,
        SocketAddr::new(PC_IP.into(), SERVER_PORT),
        "pc",
    ));
    let mut probes = Vec::new();
    for (name, ns, addr) in &lab.containers {
        let to_c = SocketAddr::new(*addr, SERVER_PORT);
        probes.push(Probe {
            from: "pc".into(),
            to: name.clone(),
            want: PC_IP.into(),
            seen: seen(tcp_request(pc, to_c)),
        });
        probes.push(Probe {
            from: name.clone(),
            to: "pc".into(),
            want: *addr,
            seen: seen(tcp_request(ns, SocketAddr::new(PC_IP.into(), SERVER_PORT))),
        });
    }
    Ok(probes)
}

fn seen(r: std::io::Result<String>) -> Result<IpAddr, String> {
    r.map_err(|e| e.to_string())
        .and_then(|reply| client_address(&reply))
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The routed pool (outgoing NAT off: true addresses everywhere) and the
/// cluster network `pods`.
async fn define(ctl: &mut pb::ControllerClient<tonic::transport::Channel>) -> Result<()> {
    let spec = pb::PoolSpec {
        name: "pods-v4".into(),
        prefix: "10.244.0.0/16".into(),
        mode: pb::PoolMode::Routed.into(),
        outgoing_nat: false,
        ..Default::default()
    };
    ctl.create_pool(pb::CreatePoolRequest { spec: Some(spec) })
        .await
        .context("create pool pods-v4")?;
    let spec = pb::ClusterNetworkSpec {
        name: "pods".into(),
        pools: vec!["pods-v4".into()],
        mtu: 0,
    };
    ctl.create_cluster_network(pb::CreateClusterNetworkRequest { spec: Some(spec) })
        .await
        .context("create cluster network pods")?;
    println!(
        "controller: pool pods-v4 10.244.0.0/16 routed (/26 blocks, no outgoing NAT), cluster network pods"
    );
    Ok(())
}

fn print_hints(lab: &Lab) {
    let dir = lab.dir.path().display();
    println!("\nthe lab is up; Ctrl-C removes it. Meanwhile, as root:");
    if let Some(r) = &lab.router {
        println!(
            "  birdc -s {}/bird.ctl show route all   # what the router learned",
            r.dir().display()
        );
    }
    println!(
        "  ip -n {} route                        # the router's kernel",
        lab.net.ext.name()
    );
    println!("  netctl --socket {dir}/h1.sock bgp peers");
    println!("  daemon logs: {dir}/{{ctl,h1,h2}}.log");
}
