//! The commands of the cluster controller (`trellis.v1.Controller`): pools,
//! cluster networks, nodes, blocks, the IPAM check and the controller's
//! status.
//!
//! They are built on the same machinery as trellisd's commands, not beside
//! it: one [`trellis_client::channel`] for sockets and TLS, [`crate::exit`]'s
//! codes for gRPC statuses, [`crate::render::output`] for table, JSON and
//! YAML. What is the controller's own lives here, in the same layers:
//! [`cli`] declares the subcommands, [`run`] builds requests and calls the
//! controller, [`view`] turns answers into stable serialisable structs,
//! [`render`] turns those into text.
//!
//! [`run()`] takes a connected client and a writer, so a test can drive a
//! command against a controller in the same process as well as through the
//! binary (`netctl --controller unix:PATH …`).

pub mod cli;
pub mod render;
pub mod run;
pub mod view;

pub use run::run;
