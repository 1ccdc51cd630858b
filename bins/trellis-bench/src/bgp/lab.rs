//! The lab of `trellis-bench bgp`: a host namespace and a router namespace
//! joined by a veth, BIRD 2 in the router namespace, passive, with the host
//! as its one neighbor.
//!
//! BIRD is started by `trellis_testlab::routers` (generated config, its own
//! directory, killed on drop); its pids are also registered here, so that
//! the bench's signal thread ([`kill_routers`]) kills it before removing
//! the namespaces.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::time::Duration;
use trellis_testlab::Netns;
use trellis_testlab::routers::{Neighbor, Router, RouterConfig, RouterKind};

/// The host's address on the veth (trellisd's, the speaker's).
pub const HOST: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
/// The host's IPv6 address: the next hop of IPv6 routes.
pub const HOST6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 1);
/// BIRD's address.
pub const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
/// The host's AS (4-byte).
pub const OUR_AS: u32 = 4_200_000_002;
/// BIRD's AS.
pub const ROUTER_AS: u32 = 65000;
/// BIRD's name for its session with the host (its first neighbor).
pub const BIRD_PROTOCOL: &str = "n0";
/// How long BIRD and the host may take to establish the session.
pub const ESTABLISH_WITHIN: Duration = Duration::from_secs(30);

/// The namespaces and BIRD; BIRD is killed before the namespaces go.
pub struct Lab {
    /// BIRD's entry in the signal thread's list, until BIRD is dropped.
    pub registered: Registered,
    /// BIRD (dropped, so killed, before the namespaces).
    pub router: Router,
    /// Where trellisd or the speaker runs.
    pub host: Netns,
    /// Where BIRD runs.
    pub router_ns: Netns,
}

impl Lab {
    /// Builds the namespaces and starts BIRD; with `install_kernel` BIRD
    /// writes the routes it learns into the router namespace's kernel.
    pub fn build(install_kernel: bool) -> Lab {
        let host = Netns::new("bgp-host");
        let router_ns = Netns::new("bgp-rtr");
        host.veth_to("up0", &router_ns, "down0");
        host.ip(&format!("addr add {HOST}/24 dev up0"));
        host.ip(&format!("addr add {HOST6}/64 dev up0 nodad"));
        router_ns.ip(&format!("addr add {ROUTER}/24 dev down0"));
        router_ns.ip("addr add fd00:99::2/64 dev down0 nodad");
        let mut cfg = RouterConfig::new(RouterKind::Bird, ROUTER, ROUTER_AS, IpAddr::V4(ROUTER))
            .neighbor(Neighbor::new(IpAddr::V4(HOST), OUR_AS).passive());
        cfg.install_kernel = install_kernel;
        let router = Router::start(&router_ns, cfg);
        let pids = router.pids();
        let mut r = routers();
        for pid in &pids {
            r.insert(*pid, comm(*pid));
        }
        drop(r);
        Lab {
            registered: Registered(pids),
            router,
            host,
            router_ns,
        }
    }

    /// BIRD's (VmRSS, VmHWM) in KiB.
    pub fn bird_memory(&self) -> anyhow::Result<(u64, u64)> {
        let pid = *self
            .router
            .pids()
            .first()
            .ok_or_else(|| anyhow::anyhow!("BIRD is not running"))?;
        crate::daemon::memory(pid)
    }
}

/// BIRD's pids in the list [`kill_routers`] reads; taken off it on drop.
pub struct Registered(Vec<u32>);

impl Drop for Registered {
    fn drop(&mut self) {
        let mut r = routers();
        for pid in &self.0 {
            r.remove(pid);
        }
    }
}

/// The BIRD processes running now: pid → its `/proc/<pid>/comm`.
static ROUTERS: Mutex<BTreeMap<u32, String>> = Mutex::new(BTreeMap::new());

fn routers() -> std::sync::MutexGuard<'static, BTreeMap<u32, String>> {
    ROUTERS.lock().unwrap_or_else(|e| e.into_inner())
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// SIGKILLs every BIRD a [`Lab`] started that still runs (the bench's
/// signal thread, before it removes the namespaces): a pid is checked to
/// still be the process it was started as first.
pub fn kill_routers() {
    for (pid, want) in std::mem::take(&mut *routers()) {
        if !want.is_empty() && comm(pid) == want {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}
