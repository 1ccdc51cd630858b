//! The thin gRPC edges of the node agent and of the cluster controller
//! (STYLE convention 8).
//!
//! Design decision: this crate decides nothing. Each RPC converts its request
//! into core types — which validates every field and bounds every size —
//! forwards to one method of [`trellis_agent::Agent`], and converts the answer
//! back. The core classifies its errors ([`trellis_agent::ErrorClass`]); the
//! edge maps classes onto status codes one to one and keeps the message,
//! which names the field at fault. The core never imports tonic, and the
//! generated code lives in `trellis-proto`.
//!
//! [`serve`] takes the listener and the shutdown signal from its caller and
//! adds gRPC health and reflection beside the edge's service; it is generic
//! over the [`Core`] served, so the agent and the controller are served by
//! one skeleton ([`EdgeServices`]), not two copies. On a unix
//! socket each connection goes through [`authority`], so that clients built
//! on gRPC C-core (Python, Java, C++), which send the socket's path as
//! `:authority`, are not refused by h2.
//!
//! The one thing the edge does decide is who may call: a question about
//! the transport (which TLS certificate, which socket), which the cores
//! never see. [`identity`] tells who a caller is (the admin, a node or the
//! controller, by its TLS client certificate), and each edge admits it by
//! one table of method → who before converting: the controller's
//! ([`controller::access`]: a node acts only as itself) and a node's
//! ([`access`]: the controller only reads, no node may call).
//!
//! The controller also *reads* nodes: [`controller::nodes`] is its client
//! of their Agent APIs, with the controller's own certificate, behind the
//! core's `NodeReader` trait (for the IPAM check) and the
//! `ListNodeEndpoints` RPC (endpoints pass through as the node answered
//! them: the controller's core never sees a container).
//!
//! [`controller`] is the same edge over `trellis-cluster`'s controller
//! (`trellis.v1.Controller`), served by `bins/trellis-controller`; it shares
//! this crate's bounds, error mapping, serving and unix-socket handling.

pub mod access;
pub mod authority;
pub mod bgp;
pub mod controller;
mod errors;
pub mod identity;
pub mod input;
mod methods;
mod output;
mod server;
mod service;
mod watch;

pub use authority::unix_incoming;
pub use bgp::{BgpCore, BgpService, PeerView};
pub use controller::{ControllerService, ControllerServices};
pub use errors::{code, status};
pub use server::{Core, Edge, EdgeServices, Services, serve, serve_tcp, serve_unix};
pub use service::AgentService;
