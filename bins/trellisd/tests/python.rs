//! A foreign client: Python's grpcio (gRPC C-core, which sends the socket's
//! path as `:authority`) drives a full round trip with trellisd over its unix
//! socket, with default channel options — `examples/python/roundtrip.py`,
//! on stubs generated from `proto/` by grpcio-tools.
//!
//! The venv is built from `examples/python/requirements.txt` (pinned) under
//! the cargo target directory and reused while that file is unchanged. If
//! `python3 -m venv` or PyPI is unavailable the test fails, naming the step.

use crate::util::Daemon;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use trellis_testlab::{Netns, require_root};

const REQUIREMENTS: &str = include_str!("../../../examples/python/requirements.txt");

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `cmd`, panicking with its output unless it exits 0.
fn run(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
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
        "python3 -m venv (needs python3 and python3-venv: .ci/install-deps test)",
    );
    let requirements = workspace().join("examples/python/requirements.txt");
    run(
        Command::new(dir.join("bin/pip"))
            .args(["install", "--disable-pip-version-check", "--no-input", "-r"])
            .arg(requirements),
        "pip install of the pinned grpcio packages (needs PyPI)",
    );
    std::fs::write(&stamp, REQUIREMENTS).expect("write the venv's stamp");
    dir
}

/// Python stubs of `proto/trellis/v1/agent.proto`, generated into `out`.
fn generate_stubs(venv: &Path, out: &Path) {
    let proto = workspace().join("proto");
    run(
        Command::new(venv.join("bin/python"))
            .args(["-m", "grpc_tools.protoc", "-I"])
            .arg(&proto)
            .arg(format!("--python_out={}", out.display()))
            .arg(format!("--grpc_python_out={}", out.display()))
            .arg(proto.join("trellis/v1/agent.proto")),
        "grpc_tools.protoc",
    );
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[test]
fn grpcio_with_default_options_does_a_full_round_trip() {
    require_root();
    let venv = venv();
    let dir = tempfile::tempdir().unwrap();
    let gen_dir = dir.path().join("gen");
    std::fs::create_dir(&gen_dir).unwrap();
    generate_stubs(&venv, &gen_dir);

    let ns = Netns::new("tpy");
    let container = Netns::new("pyc");
    let mut d = Daemon::start(&ns, dir.path(), &[]);
    d.wait_ready();
    let out = Command::new(venv.join("bin/python"))
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
