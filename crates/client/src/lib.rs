//! Reaching trellisd and the cluster controller over gRPC: one client for
//! netctl, trellis-cni and library users.
//!
//! # Why it exists
//!
//! Every program that talks to trellis has to answer the same questions
//! before its first request: is the server at a unix socket or a URL, does an
//! `https://` URL have the CA it needs (and a client certificate only over
//! TLS), which replica of an HA controller leads? netctl answered them in
//! its own `conn` module; the CNI plugin would have needed a second copy,
//! which would have drifted — a different spelling of `unix:` targets, a
//! different message for a missing socket. This crate is that code, once.
//!
//! # Design decisions
//!
//! - **Two classes of failure, kept apart by type.** [`Error::Usage`] means
//!   the settings are wrong and nothing was dialled (a malformed URL,
//!   `--cert` without https, https without a CA, an unreadable file);
//!   [`Error::Connect`] means the settings were fine and the server could
//!   not be reached. A command line maps them onto different exit codes, a
//!   CNI plugin onto different CNI error codes; neither has to parse
//!   messages.
//! - **Messages name what the user wrote.** A caller passes the name of the
//!   setting an address came from (`--controller`, `--endpoint`, a config
//!   file's key), and every refusal names it and the value; a connection
//!   failure names the address and the I/O error underneath tonic's
//!   (`No such file or directory`, `Connection refused`), since that is
//!   what the user can act on. The TLS files are called by the flags every
//!   trellis command line gives them: `--ca`, `--cert`, `--key`
//!   ([`TlsFile`]).
//! - **One dialler for both servers.** [`channel`] serves trellisd's agent
//!   and BGP services and the controller alike, so a unix socket, plaintext
//!   and TLS behave the same whichever server is reached.
//! - **HA without configuration.** [`controller`] takes the replicas of an
//!   HA controller as one comma-separated setting and finds the leader
//!   itself, following a follower's `the leader is <url>` refusal.
//! - **No policy on retries or deadlines.** Each function dials once; a
//!   daemon that must keep going while its server is down wants a lazy
//!   channel (`trellis_proto::channel_unix_lazy`) and its own retry loop.

mod address;
mod connect;
mod error;
mod leader;

pub use address::{Address, AddressError};
pub use connect::{Tls, agent, bgp, channel};
pub use error::{ConnectError, Error, TlsFile, UsageError};
pub use leader::controller;

/// The unix socket trellisd serves by default (its `--socket`), where
/// netctl and trellis-cni look for it unless told otherwise.
pub const DEFAULT_TRELLISD_SOCKET: &str = "/run/trellis/trellisd.sock";

/// The unix socket the cluster controller serves by default.
pub const DEFAULT_CONTROLLER_SOCKET: &str = "/run/trellis/controller.sock";
