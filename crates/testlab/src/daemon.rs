//! A daemon under test (trellisd, trellis-controller) run as a real process:
//! its stderr in a log file that failures print, its readiness seen on its
//! unix socket, and never left running by a failing test.
//!
//! The binaries' integration tests build the command (which binary, which
//! namespace, which flags) and hand it here; waiting, signalling and killing
//! are the same for every daemon.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a daemon may take to answer on its socket.
pub const READY_WITHIN: Duration = Duration::from_secs(30);
/// How often a daemon's state is polled.
const POLL: Duration = Duration::from_millis(50);

/// A command for the binary `bin` without `RUST_LOG` or any environment
/// variable whose name starts with `env_prefix` (`TRELLISD_`) leaking in
/// from the test's own environment.
pub fn clean_command(bin: impl AsRef<OsStr>, env_prefix: &str) -> Command {
    let mut cmd = Command::new(bin);
    for (k, _) in std::env::vars_os() {
        let name = k.to_string_lossy();
        if name.starts_with(env_prefix) || name == "RUST_LOG" {
            cmd.env_remove(&k);
        }
    }
    cmd
}

/// Stderr of `out` as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The first `<dir>/<stem>.<n>.log` that does not exist yet, so that each
/// start of a daemon in one directory keeps a log of its own.
pub fn free_log(dir: &Path, stem: &str) -> PathBuf {
    (0..)
        .map(|n| dir.join(format!("{stem}.{n}.log")))
        .find(|p| !p.exists())
        .expect("a free log name")
}

/// A daemon process serving on a unix socket, killed (and reaped) if still
/// running when dropped.
pub struct Daemon {
    child: Child,
    name: String,
    log: PathBuf,
    /// The daemon's gRPC socket.
    pub socket: PathBuf,
}

impl Daemon {
    /// Spawns `cmd` — the daemon `name`, which will serve on `socket` — with
    /// stdin and stdout closed and stderr written to `log`. It does not wait
    /// for it: see [`Daemon::wait_ready`].
    pub fn spawn(name: &str, mut cmd: Command, socket: PathBuf, log: PathBuf) -> Daemon {
        let log_file =
            File::create(&log).unwrap_or_else(|e| panic!("create log file {}: {e}", log.display()));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Daemon {
            child,
            name: name.to_owned(),
            log,
            socket,
        }
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the socket accepts connections; panics with the log if
    /// the daemon exits first or takes longer than [`READY_WITHIN`].
    pub fn wait_ready(&mut self) {
        let socket = self.socket.clone();
        self.wait_until("the socket", || {
            std::os::unix::net::UnixStream::connect(&socket).is_ok()
        });
    }

    /// Polls `ready` until it holds; panics with the log if the daemon exits
    /// first or `what` is not ready within [`READY_WITHIN`].
    pub fn wait_until(&mut self, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + READY_WITHIN;
        while !ready() {
            if let Some(status) = self.try_wait() {
                panic!("{} exited early ({status}):\n{}", self.name, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "{}: {what} not ready after {READY_WITHIN:?}:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(POLL);
        }
    }

    /// The exit status, if the daemon has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let name = &self.name;
        self.child
            .try_wait()
            .unwrap_or_else(|e| panic!("poll {name}: {e}"))
    }

    /// The exit status if the daemon has exited; `None` while it runs and
    /// `deadline` is ahead; a panic with the log once `deadline` is past. For
    /// callers that wait their own way (an async test yields between polls).
    pub fn exited_by(&mut self, deadline: Instant) -> Option<ExitStatus> {
        let status = self.try_wait();
        assert!(
            status.is_some() || Instant::now() < deadline,
            "{} still running after the deadline:\n{}",
            self.name,
            self.log()
        );
        status
    }

    /// Waits for the daemon to exit by itself (at most `within`), blocking
    /// the thread.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exited_by(deadline) {
                return status;
            }
            std::thread::sleep(POLL);
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the daemon. A daemon run through `ip netns exec`
    /// is the child itself: `ip` execs it.
    pub fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits"));
        kill(pid, signal).unwrap_or_else(|e| panic!("kill -{signal} {}: {e}", self.name));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daemon_that_exits_is_seen_and_its_log_kept() {
        let dir = std::env::temp_dir().join(crate::unique_name("daemon"));
        std::fs::create_dir_all(&dir).unwrap();
        let log = free_log(&dir, "sh");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo hello >&2; exit 3"]);
        let mut d = Daemon::spawn("sh", cmd, dir.join("none.sock"), log);
        let status = d.wait_exit(Duration::from_secs(10));
        assert_eq!(status.code(), Some(3));
        assert_eq!(d.log(), "hello\n");
        assert_eq!(free_log(&dir, "sh"), dir.join("sh.1.log"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
