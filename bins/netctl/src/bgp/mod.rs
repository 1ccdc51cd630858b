//! The commands of trellisd's BGP service (`trellis.v1.Bgp`): the node's
//! peers, their sessions, and the routes the node sends them.
//!
//! trellisd serves the service beside `trellis.v1.Agent`, so these commands
//! reach it as every other node command does ([`crate::conn::bgp`]:
//! `--socket` or `--endpoint`, with the same TLS options), and share the rest
//! of the machinery: [`crate::exit`]'s codes for gRPC statuses (a node
//! without BGP answers FAILED_PRECONDITION, exit code 7, with the server's
//! message saying how to turn it on), [`crate::render::output`] for table,
//! JSON and YAML. What is BGP's own lives here, in the layers of
//! [`crate::cluster`]: [`cli`] declares the subcommands, [`run`] builds
//! requests and calls trellisd, [`view`] turns answers into stable
//! serialisable structs, [`render`] turns those into text.
//!
//! The service has no call for one peer: `bgp peer ADDRESS` lists them all
//! and picks one, answering NOT_FOUND (as the server would) when none has
//! that address.

pub mod cli;
pub mod render;
pub mod run;
pub mod view;

pub use run::run;
