//! The foreign client of the tests: Python's grpcio (gRPC C-core, which sends
//! a unix socket's path as `:authority`) on stubs generated from `proto/` by
//! grpcio-tools. trellisd's and the controller's Python tests share it.
//!
//! The venv is built from `examples/python/requirements.txt` (pinned) under
//! the directory a test names (its `CARGO_TARGET_TMPDIR`) and reused while
//! that file is unchanged. If `python3 -m venv` or PyPI is unavailable the
//! test fails, naming the step.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const REQUIREMENTS: &str = include_str!("../../../examples/python/requirements.txt");

/// The repository's root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `cmd`, panicking with its output unless it exits 0.
pub fn run(cmd: &mut Command, what: &str) -> Output {
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

/// A venv with the pinned grpcio packages.
pub struct Grpcio {
    venv: PathBuf,
}

impl Grpcio {
    /// The venv under `tmp`, made on first use.
    pub fn venv(tmp: &Path) -> Self {
        let venv = tmp.join("python-grpc-venv");
        let stamp = venv.join("requirements.installed");
        if std::fs::read_to_string(&stamp).ok().as_deref() != Some(REQUIREMENTS) {
            let _ = std::fs::remove_dir_all(&venv);
            run(
                Command::new("python3").args(["-m", "venv"]).arg(&venv),
                "python3 -m venv (needs python3 and python3-venv: .ci/install-deps test)",
            );
            run(
                Command::new(venv.join("bin/pip"))
                    .args(["install", "--disable-pip-version-check", "--no-input", "-r"])
                    .arg(workspace().join("examples/python/requirements.txt")),
                "pip install of the pinned grpcio packages (needs PyPI)",
            );
            std::fs::write(&stamp, REQUIREMENTS).expect("write the venv's stamp");
        }
        Grpcio { venv }
    }

    /// Generates the Python stubs of `proto/trellis/v1/<file>` into `out`.
    pub fn stubs(&self, file: &str, out: &Path) {
        let proto = workspace().join("proto");
        run(
            self.python()
                .args(["-m", "grpc_tools.protoc", "-I"])
                .arg(&proto)
                .arg(format!("--python_out={}", out.display()))
                .arg(format!("--grpc_python_out={}", out.display()))
                .arg(proto.join("trellis/v1").join(file)),
            "grpc_tools.protoc",
        );
    }

    /// The venv's interpreter, to be given its arguments.
    pub fn python(&self) -> Command {
        Command::new(self.venv.join("bin/python"))
    }
}
