//! Helpers: the trellisd binary run inside a test namespace, and what tests
//! need around it (readiness, metrics scraped from inside the namespace).

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};
use trellis_testlab::Netns;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_trellisd");

/// Runs the binary in this process's namespace with `args`, without any of
/// trellisd's environment variables leaking in, and returns its output. For
/// commands that exit at once (`--print-config`, refused configurations).
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("TRELLISD_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run trellisd")
}

/// Stderr of `out` as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A trellisd process inside a test namespace, killed if still running when
/// dropped (a failing test never leaves a daemon behind).
pub struct Daemon {
    child: Child,
    /// The gRPC socket.
    pub socket: PathBuf,
    log: PathBuf,
}

impl Daemon {
    /// Starts trellisd in `ns` with its state and socket under `dir`, plus
    /// `extra` arguments. Logs go to `<dir>/trellisd.<n>.log`.
    pub fn start(ns: &Netns, dir: &Path, extra: &[&str]) -> Daemon {
        let socket = dir.join("run/trellisd.sock");
        let state = dir.join("state");
        let log = (0..)
            .map(|n| dir.join(format!("trellisd.{n}.log")))
            .find(|p| !p.exists())
            .expect("a free log name");
        let log_file = File::create(&log).expect("create log file");
        let child = Command::new("ip")
            .args(["netns", "exec", ns.name(), BIN, "--node", "e2e"])
            .arg("--state-dir")
            .arg(&state)
            .arg("--socket")
            .arg(&socket)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn ip netns exec trellisd");
        Daemon { child, socket, log }
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the socket accepts connections; panics with the log if
    /// the daemon exits or takes longer than 30 s.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("poll trellisd") {
                panic!("trellisd exited early ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "trellisd not ready after 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the daemon to exit by itself (at most `within`).
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll trellisd") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "trellisd still running after {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: Signal) {
        // `ip netns exec` execs the binary, so the child is trellisd itself.
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits"));
        kill(pid, signal).unwrap_or_else(|e| panic!("kill -{signal} trellisd: {e}"));
    }

    /// SIGTERM, then the exit status (within 15 s).
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        self.wait_exit(Duration::from_secs(15))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
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
