//! Third-party BGP routers — BIRD 2, FRR (zebra + bgpd) and GoBGP — run as
//! peers of the speaker under test, so that an integration test can assert
//! what a real router made of our UPDATEs: "prefix P is in router R's table
//! with next hop N", "it is stale while our speaker restarts", "the session
//! with X is established".
//!
//! # Design decisions
//!
//! - **Inside a test namespace, never the machine's.** Every daemon is started
//!   with `ip netns exec <ns>` in a [`Netns`] the test owns, so it binds,
//!   connects and (with [`RouterConfig::install_kernel`]) installs routes only
//!   there. No system service of any of them is used.
//! - **All files in one directory of the router's own**, made by
//!   [`Router::start`] under the temp dir with a [`crate::unique_name`] and
//!   kept across restarts: generated configuration, control socket(s), pid
//!   files, logs. It goes in `Drop`, which first kills (SIGKILL) and reaps
//!   every daemon — also while a failing test unwinds.
//! - **The daemon is the child.** Each daemon runs in the foreground
//!   (`bird -f`, FRR and GoBGP without `-d`), and `ip netns exec` execs it, so
//!   the [`Child`] we hold *is* the daemon: signals reach it, nothing forks
//!   away from us.
//! - **Ready means answering.** [`Router::start`] returns once the daemon
//!   answers on its control socket with its configuration loaded, and panics
//!   with the log if it exits first.
//! - **Routers are sinks.** They import everything and export nothing, so a
//!   test sees exactly what it sent; only GoBGP can originate routes (see
//!   [`Router::announce`]), which makes it the stand-in for "another speaker".
//! - **Read back through the router's own CLI** (`birdc` text, `vtysh` JSON,
//!   `gobgp -j` JSON), parsed by pure functions that are unit-tested below
//!   against output captured from the installed versions.
//!
//! # What each router taught us (BIRD 2.0.12, FRR 8.4.4, GoBGP 3.10)
//!
//! ## BIRD 2
//! - Run as `bird -f -c CONF -s SOCK -P PID`, queried with `birdc -s SOCK`;
//!   ready when `show status` says "Daemon is up and running".
//! - Needs `protocol device`. eBGP channels need an explicit `import all`
//!   (we also say `export none`).
//! - **IPv6 next hops.** On a directly connected eBGP session BIRD defaults to
//!   `gateway direct` and *drops* a route whose next hop is not on a connected
//!   subnet (log: "Invalid NEXT_HOP attribute - address … not directly
//!   reachable", then treat-as-withdraw). We configure `gateway recursive`
//!   plus `protocol direct` (so connected subnets are in `master4`/`master6`
//!   to resolve against): such a route is then kept as `unreachable`, and its
//!   `BGP.next_hop` attribute still shows the next hop as received. That
//!   attribute (first address of it: a second one is the link-local) is what
//!   [`LearnedRoute::next_hop`] reports, not the `via` line.
//! - **Stale routes are not marked per route** in BIRD 2.0.12: `show route`
//!   appends `s` to the preference (`(100s)`) only for *long-lived* GR stale
//!   routes (which also carry community `(65535,6)`). During a plain
//!   RFC 4724 restart, `show protocols all` prints "Neighbor graceful restart
//!   active" and, per channel, "Neighbor GR: Regular" (or "Long-lived"). We
//!   therefore mark every route of that protocol and address family stale
//!   while its channel is in GR. Caveat: between the peer's return and its
//!   End-of-RIB, routes it already re-sent are still reported stale.
//! - Timers are tuned for tests: `connect delay time 1` (default 5 s before
//!   the first connect), `connect retry time 2` (default 120 s), and
//!   `error wait time 1, 5` (default 60–300 s, during which BIRD refuses even
//!   *incoming* connections after a session error).
//! - MD5: `password "…";` in the `protocol bgp`. Passive dynamic peers:
//!   `neighbor range CIDR as N; dynamic name "dyn";` spawns protocols
//!   `dyn1`, `dyn2`, … which `show protocols all` lists with their
//!   "Neighbor address".
//! - Kernel: one `protocol kernel` per family exporting
//!   `where source = RTS_BGP && dest = RTD_UNICAST` (BGP routes whose next
//!   hop resolved; not the `direct` ones, not the `unreachable` ones — as FRR).
//!
//! ## FRR 8.4 (zebra + bgpd)
//! - The daemons refuse to run as root unless in the vty group: they run as
//!   `frr` (`-u frr -g frr`) with every path overridden (`-f` config, `-i`
//!   pid file, `-z` zebra socket, `--vty_socket` directory, `-P 0` no vty TCP
//!   port, `--log file:…`); the router's directory is chowned to `frr`.
//!   Queried with `vtysh --vty_socket DIR -d bgpd -c …`.
//! - Each daemon keeps crash-log buffers in the compiled-in
//!   `/var/tmp/frr/<daemon>.<pid>/` (left behind after SIGKILL). `ip netns
//!   exec` runs its command in a private mount namespace (mounts do not
//!   propagate back), so we bind-mount the router's own `var-tmp` over
//!   `/var/tmp` there first: those files land in the router's directory too.
//! - zebra starts first (ready when its zserv socket exists), then bgpd
//!   (ready when `show bgp ipv4 unicast json` shows our router id). Without
//!   [`RouterConfig::install_kernel`] bgpd gets `-n` (`--no_kernel`): zebra
//!   still runs, for next-hop tracking, but nothing reaches the kernel.
//! - RFC 8212 (`ebgp-requires-policy`): route-maps `TL-ACCEPT` in and
//!   `TL-DENY` out on every neighbor.
//! - Routes: `show bgp ipv4 unicast json detail` (8.4's word order; `detail
//!   json` is rejected). Per prefix an array: first the prefix's summary,
//!   then one object per path with `aspath.segments[].list`,
//!   `community.list` ("65001:7" or well-known names), `nexthops[]` (global
//!   first, then link-local), `"valid": false` for paths whose next hop does
//!   not resolve (they are still listed), and `"stale": true` during GR.
//!   Sessions: `show bgp neighbors json`, keyed by address, `bgpState`.
//! - `neighbor X timers connect 1` (default 120 s). MD5: `neighbor X password
//!   …`. Passive dynamic peers: a peer-group with `remote-as N` and `bgp
//!   listen range CIDR peer-group G`. GR helper: `bgp graceful-restart` with
//!   restart-time and stalepath-time [`GR_RESTART_TIME`].
//!
//! ## GoBGP 3.10
//! - `gobgpd -f CONF -t toml --api-hosts unix://DIR/gobgp.sock
//!   --pprof-disable`, queried with `gobgp --target unix://DIR/gobgp.sock …
//!   -j`: the gRPC API is a unix socket in the router's directory, so no TCP
//!   port is involved at all (pprof would otherwise listen on localhost:6060).
//! - An *active* GoBGP peer makes its first connection attempt after a random
//!   5–10 s (v3's minimum connect-retry interval is 5 s whatever the config
//!   says), so tests that want speed let the other side connect as well.
//!   `idle-hold-time-after-reset` defaults to 30 s; we set 1 (a dynamic
//!   neighbor still shows 30: the peer group does not pass it on).
//! - GR: with `graceful-restart` and `mp-graceful-restart` per AFI its OPEN
//!   carries the GR capability listing both AFIs, without the
//!   forwarding-state bit: helpers keep its routes (stale) while it is down
//!   and, as RFC 4724 says for a peer that preserved no forwarding state,
//!   drop them once it is back — until it announces them again (its RIB is
//!   empty after a restart: a test re-announces).
//! - Its zebra client cannot talk to FRR 8.4's zebra, so GoBGP is RIB-only:
//!   `install_kernel` panics.
//! - JSON: `global rib -a ipv4|ipv6 -j` is `{prefix: [path]}`, each path with
//!   `attrs` by type code (2 AS_PATH `as_paths[].asns`, 3 NEXT_HOP, 8
//!   COMMUNITIES as u32, 14 MP_REACH `nexthop`) and a `stale` flag; the RIB
//!   also holds its own announcements (no `neighbor-ip`), which
//!   [`Router::routes`] leaves out. `neighbor -j`: `state.session_state` 6 is
//!   Established.
//! - MD5: `auth-password`. Passive dynamic peers: a `peer-groups` entry with
//!   `peer-as` and a `dynamic-neighbors` entry with the prefix.

