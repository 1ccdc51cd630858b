//! netctl against the real trellis-controller: pools, nodes, blocks, the
//! IPAM check and the cluster status, in every view, with the exit codes
//! scripts rely on. The controller serves only a unix socket in a temporary
//! directory (no network namespace is touched), so this runs without root.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const NETCTL: &str = env!("CARGO_BIN_EXE_netctl");

/// The controller binary: `$TRELLIS_CONTROLLER_BIN`, else built beside netctl.
fn controller_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TRELLIS_CONTROLLER_BIN") {
        return PathBuf::from(p);
    }
    let dir = Path::new(NETCTL).parent().expect("netctl has a directory");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args([
        "build",
        "-p",
        "trellis-controller",
        "--bin",
        "trellis-controller",
        "--target-dir",
    ])
    .arg(dir.parent().expect("target directory"))
    .current_dir(env!("CARGO_MANIFEST_DIR"));
    if dir.ends_with("release") {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("run cargo build -p trellis-controller");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("trellis-controller")
}

struct Controller {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Controller {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("ctl.sock");
        let child = Command::new(controller_bin())
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--socket")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start trellis-controller");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "the controller did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Controller {
            child,
            socket,
            _dir: dir,
        }
    }

    fn netctl(&self, args: &[&str]) -> Output {
        Command::new(NETCTL)
            .arg("--controller")
            .arg(format!("unix:{}", self.socket.display()))
            .args(args)
            .output()
            .expect("run netctl")
    }

    /// stdout, after checking the exit code.
    fn run(&self, code: i32, args: &[&str]) -> String {
        let out = self.netctl(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "netctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A node registers itself (netctl has no command for that: nodes do).
    fn register(&self, name: &str, v4: &str) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let ch = trellis_proto::channel_unix(&self.socket).await.unwrap();
            let mut c = trellis_proto::v1::ControllerClient::new(ch);
            c.register_node(trellis_proto::v1::RegisterNodeRequest {
                spec: Some(trellis_proto::v1::NodeSpec {
                    name: name.into(),
                    address_v4: v4.into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
        });
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn netctl_drives_pools_nodes_and_blocks_on_the_controller() {
    let c = Controller::start();
    let out = c.run(
        0,
        &[
            "pool",
            "create",
            "pods",
            "--prefix",
            "10.244.0.0/16",
            "--block-size",
            "26",
        ],
    );
    assert!(out.contains("pods"), "{out}");
    // Overlap: ALREADY_EXISTS (6), naming the pool it overlaps.
    let out = c.netctl(&["pool", "create", "more", "--prefix", "10.244.8.0/24"]);
    assert_eq!(out.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pods"));
    // A bad field: INVALID_ARGUMENT (4) naming it.
    let out = c.netctl(&[
        "pool",
        "create",
        "bad",
        "--prefix",
        "10.9.0.0/16",
        "--block-size",
        "18",
    ]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("block_size"));

    c.register("n1", "192.0.2.1");
    let table = c.run(0, &["node", "ls"]);
    assert!(table.contains("n1") && table.contains("ready"), "{table}");
    let claimed = c.run(
        0,
        &[
            "block", "claim", "--node", "n1", "--pool", "pods", "-o", "json",
        ],
    );
    let b: serde_json::Value = serde_json::from_str(&claimed).unwrap();
    assert_eq!(b["prefix"], "10.244.0.0/26", "{claimed}");
    let list: serde_json::Value =
        serde_json::from_str(&c.run(0, &["block", "ls", "--node", "n1", "-o", "json"])).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["node"], "n1");
    let yaml = c.run(0, &["cluster", "status", "-o", "yaml"]);
    assert!(yaml.contains("blocks: 1"), "{yaml}");

    // A pool with a held block is not deleted: FAILED_PRECONDITION (7).
    assert_eq!(c.netctl(&["pool", "rm", "pods"]).status.code(), Some(7));
    assert!(!c.run(0, &["ipam", "check"]).trim().is_empty());
    c.run(
        0,
        &[
            "block",
            "release",
            "--node",
            "n1",
            "--pool",
            "pods",
            "10.244.0.0/26",
        ],
    );
    c.run(0, &["pool", "rm", "pods"]);
    assert!(!c.run(0, &["pool", "ls"]).contains("pods"));
    // Unknown: NOT_FOUND (5); the controller down: CONNECT (3).
    assert_eq!(c.netctl(&["pool", "get", "nope"]).status.code(), Some(5));
    drop(c.netctl(&["node", "drain", "n1"]));
    let gone = Controller {
        child: Command::new("true").spawn().unwrap(),
        socket: PathBuf::from("/nonexistent/ctl.sock"),
        _dir: tempfile::tempdir().unwrap(),
    };
    assert_eq!(gone.netctl(&["pool", "ls"]).status.code(), Some(3));
}
