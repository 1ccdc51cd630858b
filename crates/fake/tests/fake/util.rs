//! Builders shared by the fake's tests.

use std::net::IpAddr;
use trellis_fake::FakeKernel;
use trellis_link::{BridgeSpec, ContainerIface, LinkRef, Links, Ns, VethInfo, VethSpec};
use trellis_types::{IfName, NetnsPath};

pub fn ifn(s: &str) -> IfName {
    IfName::parse("ifname", s).unwrap()
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn bridge(name: &str, gateway: &str) -> BridgeSpec {
    BridgeSpec {
        name: ifn(name),
        gateway: vec![gateway.parse().unwrap()],
        mac: None,
        mtu: None,
    }
}

pub fn veth(host: &str, netns: &NetnsPath, master: Option<&str>) -> VethSpec {
    VethSpec {
        host_name: ifn(host),
        container_netns: netns.clone(),
        container_name: ifn("eth0"),
        mtu: None,
        container_mac: None,
        host_mac: None,
        master: master.map(|m| LinkRef::Name(ifn(m))),
        host_ipv6: false,
    }
}

pub fn iface(netns: &NetnsPath, addr: &str) -> ContainerIface {
    ContainerIface {
        netns: netns.clone(),
        link: LinkRef::Name(ifn("eth0")),
        addresses: vec![addr.parse().unwrap()],
        ipv6: false,
    }
}

/// A host with bridge `br0` (192.168.169.1/24) and a container at
/// `/run/netns/c1` attached to it with 192.168.169.2/24.
pub async fn bridged() -> (FakeKernel, NetnsPath, VethInfo) {
    let k = FakeKernel::new();
    let c1 = k.add_netns("/run/netns/c1");
    k.ensure_bridge(&bridge("br0", "192.168.169.1/24"))
        .await
        .unwrap();
    let info = k
        .create_veth(&veth("tr0000000000001", &c1, Some("br0")))
        .await
        .unwrap();
    (k, c1, info)
}

pub fn container(path: &NetnsPath) -> Ns {
    Ns::Path(path.clone())
}
