//! No request can hurt the host (issue 8, item 1). Against a host namespace
//! that looks like a real server — an uplink with IPv4 and IPv6 addresses
//! to a router namespace, a default route, a VPN-like route via a gateway,
//! a route via an `onlink` gateway outside every subnet, a /32 on `lo`, a
//! permanent neighbour, and a listening service — each request of the table
//! is refused with its class and a message naming the conflict, and leaves
//! the host (links, addresses, routes, nftables), another container, the
//! store and the traffic on the uplink as they were. A pool under a route
//! via a gateway is accepted, with a warning that trellis shadows it.

#[path = "host_safety_lab.rs"]
mod lab;
mod util;

use lab::{Alias, Inside, Lab, uplink};
use std::sync::Arc;
use trellis_agent::{
    Agent, AttachRequest, Backends, Error, ErrorClass, NetworkMode, NetworkSpec, PortSpec,
};
use trellis_link::Links;
use trellis_store::MemoryStore;
use trellis_testlab::{Netns, Snapshot, require_root};
use trellis_types::{IfName, NetnsPath, Protocol};
use util::{bridge_spec, request, routed_spec, store_dump};

/// One request of the table.
enum Call {
    Create(NetworkSpec),
    Attach(AttachRequest),
}

async fn run(agent: &Agent, call: Call) -> Result<(), Error> {
    match call {
        Call::Create(spec) => agent.create_network(spec).await.map(drop),
        Call::Attach(req) => agent.attach(req).await.map(drop),
    }
}

