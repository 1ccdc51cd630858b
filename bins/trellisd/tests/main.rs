//! trellisd's integration tests: configuration, the socket's life cycle, and
//! the binary end to end inside a network namespace of its own (also driven
//! by Python's grpcio), and restarts of it with traffic flowing.

mod config;
mod daemon;
mod python;
mod restart;
mod socket;
mod util;
