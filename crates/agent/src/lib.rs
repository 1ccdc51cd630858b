//! The node core: networks and endpoints over IPAM, links, routes and NAT.
//!
//! ```text
//! request ─▶ records + IPAM (one store commit) ─▶ desired NodeState ─┐
//!                                                                     ├─ diff ─▶ Executor ─▶ kernel
//!                                        kernel ─▶ observed NodeState ─┘
//! ```
//!
//! Design decisions:
//!
//! * **Kernel-facing parts are injected** ([`Backends`]: `dyn Links`,
//!   `dyn Routes`, `dyn Nat`, `dyn HostFirewall`, `dyn KvStore`). The daemon
//!   aims them at the host namespace, the lab and the privileged tests at a
//!   namespace of their own, and logic tests at `trellis-fake`'s in-memory
//!   kernel (which holds state and fails on cue).
//! * **Desired state as data, one diff, one executor** (see [`node`]): what
//!   the records want of the node is a value ([`node::NodeState`], computed
//!   by the pure [`node::desired`]); the kernel is read into the same shape
//!   ([`node::observe`]); [`node::diff`] turns the two into changes, and
//!   [`node::Executor`] is the one place that applies them. `check` reports
//!   the diff of one endpoint, `reconcile` applies the node's, GC applies it
//!   after forgetting endpoints the orchestrator no longer knows.
//! * **Attach and detach converge one endpoint's slice**, never the node:
//!   an attach takes the addresses and records the endpoint (one store
//!   commit: the record is computed from the addresses, see [`plan`]), then
//!   applies `diff(slice, nothing)`; a failure observes the slice and
//!   converges it back to nothing before the error is answered.
//! * **Detach needs no record.** Names derive from (container, ifname), so
//!   detach cleans up after a crash at any point; unknown is success.
//! * **No global lock.** IPAM is compare-and-swap through the store, with a
//!   short async lock per pool around the allocation alone (so that a burst
//!   of attaches on one block does not burn its CAS retries on each other);
//!   host ports are claimed in a short critical section; everything else is
//!   per container. Concurrent attaches run concurrently.
//! * **Records are scoped by node**:
//!   endpoints live under `nodes/<node>/endpoints`, so agents of several
//!   nodes sharing one store each see, claim host ports for, reconcile and
//!   collect only their own. Network definitions are shared, and the agent
//!   follows them with a store watch rather than a copy taken at open.
//! * **Restart disturbs nothing.** Opening an agent only reads records;
//!   [`Agent::reconcile`] then applies the node's diff, which adds and
//!   replaces what is missing or drifted and removes what trellis owns but no
//!   record explains — never re-creating what works.
//! * **Changes are announced after they happen** ([`Agent::subscribe`]).
//! * **What the node announces to routers is computed, not kept**
//!   ([`Agent::exported_prefixes`]: owned routed blocks and routable bridge
//!   subnets, read afresh); events say when to read it again.
//! * **The host is amended only as far as its networks need** ([`HostPolicy`]):
//!   forwarding for the families in use, and tagged accept rules in the
//!   host's own forward chains that drop by policy, re-asserted at every
//!   network change and reconcile; what cannot be done is a
//!   [`Status`] warning, never a failed request.
//! * **The core never speaks gRPC.** Errors carry an [`ErrorClass`] that an edge
//!   maps onto status codes.

mod agent;
mod attach;
mod check;
mod error;
mod events;
mod export;
mod gc;
mod guard;
mod held;
mod host;
mod kernel;
mod membership;
pub mod model;
mod network;
pub mod node;
mod plan;
mod ports;
mod reaper;
mod reconcile;
mod records;
pub mod routed;
mod safety;
mod status;
mod validate;
mod watch;

pub use agent::{Agent, Backends};
pub(crate) use agent::{Detaching, Inflight};
pub use error::{Error, ErrorClass};
pub use events::Event;
pub use gc::GcReport;
pub use held::HeldBlock;
pub use host::HostPolicy;
pub use membership::{Membership, MembershipError};
pub use model::{
    AttachRequest, ClusterPool, Endpoint, EndpointFilter, Network, NetworkMode, NetworkSpec,
    PortSpec,
};
pub(crate) use ports::Ports;
pub use reconcile::ReconcileReport;
pub use status::Status;

#[cfg(test)]
mod api_tests;
#[cfg(test)]
mod attach_tests;
#[cfg(test)]
mod safety_tests;
