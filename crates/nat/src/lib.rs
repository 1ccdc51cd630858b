//! NAT for bridge networks and routed pools, in one nftables table that
//! trellis owns, spoken to the kernel over raw nf_tables netlink.
//!
//! # What it does
//!
//! * **Masquerade** (the seed's `MASQUERADE all -- * !docker0 192.168.169.0/24`):
//!   traffic from a network's subnet leaving through any interface but the
//!   network's own bridge leaves behind the address of the outgoing interface.
//! * **Published ports** (Docker's `-p 8081:80`): traffic addressed to the host
//!   itself (`fib daddr type local`) on a published protocol/port is DNAT'ed to
//!   the container, both in prerouting (other hosts, containers) and in output
//!   (processes of the host).
//! * **Hairpin**: a container reaching a published port of a container on its
//!   own bridge is masqueraded too, so that the reply comes back through the
//!   host and is un-DNAT'ed.
//! * **Outgoing NAT of routed pools** (Calico's `natOutgoing`): traffic from a
//!   routed pool with outgoing NAT to a destination in no routed pool leaves
//!   behind the address of the outgoing interface. Traffic between pools (pod
//!   to pod, on one host or across hosts) is never masqueraded: containers of
//!   routed pools are reachable by their own addresses.
//!
//! # Design decisions
//!
//! **One table, `inet trellis`.** trellis finds everything it installed by the
//! table name alone; deleting the table removes all of it, and nothing of other
//! tools (Docker's iptables-nft, firewalld) is ever touched or matched by shape.
//! The `inet` family holds IPv4 and IPv6 in one table with one set of base
//! chains; each family has its own sets and its rules start with
//! `meta nfproto`, so one table is enough for dual-stack.
//!
//! **A fixed skeleton; everything variable is a set element.** The rules are
//! created once (`ensure_table`) and never change. Published ports are elements
//! of one concatenated map per family, `meta l4proto . th dport : addr . port`,
//! used by a single `dnat ... map` rule: a packet costs one hash lookup whatever
//! the number of published ports, and publishing is an element insertion, not a
//! rule insertion (compare netavark's rule per port). Networks are elements too:
//! `own4`/`own6` hold `subnet . bridge` (concatenated intervals), `masq4`/`masq6`
//! hold the subnets to masquerade; so are routed pools: `pools4`/`pools6` hold
//! every routed pool, `natpools4`/`natpools6` those with outgoing NAT, and one
//! rule per family masquerades `saddr in natpools and daddr not in pools` (two
//! lookups whatever the number of pools; adding a pool adds elements, never a
//! rule). The table as `nft list table inet trellis` prints it:
//!
//! ```text
//! table inet trellis {
//!     map ports4 { type inet_proto . inet_service : ipv4_addr . inet_service }
//!     set own4 { type ipv4_addr . ifname; flags interval }
//!     set masq4 { type ipv4_addr; flags interval }
//!     set pools4 { type ipv4_addr; flags interval }
//!     set natpools4 { type ipv4_addr; flags interval }
//!     (ports6, own6, masq6, pools6, natpools6 alike with ipv6_addr)
//!     chain published {
//!         meta nfproto ipv4 dnat ip to meta l4proto . th dport map @ports4
//!         meta nfproto ipv6 dnat ip6 to meta l4proto . th dport map @ports6
//!     }
//!     chain prerouting { type nat hook prerouting priority dstnat; policy accept;
//!         fib daddr type local jump published }
//!     chain output { type nat hook output priority -100; policy accept;
//!         fib daddr type local jump published }
//!     chain postrouting { type nat hook postrouting priority srcnat; policy accept;
//!         ct status dnat ip saddr . oifname @own4 masquerade    # hairpin
//!         ip saddr . oifname @own4 return                       # stays on its bridge
//!         ip saddr @masq4 ip daddr != @pools4 masquerade        # leaves the host
//!         ip saddr @natpools4 ip daddr != @pools4 masquerade    # routed, to the world
//!         (the same four for ip6) }
//! }
//! ```
//!
//! **Netlink, not nft(8).** Publishing a port is on the attach path of every
//! container: spawning `nft` costs milliseconds and a dependency on a binary
//! (and libnftnl is GPL). trellis encodes the few nf_tables messages it needs
//! itself (`wire`, `expr`), keeps one socket open, and sends each change as one
//! nfnetlink batch, which the kernel applies atomically: a `publish` of several
//! ports either adds all of them or none.
//!
//! **The socket lives on a thread of its own, never on the runtime's.**
//! Reading an answer blocks (a dump, or up to a 5 s timeout if the kernel says
//! nothing), and the [`Nat`] methods are `async`: done inline, every task and
//! timer of the calling tokio worker would wait with them — on a current-thread
//! runtime, all of them. So each [`NftNat`] owns one thread (`trellis-nft`),
//! born in the table's namespace through trellis-netlink's `spawn_in` (the one
//! `setns` in trellis), which opens the socket, serves jobs from a channel one
//! at a time (so read-check-write sequences such as `publish` are serialised)
//! and answers each through a oneshot; planning and encoding run there too.
//! The thread ends when the `NftNat` is dropped. Construction alone waits, as
//! briefly as opening a socket does.
//!
//! **Rules that never change.** `ensure_table` sends, in one batch: create the
//! table, chains and sets if missing, flush every chain, append the rules. It is
//! idempotent, repairs drifted rules, and keeps the elements. `sync` goes
//! further (create table, delete table, skeleton, elements) and replaces the
//! whole state atomically, for start-up reconciliation.
//!
//! **Conflicts.** A host port is one key of the map, so two mappings cannot
//! share it: `publish` looks each key up first (one GET per port) and refuses
//! with [`Error::PortInUse`]; the batch also sends every port as its own
//! `NEWSETELEM` with `NLM_F_EXCL`, so a conflict that slips past the look-up is
//! refused by the kernel, named by its sequence number, and aborts the batch.
//!
//! **Ports on one host address** (Docker's `-p 127.0.0.1:8081:80`) live in a
//! second map per family, `daddr . l4proto . dport : addr . port`, looked up
//! before the first; `127.0.0.1` works from the host itself because bridges
//! get `route_localnet` and a loopback source is masqueraded behind the
//! bridge's address (IPv4 only: the kernel never routes `::1` off the host).
//!
//! **Filter chains** keep bridge networks apart (`reach` and `internal`) and
//! keep the host's loopback closed to neighbours despite `route_localnet`:
//! see [`filter`](crate::filter) — its docs are the contract.
//!
//! **Known limits.** Element comments (a network name in `nft list`) are not
//! written.
//!
//! **The host's own firewall** is the one place trellis writes outside its
//! table: accept rules, tagged `trellis:<network>`, at the head of the host's
//! forward chains that drop by policy ([`hostfw`], behind the narrow
//! [`HostFirewall`] trait).
//!
//! **Desired state as data.** `layout` describes the skeleton, `elems` the
//! elements, `plan` turns operations into lists of messages; all of it is pure
//! and tested against golden values without a kernel. `NftNat` is the one place
//! that sends them, from its thread.

