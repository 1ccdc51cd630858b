//! The routed-mode half of an attach (Calico's model).
//!
//! The container gets its addresses as /32 and /128 and a default route via
//! the link-local gateway `169.254.1.1` (`fe80::ecee:eeff:feee:eeee` for IPv6)
//! on its `eth0`. No host interface owns that address: the host end of the
//! veth, with MAC `ee:ee:ee:ee:ee:ee` and proxy-ARP on, answers ARP for it
//! (the kernel answers for any address it has a route to through another
//! interface), so every container's first hop is the host itself, which holds
//! one `/32 dev <veth> scope link` route per container and a blackhole for
//! each block it owns.

use crate::Error;
use crate::agent::Agent;
use crate::model::{AttachRequest, Network};
use crate::plan::ContainerPlan;
use ipnet::IpNet;
use std::net::IpAddr;
use trellis_link::{Ns, VethInfo, VethSpec};
use trellis_route::{ROUTED_GATEWAY_V4, ROUTED_GATEWAY_V6, ROUTED_HOST_MAC, Route, RoutedEndpoint};
use trellis_types::IfName;

/// The containers' gateways for a network with these pools.
pub(crate) fn gateways(subnets: &[IpNet]) -> Vec<IpAddr> {
    subnets
        .iter()
        .map(|s| match s {
            IpNet::V4(_) => IpAddr::V4(ROUTED_GATEWAY_V4),
            IpNet::V6(_) => IpAddr::V6(ROUTED_GATEWAY_V6),
        })
        .collect()
}

/// The veth of a routed endpoint: host end with the well-known MAC, no master.
pub(crate) fn veth_spec(req: &AttachRequest, net: &Network, host_ifname: &IfName) -> VethSpec {
    VethSpec {
        host_name: host_ifname.clone(),
        container_netns: req.netns.clone(),
        container_name: req.ifname.clone(),
        mtu: net.spec.mtu,
        container_mac: None,
        host_mac: Some(ROUTED_HOST_MAC),
        master: None,
        host_ipv6: net.spec.subnets.iter().any(|s| matches!(s, IpNet::V6(_))),
    }
}

impl Agent {
    /// The host side of a routed port in one netlink batch (port knobs,
    /// gateway addresses, a /32 and a permanent neighbour per address), after
    /// the blackholes of newly claimed blocks.
    pub(crate) async fn plumb_routed_host(
        &self,
        net: &Network,
        host_if: &IfName,
        veth: &VethInfo,
        plan: &ContainerPlan,
    ) -> Result<(), Error> {
        self.ensure_blackholes(net).await?;
        let endpoint = RoutedEndpoint {
            host_if: host_if.clone(),
            host_ifindex: veth.host_ifindex,
            addresses: plan.addresses.iter().map(IpNet::addr).collect(),
            container_mac: veth.container_mac,
        };
        Ok(self.be.routes.setup_routed_host(&endpoint).await?)
    }

    /// Adds a blackhole route for every block of the network this host owns
    /// and has not covered yet, so that traffic for an unassigned address of
    /// an owned block stops here instead of following the default route.
    async fn ensure_blackholes(&self, net: &Network) -> Result<(), Error> {
        let mut missing = Vec::new();
        for (pool, _) in net.pools() {
            let owned = self.ipam.owned_blocks(&pool).await?;
            let known = self.blackholed.lock().expect("blackholed lock");
            missing.extend(owned.into_iter().filter(|b| !known.contains(b)));
        }
        if missing.is_empty() {
            return Ok(());
        }
        let routes: Vec<Route> = missing.iter().map(|&b| Route::blackhole(b)).collect();
        self.be.routes.add_routes(&Ns::Host, &routes).await?;
        self.blackholed
            .lock()
            .expect("blackholed lock")
            .extend(missing);
        Ok(())
    }

    /// Removes the blackholes of a network's blocks (when it is deleted).
    pub(crate) async fn remove_blackholes(&self, net: &Network) -> Result<(), Error> {
        let mut blocks = Vec::new();
        for (_, cidr) in net.pools() {
            let mut known = self.blackholed.lock().expect("blackholed lock");
            blocks.extend(known.iter().filter(|b| cidr.contains(*b)).copied());
            known.retain(|b| !cidr.contains(b));
        }
        let routes: Vec<Route> = blocks.into_iter().map(Route::blackhole).collect();
        self.be.routes.delete_routes(&Ns::Host, &routes).await?;
        Ok(())
    }
}
