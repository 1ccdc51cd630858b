//! The thin gRPC edge of the node agent (STYLE convention 8).
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
//! adds gRPC health and reflection beside the agent service. On a unix
//! socket each connection goes through [`authority`], so that clients built
//! on gRPC C-core (Python, Java, C++), which send the socket's path as
//! `:authority`, are not refused by h2.

pub mod authority;
mod errors;
pub mod input;
mod output;
mod server;
mod service;
mod watch;

pub use authority::unix_incoming;
pub use errors::{code, status};
pub use server::{Services, serve, serve_tcp, serve_unix};
pub use service::AgentService;