use crate::Netns;
use ipnet::IpNet;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt;
use std::fs::OpenOptions;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The graceful-restart time every router advertises and, as helper, keeps
/// a restarting peer's routes for: long enough for a test to look at stale
/// routes at leisure.
pub const GR_RESTART_TIME: u16 = 120;
/// How long a router may take to answer on its control socket.
pub const READY_WITHIN: Duration = Duration::from_secs(20);
/// How often state is polled.
const POLL: Duration = Duration::from_millis(100);
/// How long a daemon may take to exit after SIGTERM before it gets SIGKILL.
const STOP_WITHIN: Duration = Duration::from_secs(5);
/// FRR's binaries (not on PATH).
const FRR_DIR: &str = "/usr/lib/frr";

/// Which router implementation to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouterKind {
    /// BIRD 2 (`bird`, `birdc`).
    Bird,
    /// FRR: `zebra` and `bgpd`, queried with `vtysh`.
    Frr,
    /// GoBGP (`gobgpd`, `gobgp`); RIB only.
    Gobgp,
}

/// An explicitly configured BGP neighbor of the router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbor {
    /// The neighbor's address (the session's remote end).
    pub address: IpAddr,
    /// The neighbor's AS (equal to the router's for iBGP).
    pub remote_as: u32,
    /// Never connect out; wait for the neighbor to connect.
    pub passive: bool,
    /// TCP MD5 signature (RFC 2385) password; printable ASCII without
    /// spaces, quotes or backslashes.
    pub md5_password: Option<String>,
}

impl Neighbor {
    /// An active neighbor (both sides may connect) without MD5.
    pub fn new(address: IpAddr, remote_as: u32) -> Self {
        Neighbor {
            address,
            remote_as,
            passive: false,
            md5_password: None,
        }
    }

    /// The same neighbor, passive.
    pub fn passive(mut self) -> Self {
        self.passive = true;
        self
    }

    /// The same neighbor, with a TCP MD5 password.
    pub fn md5(mut self, password: &str) -> Self {
        self.md5_password = Some(password.to_owned());
        self
    }
}

/// What router to run and how it peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterConfig {
    /// Which implementation.
    pub kind: RouterKind,
    /// The BGP identifier.
    pub router_id: Ipv4Addr,
    /// The router's AS.
    pub local_as: u32,
    /// The router's own address in its namespace: the source of the sessions
    /// to neighbors of the same family.
    pub listen: IpAddr,
    /// Explicit neighbors.
    pub neighbors: Vec<Neighbor>,
    /// Passive dynamic peers: any address in the range, with this AS (BIRD
    /// `neighbor range`, FRR `bgp listen range`, GoBGP dynamic-neighbors).
    pub neighbor_range: Option<(IpNet, u32)>,
    /// Hold time in seconds (0 or ≥ 3, RFC 4271); keepalive is a third of it.
    pub hold_time: u16,
    /// Negotiate graceful restart (RFC 4724) and act as helper, keeping a
    /// restarting peer's routes (stale) for [`GR_RESTART_TIME`].
    pub graceful_restart: bool,
    /// Install the learned routes into the namespace's kernel table (BIRD,
    /// FRR; GoBGP cannot and panics).
    pub install_kernel: bool,
}

impl RouterConfig {
    /// A router with no neighbors yet, hold time 9 s, graceful restart on,
    /// nothing installed into the kernel.
    pub fn new(kind: RouterKind, router_id: Ipv4Addr, local_as: u32, listen: IpAddr) -> Self {
        RouterConfig {
            kind,
            router_id,
            local_as,
            listen,
            neighbors: Vec::new(),
            neighbor_range: None,
            hold_time: 9,
            graceful_restart: true,
            install_kernel: false,
        }
    }

    /// The same configuration with one more explicit neighbor.
    pub fn neighbor(mut self, neighbor: Neighbor) -> Self {
        self.neighbors.push(neighbor);
        self
    }

    /// The same configuration, accepting passive dynamic peers from `range`
    /// in AS `remote_as`.
    pub fn neighbor_range(mut self, range: IpNet, remote_as: u32) -> Self {
        self.neighbor_range = Some((range, remote_as));
        self
    }

    /// Panics with the reason if the routers cannot run this configuration.
    fn check(&self) {
        assert!(
            !(self.kind == RouterKind::Gobgp && self.install_kernel),
            "GoBGP cannot install routes into the kernel here: its zebra client does not speak \
             FRR 8.4's zebra protocol; use BIRD or FRR for install_kernel"
        );
        assert!(
            self.hold_time == 0 || self.hold_time >= 3,
            "hold time {} is neither 0 nor at least 3 s (RFC 4271 4.2)",
            self.hold_time
        );
        assert!(
            !self.neighbors.is_empty() || self.neighbor_range.is_some(),
            "a router with neither neighbors nor a neighbor range would never peer"
        );
        for n in &self.neighbors {
            if let Some(pw) = &n.md5_password {
                assert!(
                    !pw.is_empty()
                        && pw.len() <= 80
                        && pw
                            .bytes()
                            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\'),
                    "md5 password {pw:?} for {}: use 1-80 printable ASCII characters without \
                     spaces, quotes or backslashes (they go into three config syntaxes)",
                    n.address
                );
            }
        }
    }

    /// `listen` if it has the family of `peer`: the source address of the
    /// session to it.
    fn source_for(&self, peer: IpAddr) -> Option<IpAddr> {
        (self.listen.is_ipv4() == peer.is_ipv4()).then_some(self.listen)
    }

    fn keepalive(&self) -> u16 {
        self.hold_time / 3
    }
}

/// A route a router learned over BGP, as its table shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LearnedRoute {
    /// The destination.
    pub prefix: IpNet,
    /// The next hop as received (for IPv6, the global one), whether or not
    /// the router could resolve it.
    pub next_hop: IpAddr,
    /// Kept for a peer in graceful restart (RFC 4724), not re-sent yet.
    pub stale: bool,
    /// AS numbers of the AS_PATH, nearest first (sets flattened in).
    pub as_path: Vec<u32>,
    /// Standard communities (RFC 1997) as (AS, value).
    pub communities: Vec<(u16, u16)>,
}

impl fmt::Display for LearnedRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} via {} as_path {:?} communities {:?}{}",
            self.prefix,
            self.next_hop,
            self.as_path,
            self.communities,
            if self.stale { " STALE" } else { "" }
        )
    }
}

/// One running daemon process of a router.
struct Proc {
    name: &'static str,
    child: Child,
}

/// A BGP router running in a test's namespace: killed, and its directory
/// removed, on drop.
pub struct Router {
    cfg: RouterConfig,
    ns: String,
    dir: PathBuf,
    procs: Vec<Proc>,
}

impl Router {
    /// Writes `cfg`'s configuration into a fresh directory, starts the router
    /// in `ns`, and waits until it answers on its control socket with that
    /// configuration loaded. Panics (with the log) if it cannot.
    pub fn start(ns: &Netns, cfg: RouterConfig) -> Router {
        cfg.check();
        let dir = std::env::temp_dir().join(format!("trellis-{}", crate::unique_name("rt")));
        // Unix socket paths are limited to 108 bytes; command lines are split
        // on blanks.
        assert!(
            dir.as_os_str().len() < 80 && dir.to_str().is_some_and(|d| !d.contains(' ')),
            "router directory {} is too long or has spaces: set TMPDIR to something short",
            dir.display()
        );
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let mut router = Router {
            cfg,
            ns: ns.name().to_owned(),
            dir,
            procs: Vec::new(),
        };
        // From here on, a panic drops `router`, which kills and cleans up.
        router.launch();
        router
    }

