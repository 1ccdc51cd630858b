//! A foreign client: Python's grpcio (gRPC C-core, which sends the socket's
//! path as `:authority`) calls the controller over its unix socket, on stubs
//! generated from `proto/` by grpcio-tools — trellisd's Python test
//! (`bins/trellisd/tests/python.rs`) over the controller's API.
//!
//! The venv is trellisd's test's: built from `examples/python/requirements.txt`
//! (pinned) under the cargo target directory, reused while that file is
//! unchanged. If `python3 -m venv` or PyPI is unavailable the test fails,
//! naming the step.

use crate::util::Daemon;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const REQUIREMENTS: &str = include_str!("../../../examples/python/requirements.txt");

const SCRIPT: &str = r#"
import sys, grpc
from trellis.v1 import controller_pb2 as pb, controller_pb2_grpc as rpc
c = rpc.ControllerStub(grpc.insecure_channel("unix:" + sys.argv[1]))
c.CreatePool(pb.CreatePoolRequest(spec=pb.PoolSpec(
    name="pods", prefix="10.244.0.0/16", mode=pb.POOL_MODE_ROUTED)))
c.RegisterNode(pb.RegisterNodeRequest(spec=pb.NodeSpec(name="py", address_v4="192.0.2.9")))
print("claimed", c.ClaimBlock(pb.ClaimBlockRequest(node="py", pool="pods")).prefix)
try:
    c.GetPool(pb.GetPoolRequest(name="nope"))
except grpc.RpcError as e:
    print("refused", e.code().name)
"#;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `cmd`, panicking with its output unless it exits 0.
fn run(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{o}\n{e}",
        out.status
    );
    out
}

/// The venv with the pinned grpcio packages, made on first use.
fn venv() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-grpc-venv");
    let stamp = dir.join("requirements.installed");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(REQUIREMENTS) {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&dir),
        "python3 -m venv (needs python3 and python3-venv)",
    );
    run(
        Command::new(dir.join("bin/pip"))
            .args(["install", "--disable-pip-version-check", "--no-input", "-r"])
            .arg(workspace().join("examples/python/requirements.txt")),
        "pip install of the pinned grpcio packages (needs PyPI)",
    );
    std::fs::write(&stamp, REQUIREMENTS).expect("write the venv's stamp");
    dir
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs python3-venv and PyPI, as trellisd's Python test does; scripts/test runs it"
)]
#[tokio::test]
async fn grpcio_over_the_unix_socket_claims_a_block() {
    let venv = venv();
    let dir = tempfile::tempdir().unwrap();
    let (gen_dir, proto) = (dir.path().join("gen"), workspace().join("proto"));
    std::fs::create_dir(&gen_dir).unwrap();
    run(
        Command::new(venv.join("bin/python"))
            .args(["-m", "grpc_tools.protoc", "-I"])
            .arg(&proto)
            .arg(format!("--python_out={}", gen_dir.display()))
            .arg(format!("--grpc_python_out={}", gen_dir.display()))
            .arg(proto.join("trellis/v1/controller.proto")),
        "grpc_tools.protoc",
    );

    let d = Daemon::start(dir.path(), &[]);
    let out = run(
        Command::new(venv.join("bin/python"))
            .args(["-c", SCRIPT])
            .arg(&d.socket)
            .env("PYTHONPATH", &gen_dir),
        "the grpcio client",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout,
        "claimed 10.244.0.0/26\nrefused NOT_FOUND\n",
        "{}",
        d.log()
    );
}
