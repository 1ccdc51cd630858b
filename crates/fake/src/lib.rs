//! Test-only: an in-memory kernel that holds state, behind trellis's
//! kernel-facing traits (`Links`, `Routes`, `Nat`, `HostFirewall`).
//!
//! # Why it exists
//!
//! The agent's logic — attach and its undo on failure, detach, check,
//! reconcile, garbage collection, and the gRPC edge above them — is logic,
//! and should be tested without root. The mockall mocks (`MockLinks`, …)
//! answer call by call from closures, which suits one call but not a path of
//! twenty: a test would have to script the kernel's every answer, and could
//! not ask "is everything gone again?". [`FakeKernel`] instead *holds* the
//! state — namespaces, links, addresses, routes, neighbours, sysctls, the
//! NAT table and the host firewall's admitted networks — and one clone of it
//! serves as all four traits, so what `Links` does `Routes` sees (deleting a
//! veth removes its routes, addresses and neighbours, as the kernel does).
//!
//! The privileged tests in real namespaces stay the proof against the
//! kernel; this crate is what lets the many logic tests above them run as any
//! user, in milliseconds.
//!
//! # What it follows
//!
//! The behaviour documented on each trait method and implemented by the real
//! backends: idempotent deletes, create-or-replace adds, `AlreadyExists` for
//! a taken name on either end of a veth, `NotABridge`, `BridgeFull` at
//! [`trellis_link::BRIDGE_MAX_PORTS`] ports, `NotFound` for a missing link,
//! `NoSuchDevice` for a route or neighbour on a missing device, an
//! `InvalidInput` naming `netns` for a path the fake does not know, and for
//! NAT the very checks `NftNat` runs (`trellis_nat::check`: overlapping
//! subnets and pools refused, a taken port refused with `PortInUse`).
//! Kernel details that decide whether a path works are kept too: a route's
//! gateway must be reachable (`ENETUNREACH` otherwise, so routes must come
//! in order), addresses on an up link give connected routes (`proto
//! kernel`), and routes read back as a dump shows them (an IPv6 route has
//! metric 1024 and no scope).
//!
//! # How a test drives it
//!
//! Set the scene ([`FakeKernel::add_netns`] for each container — `check_netns`
//! knows only registered paths —, [`FakeKernel::add_device`],
//! [`FakeKernel::add_route`], [`FakeKernel::add_listener`]); hand clones to
//! the code under test as `Arc<dyn Links>` and so on; break it on cue
//! ([`FakeKernel::fail_next`], [`FakeKernel::fail_on`]: the call fails with
//! the errno as the kernel's answer and changes nothing); then read the
//! result ([`FakeKernel::calls`], [`FakeKernel::snapshot`] and what
//! [`Snapshot::diff`] finds changed, [`FakeKernel::trellis_leftovers`],
//! [`FakeKernel::links`], …).
//!
//! # What it does not model
//!
//! - Traffic: nothing is forwarded, NATed or filtered; reachability is only
//!   the route-table rule above. Published ports are rows, not DNAT.
//! - Partial failure: every call is all or nothing (the real batches are
//!   pipelined and may stop half-way; `delete_links` goes on past errors).
//! - Namespace identity beyond paths: one path is one namespace (plus the
//!   host's aliases from [`FakeKernel::add_host_netns_path`]); interface
//!   indexes are unique across the whole fake.
//! - Kernel defaults of sysctls (only writes are held), IPv6 link-local
//!   addresses and routes, DAD, `accept_ra` handling in
//!   `enable_host_forwarding`, device groups, carrier, MTU limits.
//! - The host firewall's chains: only whether one drops by policy
//!   ([`FakeKernel::set_host_firewall_drops`]) and what trellis admits.

mod diff;
mod faults;
mod kernel;
mod links;
mod machine;
mod nat;
mod routes;
mod state;
mod veth;

pub use faults::{Call, METHODS};
pub use kernel::{FakeKernel, NsSnapshot, Snapshot};
/// The kernel's answers that failures are injected as (re-exported from nix).
pub use nix::errno::Errno;
pub use state::{FakeLink, LinkKind, RTPROT_KERNEL};
