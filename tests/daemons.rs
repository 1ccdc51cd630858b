//! Real daemons for the cluster tests: trellis-controller and trellisd run
//! as processes, each in the lab namespace of its machine, driven over
//! their gRPC sockets. Killed and waited for on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use trellis_proto::v1::{AgentClient, ControllerClient};
use trellis_testlab::Netns;

/// The binary `name` this workspace build made: `$env` if set (scripts/test
/// names them), else beside this test's own executable.
pub fn binary(env: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the test's path");
    let dir = exe.parent().and_then(Path::parent).expect("target/debug");
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "no {name} at {} (cargo build -p {name}, or set {env})",
        p.display()
    );
    p
}

/// A daemon process in a namespace.
pub struct Daemon {
    child: Child,
    ns: String,
    argv: Vec<String>,
    /// Its gRPC unix socket.
    pub socket: PathBuf,
    log: PathBuf,
}

impl Daemon {
    /// Starts `bin` with `args` in `ns`, logging to `log`, and waits until
    /// `socket` answers.
    pub fn start(ns: &Netns, bin: &Path, args: &[String], socket: PathBuf, log: PathBuf) -> Self {
        let mut argv = vec![bin.display().to_string()];
        argv.extend(args.iter().cloned());
        let mut d = Daemon {
            child: spawn(ns.name(), &argv, &log),
            ns: ns.name().to_owned(),
            argv,
            socket,
            log,
        };
        d.wait_ready();
        d
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited early ({status}):\n{}", self.argv[0], self.log());
            }
            assert!(
                Instant::now() < deadline,
                "not ready in 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash: no shutdown path runs.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGKILL, as [`Daemon::kill`], and how long the process took to be
    /// gone. If it lingers past `report_after` (stuck in the kernel: a
    /// killed process leaves only when its system call does), its state
    /// and kernel stack are printed once, for the test's log.
    pub fn kill_timed(&mut self, report_after: Duration) -> Duration {
        let pid = self.child.id();
        let start = Instant::now();
        let _ = self.child.kill();
        let mut reported = false;
        loop {
            if let Ok(Some(_)) | Err(_) = self.child.try_wait() {
                return start.elapsed();
            }
            if !reported && start.elapsed() > report_after {
                reported = true;
                let read = |f: &str| std::fs::read_to_string(format!("/proc/{pid}/{f}"));
                eprintln!(
                    "{} (pid {pid}) still there {:?} after SIGKILL: {}\nkernel stack:\n{}",
                    self.argv[0],
                    start.elapsed(),
                    read("status")
                        .unwrap_or_default()
                        .lines()
                        .filter(|l| l.starts_with("State"))
                        .collect::<String>(),
                    read("stack").unwrap_or_else(|e| e.to_string()),
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// SIGTERM, and waits for the exit.
    pub fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }

    /// Starts the same command again (after [`Daemon::kill`] or
    /// [`Daemon::stop`]) and waits until it answers.
    pub fn start_again(&mut self) {
        self.child = spawn(&self.ns, &self.argv, &self.log);
        self.wait_ready();
    }

    /// The last lines of its log.
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// A client of the agent on its socket.
    pub async fn agent(&self) -> AgentClient<Channel> {
        trellis_proto::connect_unix(&self.socket).await.unwrap()
    }

    /// A client of the controller on its socket.
    pub async fn controller(&self) -> ControllerClient<Channel> {
        ControllerClient::new(trellis_proto::channel_unix(&self.socket).await.unwrap())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(ns: &str, argv: &[String], log: &Path) -> Child {
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)
        .expect("daemon log file");
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn a daemon with ip netns exec")
}

/// How calls fared on a daemon that may be killed at any moment (see
/// [`Retrying`]).
#[derive(Debug, Default, Clone)]
pub struct Retries {
    /// Calls answered.
    pub answered: u64,
    /// Calls that were cut off (sent, then the connection lost or the
    /// daemon unavailable) at least once, and so sent again.
    pub cut_off: u64,
    /// Sends after a call's first (a call cut off twice counts two).
    pub resent: u64,
    /// Connection attempts refused while the daemon was down.
    pub refused: u64,
    /// What cut the calls off: `code: message` (the message cut at 60
    /// characters), with how often.
    pub causes: std::collections::BTreeMap<String, u64>,
}

impl Retries {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Retries) {
        self.answered += other.answered;
        self.cut_off += other.cut_off;
        self.resent += other.resent;
        self.refused += other.refused;
        for (k, n) in &other.causes {
            *self.causes.entry(k.clone()).or_default() += n;
        }
    }
}

/// Whether a call that failed with `s` may not have been served and is to
/// be sent again: the connection was lost (the daemon killed under it) or
/// the daemon said it is unavailable for now. trellis answers its own
/// errors with the codes of their classes, never `Unknown` or `Cancelled`:
/// those come from the transport.
pub fn cut_off(s: &tonic::Status) -> bool {
    use tonic::Code;
    match s.code() {
        Code::Unavailable | Code::Unknown | Code::Cancelled => true,
        Code::Internal => {
            s.message().contains("h2 protocol error") || s.message().contains("transport error")
        }
        _ => false,
    }
}

/// An agent client on a unix socket whose daemon may be SIGKILLed and
/// restarted at any moment: a call cut off (see [`cut_off`]) is sent again,
/// the same request, after reconnecting, until it is answered or
/// `patience` runs out; any other error is the call's answer.
pub struct Retrying {
    socket: PathBuf,
    client: Option<AgentClient<Channel>>,
    /// How long one call may take, all its sends together.
    pub patience: Duration,
    /// What happened to the calls so far.
    pub retries: Retries,
}

impl Retrying {
    /// A client of the agent on `socket` (connected at the first call).
    pub fn new(socket: &Path) -> Self {
        Retrying {
            socket: socket.to_owned(),
            client: None,
            patience: Duration::from_secs(60),
            retries: Retries::default(),
        }
    }

    /// Makes the call `f` (given a client; it sends the same request each
    /// time) until it is answered. `Err` is a refusal by the daemon, or a
    /// call never answered within [`Retrying::patience`], described.
    pub async fn call<T, F, Fut>(&mut self, what: &str, mut f: F) -> Result<T, String>
    where
        F: FnMut(AgentClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = tokio::time::Instant::now() + self.patience;
        let mut sends = 0u64;
        let mut last = String::from("never connected");
        loop {
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "{what}: not answered within {:?} ({sends} sends; last: {last})",
                    self.patience
                ));
            }
            let client = match &self.client {
                Some(c) => c.clone(),
                None => {
                    let connect = trellis_proto::connect_unix(&self.socket);
                    match tokio::time::timeout(Duration::from_secs(2), connect).await {
                        Ok(Ok(c)) => {
                            self.client = Some(c.clone());
                            c
                        }
                        Ok(Err(e)) => {
                            self.retries.refused += 1;
                            last = e.to_string();
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                        Err(_) => {
                            self.retries.refused += 1;
                            last = "connect timed out".into();
                            continue;
                        }
                    }
                }
            };
            sends += 1;
            if sends == 2 {
                self.retries.cut_off += 1;
            }
            if sends >= 2 {
                self.retries.resent += 1;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, f(client)).await {
                Ok(Ok(r)) => {
                    self.retries.answered += 1;
                    return Ok(r.into_inner());
                }
                Ok(Err(s)) if cut_off(&s) => {
                    let msg: String = s.message().chars().take(60).collect();
                    let cause = format!("{:?}: {msg}", s.code());
                    *self.retries.causes.entry(cause.clone()).or_default() += 1;
                    last = cause;
                    self.client = None;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok(Err(s)) => {
                    return Err(format!(
                        "{what}: {:?}: {} (after {sends} sends)",
                        s.code(),
                        s.message()
                    ));
                }
                Err(_) => {
                    return Err(format!(
                        "{what}: no answer within {:?} ({sends} sends)",
                        self.patience
                    ));
                }
            }
        }
    }
}

/// What trellis keeps in a host namespace, read from the kernel: its veths'
/// host ends, its routes and the elements of its nftables sets and maps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostObjects {
    /// Host ends of endpoint veths (`tr` + 13 hex digits).
    pub veths: std::collections::BTreeSet<String>,
    /// Retired veths not yet deleted (`trx…`).
    pub retired: std::collections::BTreeSet<String>,
    /// `ip route show proto 116` (IPv4 and IPv6), one line each.
    pub routes: Vec<String>,
    /// Each set or map of table `inet trellis` with its elements (as
    /// `nft -j` prints them).
    pub nft: std::collections::BTreeMap<String, Vec<String>>,
}

impl HostObjects {
    /// Reads them from `ns`.
    pub fn read(ns: &Netns) -> Self {
        let mut veths = std::collections::BTreeSet::new();
        let mut retired = std::collections::BTreeSet::new();
        for line in ns.ip("-o link show type veth").lines() {
            // "12: tr0123456789abc@if2: <BROADCAST,…"
            let Some(name) = line.split(": ").nth(1) else {
                continue;
            };
            let name = name.split('@').next().unwrap_or(name).to_owned();
            if name.starts_with("trx") {
                retired.insert(name);
            } else if name.starts_with("tr") {
                veths.insert(name);
            }
        }
        let mut routes: Vec<String> = ns
            .ip("-4 route show proto 116")
            .lines()
            .chain(ns.ip("-6 route show proto 116").lines())
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect();
        routes.sort();
        HostObjects {
            veths,
            retired,
            routes,
            nft: nft_elements(ns),
        }
    }

    /// The routes to single addresses (/32, /128: an endpoint's), as
    /// `(address, device)`.
    pub fn host_routes(&self) -> std::collections::BTreeSet<(String, String)> {
        self.routes
            .iter()
            .filter(|l| !l.starts_with("blackhole") && !l.contains('/') && !l.contains(" via "))
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                let dst = words.next()?.to_owned();
                let dev = words.skip_while(|w| *w != "dev").nth(1)?.to_owned();
                Some((dst, dev))
            })
            .collect()
    }

