//! The bridge-mode half of an attach: a port on the network's bridge, the
//! address with the subnet's prefix, the default route via the bridge — the
//! container side configured in one socket session inside its namespace.

use crate::Error;
use crate::agent::Agent;
use crate::attach::Port;
use crate::model::{AttachRequest, Network};
use ipnet::IpNet;
use std::net::IpAddr;
use trellis_link::{ContainerIface, ContainerRoute, LinkRef, VethInfo, VethSpec};
use trellis_types::IfName;

/// The veth of a bridge-mode endpoint: host end enslaved to the bridge.
pub(crate) fn veth_spec(
    req: &AttachRequest,
    net: &Network,
    bridge: &IfName,
    host_ifname: &IfName,
) -> VethSpec {
    VethSpec {
        host_name: host_ifname.clone(),
        container_netns: req.netns.clone(),
        container_name: req.ifname.clone(),
        mtu: net.spec.mtu,
        container_mac: None,
        host_mac: None,
        master: Some(LinkRef::Name(bridge.clone())),
    }
}

impl Agent {
    pub(crate) async fn plumb_bridge_port(
        &self,
        req: &AttachRequest,
        net: &Network,
        veth: &VethInfo,
        ips: &[IpAddr],
    ) -> Result<Port, Error> {
        let prefix = net.spec.subnets[0].prefix_len();
        let addresses: Vec<IpNet> = ips
            .iter()
            .map(|&ip| IpNet::new(ip, prefix).expect("prefix length of a valid subnet"))
            .collect();
        let iface = ContainerIface {
            netns: req.netns.clone(),
            link: LinkRef::Index(veth.container_ifindex),
            addresses: addresses.clone(),
        };
        let default = ContainerRoute::default_via(net.gateways[0]);
        self.be.links.setup_container(&iface, &[default]).await?;
        Ok(Port {
            addresses,
            routes: vec![default.dst],
        })
    }
}
