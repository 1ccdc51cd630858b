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
