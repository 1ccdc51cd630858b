//! Helpers: the trellisd binary run inside a test namespace, and what tests
//! need around it (readiness, metrics scraped from inside the namespace).

use nix::sys::signal::Signal;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::{Command, ExitStatus, Output};
use std::time::Duration;
use trellis_testlab::Netns;
pub use trellis_testlab::daemon::stderr;
use trellis_testlab::daemon::{self, clean_command, free_log};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_trellisd");

/// Runs the binary in this process's namespace with `args`, without any of
/// trellisd's environment variables leaking in, and returns its output. For
/// commands that exit at once (`--print-config`, refused configurations).
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    clean_command(BIN, "TRELLISD_")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run trellisd")
}

/// A trellisd process inside a test namespace, killed if still running when
/// dropped (a failing test never leaves a daemon behind): testlab's
/// [`daemon::Daemon`] (its log, `wait_ready`, `wait_exit`, `signal`), started
/// the trellisd way.
pub struct Daemon(daemon::Daemon);

impl Daemon {
    /// Starts trellisd in `ns` with its state and socket under `dir`, plus
    /// `extra` arguments. Logs go to `<dir>/trellisd.<n>.log`.
    pub fn start(ns: &Netns, dir: &Path, extra: &[&str]) -> Daemon {
        let socket = dir.join("run/trellisd.sock");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns.name(), BIN, "--node", "e2e"])
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--socket")
            .arg(&socket)
            .args(extra)
            .env("RUST_LOG", "info");
        let log = free_log(dir, "trellisd");
        Daemon(daemon::Daemon::spawn("trellisd", cmd, socket, log))
    }

    /// SIGTERM, then the exit status (within 15 s).
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        self.wait_exit(Duration::from_secs(15))
    }
}

impl Deref for Daemon {
    type Target = daemon::Daemon;

    fn deref(&self) -> &daemon::Daemon {
        &self.0
    }
}

impl DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut daemon::Daemon {
        &mut self.0
    }
}

/// `GET /metrics` at `addr` inside `ns`, from a thread that joined it.
pub fn scrape(ns: &Netns, addr: SocketAddr) -> String {
    ns.enter(move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to metrics {addr}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: trellisd\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).expect("read metrics reply");
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        reply
    })
}

/// The value of the sample whose line starts with `series` (name and
/// labels, as printed), if any.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().expect("a number"))
}

/// Mode bits of `path`.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}
