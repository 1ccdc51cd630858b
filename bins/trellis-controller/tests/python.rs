//! A foreign client: Python's grpcio (gRPC C-core, which sends the socket's
//! path as `:authority`) calls the controller over its unix socket, on stubs
//! generated from `proto/` by grpcio-tools — trellisd's Python test
//! (`bins/trellisd/tests/python.rs`) over the controller's API.
//!
//! The venv is trellisd's test's ([`trellis_testlab::python`]).

use crate::util::Daemon;
use std::path::Path;
use trellis_testlab::python::{Grpcio, run};

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

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs python3-venv and PyPI, as trellisd's Python test does; scripts/test runs it"
)]
#[tokio::test]
async fn grpcio_over_the_unix_socket_claims_a_block() {
    let py = Grpcio::venv(Path::new(env!("CARGO_TARGET_TMPDIR")));
    let dir = tempfile::tempdir().unwrap();
    let gen_dir = dir.path().join("gen");
    std::fs::create_dir(&gen_dir).unwrap();
    // controller.proto imports agent.proto (ListNodeEndpoints answers a
    // node's endpoints as its Agent API lists them).
    py.stubs("agent.proto", &gen_dir);
    py.stubs("controller.proto", &gen_dir);

    let d = Daemon::start(dir.path(), &[]);
    let out = run(
        py.python()
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
