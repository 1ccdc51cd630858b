//! `trellis-lab bridge`: the seed's Docker section, built by trellis in network
//! namespaces, every path shown working with real traffic, then removed.
//!
//! trellis runs in-process here (the agent library on a memory store): the lab
//! shows the data path, not the daemon.

use anyhow::{Context, Result, ensure};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use trellis_agent::{Agent, AttachRequest, Backends, Endpoint, NetworkMode, NetworkSpec, PortSpec};
use trellis_store::MemoryStore;
use trellis_testlab::seed::{HOST_IP, PC_IP, SeedLab};
use trellis_testlab::{Netns, TcpServer, require_root, seen_ip, tcp_request};
use trellis_types::{ContainerId, IfName, NetnsPath, Protocol};

/// Builds the seed's lab, shows every path working, removes it.
pub async fn run() -> Result<()> {
    require_root();
    println!(
        "building the seed's lab in namespaces: underlay, host 10.1.253.101, router + external server 203.0.113.10, pc 10.1.253.103"
    );
    let lab = SeedLab::build();
    let host = NetnsPath::parse("netns", &lab.host.path_str())?;
    let agent = Agent::open(
        Backends::kernel(Some(&host), Arc::new(MemoryStore::new())).await?,
        "host",
    )
    .await?;
    let net = agent
        .create_network(NetworkSpec {
            subnet_pool: None,
            cluster_pools: Vec::new(),
            name: "seed".parse().unwrap(),
            subnets: vec!["192.168.169.0/24".parse()?],
            gateway: None,
            mode: NetworkMode::Bridge {
                bridge: IfName::parse("bridge", "docker0")?,
            },
            masquerade: true,
            mtu: None,
            internal: false,
            routable: false,
            reach: Vec::new(),
        })
        .await?;
    println!(
        "network seed: bridge docker0 {}/24, masquerade on",
        net.gateways[0]
    );
    let (c3, c4) = (Netns::new("c3"), Netns::new("c4"));
    let ep3 = attach(&agent, "c3", &c3, vec![]).await?;
    let ep4 = attach(
        &agent,
        "c4",
        &c4,
        vec![PortSpec::new(Protocol::Tcp, 8081, 80)?],
    )
    .await?;
    for ep in [&ep3, &ep4] {
        println!(
            "attached {}: {} mac {} host veth {} ports {:?}",
            ep.request.container,
            ep.addresses[0],
            ep.mac,
            ep.host_ifname,
            ep.ports.iter().map(ToString::to_string).collect::<Vec<_>>()
        );
    }
    println!("\nhost {}:\n{}", lab.host.name(), lab.host.ip("-br addr"));
    println!(
        "{}",
        lab.host
            .exec_ok(&["nft", "list", "table", "inet", "trellis"])
    );
    let ip4 = ep4.addresses[0].addr();
    let _web = TcpServer::start(&c4, SocketAddr::new(ip4, 80), "c4:80");
    let ext = lab.external_server(80);
    show(
        "c3 -> external server (SNAT: the server sees the host)",
        &c3,
        ext.addr(),
    )?;
    show(
        "pc -> host:8081 (DNAT to c4:80; c4 sees the pc)",
        &lab.pc,
        (HOST_IP, 8081).into(),
    )?;
    show("host -> its own :8081", &lab.host, (HOST_IP, 8081).into())?;
    show("c3 -> host:8081 (hairpin)", &c3, (HOST_IP, 8081).into())?;
    lab.pc_route_via_host("192.168.169.0/24");
    show(
        "pc with a static route -> c4:80 directly (no NAT)",
        &lab.pc,
        SocketAddr::new(ip4, 80),
    )?;
    show(
        "c3 -> c4:80 on the same bridge",
        &c3,
        SocketAddr::new(ip4, 80),
    )?;
    ensure!(seen_ip(&tcp_request(&lab.pc, (HOST_IP, 8081).into())?) == IpAddr::V4(PC_IP));

    for ep in [&ep3, &ep4] {
        agent
            .detach(&ep.request.container, &ep.request.ifname)
            .await?;
    }
    agent.delete_network("seed").await?;
    let left = lab.host.ip("-br link");
    println!("\nremoved: endpoints, network, nftables table; host links now:\n{left}");
    ensure!(!left.contains("docker0"), "the bridge is still there");
    println!("all paths worked; removing the lab");
    Ok(())
}

/// Attaches container `id` (namespace `ns`) to the `seed` network.
async fn attach(agent: &Agent, id: &str, ns: &Netns, ports: Vec<PortSpec>) -> Result<Endpoint> {
    let req = AttachRequest {
        network: "seed".parse().unwrap(),
        container: ContainerId::parse("container_id", id)?,
        netns: NetnsPath::parse("netns", &ns.path_str())?,
        ifname: IfName::parse("ifname", "eth0")?,
        ports,
        fixed_addresses: Vec::new(),
        labels: Default::default(),
        mac: None,
    };
    agent
        .attach(req)
        .await
        .with_context(|| format!("attach {id}"))
}

/// Requests `to` from `from` and prints what the server saw, or fails saying `what`.
fn show(what: &str, from: &Netns, to: SocketAddr) -> Result<()> {
    let reply = tcp_request(from, to).with_context(|| format!("{what}: {to} unreachable"))?;
    println!("ok  {what}: server says {reply:?}");
    Ok(())
}
