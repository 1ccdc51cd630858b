//! Bridge networks on a fresh host that drops forwarding: forwarding off
//! (Debian's default) and a forward chain with `policy drop` (iptables-nft's
//! `ip filter FORWARD`, Debian's `inet filter forward`). trellis turns
//! forwarding on, inserts its tagged accept rules into the host's chain,
//! removes them with the network, and says in `Status` what it cannot fix.

mod util;

use std::net::{IpAddr, SocketAddr};
use trellis_agent::{Agent, HostPolicy};
use trellis_testlab::seed::{HOST_IP, PC_IP, SeedLab};
use trellis_testlab::{Netns, TcpServer, require_root, seen_ip, tcp_request};
use trellis_types::{ContainerId, IfName, Protocol};
use util::{agent_in, attach, bridge_spec, routed_spec};

use trellis_testlab::seed::{DEBIAN_NFT_DROP, IPTABLES_NFT_DROP};

fn nft(ns: &Netns, what: &str) -> String {
    ns.exec_ok(&["nft", what])
}

/// The rule lines of a chain as `nft list chain` prints them.
fn rules_of(ns: &Netns, chain: &str) -> Vec<String> {
    nft(ns, &format!("list chain {chain}"))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("table") && !l.starts_with("chain"))
        .filter(|l| !l.starts_with("type") && *l != "}")
        .map(str::to_owned)
        .collect()
}

/// An agent as trellisd starts it: opened, then reconciled.
async fn started(host: &Netns) -> Agent {
    let agent = agent_in(host).await;
    agent.reconcile().await.unwrap();
    agent
}

/// Two containers on a bridge network "seed", c4 publishing 8081 → 80.
struct Seeded {
    c3: Netns,
    c4: Netns,
    _web: TcpServer,
}

async fn seed(agent: &Agent) -> Seeded {
    let net = bridge_spec("seed", "192.168.169.0/24", "tdocker0");
    agent.create_network(net).await.unwrap();
    let (c3, c4) = (Netns::new("c3"), Netns::new("c4"));
    attach(agent, "seed", "c3", &c3, &[]).await;
    let ep4 = attach(agent, "seed", "c4", &c4, &[(Protocol::Tcp, 8081, 80)]).await;
    let web = TcpServer::start(&c4, SocketAddr::new(ep4.addresses[0].addr(), 80), "c4");
    Seeded { c3, c4, _web: web }
}

async fn detach(agent: &Agent, id: &str) {
    let id = ContainerId::parse("container_id", id).unwrap();
    let eth0 = IfName::parse("ifname", "eth0").unwrap();
    agent.detach(&id, &eth0).await.unwrap();
}

async fn unseed(agent: &Agent) {
    for c in ["c3", "c4"] {
        detach(agent, c).await;
    }
    agent.delete_network("seed").await.unwrap();
}

/// The container reaches the "internet" (masqueraded) and the PC reaches
/// the published port.
fn traffic_flows(lab: &SeedLab, s: &Seeded) {
    let ext = lab.external_server(80);
    let reply = tcp_request(&s.c3, ext.addr()).expect("c3 reaches the external server");
    assert_eq!(seen_ip(&reply), IpAddr::V4(HOST_IP), "{reply}");
    let reply = tcp_request(&lab.pc, (HOST_IP, 8081).into()).expect("pc reaches host:8081");
    assert!(reply.starts_with("c4 "), "{reply}");
    assert_eq!(seen_ip(&reply), IpAddr::V4(PC_IP));
    let _ = &s.c4;
}

