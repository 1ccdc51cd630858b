//! [`FakeKernel`]: the shared handle, how a test sets the scene, injects
//! failures and reads the state back.

use crate::faults::{Call, Faults, method};
use crate::machine::Machine;
use crate::state::{FakeLink, LinkKind};
use ipnet::IpNet;
use nix::errno::Errno;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use trellis_link::{LinkSummary, Listener, Ns, RTPROT_TRELLIS};
use trellis_nat::{Admitted, NatState};
use trellis_route::{HostRoute, Neighbour, Route};
use trellis_types::{IfName, NetnsPath};

/// One in-memory machine. Cheap to clone: every clone is a handle onto the
/// same state, and each implements `Links`, `Routes`, `Nat` and
/// `HostFirewall`, so what one trait does the others see (deleting a veth
/// through `Links` removes its routes from `Routes`' view).
#[derive(Clone, Default)]
pub struct FakeKernel {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    machine: Machine,
    calls: Vec<Call>,
    faults: Faults,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            machine: Machine::new(),
            calls: Vec::new(),
            faults: Faults::default(),
        }
    }
}

impl std::fmt::Debug for FakeKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeKernel").finish_non_exhaustive()
    }
}

/// The whole state, for comparing before and after (`assert_eq!`). Leaves
/// out the call log, armed failures and the counters that hand out indexes
/// and MACs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Each namespace by its path; the host's is `"host"`.
    pub namespaces: BTreeMap<String, NsSnapshot>,
    /// trellis's NAT table; `None` when it does not exist.
    pub nat: Option<NatState>,
    /// What trellis's rules in the host's dropping forward chains admit.
    pub admitted: Vec<Admitted>,
    /// The host's listening sockets.
    pub listeners: Vec<Listener>,
}

/// One namespace in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsSnapshot {
    /// Its links, by index.
    pub links: Vec<FakeLink>,
    /// Its main table as a dump shows it (connected routes included).
    pub routes: Vec<HostRoute>,
    /// Its neighbour entries.
    pub neighbours: Vec<Neighbour>,
    /// The sysctls written in it (`ipv4/ip_forward` → `1`).
    pub sysctls: BTreeMap<String, String>,
}

