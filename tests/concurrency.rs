//! 100 concurrent attaches on one host and one block: all succeed (no CAS
//! retry budget exhausted, thanks to the per-pool allocation lock), every
//! address is distinct, every container answers from the host; then 100
//! concurrent detaches leave nothing of trellis but the network itself.
//! (The per-pool lock covers the allocation only; veths, addresses and
//! routes of different containers are made concurrently.)

mod util;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;
use trellis_agent::Endpoint;
use trellis_testlab::{Netns, require_root};
use util::{agent_in, bridge_spec, request};

const N: usize = 100;

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_attaches_all_succeed_and_are_reachable() {
    require_root();
    let host = Netns::new("host");
    let agent = Arc::new(agent_in(&host).await);
    agent.reconcile().await.unwrap();
    let spec = bridge_spec("many", "10.88.0.0/24", "tbrmany");
    agent.create_network(spec).await.unwrap();
    let nft_before = host.exec_ok(&["nft", "list", "table", "inet", "trellis"]);
    let containers: Vec<Netns> = (0..N).map(|i| Netns::new(&format!("m{i}"))).collect();

    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, ns) in containers.iter().enumerate() {
        let (agent, req) = (agent.clone(), request("many", &format!("m{i}"), ns, &[]));
        tasks.push(tokio::spawn(async move { agent.attach(req).await }));
    }
    let mut eps: Vec<Endpoint> = Vec::new();
    for t in tasks {
        eps.push(t.await.unwrap().unwrap_or_else(|e| panic!("attach: {e}")));
    }
    eprintln!("{N} concurrent attaches took {:?}", start.elapsed());

    let ips: HashSet<_> = eps.iter().map(|e| e.addresses[0].addr()).collect();
    assert_eq!(ips.len(), N, "an address was handed out twice");
    assert_eq!(agent.endpoints().await.unwrap().len(), N);
    assert_eq!(agent.ipam().usage("many.v4").await.unwrap().used, N as u128);
    let list: Vec<String> = ips.iter().map(ToString::to_string).collect();
    let script = format!(
        "for ip in {}; do ping -c1 -W2 -q $ip >/dev/null || echo unreachable $ip; done",
        list.join(" ")
    );
    let out = host.exec_ok(&["sh", "-c", &script]);
    assert!(out.trim().is_empty(), "{out}");

    let mut tasks = Vec::new();
    for ep in &eps {
        let (agent, h) = (agent.clone(), ep.request.handle());
        tasks.push(tokio::spawn(async move {
            agent.detach(&h.container, &h.ifname).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap_or_else(|e| panic!("detach: {e}"));
    }
    assert!(agent.endpoints().await.unwrap().is_empty());
    assert_eq!(agent.ipam().usage("many.v4").await.unwrap().used, 0);
    // The retired veths go in the reaper's batches.
    agent.settle().await;
    // Nothing of the endpoints is left: no veth, no route of trellis, no
    // NAT element but the network's. (A full snapshot would differ in the
    // bridge's IPv6 link-local address, which the kernel adds once the
    // bridge has had a port.)
    let links = host.ip("-o link show");
    assert!(!links.contains(": tr"), "{links}");
    assert!(host.ip("route show proto 116").is_empty());
    let nft_now = host.exec_ok(&["nft", "list", "table", "inet", "trellis"]);
    assert_eq!(nft_before, nft_now);
    for ns in &containers {
        assert_eq!(ns.ip("-o link show").lines().count(), 1, "only lo is left");
    }
}
