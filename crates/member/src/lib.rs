//! A node's membership of a trellis cluster: the node's half of cluster
//! mode, run by trellisd beside its agent (`trellisd --controller …`).
//!
//! # Design decisions
//!
//! * **The agent stays a node core.** It knows a cluster only through the
//!   [`trellis_agent::Membership`] trait, which a [`Member`] implements: the
//!   agent asks it for a block when a granted pool is full and whether the
//!   node is fenced; the member tells the agent the host-gw routes and what
//!   is wrong. The controller is reached through [`ControllerApi`]: over
//!   gRPC ([`GrpcController`]) or, in one process, the controller's core
//!   itself ([`LocalController`]), which is how the member's logic is tested.
//! * **No attach waits on the controller while the node has room.** Blocks
//!   are claimed ahead of need; an attach claims one itself only when its
//!   pool is full.
//! * **Fencing makes a partition safe.** The node stops handing out new
//!   addresses before the controller could give its blocks to another node
//!   (see [`member`]).
//! * **What the cluster means for the node is computed as values** from a
//!   [`ClusterView`] (peer routes, own blocks, cluster networks) and applied
//!   through the agent, which keeps them through every convergence.

pub mod api;
pub mod grpc;
pub mod local;
pub mod member;
pub mod view;

pub use api::{ApiError, ControllerApi, Lease};
pub use grpc::{GrpcController, TlsFiles};
pub use local::LocalController;
pub use member::{Member, MemberConfig};
pub use view::ClusterView;