impl FakeKernel {
    /// A machine with a host namespace holding `lo` (up), and nothing else.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs one trait call: logs it, fails it if a failure is armed for it
    /// (changing nothing), else runs `f` on a copy of the machine and keeps
    /// the copy only if `f` succeeds — every call is all or nothing.
    pub(crate) fn call<T, E>(
        &self,
        method: &'static str,
        subject: String,
        fault: impl FnOnce(&'static str, String, Errno) -> E,
        f: impl FnOnce(&mut Machine) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut inner = self.lock();
        if let Some(errno) = inner.faults.fire(method) {
            inner.calls.push(Call {
                method,
                subject: subject.clone(),
                failed: true,
            });
            return Err(fault(method, subject, errno));
        }
        let mut machine = inner.machine.clone();
        let out = f(&mut machine);
        if out.is_ok() {
            inner.machine = machine;
        }
        inner.calls.push(Call {
            method,
            subject,
            failed: out.is_err(),
        });
        out
    }

    fn read<T>(&self, f: impl FnOnce(&Machine) -> T) -> T {
        f(&self.lock().machine)
    }

    fn write<T>(&self, f: impl FnOnce(&mut Machine) -> T) -> T {
        f(&mut self.lock().machine)
    }

    // ---- Setting the scene ----

    /// Registers a container namespace reachable at `path` (with `lo`,
    /// down), and returns the path. Panics if the path is invalid or taken.
    pub fn add_netns(&self, path: &str) -> NetnsPath {
        let path = NetnsPath::parse("netns", path).expect("a valid netns path");
        self.write(|m| m.add_netns(&path));
        path
    }

    /// Removes a namespace as the kernel does when its last reference goes:
    /// its veths go, and with them their host ends, routes and neighbours.
    /// Whether it was there.
    pub fn remove_netns(&self, path: &NetnsPath) -> bool {
        self.write(|m| m.remove_netns(path))
    }

    /// Makes `path` another way to reach the host namespace (as
    /// `/proc/1/ns/net` is): `check_netns` reports the host's identity.
    pub fn add_host_netns_path(&self, path: &str) -> NetnsPath {
        let path = NetnsPath::parse("netns", path).expect("a valid netns path");
        self.write(|m| m.host_paths.insert(path.to_string()));
        path
    }

    /// Adds a device without a kind (`eth0`), up, with `addresses`
    /// (`"10.1.253.101/24"`); returns its index. The kernel's connected
    /// routes follow from the addresses.
    pub fn add_device(&self, ns: &Ns, name: &str, addresses: &[&str]) -> u32 {
        let name = IfName::parse("ifname", name).expect("a valid interface name");
        self.write(|m| {
            let k = m.resolve(ns).expect("a namespace of the fake");
            assert!(m.ns(&k).by_name(name.as_str()).is_none(), "{name} exists");
            let (index, mac) = (m.fresh_index(), m.fresh_mac());
            let mut link = FakeLink::new(index, name, LinkKind::Device, mac);
            link.set_up();
            for a in addresses {
                link.add_address(a.parse().expect("an address with its prefix length"));
            }
            m.insert_link(&k, link);
            index
        })
    }

    /// Adds a route someone else installed (`protocol` 3 boot, 4 static…),
    /// as `ip route add` would; no checks.
    pub fn add_route(&self, ns: &Ns, route: Route, protocol: u8) {
        self.write(|m| {
            let k = m.resolve(ns).expect("a namespace of the fake");
            m.ns_mut(&k)
                .routes
                .push(crate::state::Installed { route, protocol });
        });
    }

    /// Adds a socket on the host that holds a port (`host_listeners` finds it).
    pub fn add_listener(&self, listener: Listener) {
        self.write(|m| m.listeners.push(listener));
    }

    /// Whether the host has a forward chain that drops by policy (default:
    /// no, and `admit` then has nowhere to write).
    pub fn set_host_firewall_drops(&self, drops: bool) {
        self.write(|m| {
            m.firewall.drops = drops;
            if !drops {
                m.firewall.admitted.clear();
            }
        });
    }

    /// A reload of the host's firewall: trellis's rules in it are gone.
    pub fn flush_host_firewall(&self) {
        self.write(|m| m.firewall.admitted.clear());
    }

    // ---- Failures and the call log ----

    /// Makes the next call of `method` (a trait method's name, see
    /// [`crate::METHODS`]) fail with `errno` as the kernel's answer, changing
    /// nothing.
    pub fn fail_next(&self, method_name: &str, errno: Errno) {
        self.fail_on(method_name, 1, errno);
    }

    /// Makes the `nth` call of `method` from now (1 is the next) fail with
    /// `errno`, changing nothing. Several can be armed at once.
    pub fn fail_on(&self, method_name: &str, nth: usize, errno: Errno) {
        let m = method(method_name);
        self.lock().faults.arm(m, nth, errno);
    }

    /// Disarms every failure not yet fired.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// The failures armed that have not fired: a test can assert that the
    /// path it meant to break was taken.
    pub fn pending_faults(&self) -> Vec<(&'static str, Errno)> {
        self.lock().faults.pending()
    }

    /// Every trait call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The calls so far that may change state, in order.
    pub fn writes(&self) -> Vec<Call> {
        self.calls().into_iter().filter(Call::is_write).collect()
    }

    /// The calls so far, and forgets them (to look at one phase of a test).
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.lock().calls)
    }

    // ---- Reading the state back ----

    /// The links of `ns`, by index. Panics on a namespace the fake lacks.
    pub fn links(&self, ns: &Ns) -> Vec<FakeLink> {
        self.read(|m| m.ns(&must(m, ns)).links.values().cloned().collect())
    }

    /// The link `name` of `ns`.
    pub fn link(&self, ns: &Ns, name: &str) -> Option<FakeLink> {
        self.read(|m| m.ns(&must(m, ns)).by_name(name).cloned())
    }

    /// The link `name` of `ns` with its addresses, as `check` reads it;
    /// `None` if there is no such link (or no such namespace).
    pub fn link_detail(&self, ns: &Ns, name: &IfName) -> Option<(LinkSummary, Vec<IpNet>)> {
        self.read(|m| {
            let k = m.resolve(ns).ok()?;
            let ns = m.ns(&k);
            let l = ns.by_name(name.as_str())?;
            Some((ns.summary(l), l.addresses.clone()))
        })
    }

    /// trellis's routes in `ns`, as `Routes::list_routes` reports them.
    pub fn routes(&self, ns: &Ns) -> Vec<Route> {
        self.main_table(ns)
            .into_iter()
            .filter(|h| h.protocol == RTPROT_TRELLIS)
            .map(|h| h.route)
            .collect()
    }

    /// Every route of the main table of `ns`, connected ones included.
    pub fn main_table(&self, ns: &Ns) -> Vec<HostRoute> {
        self.read(|m| m.ns(&must(m, ns)).main_table())
    }

    /// The neighbour entries of `ns`.
    pub fn neighbours(&self, ns: &Ns) -> Vec<Neighbour> {
        self.read(|m| {
            let n = m.ns(&must(m, ns)).neighbours.iter();
            n.map(|n| n.neighbour.clone()).collect()
        })
    }

    /// A sysctl of `ns` as written (`"ipv4/ip_forward"`); `None` if never
    /// written (the fake holds no defaults).
    pub fn sysctl(&self, ns: &Ns, key: &str) -> Option<String> {
        self.read(|m| m.ns(&must(m, ns)).sysctls.get(key).cloned())
    }

    /// trellis's NAT table; `None` when it does not exist.
    pub fn nat(&self) -> Option<NatState> {
        self.read(|m| m.nat.clone())
    }

    /// What trellis's rules in the host's dropping forward chains admit.
    pub fn admitted(&self) -> Vec<Admitted> {
        self.read(|m| m.firewall.admitted.clone())
    }

    /// The whole state, to compare before and after.
    pub fn snapshot(&self) -> Snapshot {
        self.read(|m| Snapshot {
            namespaces: m
                .namespaces
                .iter()
                .map(|(k, ns)| {
                    let name = if k.is_empty() { "host" } else { k.as_str() };
                    let snap = NsSnapshot {
                        links: ns.links.values().cloned().collect(),
                        routes: ns.main_table(),
                        neighbours: ns.neighbours.iter().map(|n| n.neighbour.clone()).collect(),
                        sysctls: ns.sysctls.clone(),
                    };
                    (name.to_owned(), snap)
                })
                .collect(),
            nat: m.nat.clone(),
            admitted: m.firewall.admitted.clone(),
            listeners: m.listeners.clone(),
        })
    }

    /// What trellis left behind, one line each: bridges and veths (the fake
    /// makes those only for trellis), routes and neighbours tagged
    /// [`RTPROT_TRELLIS`], the NAT table (even empty), and rules in the host
    /// firewall. Sysctls are not counted (forwarding stays on by design).
    pub fn trellis_leftovers(&self) -> Vec<String> {
        self.read(|m| {
            let mut out = Vec::new();
            for (k, ns) in &m.namespaces {
                let at = m.ns_at(k);
                for l in ns.links.values() {
                    if matches!(l.kind, LinkKind::Bridge | LinkKind::Veth { .. }) {
                        out.push(format!("link {} ({:?}) in {at}", l.name, l.kind));
                    }
                }
                for r in ns.routes.iter().filter(|r| r.protocol == RTPROT_TRELLIS) {
                    out.push(format!("route {} in {at}", r.route));
                }
                for n in ns
                    .neighbours
                    .iter()
                    .filter(|n| n.protocol == RTPROT_TRELLIS)
                {
                    out.push(format!("neighbour {} in {at}", n.neighbour));
                }
            }
            if let Some(nat) = &m.nat {
                out.push(format!("nftables table inet trellis: {nat:?}"));
            }
            for a in &m.firewall.admitted {
                out.push(format!("host firewall rule admitting {a:?}"));
            }
            out
        })
    }

    /// Whether [`FakeKernel::trellis_leftovers`] is empty.
    pub fn is_empty_of_trellis(&self) -> bool {
        self.trellis_leftovers().is_empty()
    }
}

/// The key of `ns`; panics (a test's mistake) if the fake lacks it.
fn must(m: &Machine, ns: &Ns) -> String {
    m.resolve(ns).unwrap_or_else(|e| panic!("{e}"))
}