    /// The configuration it runs.
    pub fn config(&self) -> &RouterConfig {
        &self.cfg
    }

    /// The directory holding its configuration, sockets, pid files and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The process ids of its running daemons (FRR: zebra, bgpd).
    pub fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(|p| p.child.id()).collect()
    }

    /// Every route it learned over BGP, IPv4 and IPv6, all paths (not only
    /// the best), including those whose next hop does not resolve.
    pub fn routes(&self) -> Vec<LearnedRoute> {
        match self.cfg.kind {
            RouterKind::Bird => bird::parse_routes(
                &self.command("show route all"),
                &bird::channels_in_gr(&bird::parse_protocols(&self.command("show protocols all"))),
            ),
            RouterKind::Frr => ["ipv4", "ipv6"]
                .iter()
                .flat_map(|af| {
                    frr::parse_routes(&self.command(&format!("show bgp {af} unicast json detail")))
                })
                .collect(),
            RouterKind::Gobgp => ["ipv4", "ipv6"]
                .iter()
                .flat_map(|af| {
                    gobgp::parse_routes(&self.command(&format!("global rib -a {af} -j")))
                })
                .collect(),
        }
    }

    /// Polls [`Router::routes`] until `pred` holds and returns them; panics
    /// after `timeout` with `what`, the last routes and the router's log, or
    /// at once if the router exited.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&[LearnedRoute]) -> bool,
    ) -> Vec<LearnedRoute> {
        let deadline = Instant::now() + timeout;
        loop {
            let routes = self.routes();
            if pred(&routes) {
                return routes;
            }
            if Instant::now() >= deadline {
                let listed: String = routes.iter().map(|r| format!("  {r}\n")).collect();
                panic!(
                    "{}: {what}: not seen within {timeout:?}; its routes:\n{listed}log:\n{}",
                    self.describe(),
                    self.log()
                );
            }
            self.assert_running();
            std::thread::sleep(POLL);
        }
    }

    /// Waits until `prefix` is in the table with `next_hop` and not stale,
    /// and returns that route.
    pub fn wait_for_route(
        &self,
        prefix: IpNet,
        next_hop: IpAddr,
        timeout: Duration,
    ) -> LearnedRoute {
        let matches = |r: &LearnedRoute| r.prefix == prefix && r.next_hop == next_hop && !r.stale;
        let routes = self.wait_for(
            &format!("{prefix} via {next_hop}, not stale"),
            timeout,
            |rs| rs.iter().any(matches),
        );
        routes.into_iter().find(matches).expect("just seen")
    }

    /// Whether the BGP session with `neighbor` is Established (for a
    /// dynamic peer: whether one from that address is).
    pub fn established(&self, neighbor: IpAddr) -> bool {
        match self.cfg.kind {
            RouterKind::Bird => bird::parse_protocols(&self.command("show protocols all"))
                .iter()
                .any(|p| p.neighbor == Some(neighbor) && p.state == "Established"),
            RouterKind::Frr => frr::established(&self.command("show bgp neighbors json"), neighbor),
            RouterKind::Gobgp => gobgp::established(&self.command("neighbor -j"), neighbor),
        }
    }

    /// Waits until [`Router::established`] holds for `neighbor`; panics
    /// after `timeout` with the sessions' state and the log.
    pub fn wait_established(&self, neighbor: IpAddr, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.established(neighbor) {
            if Instant::now() >= deadline {
                let sessions = match self.cfg.kind {
                    RouterKind::Bird => "show protocols all",
                    RouterKind::Frr => "show bgp summary",
                    RouterKind::Gobgp => "neighbor",
                };
                panic!(
                    "{}: session with {neighbor} not established within {timeout:?}; \
                     sessions:\n{}\nlog:\n{}",
                    self.describe(),
                    self.command(sessions),
                    self.log()
                );
            }
            self.assert_running();
            std::thread::sleep(POLL);
        }
    }

    /// GoBGP only: originates `prefix` with `next_hop` (an IPv6 one for an
    /// IPv6 prefix) and `communities`, to every peer.
    pub fn announce(&self, prefix: IpNet, next_hop: IpAddr, communities: &[(u16, u16)]) {
        self.gobgp_only("announce");
        let mut line = format!(
            "global rib add -a {} {prefix} nexthop {next_hop}",
            family(prefix)
        );
        if !communities.is_empty() {
            let list: Vec<String> = communities
                .iter()
                .map(|(a, v)| format!("{a}:{v}"))
                .collect();
            line.push_str(&format!(" community {}", list.join(",")));
        }
        self.command(&line);
    }

    /// GoBGP only: withdraws a prefix [`Router::announce`]d before.
    pub fn withdraw(&self, prefix: IpNet) {
        self.gobgp_only("withdraw");
        self.command(&format!("global rib del -a {} {prefix}", family(prefix)));
    }

    /// Runs one command on the router's control socket and returns its
    /// output; panics if it fails. BIRD: a `birdc` command (`show route
    /// all`); FRR: a `vtysh` command to bgpd (`show bgp summary`); GoBGP:
    /// `gobgp` arguments (`neighbor -j`). Split on whitespace except for FRR.
    pub fn command(&self, line: &str) -> String {
        let mut cmd = match self.cfg.kind {
            RouterKind::Bird => {
                let mut c = Command::new("birdc");
                c.arg("-s").arg(self.path("bird.ctl"));
                c.args(line.split_whitespace());
                c
            }
            RouterKind::Frr => {
                let mut c = Command::new("vtysh");
                c.arg("--vty_socket").arg(&self.dir);
                c.args(["-d", "bgpd", "-c", line]);
                c
            }
            RouterKind::Gobgp => {
                let mut c = Command::new("gobgp");
                c.arg("--target").arg(self.gobgp_target());
                c.args(line.split_whitespace());
                c
            }
        };
        output(&mut cmd).unwrap_or_else(|e| {
            panic!(
                "{}: `{line}` failed: {e}\nlog:\n{}",
                self.describe(),
                self.log()
            )
        })
    }

    /// Stops the router the polite way: SIGTERM, SIGKILL after 5 s. The
    /// daemon closes its sessions itself (BIRD and GoBGP with a Cease
    /// NOTIFICATION, after which BIRD and FRR drop GoBGP's routes at once:
    /// no graceful restart). For a crash, see [`Router::kill`].
    pub fn stop(&mut self) {
        while let Some(mut p) = self.procs.pop() {
            signal(&p, Signal::SIGTERM);
            let deadline = Instant::now() + STOP_WITHIN;
            while p.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(POLL / 4);
            }
            reap(&mut p);
        }
    }

    /// Kills the router like a crash: SIGKILL, no NOTIFICATION; the kernel
    /// closes its connections, and graceful-restart helpers keep its routes.
    pub fn kill(&mut self) {
        while let Some(mut p) = self.procs.pop() {
            reap(&mut p);
        }
    }

    /// Stops the router (if it runs) and starts it again with the same
    /// configuration in the same namespace and directory; waits until it
    /// answers. After [`Router::kill`], this is the restart after a crash.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Every log file of the router (daemon logs and captured stdout/stderr),
    /// each under a header.
    pub fn log(&self) -> String {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "log" || x == "out"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
            .iter()
            .map(|p| {
                format!(
                    "==> {} <==\n{}\n",
                    p.display(),
                    std::fs::read_to_string(p).unwrap_or_default()
                )
            })
            .collect()
    }

    fn describe(&self) -> String {
        format!(
            "{:?} router {} in netns {}",
            self.cfg.kind, self.cfg.router_id, self.ns
        )
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn path_str(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }

    fn gobgp_target(&self) -> String {
        format!("unix://{}", self.path_str("gobgp.sock"))
    }

    fn gobgp_only(&self, what: &str) {
        assert!(
            self.cfg.kind == RouterKind::Gobgp,
            "{what}: only GoBGP originates routes here, not {}",
            self.describe()
        );
    }

    fn write(&self, name: &str, text: &str) {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Starts the daemons and waits until they answer.
    fn launch(&mut self) {
        self.remove_leftovers();
        match self.cfg.kind {
            RouterKind::Bird => self.launch_bird(),
            RouterKind::Frr => self.launch_frr(),
            RouterKind::Gobgp => self.launch_gobgp(),
        }
    }

    /// Removes the sockets and pid files a killed daemon left: gobgpd
    /// refuses to bind over its old socket, and a stale zserv socket would
    /// pass for a ready zebra.
    fn remove_leftovers(&self) {
        use std::os::unix::fs::FileTypeExt;
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let is_socket = entry.file_type().is_ok_and(|t| t.is_socket());
            if is_socket || path.extension().is_some_and(|x| x == "pid") {
                std::fs::remove_file(&path)
                    .unwrap_or_else(|e| panic!("remove {}: {e}", path.display()));
            }
        }
    }

    fn launch_bird(&mut self) {
        self.write("bird.conf", &bird::config(&self.cfg, &self.dir));
        let d = self.dir.display();
        self.spawn(
            "bird",
            words(&format!(
                "bird -f -c {d}/bird.conf -s {d}/bird.ctl -P {d}/bird.pid"
            )),
        );
        let mut birdc = Command::new("birdc");
        birdc
            .arg("-s")
            .arg(self.path("bird.ctl"))
            .args(["show", "status"]);
        self.wait_ready("birdc show status", || {
            output(&mut birdc).is_ok_and(|s| s.contains("Daemon is up and running"))
        });
    }

    fn launch_frr(&mut self) {
        let frr = nix::unistd::User::from_name("frr")
            .ok()
            .flatten()
            .expect("user frr (from the frr package) is missing");
        let var_tmp = self.path("var-tmp");
        std::fs::create_dir_all(&var_tmp)
            .unwrap_or_else(|e| panic!("create {}: {e}", var_tmp.display()));
        for path in [&self.dir, &var_tmp] {
            nix::unistd::chown(path, Some(frr.uid), Some(frr.gid))
                .unwrap_or_else(|e| panic!("chown {} to frr: {e}", path.display()));
        }
        self.write("zebra.conf", "hostname trellis-router\n");
        self.write("bgpd.conf", &frr::config(&self.cfg));
        let d = self.dir.display().to_string();
        // Each daemon gets the router's own /var/tmp (see the module docs).
        let command = |daemon: &str, extra: &str| {
            let line = format!(
                "mount --bind {d}/var-tmp /var/tmp && exec {FRR_DIR}/{daemon} \
                 -f {d}/{daemon}.conf -i {d}/{daemon}.pid -z {d}/zserv.api --vty_socket {d} \
                 -u frr -g frr -P 0 --log=file:{d}/{daemon}.log --log-level=info {extra}"
            );
            vec!["sh".to_owned(), "-c".to_owned(), line]
        };
        let no_kernel = if self.cfg.install_kernel {
            ""
        } else {
            "--no_kernel"
        };
        self.spawn("zebra", command("zebra", ""));
        let zserv = self.path("zserv.api");
        self.wait_ready("zebra's zserv socket", || zserv.exists());
        self.spawn("bgpd", command("bgpd", no_kernel));
        let mut vtysh = Command::new("vtysh");
        vtysh.arg("--vty_socket").arg(&self.dir);
        vtysh.args(["-d", "bgpd", "-c", "show bgp ipv4 unicast json"]);
        let id = self.cfg.router_id.to_string();
        self.wait_ready("bgpd with its configuration", || {
            output(&mut vtysh).is_ok_and(|s| {
                serde_json::from_str::<Value>(&s).is_ok_and(|v| v["routerId"] == id.as_str())
            })
        });
    }

    fn launch_gobgp(&mut self) {
        self.write("gobgpd.toml", &gobgp::config(&self.cfg));
        let target = self.gobgp_target();
        self.spawn(
            "gobgpd",
            words(&format!(
                "gobgpd -f {}/gobgpd.toml -t toml --api-hosts={target} --pprof-disable --log-plain",
                self.dir.display()
            )),
        );
        // The API answers before the configured neighbors are added.
        let explicit = self.cfg.neighbors.len();
        let mut gobgp = Command::new("gobgp");
        gobgp.args(["--target", &target, "neighbor", "-j"]);
        self.wait_ready("gobgp neighbor -j", || {
            output(&mut gobgp).is_ok_and(|s| {
                serde_json::from_str::<Value>(&s)
                    .is_ok_and(|v| v.as_array().is_some_and(|a| a.len() >= explicit))
            })
        });
    }

    /// Starts `argv` in the namespace, stdout and stderr appended to
    /// `<name>.out`.
    fn spawn(&mut self, name: &'static str, argv: Vec<String>) {
        let out_path = self.path(&format!("{name}.out"));
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out_path)
            .unwrap_or_else(|e| panic!("open {}: {e}", out_path.display()));
        let err = out.try_clone().expect("clone a file handle");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} in netns {}: {e}", self.ns));
        self.procs.push(Proc { name, child });
    }

    /// Polls `ready`; panics with the log if a daemon exits first or it does
    /// not hold within [`READY_WITHIN`].
    fn wait_ready(&self, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + READY_WITHIN;
        while !ready() {
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "{}: {what} not ready after {READY_WITHIN:?}:\n{}",
                self.describe(),
                self.log()
            );
            std::thread::sleep(POLL);
        }
    }

    /// Panics with the log if a daemon has exited (or none runs).
    fn assert_running(&self) {
        assert!(
            !self.procs.is_empty(),
            "{} is not running (stopped or killed)",
            self.describe()
        );
        for p in &self.procs {
            // `try_wait` needs `&mut`; a zero-signal probe does not reap.
            if kill(pid_of(p), None).is_err() || is_zombie(p.child.id()) {
                panic!(
                    "{}: {} exited unexpectedly:\n{}",
                    self.describe(),
                    p.name,
                    self.log()
                );
            }
        }
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        self.kill();
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("testlab: cannot remove {}: {e}", self.dir.display());
        }
    }
}

