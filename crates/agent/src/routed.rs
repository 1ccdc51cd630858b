//! Routed networks (Calico's model): their gateways and blackholes.
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
use crate::model::Network;
use ipnet::IpNet;
use std::net::IpAddr;
use trellis_link::Ns;
use trellis_route::{ROUTED_GATEWAY_V4, ROUTED_GATEWAY_V6, Route};

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

impl Agent {
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
