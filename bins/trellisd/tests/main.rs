//! trellisd's integration tests: configuration, the socket's life cycle, and
//! the binary end to end inside a network namespace of its own.

mod config;
mod daemon;
mod socket;
mod util;
