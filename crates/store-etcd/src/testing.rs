//! Real etcd members on loopback, for tests (feature `testing`): this
//! crate's etcd tier and the controller's HA tests.
//!
//! [`Etcd::start`] runs one or more `etcd` processes (Debian's
//! `etcd-server`; `ETCD_BIN` names another binary) on free loopback ports,
//! each with a data directory in one temporary directory, and waits until
//! every member serves a linearizable read. Dropping the [`Etcd`] — at the
//! end of a test or while a failed one unwinds — kills the members and
//! removes the directory.

use crate::EtcdStore;
use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use trellis_store::KvStore;

/// How long a fresh cluster may take to serve reads.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running etcd cluster, killed and removed on drop.
pub struct Etcd {
    members: Vec<Member>,
    dir: tempfile::TempDir,
}

struct Member {
    name: String,
    client_url: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Etcd {
    /// A cluster of `n` members on loopback, serving reads.
    pub async fn start(n: usize) -> Etcd {
        let dir = tempfile::tempdir().expect("a temporary directory for etcd");
        // Each member needs a client and a peer port: taken from the kernel
        // (bind port 0), all held until all are chosen so none repeats, and
        // freed just before etcd binds them.
        let held: Vec<TcpListener> = (0..2 * n).map(|_| loopback_listener()).collect();
        let port = |i: usize| held[i].local_addr().expect("its address").port();
        let ports: Vec<(u16, u16)> = (0..n).map(|i| (port(2 * i), port(2 * i + 1))).collect();
        drop(held);
        let cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        // Members join `etcd` as they start, so that a failure to start one
        // still stops the others (on drop).
        let mut etcd = Etcd {
            members: Vec::with_capacity(n),
            dir,
        };
        for (i, (client, peer)) in ports.into_iter().enumerate() {
            let member = etcd.spawn(&format!("m{i}"), client, peer, &cluster);
            etcd.members.push(member);
        }
        etcd.wait_ready().await;
        etcd
    }

    /// Starts the member `name` of the new cluster `cluster`.
    fn spawn(&self, name: &str, client: u16, peer: u16, cluster: &str) -> Member {
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = self.dir.path().join(format!("{name}.log"));
        let child = Command::new(etcd_bin())
            .args(["--name", name])
            .arg("--data-dir")
            .arg(self.dir.path().join(name))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", cluster])
            .args(["--initial-cluster-state", "new"])
            // Unique per cluster (its own ports), so that members of two
            // test clusters never take each other for peers.
            .args(["--initial-cluster-token", cluster])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("etcd log file"))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {:?} ({e}): the etcd tier needs Debian's etcd-server \
                     (.ci/install-deps installs it) or ETCD_BIN",
                    etcd_bin()
                )
            });
        Member {
            name: name.to_owned(),
            client_url,
            child: Some(child),
            log,
        }
    }

    /// The client URLs of every member, in order.
    pub fn urls(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// Kills member `i` with SIGKILL and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The member that leads now: the one whose log says it became leader
    /// at the highest term (etcd logs `… became leader at term N`).
    pub fn leader(&self) -> usize {
        let term = |m: &Member| {
            let log = std::fs::read_to_string(&m.log).unwrap_or_default();
            log.lines()
                .filter_map(|l| l.split("became leader at term ").nth(1))
                .filter_map(|rest| {
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    digits.parse::<u64>().ok()
                })
                .max()
        };
        let terms: Vec<Option<u64>> = self.members.iter().map(term).collect();
        (0..terms.len())
            .filter(|i| terms[*i].is_some())
            .max_by_key(|i| terms[*i])
            .unwrap_or_else(|| panic!("no member says it leads\n{}", self.logs()))
    }

    /// Waits until each member, alone, answers a linearizable read.
    async fn wait_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        for m in &self.members {
            let store = EtcdStore::connect(std::slice::from_ref(&m.client_url), None).unwrap();
            loop {
                match store.get("ready").await {
                    Ok(_) => break,
                    Err(e) if Instant::now() > deadline => {
                        panic!("etcd member {} not ready: {e}\n{}", m.name, self.logs())
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
    }

    /// The tail of every member's log, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for m in &self.members {
            let log = std::fs::read_to_string(&m.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            out.push_str(&format!(
                "--- {} ({}):\n",
                m.name,
                self.dir.path().display()
            ));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// The etcd binary: `ETCD_BIN`, or `etcd` on the `PATH`.
fn etcd_bin() -> String {
    std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".to_owned())
}

/// A listener on a free loopback port.
fn loopback_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind a loopback port")
}

/// A loopback TCP port that was free a moment ago (nothing listens on it).
pub fn free_port() -> u16 {
    let l = loopback_listener();
    l.local_addr().expect("its address").port()
}
