//! Network namespaces' links: bridges, veth pairs, addresses and
//! per-interface sysctls, over rtnetlink.
//!
//! Design decisions:
//!
//! * **The OS behind a trait.** [`Links`] is narrow and object-safe; the agent
//!   holds a `dyn Links`. [`NetlinkLinks`] is the real thing; `MockLinks`
//!   (feature `mock`) is for downstream unit tests.
//! * **A sibling of trellis-route, not its base.** The plumbing both need —
//!   namespaces and their threads, the host socket ([`Sockets`]), requests as
//!   data and their one executor, kernel errors, link lookup — is
//!   trellis-netlink's. This crate holds only the builders of links and
//!   addresses ([`msg`]) and re-exports the netlink types its API speaks
//!   ([`Ns`], [`LinkRef`], [`LinkSummary`], [`Mac`], …). Routes, neighbours
//!   and routed host ports are trellis-route's.
//! * **"Host" is a namespace you choose.** The daemon runs in the host's netns,
//!   but tests must never touch the machine's own, so [`NetlinkLinks`] is built
//!   either for the current namespace or for the one at a path, and every
//!   operation that targets "the host" goes there ([`Ns::Host`]).
//! * **Namespaces are entered only on trellis's own threads.** A
//!   container-side operation opens a netlink socket *inside* the container's
//!   namespace on one of a few long-lived namespace workers (`setns`, create
//!   socket, `setns` back home); sockets stay bound to the namespace they were
//!   born in. Tokio workers never `setns`. Nothing per container is cached
//!   beyond the call. See [`trellis_netlink::netns`].
//! * **Out of the way first, deleted later.** Deleting a veth costs the
//!   kernel ~20 ms; [`Links::retire_veth`] takes one out of the way in
//!   microseconds (down, off its bridge, renamed `trx…`, the container end
//!   without addresses), and [`Links::delete_links`] deletes many in one
//!   teardown later.
//! * **The peer is born where it lives.** A veth's container end is created
//!   directly inside the container's namespace under its final name (one
//!   `RTM_NEWLINK` whose `VETH_INFO_PEER` carries `IFLA_NET_NS_FD`), with the
//!   host end enslaved and up in the same request: no rename, no
//!   move, no window in which a half-made pair is visible on the host. (The
//!   peer cannot be set up in that request — the kernel applies its flags
//!   before the ends are linked and `veth_open` says `ENOTCONN` — so it comes
//!   up with its addresses, in [`Links::setup_container_iface`].)
//! * **Requests are data.** [`msg`] builds [`trellis_netlink::nl::Request`]
//!   values with pure functions (unit-tested by value); trellis-netlink's
//!   executor pipelines a batch on one socket.
//! * **Own what you install.** Host veths are named [`host_veth_name`]
//!   (`tr` + 13 hex digits of a hash of container id and interface), so leak
//!   checks and detaches find them without state. Bridges get a fixed MAC
//!   ([`bridge_mac`]) so it never follows the ports.
//! * **Idempotent deletes.** `ENODEV` means done. [`Links::delete_links`] moves
//!   the links into a private device group and deletes the group in one
//!   request: the kernel then pays a teardown's RCU grace periods once for
//!   the batch instead of once per veth (~20 ms each).
//! * **One container session.** [`Links::setup_container`] brings `lo` and
//!   the interface up, adds the addresses and the container's routes over
//!   the one socket opened inside the container's namespace.
//! * **Reads for `check` are here too.** [`Links::link_detail`] reads a link
//!   with its addresses, in any namespace, so that the agent compares records
//!   with the kernel through this trait and never speaks netlink itself.
//! * **Bad input is caught before anything changes**: a netns path is opened
//!   and checked (nsfs, `net:[…]`) before any request is sent, and a failure
//!   is an [`trellis_types::InvalidInput`] naming the field `netns`.

pub mod error;
pub mod forwarding;
pub mod host;
mod host_read;
pub mod msg;
mod naming;
mod netlink;
mod spec;

#[cfg(test)]
mod msg_tests;

pub use error::{BRIDGE_MAX_PORTS, LinkError};
pub use host::{HostAddress, Listener, NetnsId, ReservedNetns, WantedPort};
pub use naming::{
    HOST_VETH_PREFIX, RETIRED_PREFIX, bridge_mac, container_mac, host_veth_name, is_host_veth_name,
    is_retired_name, retired_name,
};
pub use netlink::NetlinkLinks;
pub use spec::{BridgeSpec, ContainerIface, LinkDetail, RetireEnd, VethInfo, VethSpec};
// The netlink types this crate's API speaks, so that its users need not
// depend on trellis-netlink themselves.
pub use trellis_netlink::{
    ContainerRoute, Families, InetConf, KernelError, LinkRef, LinkSummary, Mac, NetnsError, Ns,
    RTPROT_TRELLIS, Sockets, SysctlKey, format_mac,
};

use async_trait::async_trait;
use ipnet::IpNet;
use trellis_types::{IfName, NetnsPath};

