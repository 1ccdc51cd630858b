//! Detach off the kernel's slow path, against real kernel state: a detached
//! veth is out of the way at once (both ends down and renamed `trx…`, the
//! container end without addresses, the host routes gone), so the same
//! container interface — with the same fixed address — attaches again
//! right after and carries traffic; the retired veths are deleted in a
//! batch soon after; and reconcile deletes the retired veths a crash left.

mod util;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use trellis_agent::Agent;
use trellis_testlab::{Netns, TcpServer, require_root, tcp_request};
use trellis_types::Protocol;
use util::{agent_in, bridge_spec, request, routed_spec};

fn links(ns: &Netns) -> Vec<String> {
    ns.ip("-o link show")
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect()
}

fn retired(ns: &Netns) -> Vec<String> {
    links(ns)
        .into_iter()
        .filter(|n| trellis_link::is_retired_name(n))
        .collect()
}

/// Attaches `id` (fixed address `ip`, one published port), serves on it
/// from inside the container and reaches it from the host.
async fn attach_and_reach(agent: &Agent, host: &Netns, net: &str, id: &str, c: &Netns, ip: IpAddr) {
    let mut req = request(net, id, c, &[(Protocol::Tcp, 8090, 80)]);
    req.fixed_addresses = vec![ip];
    let ep = agent
        .attach(req)
        .await
        .unwrap_or_else(|e| panic!("attach {id} with {ip}: {e}"));
    assert_eq!(ep.addresses[0].addr(), ip);
    let addr = SocketAddr::new(ip, 80);
    let _server = TcpServer::start(c, addr, id);
    let reply = tcp_request(host, addr).unwrap_or_else(|e| panic!("host reaches {addr}: {e}"));
    assert!(reply.contains(id), "{reply}");
}

async fn detach_then_attach_again_at_once(net: &str, ip: &str) {
    require_root();
    let host = Netns::new("host");
    let agent = agent_in(&host).await;
    agent
        .create_network(bridge_spec("b", "192.168.175.0/24", "tbrd"))
        .await
        .unwrap();
    agent
        .create_network(routed_spec("r", &["10.246.0.0/16"]))
        .await
        .unwrap();
    let c = Netns::new("c");
    let ip: IpAddr = ip.parse().unwrap();
    attach_and_reach(&agent, &host, net, "one", &c, ip).await;
    let req = request(net, "one", &c, &[]);
    let t = Instant::now();
    agent.detach(&req.container, &req.ifname).await.unwrap();
    let took = t.elapsed();

    // Out of the way, not (necessarily) deleted yet: no eth0, no address,
    // no host route to it, no published port.
    let inside = c.ip("-o addr show");
    assert!(!inside.contains(&ip.to_string()), "{inside}");
    assert!(!links(&c).contains(&"eth0".to_owned()), "{:?}", links(&c));
    let routes = host.ip("route show");
    assert!(!routes.contains(&format!("{ip} dev")), "{routes}");
    for ns in [&host, &c] {
        for name in retired(ns) {
            let link = ns.ip(&format!("-o link show {name}"));
            assert!(!link.contains(",UP"), "retired link up: {link}");
            assert!(!link.contains("master"), "retired link on a bridge: {link}");
        }
    }

    // The same interface, the same fixed address, right away; traffic flows.
    attach_and_reach(&agent, &host, net, "one", &c, ip).await;

    // The retired veth is deleted in the background, soon.
    agent.settle().await;
    assert!(retired(&host).is_empty(), "{:?}", retired(&host));
    assert!(retired(&c).is_empty(), "{:?}", retired(&c));
    assert_eq!(links(&c), ["lo", "eth0"], "the new eth0 only");
    eprintln!("{net}: detach took {took:?}");
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_endpoint_attaches_again_right_after_its_detach() {
    detach_then_attach_again_at_once("b", "192.168.175.77").await;
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routed_endpoint_attaches_again_right_after_its_detach() {
    detach_then_attach_again_at_once("r", "10.246.0.77").await;
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_detaches_at_once_are_deleted_in_few_batches() {
    require_root();
    let host = Netns::new("host");
    let agent = std::sync::Arc::new(agent_in(&host).await);
    agent
        .create_network(bridge_spec("b", "192.168.176.0/24", "tbre"))
        .await
        .unwrap();
    let containers: Vec<Netns> = (0..40).map(|i| Netns::new(&format!("m{i}"))).collect();
    for (i, c) in containers.iter().enumerate() {
        agent
            .attach(request("b", &format!("m{i}"), c, &[]))
            .await
            .unwrap();
    }
    let detaches: Vec<_> = (0..containers.len())
        .map(|i| {
            let agent = agent.clone();
            let req = request("b", &format!("m{i}"), &containers[i], &[]);
            tokio::spawn(async move { agent.detach(&req.container, &req.ifname).await })
        })
        .collect();
    for d in detaches {
        d.await.unwrap().unwrap();
    }
    for c in &containers {
        assert!(!links(c).contains(&"eth0".to_owned()), "{}", c.name());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    agent.settle().await;
    while !retired(&host).is_empty() {
        assert!(Instant::now() < deadline, "{:?}", retired(&host));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let veths = host.ip("-o link show type veth");
    assert!(veths.trim().is_empty(), "{veths}");
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_deletes_the_retired_veths_a_crash_left() {
    require_root();
    let host = Netns::new("host");
    let agent = agent_in(&host).await;
    agent
        .create_network(bridge_spec("b", "192.168.177.0/24", "tbrf"))
        .await
        .unwrap();
    let c = Netns::new("c");
    let ep = agent.attach(request("b", "x", &c, &[])).await.unwrap();
    // A crash between the retirement and the batched delete: retired by
    // hand, as the executor does, with nobody to delete it.
    let links_be = trellis_link::NetlinkLinks::in_netns(
        &trellis_types::NetnsPath::parse("netns", &host.path_str()).unwrap(),
    )
    .await
    .unwrap();
    use trellis_link::Links;
    let end = trellis_link::RetireEnd {
        netns: ep.request.netns.clone(),
        ifname: ep.request.ifname.clone(),
    };
    let name = links_be
        .retire_veth(&ep.host_ifname, Some(end))
        .await
        .unwrap()
        .expect("the veth was there");
    assert_eq!(retired(&host), [name.to_string()]);
    assert_eq!(retired(&c).len(), 1, "{:?}", links(&c));
    // The record says attached: reconcile makes the endpoint again and
    // deletes the retired pair.
    let report = agent.reconcile().await.unwrap();
    assert!(report.errors.is_empty(), "{report:?}");
    agent.settle().await;
    assert!(retired(&host).is_empty(), "{:?}", links(&host));
    assert!(retired(&c).is_empty(), "{:?}", links(&c));
    assert!(links(&host).contains(&ep.host_ifname.to_string()));
    let h = ep.request.handle();
    let p = agent.check(&h.container, &h.ifname).await.unwrap();
    assert!(p.is_empty(), "{p:?}");
}
