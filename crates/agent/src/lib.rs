//! The node core: the attach/detach pipeline over IPAM, links, routes and NAT.
//!
//! Design decisions:
//!
//! * **Kernel-facing parts are injected** ([`Backends`]: `dyn Links`,
//!   `dyn Routes`, `dyn Nat`, `dyn KvStore`). The daemon aims them at the host
//!   namespace, the lab and the tests at a namespace of their own, and unit
//!   tests at mocks that fail on cue.
//! * **One attach is a pipeline with an undo stack** (see [`attach`]): validate,
//!   claim host ports, allocate the address, create the veth with its peer
//!   inside the container, address it, route it, publish its ports, record it.
//!   A failure at any step unwinds the steps before it.
//! * **Detach needs no record.** Names derive from (container, ifname), so
//!   detach cleans up after a crash at any point; unknown is success.
//! * **No global lock.** IPAM is compare-and-swap through the store; host
//!   ports are claimed in a short critical section; everything else is per
//!   container. Concurrent attaches run concurrently.
//! * **The core never speaks gRPC.** Errors carry an [`ErrorClass`] that an edge
//!   maps onto status codes.

mod agent;
mod attach;
mod bridge;
mod error;
mod kernel;
pub mod model;
mod network;
mod ports;
mod records;
pub mod routed;

pub use agent::{Agent, Backends};
pub use error::{Error, ErrorClass};
pub use model::{AttachRequest, Endpoint, Network, NetworkMode, NetworkSpec, PortSpec};
pub(crate) use ports::Ports;

#[cfg(test)]
mod attach_tests;
