//! Test-only: build hosts, containers and routers out of network namespaces.
//!
//! Design decisions:
//! - **Never the machine's own namespace.** Every object a test needs lives in a
//!   namespace made here; commands run with `ip -n` / `ip netns exec`, and
//!   in-process traffic runs on a fresh thread that has `setns`'d into the
//!   namespace, so the test process's own threads are never moved.
//! - **Removed even on panic.** [`Netns`] deletes its namespace in `Drop`, which
//!   runs while a failing test unwinds; deleting a namespace takes its veths,
//!   routes and nftables tables with it.
//! - **Unique names.** Names carry the process id and a counter, so tests run in
//!   parallel (threads of one binary, or several binaries) without clashing.
//! - **Loud when it cannot run.** [`require_root`] panics with the reason; a
//!   privileged test never passes by returning early.
//!
//! Shelling out to `ip` is fine here: this crate is for tests, and the libraries
//! under test never spawn processes.

mod netns;
pub mod seed;
mod snapshot;
mod tcp;

pub use netns::{Netns, unique_name};
pub use snapshot::Snapshot;
pub use tcp::{Counts, TcpServer, seen_ip, tcp_request, tcp_traffic};

/// Panics with a clear message unless the process is root: privileged tests
/// create network namespaces, which needs CAP_SYS_ADMIN and CAP_NET_ADMIN.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "this test needs root (it builds network namespaces); run the test suite as root, \
             e.g. `sudo -E cargo test --workspace`"
        );
    }
}
