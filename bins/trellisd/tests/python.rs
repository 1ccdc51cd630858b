//! A foreign client: Python's grpcio (gRPC C-core, which sends the socket's
//! path as `:authority`) drives a full round trip with trellisd over its unix
//! socket, with default channel options — `examples/python/roundtrip.py`,
//! on stubs generated from `proto/` by grpcio-tools
//! ([`trellis_testlab::python`] makes the venv).

use crate::util::Daemon;
use std::path::Path;
use trellis_testlab::python::{Grpcio, workspace};
use trellis_testlab::{Netns, require_root};

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[test]
fn grpcio_with_default_options_does_a_full_round_trip() {
    require_root();
    let py = Grpcio::venv(Path::new(env!("CARGO_TARGET_TMPDIR")));
    let dir = tempfile::tempdir().unwrap();
    let gen_dir = dir.path().join("gen");
    std::fs::create_dir(&gen_dir).unwrap();
    py.stubs("agent.proto", &gen_dir);

    let ns = Netns::new("tpy");
    let container = Netns::new("pyc");
    let mut d = Daemon::start(&ns, dir.path(), &[]);
    d.wait_ready();
    let out = py
        .python()
        .arg(workspace().join("examples/python/roundtrip.py"))
        .arg(&d.socket)
        .arg(container.path_str())
        .arg("10.88.0.0/24")
        .env("PYTHONPATH", &gen_dir)
        .output()
        .expect("run roundtrip.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "roundtrip.py failed ({}):\n{stdout}\n{}\ntrellisd log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    println!("{stdout}");
    assert!(
        stdout.contains("attached py-c1: 10.88.0.2/24 on tr"),
        "{stdout}"
    );
    assert!(stdout.ends_with("roundtrip ok\n"), "{stdout}");
    assert!(
        !d.log().contains("closing a unix-socket connection"),
        "{}",
        d.log()
    );
    let status = d.terminate();
    assert!(status.success(), "exit {status}:\n{}", d.log());
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[test]
fn grpcio_manages_bgp_peers() {
    require_root();
    let py = Grpcio::venv(Path::new(env!("CARGO_TARGET_TMPDIR")));
    let dir = tempfile::tempdir().unwrap();
    let gen_dir = dir.path().join("gen");
    std::fs::create_dir(&gen_dir).unwrap();
    py.stubs("bgp.proto", &gen_dir);
    let config = dir.path().join("bgp.toml");
    std::fs::write(&config, "[bgp]\nasn = 64512\nrouter_id = \"10.99.0.1\"\n").unwrap();
    let ns = Netns::new("tpyb");
    let mut d = Daemon::start(&ns, dir.path(), &["--config", config.to_str().unwrap()]);
    d.wait_ready();
    let out = py
        .python()
        .arg(workspace().join("examples/python/bgp_peers.py"))
        .arg(&d.socket)
        .args(["10.99.0.9", "65009"])
        .env("PYTHONPATH", &gen_dir)
        .output()
        .expect("run bgp_peers.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bgp_peers.py failed ({}):\n{stdout}\n{}\ntrellisd log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    assert!(
        stdout.contains("refused: INVALID_ARGUMENT: peer.hold_time 2"),
        "{stdout}"
    );
    assert!(stdout.ends_with("bgp ok\n"), "{stdout}");
    assert!(d.terminate().success(), "{}", d.log());
}
