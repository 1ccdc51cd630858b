//! What every trellis daemon does on its host, written once: trellisd (the
//! node daemon) and trellis-controller (the cluster controller) both keep
//! state in a private directory, answer on a unix socket only their owner
//! may connect to, log to stderr, stop on SIGTERM or SIGINT, serve gRPC over
//! TCP with TLS from PEM files, and drain their servers at shutdown.
//!
//! Design decisions:
//!
//! * **A crate of its own, not a module of one binary.** The controller
//!   cannot borrow trellisd's helpers without linking the whole agent, and
//!   two copies of the socket rules drift apart; here they have one home and
//!   one set of tests, and the binaries keep only what differs (their
//!   configuration, their services, their metrics).
//! * **Host plumbing only.** Nothing here knows about networks, pools or
//!   gRPC services: the daemons hand in paths, names and server futures.
//!   The one gRPC rule here is generic: [`limit`] bounds the calls under
//!   way at once, told apart by path (health, reflection, `…/Watch`).
//! * **Never connectable by others, not even for an instant.** The unix
//!   socket is bound inside a fresh private directory, made 0600 and only
//!   then renamed into place, whatever the (process-wide) umask; a stale
//!   socket is replaced, a live one or a file that is not a socket never
//!   ([`fs::bind_unix`]).
//! * **Servers take their shutdown from outside** (mini-redis style):
//!   [`run`] hands the daemon a [`Shutdown`] future, and [`Servers`] stops
//!   every server on one signal, then gives calls under way a bounded grace;
//!   [`exit_code`] turns the outcome into the process's exit status.
//! * **A library error, messages that name the path.** [`Error`] is a
//!   `thiserror` enum whose messages and sources read, through `anyhow`'s
//!   `{:#}` in the binaries, exactly as the daemons' messages always have.

mod error;
pub mod fs;
pub mod limit;
pub mod logging;
mod process;
mod servers;
pub mod tls;

pub use error::Error;
pub use logging::LogFormat;
pub use process::{Shutdown, exit_code, run, shutdown_signals};
pub use servers::Servers;
