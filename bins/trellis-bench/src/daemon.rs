//! The daemons a benchmark runs: trellisd, trellis-controller, each a real
//! binary started inside a namespace the bench made (`ip netns exec`, or
//! `nsenter` into a podman harness's namespaces; both exec it: the child is
//! the daemon itself), with a temporary state directory and unix socket,
//! logging to a file there.
//!
//! Every daemon started here is registered until it is reaped, so that the
//! bench's signal thread ([`kill_all`]) leaves none behind on Ctrl-C.
//! A [`Daemon`] can be killed or stopped and started again on the same
//! state directory and socket, as a node restarts it.

use anyhow::{Context, Result, bail, ensure};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use trellis_testlab::Netns;

/// Where the trellisd binary is: `explicit` if given; else, when run by
/// `cargo run` (which sets `$CARGO`), the one cargo builds now beside this
/// binary (same profile; so it is never stale); else the one beside this
/// binary.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
    locate_binary(explicit, "trellisd", "--trellisd")
}

/// Where the binary of package `name` (whose binary has the same name) is,
/// as [`locate`] finds trellisd; `flag` is the option that names it.
pub fn locate_binary(explicit: Option<&Path>, name: &str, flag: &str) -> Result<PathBuf> {
    if let Some(p) = explicit {
        ensure!(p.is_file(), "{flag} {}: no such file", p.display());
        return Ok(p.to_owned());
    }
    let me = std::env::current_exe().context("where is this binary")?;
    let beside = me.with_file_name(name);
    if let Some(cargo) = std::env::var_os("CARGO") {
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", name]);
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        eprintln!("building {name}: {cmd:?}");
        let status = cmd
            .status()
            .with_context(|| format!("run cargo build -p {name}"))?;
        ensure!(status.success(), "cargo build -p {name} failed: {status}");
    }
    ensure!(
        beside.is_file(),
        "no {name} at {} (build it: cargo build --release -p {name}, or pass {flag} PATH)",
        beside.display()
    );
    Ok(beside)
}

/// A daemon process inside a namespace; killed when dropped, its state
/// directory and socket removed with the temporary directory.
pub struct Daemon {
    child: Child,
    /// `ip netns exec <host> <binary> …`, to start it again.
    command: Command,
    /// The name the kernel gives the process (see [`comm_of`]).
    comm: String,
    socket: PathBuf,
    log: PathBuf,
    // Last: removed after the daemon is dead.
    _dir: TempDir,
}

impl Daemon {
    /// Starts `binary` in `host` (`ip netns exec`, which execs it: the child
    /// is trellisd itself) and waits until its socket accepts connections.
    pub fn start(binary: &Path, host: &Netns) -> Result<Daemon> {
        Daemon::start_with(binary, host, &["--node", "bench"])
    }

    /// Starts `binary` (trellisd, or trellis-controller: both take
    /// `--state-dir` and `--socket`) in `host` with a state directory and a
    /// socket in a fresh temporary directory, then `args`; waits until its
    /// socket accepts connections. Registered for [`kill_all`].
    pub fn start_with(binary: &Path, host: &Netns, args: &[&str]) -> Result<Daemon> {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", host.name()]).arg(binary);
        Daemon::start_command(command, binary, args)
    }

