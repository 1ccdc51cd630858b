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
//! - **Two tiers behind an explicit switch.** Tests that need root (they build
//!   namespaces, write `/proc/sys` in them, run `nft` there) form the
//!   *privileged tier*. Each package holding such tests has a cargo feature
//!   `privileged`, and each such test carries
//!   `#[cfg_attr(not(feature = "privileged"), ignore = "privileged tier: …")]`.
//!   Plain `cargo test --workspace`, as any user, runs the unprivileged tier and
//!   lists every privileged test as ignored, with that reason;
//!   `cargo test --workspace --features privileged` (what `scripts/test` runs, as
//!   root) runs both.
//! - **Loud when it cannot run.** [`require_root`] panics with the reason, and
//!   [`Netns::new`] calls it; a privileged test never passes by returning early.
//!   With the switch on and no root, the privileged tier fails.
//!
//! Shelling out to `ip` is fine here: this crate is for tests, and the libraries
//! under test never spawn processes.

pub mod cluster;
mod netns;
pub mod podman;
pub mod python;
pub mod report;
pub mod routers;
pub mod seed;
mod snapshot;
mod tcp;

pub use netns::{Netns, names_of, remove_own_namespaces, unique_name};
pub use routers::{LearnedRoute, Neighbor, Router, RouterConfig, RouterKind};
pub use snapshot::Snapshot;
pub use tcp::{Counts, TcpServer, seen_ip, tcp_request, tcp_traffic};

/// The environment variable that makes [`require_root`] refuse to run at all:
/// see there.
pub const ASSERT_UNPRIVILEGED: &str = "TRELLIS_ASSERT_UNPRIVILEGED";

/// Panics with a clear message unless the process is root: privileged tests
/// create network namespaces, which needs CAP_SYS_ADMIN and CAP_NET_ADMIN.
///
/// Every privileged test calls it (directly, through a lab builder, or through
/// [`Netns::new`]) before it touches the kernel, so that without root the
/// privileged tier fails with this message instead of an obscure `EPERM`.
///
/// **Checking the tiers.** With `TRELLIS_ASSERT_UNPRIVILEGED=1` in the
/// environment it panics even for root, saying that a test needing root ran in
/// the unprivileged tier. A developer who is root can thus check that every
/// privileged test is marked: `TRELLIS_ASSERT_UNPRIVILEGED=1 cargo test
/// --workspace` (without the `privileged` feature) must pass; a failing test is
/// one that needs root and is not marked.
pub fn require_root() {
    if std::env::var_os(ASSERT_UNPRIVILEGED).is_some_and(|v| !v.is_empty() && v != "0") {
        panic!(
            "a test that needs root ran in the unprivileged tier ({ASSERT_UNPRIVILEGED} is set): \
             mark it #[cfg_attr(not(feature = \"privileged\"), ignore = \"privileged tier: …\")]"
        );
    }
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "this test needs root (it builds network namespaces): it belongs to the privileged \
             tier, which `--features privileged` turns on; run that as root, e.g. `sudo \
             scripts/test`"
        );
    }
}
pub mod daemon;