pub mod check;
mod conn;
mod elems;
mod error;
mod expr;
mod filter;
#[doc(hidden)]
pub mod fuzz;
pub mod hostfw;
mod layout;
mod masq;
mod nft;
mod parse;
mod plan;
mod pools;
mod wire;
mod worker;

pub use error::Error;
#[cfg(any(test, feature = "mock"))]
pub use hostfw::MockHostFirewall;
pub use hostfw::{Admitted, HostFirewall};
pub use layout::TABLE;
pub use nft::NftNat;

use async_trait::async_trait;
use ipnet::IpNet;
use trellis_types::{IfName, PortMapping};

/// The NAT of one bridge network.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NetworkNat {
    /// The network's subnet (no host bits set).
    pub subnet: IpNet,
    /// The network's bridge: traffic leaving through it is not masqueraded.
    pub bridge: IfName,
    /// Whether traffic leaving the host from this subnet is masqueraded (false
    /// for networks the upstream routers reach directly, the seed's static route).
    pub masquerade: bool,
    /// Whether the network is cut off from everything but its own bridge:
    /// nothing is forwarded into or out of it.
    pub internal: bool,
}

/// A routed pool (routed mode): containers hold /32 or /128 addresses of it
/// and are routed to, not bridged.
///
/// Every routed pool is a destination that is never masqueraded to, so
/// container-to-container traffic (on one host or across hosts) keeps its
/// source address; with `nat_outgoing`, traffic from the pool to anywhere
/// else leaves behind the address of the outgoing interface (Calico's
/// `natOutgoing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoutedPool {
    /// The pool's prefix (no host bits set).
    pub cidr: IpNet,
    /// Whether traffic from the pool to destinations outside every routed
    /// pool is masqueraded.
    pub nat_outgoing: bool,
}

