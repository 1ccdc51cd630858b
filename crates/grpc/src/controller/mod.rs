//! The thin gRPC edge of the cluster controller (`trellis.v1.Controller`).
//!
//! Design decision: the same edge as the agent's, over another core. Each
//! RPC converts its request into `trellis-cluster` types ([`input`]) — which
//! validates every field and bounds every size, naming the field as the
//! proto spells it (`spec.prefix`, `node`, `usage.prefix`) — makes one call
//! into [`trellis_cluster::Controller`], and converts the answer back
//! ([`output`]). The core classifies its errors
//! ([`trellis_cluster::ErrorClass`]); [`code`] maps the classes onto status
//! codes one to one, OUT_OF_RANGE (a watch revision compacted away)
//! included.
//!
//! Before any of that, each RPC admits its caller ([`access`]): the admin
//! may do everything, a node (known by its client certificate,
//! [`crate::identity`]) may act only for itself, and admin methods refuse
//! it, PERMISSION_DENIED; the decision is one table of method → who.
//!
//! The controller also reads nodes, through their Agent APIs with its own
//! certificate ([`nodes`]): `ListNodeEndpoints` passes a node's endpoints
//! through, and `CheckIpam` compares the block map with the blocks each
//! node's own IPAM holds.
//!
//! Watch streams are pulled from the core through a small channel: a
//! watcher that reads slowly is not buffered for without bound; it holds the
//! store's history until that history moves past it, and then gets
//! OUT_OF_RANGE and resumes from the revision after the last it saw (the
//! core answers a fresh snapshot marked `reset`).
//!
//! [`ControllerServices`] routes the service beside gRPC health and
//! reflection; [`serve_unix`] and [`serve_tcp`] serve them on a listener the
//! caller bound, until a shutdown future the caller gave resolves. Both are
//! the crate's own, generic over the [`Core`](crate::Core) they serve, so the
//! two edges are served one way.

pub mod access;
mod errors;
pub mod input;
pub mod nodes;
pub mod output;
mod server;
mod service;
mod watch;

pub use crate::server::{serve, serve_tcp, serve_unix};
pub use errors::{code, status};
pub use nodes::NodeClients;
pub use server::ControllerServices;
pub use service::ControllerService;
