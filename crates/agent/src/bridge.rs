//! The bridge-mode half of an attach: a port on the network's bridge, the
//! address with the subnet's prefix, the default route via the bridge — the
//! container side configured in one socket session inside its namespace.

use crate::Error;
use crate::agent::Agent;
use crate::model::{AttachRequest, Network};
use crate::plan::ContainerPlan;
use trellis_link::{ContainerIface, LinkRef, VethInfo, VethSpec};
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
        // A bridge port needs no address of its own (see `VethSpec`).
        host_ipv6: false,
    }
}

impl Agent {
    /// The container side of a bridge port: its addresses, up, the default
    /// route via the bridge, in one session inside its namespace.
    pub(crate) async fn plumb_bridge_port(
        &self,
        req: &AttachRequest,
        veth: &VethInfo,
        plan: &ContainerPlan,
    ) -> Result<(), Error> {
        let iface = ContainerIface {
            netns: req.netns.clone(),
            link: LinkRef::Index(veth.container_ifindex),
            addresses: plan.addresses.clone(),
            ipv6: plan.ipv6,
        };
        self.be.links.setup_container(&iface, &plan.routes).await?;
        Ok(())
    }
}