/// Links: bridges, veth pairs, addresses, up/down and sysctls, in the host
/// namespace or a container's.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait Links: Send + Sync {
    /// Creates the bridge or brings an existing one in line (MAC, MTU, up,
    /// gateway addresses, `route_localnet=1` for ports published on
    /// `127.0.0.1`); returns its index. An existing non-bridge of that
    /// name is [`LinkError::NotABridge`].
    async fn ensure_bridge(&self, spec: &BridgeSpec) -> Result<u32, LinkError>;

    /// Checks, without changing anything, that `netns` is a network namespace
    /// (an [`trellis_types::InvalidInput`] naming `netns` if not), and returns
    /// its identity. Cheap: an open, an fstatfs, an fstat and a readlink, no
    /// thread.
    fn check_netns(&self, netns: &NetnsPath) -> Result<NetnsId, LinkError>;

    /// The namespaces that are never a container's, whatever path reaches
    /// them: the host, the process's own, init's ([`host::reserved_netns`]).
    fn reserved_netns(&self) -> Vec<ReservedNetns>;

    /// Every address of the host namespace, with its interface.
    async fn host_addresses(&self) -> Result<Vec<HostAddress>, LinkError>;

    /// The sockets of the host namespace that hold any of `wanted` (a TCP
    /// listener, a bound UDP socket), each found by a bind probe: cheap, and
    /// no walk of the kernel's socket tables.
    async fn host_listeners(&self, wanted: &[WantedPort]) -> Result<Vec<Listener>, LinkError>;

    /// Creates a veth pair with the peer inside the container's namespace (the
    /// host end up and enslaved, the peer still down). A taken name, on either
    /// side, is [`LinkError::AlreadyExists`].
    async fn create_veth(&self, spec: &VethSpec) -> Result<VethInfo, LinkError>;

    /// Configures the container end in one socket session inside its
    /// namespace: `lo` up, the addresses, the interface up.
    async fn setup_container_iface(&self, iface: &ContainerIface) -> Result<(), LinkError>;

    /// [`Links::setup_container_iface`] plus `routes` through that interface,
    /// installed (create or replace) after it is up, in the same socket
    /// session: one namespace thread and one round trip for the whole
    /// container side.
    async fn setup_container(
        &self,
        iface: &ContainerIface,
        routes: &[ContainerRoute],
    ) -> Result<(), LinkError>;

    /// Turns on the host-wide forwarding switches for `families`
    /// (`ipv4/ip_forward`, `ipv6/conf/all/forwarding`): once per network,
    /// not per endpoint, for bridge and routed networks alike. Before IPv6 forwarding goes on, interfaces that
    /// accept router advertisements (`accept_ra=1`) get `accept_ra=2`, except
    /// trellis's host veths and `own_bridges` (see [`forwarding`]).
    async fn enable_host_forwarding(
        &self,
        families: Families,
        own_bridges: &[IfName],
    ) -> Result<(), LinkError>;

    /// Adds an address (idempotent: an existing one is refreshed).
    async fn add_address(&self, ns: &Ns, link: &LinkRef, addr: IpNet) -> Result<(), LinkError>;

    /// Sets a link administratively up.
    async fn set_up(&self, ns: &Ns, link: &LinkRef) -> Result<(), LinkError>;

    /// Takes the host veth `host` out of the way at once, so that its names
    /// and addresses can be used again before the kernel's slow teardown of
    /// it: the host end down and off its bridge (its routes and neighbours
    /// go with that), then renamed to a fresh [`retired_name`]. With
    /// `container`, and when the link there is this veth's peer, the
    /// container end first goes down, loses its addresses and is renamed
    /// likewise. Returns the host end's new name, for [`Links::delete_links`]
    /// to finish with; `None` if there was no such link. A container end
    /// whose namespace is gone, or whose interface is not this veth's peer,
    /// is left alone (it goes with the host end).
    async fn retire_veth(
        &self,
        host: &IfName,
        container: Option<RetireEnd>,
    ) -> Result<Option<IfName>, LinkError>;

    /// Deletes a host link (a veth takes its peer with it). Already gone is done.
    async fn delete_link(&self, name: &IfName) -> Result<(), LinkError>;

    /// Deletes many host links in one kernel teardown; already gone is done.
    /// Goes on past failures and reports the first.
    async fn delete_links(&self, names: &[IfName]) -> Result<(), LinkError>;

    /// Whether a link of that name exists in `ns`.
    async fn link_exists(&self, ns: &Ns, name: &IfName) -> Result<bool, LinkError>;

    /// The links in `ns` whose name starts with `prefix` (leak checks, reconcile).
    async fn list_links_with_prefix(
        &self,
        ns: &Ns,
        prefix: &str,
    ) -> Result<Vec<LinkSummary>, LinkError>;

    /// The link `name` in `ns` with its addresses; `None` if there is no
    /// such link. A read only (`check` compares records with it).
    async fn link_detail(&self, ns: &Ns, name: &IfName) -> Result<Option<LinkDetail>, LinkError>;

    /// Writes `/proc/sys/net/<key>` as seen from `ns`.
    async fn set_sysctl(&self, ns: &Ns, key: &SysctlKey, value: &str) -> Result<(), LinkError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_trait_is_object_safe_and_mockable() {
        let mut mock = MockLinks::new();
        mock.expect_delete_link()
            .withf(|n| n.as_str() == "tr0123456789abc")
            .returning(|_| Ok(()));
        let links: Box<dyn Links> = Box::new(mock);
        let name = IfName::parse("ifname", "tr0123456789abc").unwrap();
        links.delete_link(&name).await.unwrap();
    }
}