    /// How many elements all of trellis's sets and maps hold.
    pub fn nft_count(&self) -> usize {
        self.nft.values().map(Vec::len).sum()
    }
}

/// The elements of every set and map of table `inet trellis` in `ns`, by
/// name (empty if there is no such table).
pub fn nft_elements(ns: &Netns) -> std::collections::BTreeMap<String, Vec<String>> {
    let out = ns.exec(&["nft", "-j", "list", "table", "inet", "trellis"]);
    let mut sets = std::collections::BTreeMap::new();
    if !out.status.success() {
        return sets;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("nft -j prints JSON");
    for item in v["nftables"].as_array().into_iter().flatten() {
        for kind in ["set", "map"] {
            let Some(s) = item.get(kind) else { continue };
            let name = s["name"].as_str().unwrap_or_default().to_owned();
            let mut elems: Vec<String> = s["elem"]
                .as_array()
                .into_iter()
                .flatten()
                .map(ToString::to_string)
                .collect();
            elems.sort();
            sets.insert(name, elems);
        }
    }
    sets
}

/// Whether the daemon log at `path` tells of a panic, and the lines that do.
pub fn panics_in_log(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("panicked") || l.contains("RUST_BACKTRACE"))
        .map(str::to_owned)
        .collect()
}

/// The `p`-th percentile (0..=100) of `xs` (sorted here), or zero if empty.
pub fn percentile(xs: &mut [Duration], p: usize) -> Duration {
    if xs.is_empty() {
        return Duration::ZERO;
    }
    xs.sort();
    let i = (xs.len() * p).div_ceil(100).clamp(1, xs.len()) - 1;
    xs[i]
}

