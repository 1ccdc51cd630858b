//! An agent whose backends are one fake kernel and an in-memory store.

use std::sync::Arc;
use trellis_agent::{Agent, AttachRequest, Backends, NetworkMode, NetworkSpec, PortSpec};
use trellis_fake::FakeKernel;
use trellis_link::{LinkRef, Links, Ns};
use trellis_route::Route;
use trellis_store::MemoryStore;
use trellis_types::{ContainerId, IfName, NetnsPath, Protocol};

/// A host as a small server has it: `eth0` on 10.1.253.101/24 with a
/// static default route, and nothing of trellis's.
pub fn host() -> FakeKernel {
    let k = FakeKernel::new();
    k.add_device(&Ns::Host, "eth0", &["10.1.253.101/24"]);
    let eth0 = IfName::parse("ifname", "eth0").unwrap();
    k.add_route(
        &Ns::Host,
        Route::default_via("10.1.253.1".parse().unwrap(), eth0),
        4,
    );
    k
}

/// A container namespace at `path`, its `lo` up as a container runtime
/// leaves it (an attach brings `lo` up and a detach rightly leaves it so).
pub async fn container(kernel: &FakeKernel, path: &str) -> NetnsPath {
    let netns = kernel.add_netns(path);
    let lo = LinkRef::Name(IfName::parse("ifname", "lo").unwrap());
    kernel.set_up(&Ns::Path(netns.clone()), &lo).await.unwrap();
    netns
}

/// An agent on `kernel`, reconciled (so ready), with a fresh store.
pub async fn agent(kernel: &FakeKernel) -> Agent {
    let be = Backends::on(kernel.clone(), Arc::new(MemoryStore::new()));
    let agent = Agent::open(be, "node1").await.unwrap();
    agent.reconcile().await.unwrap();
    agent
}

pub fn bridge_network() -> NetworkSpec {
    NetworkSpec {
        subnet_pool: None,
        cluster_pools: Vec::new(),
        name: "web".parse().unwrap(),
        mode: NetworkMode::Bridge {
            bridge: IfName::parse("bridge", "trellis0").unwrap(),
        },
        subnets: vec!["192.168.169.0/24".parse().unwrap()],
        gateway: None,
        masquerade: true,
        mtu: None,
        internal: false,
        routable: false,
        reach: Vec::new(),
    }
}

pub fn routed_network() -> NetworkSpec {
    NetworkSpec {
        name: "pods".parse().unwrap(),
        mode: NetworkMode::Routed,
        subnets: vec!["10.244.0.0/16".parse().unwrap()],
        ..bridge_network()
    }
}

pub fn request(
    network: &str,
    container: &str,
    netns: &NetnsPath,
    port: Option<u32>,
) -> AttachRequest {
    AttachRequest {
        network: network.parse().unwrap(),
        container: ContainerId::parse("container_id", container).unwrap(),
        netns: netns.clone(),
        ifname: IfName::parse("ifname", "eth0").unwrap(),
        ports: port
            .map(|p| PortSpec::new(Protocol::Tcp, p, 80).unwrap())
            .into_iter()
            .collect(),
        fixed_addresses: Vec::new(),
        labels: Default::default(),
        mac: None,
    }
}