/// What it is, the call, the class it must get, words its message holds.
type Row = (String, Call, ErrorClass, Vec<&'static str>);

fn bridge(subnet: &str) -> NetworkSpec {
    bridge_spec("n2", subnet, "tbr2")
}

fn routed(pools: &[&str]) -> NetworkSpec {
    routed_spec("r2", pools)
}

fn named_bridge(name: &str) -> NetworkSpec {
    let mut s = bridge("10.7.0.0/24");
    s.mode = NetworkMode::Bridge {
        bridge: IfName::parse("bridge", name).unwrap(),
    };
    s
}

fn network_rows() -> Vec<Row> {
    use ErrorClass::{FailedPrecondition as Host, InvalidArgument as Bad};
    let create =
        |what: &str, spec, class, words| (what.to_owned(), Call::Create(spec), class, words);
    let mut rows = vec![
        create(
            "bridge subnet = the uplink's",
            bridge("10.1.253.0/24"),
            Host,
            vec!["subnet", "10.1.253.101/24 on up0"],
        ),
        create(
            "bridge subnet inside the uplink's",
            bridge("10.1.253.128/25"),
            Host,
            vec!["connected route 10.1.253.0/24 dev up0"],
        ),
        create(
            "bridge subnet around the uplink's",
            bridge("10.1.0.0/16"),
            Host,
            vec!["10.1.253.101"],
        ),
        create(
            "routed pool around the uplink",
            routed(&["10.1.0.0/16"]),
            Host,
            vec!["10.1.253.101"],
        ),
        create(
            "routed pool around a /32 on lo",
            routed(&["10.77.0.0/24"]),
            Host,
            vec!["10.77.0.1/32 on lo"],
        ),
        create(
            "routed pool around an onlink gateway",
            routed(&["172.31.0.0/16"]),
            Host,
            vec!["172.31.1.1", "192.0.2.0/24"],
        ),
        create(
            "IPv6 pool = the uplink's prefix",
            routed(&["10.245.0.0/16", "fd00:1:253::/64"]),
            Host,
            vec!["fd00:1:253::101"],
        ),
        create(
            "IPv6 pool inside the uplink's prefix",
            routed(&["fd00:1:253::8000/113"]),
            Host,
            vec!["fd00:1:253::/64 dev up0"],
        ),
        create(
            "loopback subnet",
            bridge("127.0.0.0/24"),
            Bad,
            vec!["subnet", "loopback"],
        ),
        create(
            "pool holding 169.254.1.1",
            routed(&["169.254.0.0/16"]),
            Bad,
            vec!["169.254.1.1"],
        ),
        create(
            "link-local bridge subnet",
            bridge("169.254.10.0/24"),
            Bad,
            vec!["link-local"],
        ),
        create(
            "multicast subnet",
            bridge("224.1.0.0/24"),
            Bad,
            vec!["multicast"],
        ),
        create(
            "class E subnet",
            bridge("240.0.0.0/24"),
            Bad,
            vec!["class E"],
        ),
        create(
            "\"this network\" subnet",
            bridge("0.0.0.0/8"),
            Bad,
            vec!["this network"],
        ),
        create(
            "IPv6 link-local pool",
            routed(&["fe80:1::/32"]),
            Bad,
            vec!["link-local"],
        ),
        create(
            "IPv6 multicast pool",
            routed(&["ff05::/64"]),
            Bad,
            vec!["multicast"],
        ),
        create(
            "IPv4-mapped pool",
            routed(&["::ffff:0:0/96"]),
            Bad,
            vec!["IPv4-mapped"],
        ),
        create(
            "bridge named the uplink",
            named_bridge("up0"),
            Bad,
            vec!["bridge", "up0"],
        ),
        create(
            "bridge named like a trellis veth",
            named_bridge("tr0123456789abc"),
            Bad,
            vec!["bridge", "host veths"],
        ),
    ];
    for name in ["lo", "all", "default", "bonding_masters"] {
        rows.push(create(
            &format!("bridge named {name}"),
            named_bridge(name),
            Bad,
            vec!["bridge", name],
        ));
    }
    let mut broadcast = bridge("10.7.0.0/24");
    broadcast.gateway = Some("10.7.0.255".parse().unwrap());
    rows.push(create(
        "gateway = broadcast",
        broadcast,
        Bad,
        vec!["gateway", "10.7.0.255"],
    ));
    for mtu in [10, 70000] {
        let mut s = bridge("10.7.0.0/24");
        s.mtu = Some(mtu);
        rows.push(create(&format!("mtu {mtu}"), s, Bad, vec!["mtu"]));
    }
    rows
}

fn attach_rows(lab: &Lab, c1: &Netns, c2: &Netns, paths: &[String]) -> Vec<Row> {
    use ErrorClass::{AlreadyExists as Taken, InvalidArgument as Bad};
    let mut rows = Vec::new();
    for path in std::iter::once(lab.host.path_str()).chain(paths.iter().cloned()) {
        let mut req = request("n1", "c2", c2, &[]);
        req.netns = NetnsPath::parse("netns", &path).unwrap();
        let what = format!("netns {path} (the host)");
        rows.push((
            what,
            Call::Attach(req),
            Bad,
            vec!["netns", "host network namespace"],
        ));
    }
    for name in ["lo", "all", "default"] {
        let mut req = request("n1", "c2", c2, &[]);
        req.ifname = IfName::parse("ifname", name).unwrap();
        rows.push((
            format!("ifname {name}"),
            Call::Attach(req),
            Bad,
            vec!["ifname", name],
        ));
    }
    // eth0 of another container's namespace.
    let theirs = request("n1", "c2", c1, &[]);
    rows.push((
        "eth0 taken in another container".into(),
        Call::Attach(theirs),
        Taken,
        vec!["eth0"],
    ));
    let port = PortSpec::new(Protocol::Tcp, 2222, 22).unwrap();
    let mut req = request("n1", "c2", c2, &[]);
    req.ports = vec![port];
    rows.push((
        "port a host service listens on".into(),
        Call::Attach(req),
        Taken,
        vec!["2222/tcp", "0.0.0.0:2222"],
    ));
    rows
}

/// The host, the other container, the store: what no refusal may change.
type State = (Snapshot, Snapshot, Vec<(String, Vec<u8>)>);

async fn state(agent: &Agent, lab: &Lab, c1: &Netns) -> State {
    let store = store_dump(agent)
        .await
        .into_iter()
        .map(without_cursor)
        .collect();
    (Snapshot::take(&lab.host), Snapshot::take(c1), store)
}

/// A block record with its next-fit cursor left out. A refusal the kernel
/// makes (a name taken in the container) comes after the allocation, whose
/// undo releases the address but leaves the cursor past it: by design, a
/// released address is not the next one handed out. Everything else must
/// be as it was.
fn without_cursor((key, value): (String, Vec<u8>)) -> (String, Vec<u8>) {
    if !key.starts_with("ipam/blocks/") {
        return (key, value);
    }
    let mut block: serde_json::Value = serde_json::from_slice(&value).unwrap();
    block["cursor"] = serde_json::Value::Null;
    (key, serde_json::to_vec(&block).unwrap())
}

/// The state once the kernel is done with what it does on its own (IPv6
/// link-local addresses, DAD): equal twice, 300 ms apart.
async fn settled(agent: &Agent, lab: &Lab, c1: &Netns) -> State {
    let mut last = state(agent, lab, c1).await;
    for _ in 0..60 {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let now = state(agent, lab, c1).await;
        if now == last && !lab.host.ip("-o addr show").contains("tentative") {
            return now;
        }
        last = now;
    }
    panic!("the host did not settle");
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_would_hurt_the_host_are_refused_and_change_nothing() {
    require_root();
    let lab = uplink();
    lab.traffic_ok().unwrap();
    let path = NetnsPath::parse("netns", &lab.host.path_str()).unwrap();
    let be = Backends::kernel(Some(&path), Arc::new(MemoryStore::new()))
        .await
        .unwrap();
    let links = be.links.clone();
    let agent = Agent::open(be, "node1").await.unwrap();
    agent
        .create_network(bridge_spec("n1", "10.88.0.0/24", "tbr1"))
        .await
        .unwrap();
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    agent.attach(request("n1", "c1", &c1, &[])).await.unwrap();
    let (alias, inside) = (Alias::of(&lab.host), Inside::of(&lab.host));
    reserved_namespaces_are_known(&*links, &lab, &[alias.0.clone(), inside.netns()]);

    let before = settled(&agent, &lab, &c1).await;
    let c2_links = c2.ip("-o link show");
    let mut rows = network_rows();
    rows.extend(attach_rows(
        &lab,
        &c1,
        &c2,
        &[alias.0.clone(), inside.netns()],
    ));
    let mut failures = Vec::new();
    for (what, call, class, words) in rows {
        let refusal = match run(&agent, call).await {
            Ok(()) => {
                failures.push(format!("{what}: accepted"));
                None
            }
            Err(e) if e.class() != class || !words.iter().all(|w| e.to_string().contains(w)) => {
                failures.push(format!(
                    "{what}: want {class:?} naming {words:?}, got {:?}: {e}",
                    e.class()
                ));
                None
            }
            Err(e) => Some(e),
        };
        let after = state(&agent, &lab, &c1).await;
        if let Some(e) = &refusal
            && after == before
            && lab.traffic_ok().is_ok()
        {
            trellis_testlab::report::record(
                "host safety: requests that would hurt the host",
                &what,
                &format!(
                    "refused {:?}: \"{e}\"; host links, addresses, routes, nftables, other containers, store and uplink traffic unchanged",
                    e.class()
                ),
            );
        }
        if after != before {
            let diff = [after.0.diff(&before.0), after.1.diff(&before.1)].join("\n    ");
            let store = if after.2 == before.2 {
                ""
            } else {
                " (and the store)"
            };
            failures.push(format!(
                "{what}: changed the host or c1{store}:\n    {diff}"
            ));
        }
        if c2.ip("-o link show") != c2_links {
            failures.push(format!("{what}: c2 got a link"));
        }
        if let Err(e) = lab.traffic_ok() {
            failures.push(format!("{what}: {e}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// The agent knows the host by identity, and the process's own namespace and
/// init's too (read only: nothing is attached to them).
fn reserved_namespaces_are_known(links: &dyn Links, lab: &Lab, aliases: &[String]) {
    let reserved = links.reserved_netns();
    let id = |p: &str| {
        links
            .check_netns(&NetnsPath::parse("netns", p).unwrap())
            .unwrap()
    };
    let host = id(&lab.host.path_str());
    assert!(
        reserved
            .iter()
            .any(|r| r.id == host && r.what.contains("host")),
        "{reserved:?}"
    );
    for a in aliases {
        assert_eq!(id(a), host, "{a}");
    }
    let me = id("/proc/self/ns/net");
    assert!(
        reserved.iter().any(|r| r.id == me),
        "own netns not reserved: {reserved:?}"
    );
    // Init's namespace is reserved where it can be opened; where it cannot
    // (pid 1 of another user namespace), no attach can reach it either.
    match links.check_netns(&NetnsPath::parse("netns", "/proc/1/ns/net").unwrap()) {
        Ok(init) => assert!(reserved.iter().any(|r| r.id == init), "{reserved:?}"),
        Err(e) => assert!(e.to_string().starts_with("netns \"/proc/1/ns/net\""), "{e}"),
    }
    assert!(!reserved.iter().any(|r| r.id == id(&lab.router.path_str())));
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_under_a_route_via_a_gateway_is_accepted_with_a_warning() {
    require_root();
    let lab = uplink();
    let agent = util::agent_in(&lab.host).await;
    let net = agent
        .create_network(routed_spec("pods", &["10.244.0.0/16"]))
        .await
        .unwrap();
    assert_eq!(net.warnings.len(), 1, "{:?}", net.warnings);
    let w = &net.warnings[0];
    assert!(
        w.contains("10.0.0.0/8 via 10.1.253.1") && w.contains("shadow"),
        "{w}"
    );
    assert_eq!(agent.network("pods").unwrap().warnings, net.warnings);
    let c = Netns::new("pod");
    let ep = agent.attach(request("pods", "pod", &c, &[])).await.unwrap();
    assert!(
        ep.addresses[0].addr().to_string().starts_with("10.244."),
        "{ep:?}"
    );
    lab.traffic_ok().unwrap();
    let routes = lab.host.ip("route show");
    assert!(
        routes.contains("default via 10.1.253.1") && routes.contains("10.0.0.0/8 via 10.1.253.1"),
        "{routes}"
    );
    // The same spec again is the same network, warnings and all.
    let again = agent
        .create_network(routed_spec("pods", &["10.244.0.0/16"]))
        .await
        .unwrap();
    assert_eq!(again, net);
}
