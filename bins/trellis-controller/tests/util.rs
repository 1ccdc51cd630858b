//! Helpers: the trellis-controller binary run in a temporary directory, a
//! client of it, and the proto values tests build often.

use nix::sys::signal::Signal;
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::Path;
use std::process::{Command, ExitStatus, Output};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use trellis_proto::v1 as pb;
use trellis_proto::v1::ControllerClient;
pub use trellis_testlab::daemon::stderr;
use trellis_testlab::daemon::{self, clean_command, free_log};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_trellis-controller");

/// A command for the binary without any of its environment variables
/// leaking in from the test's environment.
fn command() -> Command {
    clean_command(BIN, "TRELLIS_CONTROLLER_")
}

/// Runs the binary with `args` and returns its output, for commands that
/// exit at once (refused configurations).
pub fn run(args: &[&str]) -> Output {
    command()
        .args(args)
        .output()
        .expect("run trellis-controller")
}

/// A controller process with its state and socket under a directory, killed
/// if still running when dropped (a failing test leaves no process behind):
/// testlab's [`daemon::Daemon`] (its log, its socket), started the
/// controller's way, with a client and async waits.
pub struct Daemon(daemon::Daemon);

impl Daemon {
    /// Starts the controller with its state and socket under `dir`, plus
    /// `extra` arguments, and waits until it serves. Logs go to
    /// `<dir>/controller.<n>.log`.
    pub fn start(dir: &Path, extra: &[&str]) -> Daemon {
        let mut d = Self::spawn(dir, extra);
        d.0.wait_ready();
        d
    }

    /// Starts the controller without waiting for it.
    pub fn spawn(dir: &Path, extra: &[&str]) -> Daemon {
        let socket = dir.join("run/controller.sock");
        let mut cmd = command();
        cmd.arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--socket")
            .arg(&socket)
            .args(extra)
            .env("RUST_LOG", "info");
        let log = free_log(dir, "controller");
        Daemon(daemon::Daemon::spawn(
            "trellis-controller",
            cmd,
            socket,
            log,
        ))
    }

    /// The TCP address the controller bound (it logs `listen=ADDR`).
    pub fn tcp_addr(&self) -> SocketAddr {
        let log = self.log();
        let addr = log
            .split_whitespace()
            .find_map(|w| w.strip_prefix("listen="))
            .unwrap_or_else(|| panic!("no listen= in the log:\n{log}"));
        addr.parse().expect("a socket address")
    }

    /// A client over the unix socket.
    pub async fn client(&self) -> ControllerClient<Channel> {
        let channel = trellis_proto::channel_unix(&self.socket)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", self.log()));
        ControllerClient::new(channel)
    }

    /// Waits for the controller to exit by itself (at most `within`). Async,
    /// so that the test's own client connections go on running meanwhile
    /// (they must answer the server's GOAWAY for a graceful stop to finish).
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.0.exited_by(deadline) {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then the exit status (within 5 s: well inside the drain's
    /// grace, so a stop that waited on a watcher would fail).
    pub async fn terminate(&mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        self.wait_exit(Duration::from_secs(5)).await
    }
}

impl Deref for Daemon {
    type Target = daemon::Daemon;

    fn deref(&self) -> &daemon::Daemon {
        &self.0
    }
}

/// A routed pool's definition.
pub fn routed_pool(name: &str, prefix: &str, block_size: u32) -> pb::CreatePoolRequest {
    pb::CreatePoolRequest {
        spec: Some(pb::PoolSpec {
            name: name.into(),
            prefix: prefix.into(),
            block_size,
            mode: pb::PoolMode::Routed.into(),
            outgoing_nat: true,
            max_blocks_per_node: 0,
        }),
    }
}

/// A node's registration with an IPv4 underlay address.
pub fn node(name: &str, v4: &str) -> pb::RegisterNodeRequest {
    pb::RegisterNodeRequest {
        spec: Some(pb::NodeSpec {
            name: name.into(),
            address_v4: v4.into(),
            ..Default::default()
        }),
    }
}

/// A claim of a block of `pool` for `node`.
pub fn claim(node: &str, pool: &str) -> pb::ClaimBlockRequest {
    pb::ClaimBlockRequest {
        node: node.into(),
        pool: pool.into(),
    }
}
