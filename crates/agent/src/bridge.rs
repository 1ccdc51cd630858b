//! The bridge-mode half of an attach: a port on the network's bridge. The
//! container side (the address with the subnet's prefix, the default route
//! via the bridge) is planned in [`crate::plan`] and applied by
//! `Agent::plumb_port`, as for routed ports.

use crate::model::{AttachRequest, Network};
use trellis_link::{LinkRef, VethSpec};
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