/// The whole NAT state of a host, for start-up reconciliation ([`Nat::sync`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatState {
    /// The bridge networks.
    pub networks: Vec<NetworkNat>,
    /// The routed pools.
    pub pools: Vec<RoutedPool>,
    /// The published ports.
    pub ports: Vec<PortMapping>,
    /// The pairs of bridges forwarded between bridge networks, `(from, to)`
    /// (see [`Nat::set_reach`]).
    pub reach: Vec<(IfName, IfName)>,
}

/// trellis's NAT table. Every method is one atomic change (or one read).
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait Nat: Send + Sync {
    /// Creates the table, its chains, sets and rules if missing, and restores
    /// the rules if they drifted; keeps the elements. Idempotent.
    async fn ensure_table(&self) -> Result<(), Error>;
    /// Replaces the whole table with exactly `state`, atomically.
    async fn sync(&self, state: &NatState) -> Result<(), Error>;
    /// Adds a network (or updates its `masquerade`). A subnet overlapping
    /// another network's is refused with the field `subnet` named.
    async fn add_network(&self, net: &NetworkNat) -> Result<(), Error>;
    /// Removes a network; a network that is not there is no error.
    async fn remove_network(&self, net: &NetworkNat) -> Result<(), Error>;
    /// The networks in the table.
    async fn list_networks(&self) -> Result<Vec<NetworkNat>, Error>;
    /// Adds a routed pool (or updates its `nat_outgoing`): set elements only,
    /// the rules do not change. A prefix overlapping another routed pool's is
    /// refused with the field `cidr` named.
    async fn add_pool(&self, pool: &RoutedPool) -> Result<(), Error>;
    /// Removes the routed pool with `pool.cidr` (whatever its
    /// `nat_outgoing`); a pool that is not there is no error.
    async fn remove_pool(&self, pool: &RoutedPool) -> Result<(), Error>;
    /// The routed pools in the table, sorted.
    async fn list_pools(&self) -> Result<Vec<RoutedPool>, Error>;
    /// Makes `pairs` exactly the pairs of bridges between which traffic is
    /// forwarded (new connections from the first to the second); every other
    /// pair of bridge networks is kept apart. A bridge is always paired with
    /// itself while its network exists (pairs of a bridge with itself are
    /// ignored here). One atomic change of set elements.
    async fn set_reach(&self, pairs: &[(IfName, IfName)]) -> Result<(), Error>;
    /// The pairs [`Nat::set_reach`] made, sorted.
    async fn list_reach(&self) -> Result<Vec<(IfName, IfName)>, Error>;
    /// Publishes ports, all or none. A protocol/host port that is already
    /// published (even to the same container) or that appears twice in `ports`
    /// is refused with [`Error::PortInUse`]; a port published on every host
    /// address and the same port on one address clash too (as in Docker).
    async fn publish(&self, ports: &[PortMapping]) -> Result<(), Error>;
    /// Unpublishes ports, all or none. Only exact matches are removed; a mapping
    /// that is not published is no error.
    async fn unpublish(&self, ports: &[PortMapping]) -> Result<(), Error>;
    /// The published ports, sorted.
    async fn list_published(&self) -> Result<Vec<PortMapping>, Error>;
    /// Deletes the table and everything in it. Idempotent.
    async fn remove_all(&self) -> Result<(), Error>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_trait_is_object_safe_and_mockable() {
        let mut mock = MockNat::new();
        mock.expect_publish().times(1).returning(|ports| {
            let m = ports[0];
            Err(Error::PortInUse {
                protocol: m.protocol,
                host_port: m.host_port,
                existing: None,
            })
        });
        let nat: Box<dyn Nat> = Box::new(mock);
        let m = PortMapping::new(
            trellis_types::Protocol::Udp,
            53,
            "10.0.0.2".parse().unwrap(),
            53,
        )
        .unwrap();
        let err = nat.publish(&[m]).await.unwrap_err();
        assert_eq!(err.to_string(), "udp host port 53 is already published");
    }
}
