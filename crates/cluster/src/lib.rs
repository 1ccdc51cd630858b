//! The cluster controller's core: pools, cluster networks, nodes with
//! leases, and which node holds which address block — over any
//! [`KvStore`](trellis_store::KvStore).
//!
//! # Design decisions
//!
//! * **Authority is split in two.** The controller decides which node holds
//!   a block; the node decides which container holds an address inside its
//!   blocks, in its own store. So the controller never sees a container, an
//!   attach never waits on the controller while its node has room, and a
//!   controller outage stops no attach on a node with free addresses.
//!   (Calico makes every address allocation a compare-and-swap on the
//!   shared datastore; Cilium's multi-pool IPAM hands CIDRs to nodes and
//!   lets them allocate locally. trellis does the latter.)
//! * **A block is one key; a claim is a compare-and-swap on it.** The claim
//!   commits the block (expected absent), the pool's count of held blocks
//!   and the node's count per pool in one transaction ([`blocks`]), so a
//!   block never has two owners, a pool is never deleted under a claim, and
//!   the per-node cap holds under any concurrency. [`check_invariants`]
//!   reads the whole store and proves the counts never drift.
//! * **Leases live in memory; death and release are written.** A node
//!   renews its lease by [`Controller::keep_alive`]. The controller keeps
//!   the time of each renewal in memory, and the sweeper
//!   ([`Controller::run_sweeper`]) marks a node whose lease lapsed dead and,
//!   after the grace period (10 min by default), gives its blocks back. A
//!   controller that restarts gives every node a fresh lease: a restart only
//!   ever delays a release, never hastens one. A node that comes back before
//!   the release keeps its blocks.
//! * **Fencing is the node's half of the lease.** A node that cannot renew
//!   stops handing out addresses before `lease + grace` has passed since the
//!   last renewal it *sent*, so by the time the controller could give its
//!   blocks away it has stopped using them. The controller answers the
//!   lease and grace it uses at registration, so both sides count the same.
//! * **Empty blocks go back from the node, not the controller.** Only the
//!   node knows an empty block will stay empty (it is the one that would
//!   allocate in it), so the node releases its own empty blocks; the
//!   controller releases blocks only of dead nodes, and when an operator
//!   asks (`release_ipam`, `remove_node`).
//! * **Watch = snapshot + changes at store revisions.** A watcher resumes
//!   from the revision after the last one it saw; one that fell behind the
//!   store's history gets a fresh snapshot marked `reset` ([`watch`]).
//! * **One store watch, however many watchers.** The controller watches
//!   the store once, types each change once and fans it out to every
//!   watcher; a watcher that does not keep up is cut off and watches again,
//!   so it never slows the others (`hub`).
//!
//! * **The controller reads nodes, through a trait.** What a node's own
//!   IPAM really holds is the node's to say; the IPAM check reads it
//!   ([`reader::NodeReader`]) and compares it with the block map. How a
//!   node is reached (its Agent API, mutual TLS) is the edge's business.
//!
//! The gRPC edge (`trellis-grpc`'s controller service) converts and
//! forwards; `bins/trellis-controller` serves it.

mod blocks;
mod check;
mod controller;
mod error;
mod hub;
pub mod keys;
mod model;
mod nodes;
mod office;
mod pools;
pub mod reader;
pub mod watch;

pub use check::check_invariants;
pub use controller::{Config, Controller, DEFAULT_GRACE, DEFAULT_LEASE_TTL, DEFAULT_WATCH_BUFFER};
pub use error::{Error, ErrorClass};
pub use model::{
    BRIDGE_BLOCK_V4, BRIDGE_BLOCK_V6, Block, BlockRecord, BlockUsage, ClusterNetwork,
    ClusterNetworkSpec, DEFAULT_MAX_BLOCKS_PER_NODE, IpamProblem, Node, NodeRecord, NodeSpec,
    NodeState, Pool, PoolMode, PoolSpec, ProblemKind, ROUTED_BLOCK_V4, ROUTED_BLOCK_V6,
};
pub use nodes::SweepReport;
pub use office::Office;
pub use reader::{HeldBlock, NodeReadError, NodeReader};
pub use watch::{Change, Event, EventStream, SHARED_SNAPSHOT_AGE, Snapshot};

#[cfg(test)]
mod tests;