/// A temporary directory for daemons' state and logs, kept (and named on
/// stderr) when the test fails, or always with `TRELLIS_KEEP_LOGS=1`, so
/// that the logs can be read.
pub struct KeptOnFailure(Option<tempfile::TempDir>);

impl KeptOnFailure {
    /// A fresh directory named after `what`.
    pub fn new(what: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("trellis-{what}-"))
            .tempdir()
            .expect("a temporary directory");
        KeptOnFailure(Some(dir))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.0.as_ref().expect("the directory").path()
    }
}

impl Drop for KeptOnFailure {
    fn drop(&mut self) {
        let keep = std::thread::panicking()
            || std::env::var_os("TRELLIS_KEEP_LOGS").is_some_and(|v| v != "0");
        if keep && let Some(dir) = self.0.take() {
            eprintln!("logs and state kept in {}", dir.keep().display());
        }
    }
}

/// What is wrong with interface `ifname` in the namespace at `netns`
/// (`/run/netns/<name>`) for an endpoint answered with `address` (`ip/len`):
/// `None` if it is there, up, and holds the address. For checking an
/// attach's answer at once, from async code (the `ip` command runs on the
/// blocking pool).
pub async fn interface_problem(netns: &str, ifname: &str, address: &str) -> Option<String> {
    let name = netns
        .strip_prefix("/run/netns/")
        .unwrap_or(netns)
        .to_owned();
    let (ifname, address) = (ifname.to_owned(), address.to_owned());
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("ip")
            .args(["-n", &name, "-o", "addr", "show", "dev", &ifname])
            .output()
            .expect("run ip");
        let addrs = String::from_utf8_lossy(&out.stdout);
        let link = std::process::Command::new("ip")
            .args(["-n", &name, "-o", "link", "show", "dev", &ifname])
            .output()
            .expect("run ip");
        let link = String::from_utf8_lossy(&link.stdout);
        let flags = link.split(['<', '>']).nth(1).unwrap_or_default();
        if !out.status.success() || link.is_empty() {
            Some(format!("no {ifname} in {name}"))
        } else if !flags.split(',').any(|f| f == "UP") {
            Some(format!("{ifname} in {name} is down: {}", link.trim()))
        } else if !addrs.contains(&format!(" {address} ")) {
            Some(format!(
                "{ifname} in {name} lacks {address}: {}",
                addrs.trim()
            ))
        } else {
            None
        }
    })
    .await
    .expect("the ip command's task")
}
