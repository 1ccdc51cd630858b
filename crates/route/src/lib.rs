//! Routes and neighbours over rtnetlink, every one tagged with trellis's own
//! route protocol number, and the host side of routed mode.
//!
//! Design decisions:
//!
//! * **Own what you install.** Every route carries [`RTPROT_TRELLIS`] (116,
//!   shown as `proto 116` by `ip route`; free in iproute2's `rt_protos` and in
//!   the kernel's `RTPROT_*` list, and clear of BIRD 12, Zebra 11, FRR's
//!   186–198 and Calico's 80). [`Routes::list_routes`] returns only routes with
//!   that tag, so reconcile finds exactly trellis's and never someone else's;
//!   deletes include the protocol in the match for the same reason. Permanent
//!   neighbours carry it too (`NDA_PROTOCOL`).
//! * **Idempotent both ways.** Adds are create-or-replace; deletes treat
//!   `ESRCH`/`ENOENT` (and a device that is gone, which took its routes with
//!   it) as done, and go on past failures.
//! * **A sibling of trellis-link, not built on it.** Both stand on
//!   trellis-netlink: its [`Sockets`] (one host socket, shared with
//!   trellis-link's implementation), its request executor and its link
//!   lookup (a route's `dev` is resolved to an index in the namespace the
//!   route goes into). This crate holds only its own builders.
//! * **Requests are data.** [`msg`] turns a [`Route`] into a netlink message
//!   with pure functions (tested by value); trellis-netlink's executor
//!   applies a batch pipelined on one socket, in order (so a `scope link`
//!   route to a gateway can precede the default route through it in one
//!   call).
//! * **Namespaces as everywhere in trellis.** [`Ns::Host`] is the
//!   implementation's host namespace; a container's routes go through a
//!   socket opened inside its namespace for the call, on a throwaway `setns`
//!   thread ([`trellis_netlink::netns`]).
//! * **Routed mode in one round trip.** [`Routes::setup_routed_host`] sends a
//!   routed endpoint's whole host side — the port's knobs and gateway
//!   addresses (see [`routed`] for the kernel rules and the no-default-route
//!   pitfall), its `/32 scope link` routes and permanent neighbours — as one
//!   pipelined batch on the host socket; only IPv6's `accept_ra` and
//!   `forwarding` go to `/proc/sys` beside it. Deleting the veth takes all of
//!   it with it (the kernel flushes a device's routes, addresses and
//!   neighbours when it goes). The routes *inside* a routed container
//!   ([`routed::container_routes`]) are installed by trellis-link with the
//!   container's addresses, in its one container session.
//! * **Blocks.** A host covers each block it owns with a tagged
//!   [`Route::blackhole`]: an unassigned address of the block is dropped here
//!   instead of following the default route, while the containers' /32s,
//!   being longer, still win.
//! * **Peer routes are declarative.** [`Routes::set_peer_routes`] takes the
//!   whole desired set of "block via underlay address" routes, reads what is
//!   installed (tagged, with a gateway) and applies only the difference.

mod error;
mod model;
pub mod msg;
mod netlink;
pub mod peer;
pub mod routed;

#[cfg(test)]
mod msg_routed_tests;
#[cfg(test)]
mod msg_tests;
#[cfg(test)]
mod routed_tests;

pub use error::RouteError;
pub use model::{HostRoute, Neighbour, Route, RouteKind, Scope};
pub use netlink::NetlinkRoutes;
pub use peer::{PeerRoute, PeerRouteChanges};
pub use routed::{
    ROUTED_GATEWAY_V4, ROUTED_GATEWAY_V6, ROUTED_HOST_MAC, RoutedEndpoint, RoutedHostPort,
};
// The netlink types this crate's API speaks, so that its users need not
// depend on trellis-netlink themselves.
pub use trellis_netlink::{
    ContainerRoute, Families, KernelError, Mac, NetnsError, Ns, RTPROT_TRELLIS, Sockets,
};

use async_trait::async_trait;
use trellis_types::IfName;

/// Routes and neighbours, in the host namespace or a container's.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait Routes: Send + Sync {
    /// Installs `routes` in order (create or replace). All are checked before
    /// any is sent; a `dev` that does not exist is [`RouteError::NoSuchDevice`].
    async fn add_routes(&self, ns: &Ns, routes: &[Route]) -> Result<(), RouteError>;

    /// Removes `routes`; ones already gone count as removed. Goes on past
    /// failures and reports the first.
    async fn delete_routes(&self, ns: &Ns, routes: &[Route]) -> Result<(), RouteError>;

    /// The routes trellis installed ([`RTPROT_TRELLIS`], main table) in `ns`.
    async fn list_routes(&self, ns: &Ns) -> Result<Vec<Route>, RouteError>;

    /// Every route of the host's main table, whoever installed it (a read
    /// only: what requests are checked against before anything changes).
    async fn host_routes(&self) -> Result<Vec<HostRoute>, RouteError>;

    /// Installs permanent neighbour entries (create or replace).
    async fn add_neighbours(&self, ns: &Ns, neighbours: &[Neighbour]) -> Result<(), RouteError>;

    /// Removes neighbour entries; ones already gone count as removed.
    async fn delete_neighbours(&self, ns: &Ns, neighbours: &[Neighbour]) -> Result<(), RouteError>;

    /// The neighbour entries (address and MAC) on `dev` in `ns`, whoever
    /// made them; entries without a MAC yet are left out, and a `dev` that is
    /// gone has none. A read only (`check` compares records with it).
    async fn list_neighbours(&self, ns: &Ns, dev: &IfName) -> Result<Vec<Neighbour>, RouteError>;

    /// The neighbours with a MAC on every link of `ns`, from one link dump
    /// and one neighbour dump however many links there are (what a
    /// node-wide observe reads, instead of a dump per port).
    async fn list_all_neighbours(&self, ns: &Ns) -> Result<Vec<Neighbour>, RouteError>;

    /// Sets up the host side of a routed endpoint in one batch on the host
    /// socket: the port (`forwarding=1`, `proxy_arp=1`, `neigh proxy_delay=0`
    /// and the gateway `169.254.1.1/32 scope host` for IPv4;
    /// `addr_gen_mode=none`, the gateway `fe80::ecee:eeff:feee:eeee/64`
    /// without DAD, and `accept_ra=0`, `forwarding=1` through `/proc/sys` for
    /// IPv6), then `<ip>/32|128 dev <host_if> scope link` and a permanent
    /// neighbour `<ip> lladdr <container mac>` per address. Idempotent. Call
    /// it after `create_veth` and before the container end comes up.
    async fn setup_routed_host(&self, endpoint: &RoutedEndpoint) -> Result<(), RouteError>;

    /// The peer routes installed in the host namespace (see [`peer`]).
    async fn list_peer_routes(&self) -> Result<Vec<PeerRoute>, RouteError>;

    /// Makes the host's peer routes exactly `desired`: installs the missing
    /// and changed ones, removes the ones not wanted, touches nothing else.
    /// Checks all of `desired` first (one `via` per block, families match).
    async fn set_peer_routes(&self, desired: &[PeerRoute]) -> Result<PeerRouteChanges, RouteError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_trait_is_object_safe_and_mockable() {
        let mut mock = MockRoutes::new();
        mock.expect_list_routes()
            .returning(|_| Ok(vec![Route::blackhole("10.8.0.0/26".parse().unwrap())]));
        let routes: Box<dyn Routes> = Box::new(mock);
        assert_eq!(routes.list_routes(&Ns::Host).await.unwrap().len(), 1);
    }
}
