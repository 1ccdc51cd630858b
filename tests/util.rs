//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::sync::Arc;
use trellis_agent::{Agent, AttachRequest, Backends, Endpoint, NetworkMode, NetworkSpec, PortSpec};
use trellis_store::{KvStore, MemoryStore};
use trellis_testlab::Netns;
use trellis_types::{ContainerId, IfName, NetnsPath, Protocol};

/// An agent whose host is the namespace `host`, with an in-memory store.
pub async fn agent_in(host: &Netns) -> Agent {
    agent_on(host, Arc::new(MemoryStore::new())).await
}

/// An agent whose host is the namespace `host`, recording into `store`.
pub async fn agent_on(host: &Netns, store: Arc<dyn KvStore>) -> Agent {
    node_on(host, store, "node1").await
}

/// The agent of node `node`, whose host is the namespace `host`, recording
/// into `store` (which other nodes may share).
pub async fn node_on(host: &Netns, store: Arc<dyn KvStore>, node: &str) -> Agent {
    let path = NetnsPath::parse("netns", &host.path_str()).unwrap();
    let be = Backends::kernel(Some(&path), store).await.unwrap();
    Agent::open(be, node).await.unwrap()
}

/// A bridge network spec with masquerade on.
pub fn bridge_spec(name: &str, subnet: &str, bridge: &str) -> NetworkSpec {
    NetworkSpec {
        subnet_pool: None,
        cluster_pools: Vec::new(),
        name: name.parse().unwrap(),
        subnets: vec![subnet.parse().unwrap()],
        gateway: None,
        mode: NetworkMode::Bridge {
            bridge: IfName::parse("bridge", bridge).unwrap(),
        },
        masquerade: true,
        mtu: None,
        internal: false,
        routable: false,
        reach: Vec::new(),
    }
}

/// An attach request for container `id` in namespace `ns` as `eth0`.
pub fn request(
    network: &str,
    id: &str,
    ns: &Netns,
    ports: &[(Protocol, u32, u32)],
) -> AttachRequest {
    AttachRequest {
        network: network.parse().unwrap(),
        container: ContainerId::parse("container_id", id).unwrap(),
        netns: NetnsPath::parse("netns", &ns.path_str()).unwrap(),
        ifname: IfName::parse("ifname", "eth0").unwrap(),
        ports: ports
            .iter()
            .map(|&(p, h, c)| PortSpec::new(p, h, c).unwrap())
            .collect(),
        fixed_addresses: Vec::new(),
        labels: Default::default(),
        mac: None,
    }
}

/// Attaches and panics with the error if it fails.
pub async fn attach(
    agent: &Agent,
    network: &str,
    id: &str,
    ns: &Netns,
    ports: &[(Protocol, u32, u32)],
) -> Endpoint {
    let req = request(network, id, ns, ports);
    agent
        .attach(req)
        .await
        .unwrap_or_else(|e| panic!("attach {id}: {e}"))
}

/// Every key and value in the agent's store (IPAM and records), revisions
/// left out.
pub async fn store_dump(agent: &Agent) -> Vec<(String, Vec<u8>)> {
    let listing = agent.store().list("").await.unwrap();
    listing
        .entries
        .into_iter()
        .map(|(k, v)| (k, v.value))
        .collect()
}

/// A routed network spec over `pools` with outgoing NAT on.
pub fn routed_spec(name: &str, pools: &[&str]) -> NetworkSpec {
    NetworkSpec {
        subnet_pool: None,
        cluster_pools: Vec::new(),
        name: name.parse().unwrap(),
        subnets: pools.iter().map(|p| p.parse().unwrap()).collect(),
        gateway: None,
        mode: NetworkMode::Routed,
        masquerade: true,
        mtu: None,
        internal: false,
        routable: false,
        reach: Vec::new(),
    }
}
