//! trellis as a runtime uses it: the real `trellisd` binary, started inside
//! the benchmark's host namespace with a temporary state directory and
//! socket, driven over gRPC on that unix socket.
//!
//! The clock of an attach starts before the request is encoded and stops when
//! the answer is decoded: client, HTTP/2 over the socket, the daemon's
//! validation, IPAM, kernel work, the fsync'd redb commits, the reply.
//!
//! The [`Daemon`] can be killed or stopped and started again on the same
//! state directory and socket, as a node restarts it (`trellis-bench restart`).

use crate::grpc::{CONTAINER_PORT, Peer, Slot};
use anyhow::{Context, Result, bail, ensure};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::runtime::Runtime;
use tonic::transport::Channel;
use trellis_proto::v1::{
    AgentClient, AttachRequest, CreateNetworkRequest, DetachRequest, NetworkMode, NetworkSpec,
    PortMapping, Protocol, StatusRequest,
};
use trellis_testlab::Netns;

/// The network every curve attaches to.
pub const NETWORK: &str = "bench";
/// Its bridge in the host namespace.
pub const BRIDGE: &str = "tbench0";

/// Where the trellisd binary is: `explicit` if given; else, when run by
/// `cargo run` (which sets `$CARGO`), the one cargo builds now beside this
/// binary (same profile; so it is never stale); else the one beside this
/// binary.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        ensure!(p.is_file(), "--trellisd {}: no such file", p.display());
        return Ok(p.to_owned());
    }
    let me = std::env::current_exe().context("where is this binary")?;
    let beside = me.with_file_name("trellisd");
    if let Some(cargo) = std::env::var_os("CARGO") {
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "trellisd"]);
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        eprintln!("building trellisd: {cmd:?}");
        let status = cmd.status().context("run cargo build -p trellisd")?;
        ensure!(status.success(), "cargo build -p trellisd failed: {status}");
    }
    ensure!(
        beside.is_file(),
        "no trellisd at {} (build it: cargo build --release -p trellisd, or pass --trellisd PATH)",
        beside.display()
    );
    Ok(beside)
}

/// A trellisd process inside a host namespace; killed when dropped, its
/// state directory and socket removed with the temporary directory.
pub struct Daemon {
    child: Child,
    /// `ip netns exec <host> <binary> …`, to start it again.
    command: Command,
    socket: PathBuf,
    log: PathBuf,
    // Last: removed after the daemon is dead.
    _dir: TempDir,
}

impl Daemon {
    /// Starts `binary` in `host` (`ip netns exec`, which execs it: the child
    /// is trellisd itself) and waits until its socket accepts connections.
    pub fn start(binary: &Path, host: &Netns) -> Result<Daemon> {
        let dir = tempfile::tempdir().context("tempdir for trellisd")?;
        let socket = dir.path().join("run/trellisd.sock");
        let log = dir.path().join("trellisd.log");
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", host.name()])
            .arg(binary)
            .args(["--node", "bench", "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("--socket")
            .arg(&socket);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("TRELLISD_") || k == "RUST_LOG" {
                command.env_remove(k);
            }
        }
        let child = spawn(&mut command, &log)?;
        let mut d = Daemon {
            child,
            command,
            socket,
            log,
            _dir: dir,
        };
        d.wait_ready()?;
        Ok(d)
    }

    /// Starts the daemon again, on the same state directory and socket,
    /// after [`Daemon::kill`] or [`Daemon::stop`]; returns once it is
    /// spawned (whoever calls it watches for readiness).
    pub fn start_again(&mut self) -> Result<()> {
        ensure!(
            self.child.try_wait()?.is_some(),
            "trellisd {} still runs; stop it first",
            self.child.id()
        );
        self.child = spawn(&mut self.command, &self.log)?;
        Ok(())
    }

    /// SIGKILL, as a crash or an OOM kill: no shutdown path runs, the stale
    /// socket stays. Returns once the process is gone.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill().context("SIGKILL trellisd")?;
        self.child.wait().context("wait for trellisd")?;
        Ok(())
    }

