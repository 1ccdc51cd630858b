//! trellis-controller's integration tests: the real binary, unprivileged,
//! in a temporary directory, driven over its unix socket and over TCP (with
//! TLS) by the generated client.

mod api;
mod ha;
mod identity;
mod lifecycle;
mod python;
mod tls;
mod util;