const SEED_RULES: [&str; 2] = [
    r#"iifname "tdocker0" accept comment "trellis:seed""#,
    r#"oifname "tdocker0" accept comment "trellis:seed""#,
];

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iptables_nft_forward_drop_is_amended_and_restored() {
    require_root();
    let lab = SeedLab::build();
    lab.fresh_host(IPTABLES_NFT_DROP);
    let before = nft(&lab.host, "list ruleset");
    let agent = started(&lab.host).await;
    let s = seed(&agent).await;
    traffic_flows(&lab, &s);

    assert_eq!(lab.host.read_sysctl("net.ipv4.ip_forward"), "1");
    assert_eq!(lab.host.read_sysctl("net.ipv6.conf.all.forwarding"), "0");
    assert_eq!(lab.host.read_sysctl("net.ipv6.conf.eth0.accept_ra"), "1");
    assert_eq!(rules_of(&lab.host, "ip filter FORWARD"), SEED_RULES);
    let status = agent.status().await;
    assert!(status.ready && status.warnings.is_empty(), "{status:?}");

    // A host firewall reload flushes the rules: Status says so, reconcile
    // puts them back, and traffic flows again.
    nft(&lab.host, "flush chain ip filter FORWARD");
    assert!(tcp_request(&lab.pc, (HOST_IP, 8081).into()).is_err());
    let status = agent.status().await;
    assert!(status.ready, "warnings leave readiness alone");
    assert_eq!(status.warnings.len(), 1, "{status:?}");
    assert!(
        status.warnings[0].starts_with(
            "chain FORWARD of table ip filter drops forwarded traffic by policy and lacks trellis's accept rules for trellis:seed"
        ),
        "{status:?}"
    );
    agent.reconcile().await.unwrap();
    assert_eq!(rules_of(&lab.host, "ip filter FORWARD"), SEED_RULES);
    traffic_flows(&lab, &s);

    // The network goes: the chain is as it was, forwarding stays on.
    unseed(&agent).await;
    assert_eq!(nft(&lab.host, "list ruleset"), before);
    assert_eq!(lab.host.read_sysctl("net.ipv4.ip_forward"), "1");
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_inet_forward_drop_with_routed_dual_stack() {
    require_root();
    let lab = SeedLab::build();
    lab.fresh_host(DEBIAN_NFT_DROP);
    let before = nft(&lab.host, "list ruleset");
    let agent = started(&lab.host).await;
    let s = seed(&agent).await;
    traffic_flows(&lab, &s);
    assert_eq!(lab.host.read_sysctl("net.ipv6.conf.all.forwarding"), "0");

    // A dual-stack routed network: IPv6 forwarding goes on, and the uplink,
    // which took router advertisements, keeps taking them.
    let pods = routed_spec("pods", &["10.244.0.0/16", "fd00:10:244::/56"]);
    agent.create_network(pods).await.unwrap();
    assert_eq!(lab.host.read_sysctl("net.ipv6.conf.all.forwarding"), "1");
    assert_eq!(lab.host.read_sysctl("net.ipv6.conf.eth0.accept_ra"), "2");
    let p1 = Netns::new("p1");
    attach(&agent, "pods", "p1", &p1, &[]).await;
    let ext = lab.external_server(80);
    let reply = tcp_request(&p1, ext.addr()).expect("a routed container reaches the server");
    assert_eq!(seen_ip(&reply), IpAddr::V4(HOST_IP), "{reply}");
    let ext6 = lab.external_server6(80);
    tcp_request(&p1, ext6.addr()).expect("and over IPv6");

    let mut want = SEED_RULES.to_vec();
    want.extend([
        r#"iifname "tr*" accept comment "trellis:(routed)""#,
        r#"oifname "tr*" accept comment "trellis:(routed)""#,
    ]);
    // Each change inserts at the head: the routed rules came last.
    let mut seen = rules_of(&lab.host, "inet filter forward");
    seen.sort();
    want.sort();
    assert_eq!(seen, want);
    assert!(rules_of(&lab.host, "inet filter input").is_empty());

    detach(&agent, "p1").await;
    agent.delete_network("pods").await.unwrap();
    assert_eq!(rules_of(&lab.host, "inet filter forward"), SEED_RULES);
    unseed(&agent).await;
    assert_eq!(nft(&lab.host, "list ruleset"), before);
    assert_eq!(lab.host.read_sysctl("net.ipv6.conf.all.forwarding"), "1");
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_host_left_alone_nothing_is_touched() {
    require_root();
    let lab = SeedLab::build();
    lab.fresh_host(IPTABLES_NFT_DROP);
    let before = nft(&lab.host, "list table ip filter");
    let agent = agent_in(&lab.host).await.with_host_policy(HostPolicy {
        forwarding: false,
        firewall: false,
    });
    let s = seed(&agent).await;
    assert_eq!(lab.host.read_sysctl("net.ipv4.ip_forward"), "0");
    assert_eq!(nft(&lab.host, "list table ip filter"), before);
    assert!(agent.status().await.warnings.is_empty());
    // Proof that the lab drops: nothing gets through.
    let ext = lab.external_server(80);
    assert!(tcp_request(&s.c3, ext.addr()).is_err());
    unseed(&agent).await;
    assert_eq!(nft(&lab.host, "list table ip filter"), before);
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_the_chains_trellis_cannot_amend() {
    require_root();
    let lab = SeedLab::build();
    lab.fresh_host(
        "table inet filter {
            chain forward { type filter hook forward priority 0; policy accept; counter drop; }
        }
        table bridge l2 {
            chain forward { type filter hook forward priority 0; policy drop; }
        }",
    );
    let before = nft(&lab.host, "list ruleset");
    let agent = started(&lab.host).await;
    let net = bridge_spec("seed", "192.168.169.0/24", "tdocker0");
    agent.create_network(net).await.unwrap();
    let status = agent.status().await;
    assert!(status.ready, "{status:?}");
    assert_eq!(
        status.warnings,
        [
            "chain forward of table inet filter accepts by policy but its last rule drops everything: trellis only amends chains that drop by policy, so forwarded traffic of its networks may be dropped there (add accept rules for its bridges before that rule)",
            "chain forward of table bridge l2 drops bridged frames by policy: containers on one trellis bridge cannot reach each other, and trellis does not amend bridge-family chains",
        ]
    );
    assert_eq!(
        nft(&lab.host, "list ruleset").matches("trellis:").count(),
        0
    );
    agent.delete_network("seed").await.unwrap();
    assert_eq!(nft(&lab.host, "list ruleset"), before);
}
