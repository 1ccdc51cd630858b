//! Helpers of the end-to-end tests: the trellisd binary started in a test
//! network namespace (`ip netns exec`), and the netctl binary run against
//! its socket.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use trellis_testlab::Netns;

/// The netctl binary under test.
pub const NETCTL: &str = env!("CARGO_BIN_EXE_netctl");

/// The trellisd binary: `$TRELLISD_BIN`, else the one beside netctl, brought
/// up to date with the cargo that runs this test (a test of another package
/// cannot name its binary with `CARGO_BIN_EXE_*`; building it here also keeps
/// a stale binary from being tested). Built once per test process.
pub fn trellisd_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("TRELLISD_BIN") {
            return PathBuf::from(path);
        }
        let dir = Path::new(NETCTL).parent().expect("netctl has a directory");
        build_trellisd(dir);
        let bin = dir.join("trellisd");
        assert!(bin.exists(), "trellisd was not built at {}", bin.display());
        bin
    })
    .clone()
}

fn build_trellisd(profile_dir: &Path) {
    let target = profile_dir.parent().expect("target directory");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args([
        "build",
        "-p",
        "trellisd",
        "--bin",
        "trellisd",
        "--target-dir",
    ])
    .arg(target)
    .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.ends_with("release") {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("run cargo build -p trellisd");
    assert!(
        out.status.success(),
        "cargo build -p trellisd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A trellisd process in its own network namespace, with its state and socket
/// in a temporary directory; stopped with SIGTERM on drop (SIGKILL if it
/// lingers), its log printed if the test failed.
pub struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
    /// The namespace trellisd runs in: its bridges, veths and rules live there.
    pub ns: Netns,
}

impl Daemon {
    /// Starts trellisd in a fresh namespace and waits until it answers `status`.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Like [`Daemon::start`], with more command-line arguments for trellisd.
    pub fn start_with(extra: &[&std::ffi::OsStr]) -> Self {
        let ns = Netns::new("trellisd");
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = dir.path().join("trellisd.toml");
        std::fs::write(&config, "").expect("write an empty config");
        let log = std::fs::File::create(dir.path().join("trellisd.log")).expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", ns.name()])
            .arg(trellisd_bin())
            .arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--socket")
            .arg(dir.path().join("trellisd.sock"))
            .args(["--node", "e2e"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawn trellisd");
        let daemon = Daemon { child, dir, ns };
        daemon.wait_ready();
        daemon
    }

    /// The daemon's socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("trellisd.sock")
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("trellisd.log")).unwrap_or_default()
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.netctl(&["status"]);
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "trellisd did not become ready: {}\ntrellisd log:\n{}",
                stderr(&out),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs netctl against this daemon's socket.
    pub fn netctl(&self, args: &[&str]) -> Output {
        Command::new(NETCTL)
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .env_remove("TRELLIS_ENDPOINT")
            .output()
            .expect("run netctl")
    }

    /// Runs netctl and returns its stdout; panics with its stderr and the
    /// daemon's log unless it exits 0.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.netctl(args);
        assert!(
            out.status.success(),
            "netctl {args:?} failed ({}): {}\ntrellisd log:\n{}",
            out.status,
            stderr(&out),
            self.log()
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Runs netctl and returns (exit code, stderr); panics if it succeeds.
    pub fn fails(&self, args: &[&str]) -> (i32, String) {
        let out = self.netctl(args);
        assert!(
            !out.status.success(),
            "netctl {args:?} succeeded: {}",
            stdout(&out)
        );
        (out.status.code().expect("exited"), stderr(&out))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        stop_process(&mut self.child);
        if std::thread::panicking() {
            eprintln!("trellisd log:\n{}", self.log());
        }
    }
}

fn stop_process(child: &mut Child) {
    // `ip netns exec` execs trellisd, so the child's pid is trellisd's.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
