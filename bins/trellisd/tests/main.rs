//! trellisd's integration tests: configuration, the socket's life cycle, and
//! the binary end to end inside a network namespace of its own, and restarts
//! of it with traffic flowing.

mod config;
mod daemon;
mod restart;
mod socket;
mod util;
