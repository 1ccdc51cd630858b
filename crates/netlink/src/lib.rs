//! The rtnetlink plumbing that trellis-link and trellis-route share: which
//! namespace a request goes to, the socket it goes over, the request as
//! data, and the one executor that sends it.
//!
//! Design decisions:
//!
//! * **Link and route are siblings over one executor.** Links (bridges,
//!   veths, addresses) and routes (routes, neighbours, routed host ports)
//!   are separate concerns behind separate traits, but they speak one
//!   protocol to one kernel over one host socket. What they share lives
//!   here, so that neither crate depends on the other and each holds only
//!   its own builders:
//!
//!   ```text
//!   agent ─► dyn Links  ─ trellis-link:  bridges, veths, addresses ──┐  Vec<Request>
//!         ─► dyn Routes ─ trellis-route: routes, neighbours, ports ──┤  (pure builders)
//!                                                                    ▼
//!           trellis-netlink: Sockets ─ host socket, or a per-call socket
//!                                      born on a namespace thread
//!                            nl::apply / nl::fetch ─► kernel
//!   ```
//!
//!   This crate has no trait and no mock: it decides nothing about what is
//!   installed. The agent opens one [`Sockets`] and hands clones to both
//!   implementations.
//! * **Namespaces are entered only on threads trellis owns.** A container's
//!   socket is created by a throwaway thread that entered its namespace
//!   (a socket stays bound to the namespace it was born in); tokio workers
//!   never `setns`. [`netns::spawn_in`] is the only `setns` in trellis
//!   (trellis-nat's nf_tables thread uses it too). See [`netns`].
//! * **"Host" is a namespace you choose.** The daemon runs in the host's
//!   netns, but tests must never touch the machine's own, so [`Sockets`] is
//!   opened either for the current namespace or for the one at a path, and
//!   [`Ns::Host`] means that one.
//! * **Requests are data.** Builders are pure functions returning
//!   [`nl::Request`] values, unit-tested by value; [`nl`] is the one
//!   executor: it pipelines a batch on one socket (one round trip for a
//!   container's whole side) and retries a dump the kernel answers with
//!   `EBUSY`. Errors name the operation and its subject ([`KernelError`]).
//! * **Own what you install.** Every route and permanent neighbour trellis
//!   installs, whichever sibling builds it, carries [`RTPROT_TRELLIS`]
//!   ([`msg::route_message`] is the one route shape).
//! * **Bad input is caught before anything changes**: a netns path is opened
//!   and checked (nsfs, `net:[…]`) before any request is sent, and a failure
//!   is an [`trellis_types::InvalidInput`] naming the field `netns`.

pub mod error;
pub mod lookup;
pub mod msg;
pub mod netns;
pub mod nl;
mod sockets;
mod spec;
mod sysctl;

pub use error::{KernelError, NetnsError};
pub use sockets::Sockets;
pub use spec::{ContainerRoute, Families, InetConf, LinkRef, LinkSummary, Mac, Ns, format_mac};
pub use sysctl::SysctlKey;

/// The route protocol number (`rtm_protocol`) of every route trellis installs
/// (shown as `proto 116` by `ip route`; free in iproute2's `rt_protos` and in
/// the kernel's `RTPROT_*` list, and clear of BIRD 12, Zebra 11, FRR's
/// 186–198 and Calico's 80). Permanent neighbours carry it too
/// (`NDA_PROTOCOL`). Defined here because both siblings install routes:
/// trellis-link a container's, trellis-route everything else.
pub const RTPROT_TRELLIS: u8 = 116;