    /// SIGTERM, as systemd stops it, and waits (up to 60 s) for it to exit
    /// on its own.
    pub fn stop(&mut self) -> Result<()> {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .context("run kill -TERM")?;
        ensure!(status.success(), "kill -TERM {pid} failed: {status}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait()?.is_none() {
            ensure!(
                Instant::now() < deadline,
                "trellisd {pid} still runs 60 s after SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Whether the process has exited, and how (its log then says why).
    pub fn exited(&mut self) -> Result<Option<std::process::ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// The daemon's unix socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("trellisd exited early ({status}):\n{}", self.log());
            }
            ensure!(
                Instant::now() < deadline,
                "trellisd not ready after 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's log so far (for errors).
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// (VmRSS, VmHWM) in KiB, from /proc/<pid>/status.
    pub fn memory(&self) -> Result<(u64, u64)> {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
        Ok((kib(&status, "VmRSS")?, kib(&status, "VmHWM")?))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Spawns `command` with stderr appended to `log` (one log across restarts).
fn spawn(command: &mut Command, log: &Path) -> Result<Child> {
    let log = File::options()
        .create(true)
        .append(true)
        .open(log)
        .context("trellisd log file")?;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("spawn ip netns exec trellisd")
}

/// The value of `field` (in kB) in a /proc/<pid>/status text.
pub fn kib(status: &str, field: &str) -> Result<u64> {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .with_context(|| format!("no {field} in /proc/<pid>/status"))?;
    let n = line
        .trim()
        .strip_suffix("kB")
        .with_context(|| format!("{field}: {line:?} is not in kB"))?;
    n.trim()
        .parse()
        .with_context(|| format!("{field}: {line:?} is not a number"))
}

/// The request attaching `slot` to [`NETWORK`].
pub fn attach_request(slot: &Slot) -> AttachRequest {
    AttachRequest {
        network: NETWORK.into(),
        container_id: slot.id.clone(),
        netns: slot.netns.to_string_lossy().into_owned(),
        ifname: "eth0".into(),
        ports: slot
            .port
            .map(|p| PortMapping {
                protocol: Protocol::Tcp as i32,
                host_port: p.into(),
                container_port: CONTAINER_PORT.into(),
                ..Default::default()
            })
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

/// The request detaching `slot`.
pub fn detach_request(slot: &Slot) -> DetachRequest {
    DetachRequest {
        container_id: slot.id.clone(),
        ifname: "eth0".into(),
    }
}

/// trellisd with one bridge network, as a [`Peer`].
pub struct Trellisd<'a> {
    rt: &'a Runtime,
    client: AgentClient<Channel>,
    // Dropped after the client.
    daemon: Daemon,
}

impl<'a> Trellisd<'a> {
    /// Starts the daemon in `host` and creates the bridge network `subnet`
    /// (no outgoing NAT, as the CNI peer's `ipMasq: false`).
    pub fn start(rt: &'a Runtime, binary: &Path, host: &Netns, subnet: &str) -> Result<Self> {
        let daemon = Daemon::start(binary, host)?;
        let client = rt.block_on(async {
            let mut client = trellis_proto::connect_unix(&daemon.socket).await?;
            // A trellisd that serves while it reconciles answers Status with
            // ready = false meanwhile; the network is created once it is ready.
            let deadline = Instant::now() + Duration::from_secs(30);
            while !client
                .status(StatusRequest {})
                .await
                .context("Status")?
                .into_inner()
                .ready
            {
                ensure!(
                    Instant::now() < deadline,
                    "trellisd not ready 30 s after it began serving:\n{}",
                    daemon.log()
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let spec = NetworkSpec {
                name: NETWORK.into(),
                mode: NetworkMode::Bridge as i32,
                subnets: vec![subnet.into()],
                bridge: BRIDGE.into(),
                ..Default::default()
            };
            client
                .create_network(CreateNetworkRequest { spec: Some(spec) })
                .await
                .context("CreateNetwork")?;
            anyhow::Ok(client)
        })?;
        Ok(Trellisd { rt, client, daemon })
    }

    /// The daemon, to stop and start it again.
    pub fn daemon_mut(&mut self) -> &mut Daemon {
        &mut self.daemon
    }

    /// Sends every request of `reqs` at once through `call`, one task each;
    /// the wall time from the first sent to the last answered.
    fn concurrently<R, F, Fut>(&self, what: &str, reqs: Vec<R>, call: F) -> Result<Duration>
    where
        R: Send + 'static,
        F: Fn(AgentClient<Channel>, R) -> Fut,
        Fut: Future<Output = Result<(), tonic::Status>> + Send + 'static,
    {
        let client = &self.client;
        let (took, results) = self.rt.block_on(async {
            let start = Instant::now();
            let tasks: Vec<_> = reqs
                .into_iter()
                .map(|req| tokio::spawn(call(client.clone(), req)))
                .collect();
            let mut results = Vec::with_capacity(tasks.len());
            for t in tasks {
                results.push(t.await);
            }
            (start.elapsed(), results)
        });
        for r in results {
            r.with_context(|| format!("{what} task"))?
                .map_err(|e| self.failed(what, e))?;
        }
        Ok(took)
    }

    fn failed(&self, what: &str, e: tonic::Status) -> anyhow::Error {
        anyhow::anyhow!(
            "{what}: {} {}\ntrellisd log (tail):\n{}",
            e.code(),
            e.message(),
            self.daemon.log()
        )
    }
}

impl Peer for Trellisd<'_> {
    fn attach(&mut self, slot: &Slot) -> Result<Duration> {
        let req = attach_request(slot);
        let start = Instant::now();
        let r = self.rt.block_on(self.client.attach(req));
        let took = start.elapsed();
        r.map_err(|e| self.failed("Attach", e))?;
        Ok(took)
    }

    fn detach(&mut self, slot: &Slot) -> Result<Duration> {
        let req = detach_request(slot);
        let start = Instant::now();
        let r = self.rt.block_on(self.client.detach(req));
        let took = start.elapsed();
        r.map_err(|e| self.failed("Detach", e))?;
        Ok(took)
    }

    fn attach_concurrently(&mut self, slots: &[Slot]) -> Result<Duration> {
        let reqs = slots.iter().map(attach_request).collect();
        self.concurrently("concurrent Attach", reqs, |mut c, req| async move {
            c.attach(req).await.map(drop)
        })
    }

    fn detach_concurrently(&mut self, slots: &[Slot]) -> Result<Duration> {
        let reqs = slots.iter().map(detach_request).collect();
        self.concurrently("concurrent Detach", reqs, |mut c, req| async move {
            c.detach(req).await.map(drop)
        })
    }

    fn memory(&self) -> Result<Option<(u64, u64)>> {
        self.daemon.memory().map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kib_fields_of_proc_status() {
        let status = "Name:\ttrellisd\nVmHWM:\t   20480 kB\nVmRSS:\t   18432 kB\nThreads:\t4\n";
        assert_eq!(kib(status, "VmRSS").unwrap(), 18432);
        assert_eq!(kib(status, "VmHWM").unwrap(), 20480);
        assert!(kib(status, "VmSwap").is_err());
        assert!(kib("Threads:\t4\n", "Threads").is_err(), "not in kB");
    }

    #[test]
    fn attach_request_publishes_the_slot_port_only() {
        let mut slot = Slot {
            index: 3,
            id: "bench3".into(),
            netns: "/run/netns/c3".into(),
            port: Some(10_003),
        };
        let r = attach_request(&slot);
        assert_eq!(
            (
                r.network.as_str(),
                r.container_id.as_str(),
                r.netns.as_str()
            ),
            (NETWORK, "bench3", "/run/netns/c3")
        );
        assert_eq!(r.ports.len(), 1);
        assert_eq!(
            (r.ports[0].host_port, r.ports[0].container_port),
            (10_003, 80)
        );
        assert_eq!(r.ports[0].protocol, Protocol::Tcp as i32);
        slot.port = None;
        assert!(attach_request(&slot).ports.is_empty());
    }
}