    /// Starts `command` — a program that execs `binary` (trellisd, or
    /// trellis-controller) inside some namespaces, `binary` its last word,
    /// e.g. a podman harness's `nsenter … -- trellisd` — with a state
    /// directory and a socket in a fresh temporary directory, then `args`;
    /// waits until its socket accepts connections. Registered for
    /// [`kill_all`].
    pub fn start_command(mut command: Command, binary: &Path, args: &[&str]) -> Result<Daemon> {
        let dir = tempfile::tempdir().context("tempdir for a daemon")?;
        let name = binary
            .file_name()
            .map_or_else(|| "daemon".into(), |n| n.to_string_lossy().into_owned());
        let socket = dir.path().join(format!("run/{name}.sock"));
        let log = dir.path().join(format!("{name}.log"));
        command
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--socket")
            .arg(&socket)
            .args(args);
        for (k, _) in std::env::vars_os() {
            let k_text = k.to_string_lossy();
            if k_text.starts_with("TRELLISD_")
                || k_text.starts_with("TRELLIS_CONTROLLER_")
                || k == "RUST_LOG"
            {
                command.env_remove(k);
            }
        }
        let comm = comm_of(binary.as_os_str());
        let child = spawn(&mut command, &log, &comm)?;
        let mut d = Daemon {
            child,
            command,
            comm,
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
        self.child = spawn(&mut self.command, &self.log, &self.comm)?;
        Ok(())
    }

    /// SIGKILL, as a crash or an OOM kill: no shutdown path runs, the stale
    /// socket stays. Returns once the process is gone.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill().context("SIGKILL trellisd")?;
        self.child.wait().context("wait for trellisd")?;
        running().remove(&self.child.id());
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
        running().remove(&self.child.id());
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

    /// Its process id (`ip netns exec` execs it: the child is the daemon).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited early ({status}):\n{}", self.name(), self.log());
            }
            ensure!(
                Instant::now() < deadline,
                "{} not ready after 30 s:\n{}",
                self.name(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's name (its binary's file name, cut to 15 bytes).
    fn name(&self) -> &str {
        &self.comm
    }

    /// The daemon's log so far (for errors).
    pub fn log(&self) -> String {
        tail(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// (VmRSS, VmHWM) in KiB: [`memory`] of the daemon's pid.
    pub fn memory(&self) -> Result<(u64, u64)> {
        memory(self.child.id())
    }
}

/// The last 30 lines of a log, for errors.
pub fn tail(log: &str) -> String {
    let tail: Vec<&str> = log.lines().rev().take(30).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// (VmRSS, VmHWM) of process `pid` in KiB, from `/proc/<pid>/status`.
pub fn memory(pid: u32) -> Result<(u64, u64)> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    Ok((kib(&status, "VmRSS")?, kib(&status, "VmHWM")?))
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        running().remove(&self.child.id());
    }
}

/// The daemons running now: pid → the name the kernel gives the process
/// (`/proc/<pid>/comm`, its binary's name cut to 15 bytes), for [`kill_all`].
static RUNNING: Mutex<BTreeMap<u32, String>> = Mutex::new(BTreeMap::new());

fn running() -> std::sync::MutexGuard<'static, BTreeMap<u32, String>> {
    RUNNING.lock().unwrap_or_else(|e| e.into_inner())
}

/// What `/proc/<pid>/comm` says for a process exec'd from `binary`: its
/// file name, cut to 15 bytes (`TASK_COMM_LEN` − 1).
fn comm_of(binary: &std::ffi::OsStr) -> String {
    let name = Path::new(binary)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.bytes().take(15).map(char::from).collect()
}

/// SIGKILLs every daemon this process started that still runs, and waits
/// for each to be gone (the bench's signal thread, before it removes the
/// namespaces: a daemon dies only once it leaves the kernel work it is in).
/// A pid is checked to still be the daemon it was started as first.
pub fn kill_all() {
    for (pid, want) in std::mem::take(&mut *running()) {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == want {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            // Our child: reaped here, or already by its `Child` (ECHILD).
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }
}

/// Spawns `command`, which execs the daemon known to the kernel as `comm`,
/// with stderr appended to `log` (one log across restarts).
fn spawn(command: &mut Command, log: &Path, comm: &str) -> Result<Child> {
    let log = File::options()
        .create(true)
        .append(true)
        .open(log)
        .context("daemon log file")?;
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("spawn {command:?}"))?;
    running().insert(child.id(), comm.to_owned());
    Ok(child)
}

/// The value of `field` (in kB) in a `/proc/<pid>/status` text.
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
    fn comm_is_the_binary_name_cut_to_15_bytes() {
        assert_eq!(comm_of("/x/release/trellisd".as_ref()), "trellisd");
        assert_eq!(
            comm_of("/x/release/trellis-controller".as_ref()),
            "trellis-control"
        );
    }
}