fn pid_of(p: &Proc) -> Pid {
    Pid::from_raw(i32::try_from(p.child.id()).expect("a pid fits i32"))
}

fn signal(p: &Proc, sig: Signal) {
    // ESRCH: it has exited already, which is what we want.
    let _ = kill(pid_of(p), sig);
}

/// SIGKILLs `p` unless it has exited, and reaps it.
fn reap(p: &mut Proc) {
    if p.child.try_wait().ok().flatten().is_none() {
        signal(p, Signal::SIGKILL);
    }
    let _ = p.child.wait();
}

/// Whether `pid` is a zombie: exited, not reaped yet.
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // "pid (comm) S …": the state follows the last ')'.
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

/// `line` split on whitespace (paths here have no spaces: see
/// [`Router::start`]).
fn words(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_owned).collect()
}

/// Stdout of `cmd` if it succeeds, else what it said.
fn output(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{}: {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn family(prefix: IpNet) -> &'static str {
    match prefix {
        IpNet::V4(_) => "ipv4",
        IpNet::V6(_) => "ipv6",
    }
}

/// A route being assembled from a router's output.
#[derive(Default)]
struct Partial {
    prefix: Option<IpNet>,
    next_hop: Option<IpAddr>,
    stale: bool,
    as_path: Vec<u32>,
    communities: Vec<(u16, u16)>,
}

impl Partial {
    fn finish(self) -> Option<LearnedRoute> {
        Some(LearnedRoute {
            prefix: self.prefix?,
            next_hop: self.next_hop?,
            stale: self.stale,
            as_path: self.as_path,
            communities: self.communities,
        })
    }
}

mod bird {
    use super::*;

    /// BIRD's configuration for `cfg`, logging into `dir`.
    pub(super) fn config(cfg: &RouterConfig, dir: &Path) -> String {
        let mut c = format!(
            "log \"{}/bird.log\" all;\nrouter id {};\n\
             protocol device {{ scan time 10; }}\n\
             # Connected subnets, for resolving next hops recursively.\n\
             protocol direct {{ ipv4; ipv6; }}\n",
            dir.display(),
            cfg.router_id
        );
        if cfg.install_kernel {
            for af in ["ipv4", "ipv6"] {
                c.push_str(&format!(
                    "protocol kernel {{ {af} {{ import none; \
                     export where source = RTS_BGP && dest = RTD_UNICAST; }}; }}\n"
                ));
            }
        }
        let gr = if cfg.graceful_restart {
            format!("graceful restart on; graceful restart time {GR_RESTART_TIME};")
        } else {
            "graceful restart off;".to_owned()
        };
        c.push_str(&format!(
            "template bgp tl_peer {{\n  hold time {}; keepalive time {};\n  \
             connect delay time 1; connect retry time 2; error wait time 1, 5;\n  {gr}\n  \
             ipv4 {{ import all; export none; gateway recursive; }};\n  \
             ipv6 {{ import all; export none; gateway recursive; }};\n}}\n",
            cfg.hold_time,
            cfg.keepalive()
        ));
        let local = |peer: IpAddr| match cfg.source_for(peer) {
            Some(ip) => format!("local {ip} as {}", cfg.local_as),
            None => format!("local as {}", cfg.local_as),
        };
        for (i, n) in cfg.neighbors.iter().enumerate() {
            c.push_str(&format!(
                "protocol bgp n{i} from tl_peer {{\n  {};\n  neighbor {} as {};\n  passive {};\n",
                local(n.address),
                n.address,
                n.remote_as,
                if n.passive { "on" } else { "off" }
            ));
            if let Some(pw) = &n.md5_password {
                c.push_str(&format!("  password \"{pw}\";\n"));
            }
            c.push_str("}\n");
        }
        if let Some((range, remote_as)) = cfg.neighbor_range {
            c.push_str(&format!(
                "protocol bgp dyn from tl_peer {{\n  {};\n  neighbor range {range} as {remote_as};\n  \
                 dynamic name \"dyn\";\n}}\n",
                local(range.addr())
            ));
        }
        c
    }

    /// A protocol in `show protocols all`.
    #[derive(Debug, Default, PartialEq, Eq)]
    pub(super) struct Protocol {
        pub name: String,
        /// "BGP state:", empty for other protocols.
        pub state: String,
        pub neighbor: Option<IpAddr>,
        /// Channels ("ipv4", "ipv6") with "Neighbor GR:" other than "none".
        pub channels_in_gr: Vec<String>,
    }

    pub(super) fn parse_protocols(text: &str) -> Vec<Protocol> {
        let mut out: Vec<Protocol> = Vec::new();
        let mut channel = String::new();
        for line in text.lines() {
            if line.is_empty() || line.starts_with("BIRD ") || line.starts_with("Name ") {
                continue;
            }
            if !line.starts_with(' ') {
                let name = line.split_whitespace().next().unwrap_or_default();
                out.push(Protocol {
                    name: name.to_owned(),
                    ..Protocol::default()
                });
                channel.clear();
                continue;
            }
            let Some(p) = out.last_mut() else { continue };
            let line = line.trim();
            if let Some(c) = line.strip_prefix("Channel ") {
                channel = c.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("BGP state:") {
                p.state = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("Neighbor address:") {
                // "10.0.0.1%eth0" names an interface too.
                p.neighbor = v.trim().split('%').next().and_then(|a| a.parse().ok());
            } else if let Some(v) = line.strip_prefix("Neighbor GR:")
                && !v.trim().eq_ignore_ascii_case("none")
            {
                p.channels_in_gr.push(channel.clone());
            }
        }
        out
    }

    /// (protocol, channel) pairs in graceful restart.
    pub(super) fn channels_in_gr(protocols: &[Protocol]) -> BTreeSet<(String, String)> {
        protocols
            .iter()
            .flat_map(|p| p.channels_in_gr.iter().map(|c| (p.name.clone(), c.clone())))
            .collect()
    }

    /// The BGP routes of `show route all`; a route is stale if BIRD marks
    /// it (`s` after the preference: long-lived GR) or its protocol's
    /// channel is in graceful restart.
    pub(super) fn parse_routes(
        text: &str,
        in_gr: &BTreeSet<(String, String)>,
    ) -> Vec<LearnedRoute> {
        let mut out = Vec::new();
        let mut prefix: Option<IpNet> = None;
        // The route being read and whether it came from BGP.
        let mut cur: Option<(Partial, bool)> = None;
        let mut flush = |cur: &mut Option<(Partial, bool)>| {
            if let Some((p, true)) = cur.take() {
                out.extend(p.finish());
            }
        };
        for line in text.lines() {
            if let Some(attr) = line.strip_prefix('\t') {
                if let Some((p, is_bgp)) = cur.as_mut() {
                    bird_attribute(attr.trim(), p, is_bgp);
                }
                continue;
            }
            let Some(open) = line.find(" [") else {
                if line.starts_with("Table ") {
                    flush(&mut cur);
                    prefix = None;
                }
                continue;
            };
            flush(&mut cur);
            // "10.0.0.0/24   unicast [proto 12:00:00.000 from 10.0.0.4] * (100s) [AS1i]";
            // a further route for the same prefix starts with blanks.
            if !line.starts_with(' ') {
                prefix = line.split_whitespace().next().and_then(|p| p.parse().ok());
            }
            let rest = &line[open + 2..];
            let proto = rest.split_whitespace().next().unwrap_or_default();
            let pref_marked_stale = rest
                .split_once("] ")
                .and_then(|(_, info)| info.split_once('(')?.1.split_once(')'))
                .is_some_and(|(pref, _)| pref.contains('s'));
            let channel = match prefix {
                Some(IpNet::V6(_)) => "ipv6",
                _ => "ipv4",
            };
            let stale =
                pref_marked_stale || in_gr.contains(&(proto.to_owned(), channel.to_owned()));
            cur = Some((
                Partial {
                    prefix,
                    stale,
                    ..Partial::default()
                },
                false,
            ));
        }
        flush(&mut cur);
        out
    }

    fn bird_attribute(attr: &str, p: &mut Partial, is_bgp: &mut bool) {
        if let Some(t) = attr.strip_prefix("Type:") {
            *is_bgp = t.trim().starts_with("BGP");
        } else if let Some(v) = attr.strip_prefix("BGP.next_hop:") {
            // "fd00::4 fe80::1": the global one first.
            p.next_hop = v.split_whitespace().next().and_then(|a| a.parse().ok());
        } else if let Some(v) = attr.strip_prefix("BGP.as_path:") {
            p.as_path = v
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect();
        } else if let Some(v) = attr.strip_prefix("BGP.community:") {
            // "(65001,7) (65535,65281)"
            p.communities = v
                .split(['(', ')'])
                .filter_map(|pair| {
                    let (a, b) = pair.split_once(',')?;
                    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
                })
                .collect();
        }
    }
}

mod frr {
    use super::*;

    /// bgpd's configuration for `cfg`.
    pub(super) fn config(cfg: &RouterConfig) -> String {
        let (k, h) = (cfg.keepalive(), cfg.hold_time);
        let mut c = String::from(
            "frr defaults traditional\nhostname trellis-router\n!\n\
             route-map TL-ACCEPT permit 10\nexit\nroute-map TL-DENY deny 10\nexit\n!\n",
        );
        c.push_str(&format!(
            "router bgp {}\n bgp router-id {}\n no bgp default ipv4-unicast\n",
            cfg.local_as, cfg.router_id
        ));
        if cfg.graceful_restart {
            c.push_str(&format!(
                " bgp graceful-restart\n bgp graceful-restart restart-time {GR_RESTART_TIME}\n \
                 bgp graceful-restart stalepath-time {GR_RESTART_TIME}\n"
            ));
        } else {
            c.push_str(" bgp graceful-restart-disable\n");
        }
        let mut peers = Vec::new();
        for n in &cfg.neighbors {
            let a = n.address;
            c.push_str(&format!(
                " neighbor {a} remote-as {}\n neighbor {a} timers {k} {h}\n \
                 neighbor {a} timers connect 1\n",
                n.remote_as
            ));
            if n.passive {
                c.push_str(&format!(" neighbor {a} passive\n"));
            }
            if let Some(pw) = &n.md5_password {
                c.push_str(&format!(" neighbor {a} password {pw}\n"));
            }
            if let Some(src) = cfg.source_for(a) {
                c.push_str(&format!(" neighbor {a} update-source {src}\n"));
            }
            peers.push(a.to_string());
        }
        if let Some((range, remote_as)) = cfg.neighbor_range {
            c.push_str(&format!(
                " neighbor TL-RANGE peer-group\n neighbor TL-RANGE remote-as {remote_as}\n \
                 neighbor TL-RANGE timers {k} {h}\n bgp listen range {range} peer-group TL-RANGE\n"
            ));
            peers.push("TL-RANGE".to_owned());
        }
        for af in ["ipv4", "ipv6"] {
            c.push_str(&format!(" !\n address-family {af} unicast\n"));
            for p in &peers {
                c.push_str(&format!(
                    "  neighbor {p} activate\n  neighbor {p} route-map TL-ACCEPT in\n  \
                     neighbor {p} route-map TL-DENY out\n"
                ));
            }
            c.push_str(" exit-address-family\n");
        }
        c.push_str("exit\n!\n");
        c
    }

    /// The paths of `show bgp <af> unicast json detail`.
    pub(super) fn parse_routes(json: &str) -> Vec<LearnedRoute> {
        let v: Value = serde_json::from_str(json)
            .unwrap_or_else(|e| panic!("FRR route JSON does not parse ({e}): {json}"));
        let Some(routes) = v["routes"].as_object() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (prefix, entries) in routes {
            let Ok(prefix) = prefix.parse::<IpNet>() else {
                continue;
            };
            // The first element describes the prefix; the paths follow.
            for path in entries.as_array().into_iter().flatten() {
                let Some(nexthops) = path["nexthops"].as_array() else {
                    continue;
                };
                let next_hop = nexthops
                    .iter()
                    .find(|n| n["scope"] != "link-local")
                    .or(nexthops.first())
                    .and_then(|n| n["ip"].as_str()?.parse().ok());
                let as_path = path["aspath"]["segments"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|s| s["list"].as_array().into_iter().flatten())
                    .filter_map(|n| u32::try_from(n.as_u64()?).ok())
                    .collect();
                let communities = path["community"]["list"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| community(c.as_str()?))
                    .collect();
                let p = Partial {
                    prefix: Some(prefix),
                    next_hop,
                    stale: path["stale"] == true,
                    as_path,
                    communities,
                };
                out.extend(p.finish());
            }
        }
        out
    }

    /// "65001:7", or one of the well-known names FRR prints instead.
    fn community(text: &str) -> Option<(u16, u16)> {
        let named = match text {
            "graceful-shutdown" => Some(0),
            "accept-own" => Some(1),
            "llgr-stale" => Some(6),
            "no-llgr" => Some(7),
            "accept-own-nexthop" => Some(8),
            "blackhole" => Some(666),
            "no-export" => Some(0xff01),
            "no-advertise" => Some(0xff02),
            "local-AS" => Some(0xff03),
            "no-peer" => Some(0xff04),
            _ => None,
        };
        if let Some(value) = named {
            return Some((0xffff, value));
        }
        let (a, v) = text.split_once(':')?;
        Some((a.parse().ok()?, v.parse().ok()?))
    }

    /// Whether `show bgp neighbors json` shows `neighbor` Established.
    pub(super) fn established(json: &str, neighbor: IpAddr) -> bool {
        let v: Value = serde_json::from_str(json)
            .unwrap_or_else(|e| panic!("FRR neighbor JSON does not parse ({e}): {json}"));
        v.as_object().is_some_and(|peers| {
            peers.iter().any(|(addr, peer)| {
                addr.parse::<IpAddr>() == Ok(neighbor) && peer["bgpState"] == "Established"
            })
        })
    }
}

mod gobgp {
    use super::*;

    /// gobgpd's TOML configuration for `cfg`.
    pub(super) fn config(cfg: &RouterConfig) -> String {
        let mut c = format!(
            "[global.config]\n  as = {}\n  router-id = \"{}\"\n  port = 179\n",
            cfg.local_as, cfg.router_id
        );
        for n in &cfg.neighbors {
            c.push_str(&format!(
                "\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{}\"\n    \
                 peer-as = {}\n",
                n.address, n.remote_as
            ));
            if let Some(pw) = &n.md5_password {
                c.push_str(&format!("    auth-password = \"{pw}\"\n"));
            }
            c.push_str(&format!(
                "  [neighbors.transport.config]\n    passive-mode = {}\n",
                n.passive
            ));
            if let Some(src) = cfg.source_for(n.address) {
                c.push_str(&format!("    local-address = \"{src}\"\n"));
            }
            c.push_str(&session(cfg, "neighbors"));
        }
        if let Some((range, remote_as)) = cfg.neighbor_range {
            c.push_str(&format!(
                "\n[[peer-groups]]\n  [peer-groups.config]\n    peer-group-name = \"tl-range\"\n    \
                 peer-as = {remote_as}\n"
            ));
            c.push_str(&session(cfg, "peer-groups"));
            c.push_str(&format!(
                "\n[[dynamic-neighbors]]\n  [dynamic-neighbors.config]\n    prefix = \"{range}\"\n    \
                 peer-group = \"tl-range\"\n"
            ));
        }
        c
    }

    /// Timers, graceful restart and address families of a neighbor or
    /// peer group (`table` is "neighbors" or "peer-groups").
    fn session(cfg: &RouterConfig, table: &str) -> String {
        let mut c = format!(
            "  [{table}.timers.config]\n    hold-time = {}\n    keepalive-interval = {}\n    \
             connect-retry = 1\n    idle-hold-time-after-reset = 1\n",
            cfg.hold_time,
            cfg.keepalive()
        );
        if cfg.graceful_restart {
            c.push_str(&format!(
                "  [{table}.graceful-restart.config]\n    enabled = true\n    \
                 restart-time = {GR_RESTART_TIME}\n"
            ));
        }
        for af in ["ipv4-unicast", "ipv6-unicast"] {
            c.push_str(&format!(
                "  [[{table}.afi-safis]]\n    [{table}.afi-safis.config]\n      \
                 afi-safi-name = \"{af}\"\n"
            ));
            if cfg.graceful_restart {
                c.push_str(&format!(
                    "    [{table}.afi-safis.mp-graceful-restart.config]\n      enabled = true\n"
                ));
            }
        }
        c
    }

    /// The learned paths of `global rib -a <af> -j` (its own announcements,
    /// which have no `neighbor-ip`, left out).
    pub(super) fn parse_routes(json: &str) -> Vec<LearnedRoute> {
        let v: Value = serde_json::from_str(json)
            .unwrap_or_else(|e| panic!("GoBGP RIB JSON does not parse ({e}): {json}"));
        let Some(rib) = v.as_object() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (prefix, paths) in rib {
            let Ok(prefix) = prefix.parse::<IpNet>() else {
                continue;
            };
            for path in paths.as_array().into_iter().flatten() {
                if path["neighbor-ip"].as_str().is_none_or(|n| n.is_empty()) {
                    continue;
                }
                let mut p = Partial {
                    prefix: Some(prefix),
                    stale: path["stale"] == true,
                    ..Partial::default()
                };
                for attr in path["attrs"].as_array().into_iter().flatten() {
                    match attr["type"].as_u64() {
                        Some(2) => {
                            p.as_path = attr["as_paths"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .flat_map(|s| s["asns"].as_array().into_iter().flatten())
                                .filter_map(|n| u32::try_from(n.as_u64()?).ok())
                                .collect();
                        }
                        Some(3 | 14) => {
                            p.next_hop = attr["nexthop"].as_str().and_then(|a| a.parse().ok());
                        }
                        Some(8) => {
                            p.communities = attr["communities"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(|c| {
                                    let c = u32::try_from(c.as_u64()?).ok()?;
                                    Some(((c >> 16) as u16, (c & 0xffff) as u16))
                                })
                                .collect();
                        }
                        _ => {}
                    }
                }
                out.extend(p.finish());
            }
        }
        out
    }

    /// Whether `neighbor -j` shows `neighbor` Established (session_state 6).
    pub(super) fn established(json: &str, neighbor: IpAddr) -> bool {
        let v: Value = serde_json::from_str(json)
            .unwrap_or_else(|e| panic!("GoBGP neighbor JSON does not parse ({e}): {json}"));
        v.as_array().into_iter().flatten().any(|peer| {
            let state = &peer["state"];
            state["neighbor_address"]
                .as_str()
                .or(peer["conf"]["neighbor_address"].as_str())
                .and_then(|a| a.parse::<IpAddr>().ok())
                == Some(neighbor)
                && state["session_state"] == 6
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn route(
        prefix: &str,
        nh: &str,
        stale: bool,
        as_path: &[u32],
        comms: &[(u16, u16)],
    ) -> LearnedRoute {
        LearnedRoute {
            prefix: net(prefix),
            next_hop: ip(nh),
            stale,
            as_path: as_path.to_vec(),
            communities: comms.to_vec(),
        }
    }

    // Captured from BIRD 2.0.12 learning from GoBGP, with `gateway recursive`.
    const BIRD_ROUTES: &str = "BIRD 2.0.12 ready.
Table master4:
10.20.0.0/24         unicast [gobgp 04:24:46.310] * (100) [AS65011?]
\tvia 10.99.0.4 on bg
\tType: BGP univ
\tBGP.origin: Incomplete
\tBGP.as_path: 65001 65010 65011
\tBGP.next_hop: 10.99.0.4
\tBGP.local_pref: 100
\tBGP.community: (65001,7) (65535,65281)
10.99.0.0/24         unicast [direct1 04:23:18.662] * (240)
\tdev bg
\tType: device univ

Table master6:
fd00:99::/64         unicast [direct1 04:23:18.662] * (240)
\tdev bg
\tType: device univ
fd00:21::/64         unreachable [gobgp 04:24:46.310 from 10.99.0.4] * (100) [AS65001?]
\tType: BGP univ
\tBGP.origin: Incomplete
\tBGP.as_path: 65001
\tBGP.next_hop: fd00:77::9
\tBGP.local_pref: 100
fd00:20::/64         unicast [gobgp 04:24:46.310 from 10.99.0.4] * (100) [AS65001?]
\tvia fd00:99::4 on bg
\tType: BGP univ
\tBGP.origin: Incomplete
\tBGP.as_path: 65001 {65012 65013}
\tBGP.next_hop: fd00:99::4 fe80::1
\tBGP.local_pref: 100
                     unicast [other 04:24:47.000 from 10.99.0.5] (100s) [AS65005?]
\tvia fd00:99::5 on bg
\tType: BGP univ
\tBGP.as_path: 65005
\tBGP.next_hop: fd00:99::5
";

    // `show protocols all` while GoBGP was down (trimmed).
    const BIRD_PROTOCOLS_GR: &str = "BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     04:22:41.873  
gobgp      BGP        ---        start  04:23:39.609  Passive       Socket: Connection closed
  BGP state:          Passive
    Neighbor address: 10.99.0.4
    Neighbor AS:      65001
    Local AS:         65000
    Neighbor graceful restart active
    Restart timer:    114.315/-
    Last error:       Socket: Connection closed
  Channel ipv4
    State:          START
    Table:          master4
    Neighbor GR:    Regular
    IGP IPv4 table: master4
  Channel ipv6
    State:          START
    Table:          master6
    Neighbor GR:    none
    IGP IPv6 table: master6
spk        BGP        ---        up     04:22:48.891  Established   
  BGP state:          Established
    Neighbor address: 10.99.0.1%bg
    Neighbor AS:      65002
";

    #[test]
    fn bird_routes_keep_the_received_next_hop_and_only_bgp_routes() {
        let routes = bird::parse_routes(BIRD_ROUTES, &BTreeSet::new());
        assert_eq!(
            routes,
            vec![
                route(
                    "10.20.0.0/24",
                    "10.99.0.4",
                    false,
                    &[65001, 65010, 65011],
                    &[(65001, 7), (65535, 65281)]
                ),
                route("fd00:21::/64", "fd00:77::9", false, &[65001], &[]),
                route(
                    "fd00:20::/64",
                    "fd00:99::4",
                    false,
                    &[65001, 65012, 65013],
                    &[]
                ),
                // A second route for the prefix, LLGR-stale ("100s").
                route("fd00:20::/64", "fd00:99::5", true, &[65005], &[]),
            ]
        );
    }

    #[test]
    fn bird_routes_of_a_channel_in_graceful_restart_are_stale() {
        let protocols = bird::parse_protocols(BIRD_PROTOCOLS_GR);
        let in_gr = bird::channels_in_gr(&protocols);
        assert_eq!(
            in_gr.into_iter().collect::<Vec<_>>(),
            vec![("gobgp".to_owned(), "ipv4".to_owned())]
        );
        let routes = bird::parse_routes(BIRD_ROUTES, &bird::channels_in_gr(&protocols));
        let stale: Vec<_> = routes
            .iter()
            .map(|r| (r.prefix.to_string(), r.stale))
            .collect();
        assert_eq!(
            stale,
            vec![
                ("10.20.0.0/24".to_owned(), true),
                ("fd00:21::/64".to_owned(), false),
                ("fd00:20::/64".to_owned(), false),
                ("fd00:20::/64".to_owned(), true),
            ]
        );
    }

    #[test]
    fn bird_protocols_give_state_and_neighbor() {
        let protocols = bird::parse_protocols(BIRD_PROTOCOLS_GR);
        let summary: Vec<_> = protocols
            .iter()
            .map(|p| (p.name.as_str(), p.state.as_str(), p.neighbor))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("device1", "", None),
                ("gobgp", "Passive", Some(ip("10.99.0.4"))),
                ("spk", "Established", Some(ip("10.99.0.1"))),
            ]
        );
    }

    // Captured from FRR 8.4.4 while GoBGP was down (two paths of one prefix
    // added by hand: an invalid one and a second valid one).
    const FRR_V6: &str = r#"{
 "vrfId": 0,
 "vrfName": "default",
 "routerId": "10.99.0.3",
 "routes": { "fd00:20::/64": [{"prefix":"fd00:20::/64","version":1},{"aspath":{"string":"65001","segments":[{"type":"as-sequence","list":[65001]}],"length":1},"stale":true,"origin":"incomplete","valid":true,"version":1,"bestpath":{"overall":true,"selectionReason":"First path received"},"gracefulRestartSecondsRemaining":118,"nexthops":[{"ip":"fd00:99::4","hostname":"vm","afi":"ipv6","scope":"global","metric":0,"accessible":true,"used":true},{"ip":"fe80::1","afi":"ipv6","scope":"link-local"}],"peer":{"peerId":"10.99.0.4","routerId":"0.0.0.0","hostname":"vm","type":"external"}}]
,"fd00:21::/64": [{"prefix":"fd00:21::/64","version":0},{"aspath":{"string":"65001 {65012,65013}","segments":[{"type":"as-sequence","list":[65001]},{"type":"as-set","list":[65012,65013]}],"length":2},"origin":"incomplete","valid":false,"version":0,"community":{"string":"65001:7 no-export","list":["65001:7","no-export"]},"nexthops":[{"ip":"fd00:77::9","hostname":"vm","afi":"ipv6","scope":"global","accessible":false,"used":true}],"peer":{"peerId":"10.99.0.4","routerId":"0.0.0.0","hostname":"vm","type":"external"}}]
 }  } "#;

    #[test]
    fn frr_routes_include_invalid_and_stale_paths() {
        assert_eq!(
            frr::parse_routes(FRR_V6),
            vec![
                route("fd00:20::/64", "fd00:99::4", true, &[65001], &[]),
                route(
                    "fd00:21::/64",
                    "fd00:77::9",
                    false,
                    &[65001, 65012, 65013],
                    &[(65001, 7), (65535, 65281)]
                ),
            ]
        );
        assert_eq!(frr::parse_routes(r#"{"vrfId": 0}"#), vec![]);
    }

    #[test]
    fn frr_established_is_read_per_neighbor() {
        let json = r#"{"10.99.0.4":{"remoteAs":65001,"bgpState":"Established"},
                       "10.99.0.5":{"remoteAs":65001,"bgpState":"Active"}}"#;
        assert!(frr::established(json, ip("10.99.0.4")));
        assert!(!frr::established(json, ip("10.99.0.5")));
        assert!(!frr::established(json, ip("10.99.0.6")));
    }

    // Shaped like GoBGP 3.10's `global rib -j`: one path of its own, one learned.
    const GOBGP_V4: &str = r#"{"10.20.0.0/24":[
      {"nlri":{"prefix":"10.20.0.0/24"},"age":1796099105,"best":true,"attrs":[{"type":1,"value":2},{"type":2,"as_paths":[{"segment_type":2,"num":2,"asns":[65010,65011]}]},{"type":8,"communities":[4259905543]},{"type":3,"nexthop":"10.99.0.4"}],"stale":false},
      {"nlri":{"prefix":"10.20.0.0/24"},"age":1796099105,"best":false,"attrs":[{"type":1,"value":2},{"type":2,"as_paths":[{"segment_type":2,"num":1,"asns":[65001]}]},{"type":3,"nexthop":"10.99.0.4"}],"stale":true,"source-id":"10.99.0.4","neighbor-ip":"10.99.0.4"}],
     "fd00:20::/64":[{"nlri":{"prefix":"fd00:20::/64"},"attrs":[{"type":14,"nexthop":"fd00:99::4","afi":2,"safi":1}],"stale":false,"neighbor-ip":"10.99.0.4"}]}"#;

    #[test]
    fn gobgp_routes_are_the_learned_paths() {
        assert_eq!(
            gobgp::parse_routes(GOBGP_V4),
            vec![
                route("10.20.0.0/24", "10.99.0.4", true, &[65001], &[]),
                route("fd00:20::/64", "fd00:99::4", false, &[], &[]),
            ]
        );
        assert_eq!(gobgp::parse_routes("{}"), vec![]);
    }

    #[test]
    fn gobgp_established_is_session_state_6() {
        let json = r#"[{"conf":{"neighbor_address":"10.99.0.2"},"state":{"neighbor_address":"10.99.0.2","session_state":6}},
                       {"conf":{"neighbor_address":"10.99.0.3"},"state":{"neighbor_address":"10.99.0.3","session_state":3}}]"#;
        assert!(gobgp::established(json, ip("10.99.0.2")));
        assert!(!gobgp::established(json, ip("10.99.0.3")));
    }

    fn cfg(kind: RouterKind) -> RouterConfig {
        RouterConfig::new(kind, Ipv4Addr::new(10, 99, 0, 2), 65000, ip("10.99.0.2"))
            .neighbor(Neighbor::new(ip("10.99.0.4"), 65001).md5("s3cret"))
            .neighbor(Neighbor::new(ip("fd00:99::4"), 65001).passive())
            .neighbor_range(net("10.99.0.0/24"), 65002)
    }

    #[test]
    fn configs_use_the_source_address_only_for_its_family() {
        let bird = bird::config(&cfg(RouterKind::Bird), Path::new("/tmp/x"));
        assert!(bird.contains("local 10.99.0.2 as 65000;\n  neighbor 10.99.0.4 as 65001;\n  passive off;\n  password \"s3cret\";"), "{bird}");
        assert!(
            bird.contains("local as 65000;\n  neighbor fd00:99::4 as 65001;\n  passive on;"),
            "{bird}"
        );
        assert!(
            bird.contains("neighbor range 10.99.0.0/24 as 65002;"),
            "{bird}"
        );
        assert!(bird.contains("hold time 9; keepalive time 3;"), "{bird}");
        assert!(!bird.contains("protocol kernel"), "{bird}");

        let frr = frr::config(&cfg(RouterKind::Frr));
        assert!(
            frr.contains(
                " neighbor 10.99.0.4 password s3cret\n neighbor 10.99.0.4 update-source 10.99.0.2\n"
            ),
            "{frr}"
        );
        assert!(frr.contains(" neighbor fd00:99::4 passive\n"), "{frr}");
        assert!(!frr.contains("fd00:99::4 update-source"), "{frr}");
        assert!(
            frr.contains(" bgp listen range 10.99.0.0/24 peer-group TL-RANGE\n"),
            "{frr}"
        );
        assert!(
            frr.contains("  neighbor TL-RANGE route-map TL-DENY out\n"),
            "{frr}"
        );

        let gobgp = gobgp::config(&cfg(RouterKind::Gobgp));
        assert!(gobgp.contains("auth-password = \"s3cret\"\n  [neighbors.transport.config]\n    passive-mode = false\n    local-address = \"10.99.0.2\"\n"), "{gobgp}");
        assert!(
            gobgp.contains("prefix = \"10.99.0.0/24\"\n    peer-group = \"tl-range\""),
            "{gobgp}"
        );
    }

    #[test]
    fn bird_installs_only_resolved_bgp_routes_into_the_kernel() {
        let mut c = cfg(RouterKind::Bird);
        c.install_kernel = true;
        let bird = bird::config(&c, Path::new("/tmp/x"));
        assert!(
            bird.contains("export where source = RTS_BGP && dest = RTD_UNICAST;"),
            "{bird}"
        );
    }

    #[test]
    #[should_panic(expected = "GoBGP cannot install routes into the kernel")]
    fn gobgp_refuses_to_install_into_the_kernel() {
        let mut c = cfg(RouterKind::Gobgp);
        c.install_kernel = true;
        c.check();
    }

    #[test]
    #[should_panic(expected = "md5 password")]
    fn md5_passwords_with_quotes_are_refused() {
        RouterConfig::new(
            RouterKind::Frr,
            Ipv4Addr::new(1, 1, 1, 1),
            1,
            ip("10.0.0.1"),
        )
        .neighbor(Neighbor::new(ip("10.0.0.2"), 2).md5("a\"b"))
        .check();
    }
}
