//! trellisd's integration tests: configuration, and the binary end to end
//! inside a network namespace of its own (the socket's modes and a stale
//! socket replaced; also driven by Python's grpcio), its limits on calls
//! under way, and restarts of it with traffic flowing. The socket's rules
//! themselves are tested where they live, in `trellis-daemon`.

mod bgp;
mod config;
mod daemon;
mod limits;
mod python;
mod restart;
mod util;
