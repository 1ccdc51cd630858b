//! The call log and failures injected on cue.

use nix::errno::Errno;
use std::collections::HashMap;
use std::fmt;

/// Every trait method the fake implements, by name: `Links`, `Routes`,
/// `Nat`, then `HostFirewall`. Fault injection refuses any other name, so a
/// typo fails the test instead of never firing.
pub const METHODS: &[&str] = &[
    // Links
    "ensure_bridge",
    "check_netns",
    "reserved_netns",
    "host_addresses",
    "host_listeners",
    "create_veth",
    "setup_container_iface",
    "setup_container",
    "link_detail",
    "enable_host_forwarding",
    "add_address",
    "set_up",
    "retire_veth",
    "delete_link",
    "delete_links",
    "link_exists",
    "list_links_with_prefix",
    "set_sysctl",
    // Routes
    "add_routes",
    "delete_routes",
    "list_routes",
    "host_routes",
    "add_neighbours",
    "delete_neighbours",
    "setup_routed_host",
    "list_neighbours",
    "list_all_neighbours",
    "list_peer_routes",
    "set_peer_routes",
    // Nat
    "ensure_table",
    "sync",
    "add_network",
    "remove_network",
    "list_networks",
    "add_pool",
    "remove_pool",
    "list_pools",
    "set_reach",
    "list_reach",
    "publish",
    "unpublish",
    "list_published",
    "remove_all",
    // HostFirewall
    "admit",
    "check_admitted",
];

/// The methods that only read (everything else may change state).
const READS: &[&str] = &[
    "check_netns",
    "reserved_netns",
    "host_addresses",
    "host_listeners",
    "link_exists",
    "list_links_with_prefix",
    "link_detail",
    "list_neighbours",
    "list_all_neighbours",
    "list_routes",
    "host_routes",
    "list_peer_routes",
    "list_networks",
    "list_pools",
    "list_reach",
    "list_published",
    "check_admitted",
];

/// The `&'static` name of a trait method; panics on a name that is not one.
pub(crate) fn method(name: &str) -> &'static str {
    METHODS
        .iter()
        .find(|m| **m == name)
        .copied()
        .unwrap_or_else(|| panic!("{name:?} is not a method of the fake; one of {METHODS:?}"))
}

/// One call a caller made through a trait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The trait method (`"create_veth"`).
    pub method: &'static str,
    /// What it was called on, for messages (`"tr0123456789abc (peer eth0 in
    /// /run/netns/c1)"`).
    pub subject: String,
    /// Whether it failed (injected or not).
    pub failed: bool,
}

impl Call {
    /// Whether the method may change state (a read never does).
    pub fn is_write(&self) -> bool {
        !READS.contains(&self.method)
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.method, self.subject)?;
        if self.failed {
            f.write_str(" failed")?;
        }
        Ok(())
    }
}

/// Failures waiting for their call, and how often each method was called.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// (method, the call number that fails, the errno).
    pending: Vec<(&'static str, usize, Errno)>,
    counts: HashMap<&'static str, usize>,
}

impl Faults {
    /// Arms a failure for the `nth` call of `method` from now (1: the next).
    pub fn arm(&mut self, method: &'static str, nth: usize, errno: Errno) {
        assert!(nth >= 1, "fail_on counts calls from 1");
        let at = self.counts.get(method).copied().unwrap_or(0) + nth;
        self.pending.push((method, at, errno));
    }

    /// Counts a call; the errno if this call is one that must fail.
    pub fn fire(&mut self, method: &'static str) -> Option<Errno> {
        let n = self.counts.entry(method).or_default();
        *n += 1;
        let n = *n;
        let i = self
            .pending
            .iter()
            .position(|(m, at, _)| *m == method && *at == n)?;
        Some(self.pending.remove(i).2)
    }

    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// The failures armed that have not fired yet.
    pub fn pending(&self) -> Vec<(&'static str, Errno)> {
        self.pending.iter().map(|(m, _, e)| (*m, *e)).collect()
    }
}
