//! The plugin executed as libcni executes it — the CNI variables in a clean
//! environment, the configuration on stdin, stdout and stderr read apart —
//! on every path that needs no trellisd: VERSION, and every way a call can
//! be wrong before the daemon is asked, or with the daemon down. The paths
//! through a real trellisd are in the workspace's `tests/cni.rs`
//! (privileged tier).

use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_trellis-cni");

/// Records a refused call in the robustness report.
fn tried(fault: &str, code: u64, msg: &str) {
    let observed = format!("error code {code} on stdout as JSON: \"{msg}\"");
    trellis_testlab::report::record("CNI plugin", fault, &observed);
}

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Outcome {
    /// stdout as the one JSON document it must be.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e}): {:?}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    /// The error document, checked for the fields libcni reads.
    fn error(&self, version: &str) -> (u64, String) {
        assert_ne!(self.code, 0, "expected a failure: {}", self.stdout);
        let j = self.json();
        assert_eq!(j["cniVersion"], version, "{j}");
        let msg = j["msg"].as_str().expect("msg").to_owned();
        assert!(!msg.is_empty());
        (j["code"].as_u64().expect("code"), msg)
    }
}

/// Runs the plugin with only `vars` in its environment and `stdin`.
fn run(vars: &[(&str, &str)], stdin: &[u8]) -> Outcome {
    let mut child = Command::new(BIN)
        .env_clear()
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run trellis-cni");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    Outcome {
        code: out.status.code().expect("exited"),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

fn add_env(netns: &str) -> Vec<(&str, &str)> {
    vec![
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c0ffee"),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
    ]
}

fn conf(version: &str, socket: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "cniVersion": version,
        "name": "proto-test",
        "type": "trellis-cni",
        "socket": socket,
        "subnet": "10.123.0.0/24"
    }))
    .unwrap()
}

/// A socket path where no trellisd listens.
fn no_daemon() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("trellisd.sock").display().to_string();
    (dir, s)
}

#[test]
fn version_answers_the_versions_supported() {
    let out = run(&[("CNI_COMMAND", "VERSION")], br#"{"cniVersion":"1.0.0"}"#);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j = out.json();
    assert_eq!(j["cniVersion"], "1.0.0");
    assert_eq!(j["supportedVersions"], json!(["0.4.0", "1.0.0", "1.1.0"]));
    // Without a configuration (or with one it does not know): the latest.
    let out = run(&[("CNI_COMMAND", "VERSION")], b"");
    assert_eq!(out.json()["cniVersion"], "1.1.0");
}

#[test]
fn a_malformed_configuration_is_code_6() {
    let (_d, sock) = no_daemon();
    let _ = sock;
    for bad in [&b"{not json"[..], b"", b"[1,2]", br#"{"cniVersion": 1}"#] {
        let out = run(&add_env("/proc/self/ns/net"), bad);
        let (code, msg) = out.error("1.1.0");
        assert_eq!(code, 6, "{msg}");
        assert!(msg.contains("network configuration"), "{msg}");
        let bad = String::from_utf8_lossy(bad);
        tried(&format!("ADD with the configuration `{bad}`"), code, &msg);
    }
}

#[test]
fn an_unknown_cni_version_is_code_1() {
    let (_d, sock) = no_daemon();
    for v in ["0.2.0", "0.3.1", "2.0.0"] {
        let out = run(&add_env("/proc/self/ns/net"), &conf(v, &sock));
        let (code, msg) = out.error("1.1.0");
        assert_eq!(code, 1, "{v}: {msg}");
        assert!(msg.contains(v), "{msg}");
        assert!(out.json()["details"].as_str().unwrap().contains("1.1.0"));
        tried(&format!("ADD with cniVersion {v}"), code, &msg);
    }
}

#[test]
fn bad_environment_variables_are_code_4_and_named() {
    let (_d, sock) = no_daemon();
    let c = conf("1.0.0", &sock);
    let out = run(&[], &c);
    assert_eq!(out.error("1.1.0").0, 4);
    assert!(out.error("1.1.0").1.contains("CNI_COMMAND"));
    let out = run(&[("CNI_COMMAND", "FROB")], &c);
    assert!(out.error("1.1.0").1.contains("FROB"));
    for missing in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
        let mut vars = add_env("/proc/self/ns/net");
        vars.retain(|(k, _)| *k != missing);
        let out = run(&vars, &c);
        let (code, msg) = out.error("1.1.0");
        assert_eq!(code, 4, "{msg}");
        assert!(msg.contains(missing), "{msg}");
        tried(&format!("ADD without {missing}"), code, &msg);
    }
    let mut vars = add_env("/proc/self/ns/net");
    vars.push(("CNI_ARGS", "K8S_POD_NAME=web"));
    let (code, msg) = run(&vars, &c).error("1.1.0");
    assert_eq!(code, 4);
    assert!(msg.contains("K8S_POD_NAME"), "{msg}");
    tried("CNI_ARGS `K8S_POD_NAME=web` (no IgnoreUnknown)", code, &msg);
}

#[test]
fn a_netns_that_does_not_exist_is_code_3() {
    let (_d, sock) = no_daemon();
    let out = run(
        &add_env("/run/netns/trellis-no-such-ns"),
        &conf("1.0.0", &sock),
    );
    let (code, msg) = out.error("1.0.0");
    assert_eq!(code, 3, "{msg}");
    assert!(msg.contains("/run/netns/trellis-no-such-ns"), "{msg}");
    tried("ADD with a CNI_NETNS that does not exist", code, &msg);
}

#[test]
fn bad_values_in_the_configuration_are_refused_before_trellisd_is_asked() {
    let (_d, sock) = no_daemon();
    let mut c: Value = serde_json::from_slice(&conf("1.1.0", &sock)).unwrap();
    c["mode"] = "macvlan".into();
    let out = run(
        &add_env("/proc/self/ns/net"),
        &serde_json::to_vec(&c).unwrap(),
    );
    let (code, msg) = out.error("1.1.0");
    assert_eq!(code, 2, "{msg}");
    assert!(msg.contains("mode") && msg.contains("macvlan"), "{msg}");
    tried("a configuration with mode macvlan", code, &msg);
    let mut c: Value = serde_json::from_slice(&conf("1.1.0", &sock)).unwrap();
    c["runtimeConfig"] =
        json!({"portMappings": [{"hostPort": 80, "containerPort": 80, "protocol": "icmp"}]});
    let (code, msg) = run(
        &add_env("/proc/self/ns/net"),
        &serde_json::to_vec(&c).unwrap(),
    )
    .error("1.1.0");
    assert_eq!(code, 2, "{msg}");
    tried("a port mapping with protocol icmp", code, &msg);
    let mut c: Value = serde_json::from_slice(&conf("1.1.0", &sock)).unwrap();
    c["subnet"] = "10.123.0.0/40".into();
    let (code, msg) = run(
        &add_env("/proc/self/ns/net"),
        &serde_json::to_vec(&c).unwrap(),
    )
    .error("1.1.0");
    assert_eq!(code, 7, "{msg}");
    assert!(msg.contains("10.123.0.0/40"), "{msg}");
    tried("a configuration with subnet 10.123.0.0/40", code, &msg);
}

#[test]
fn trellisd_down_is_try_again_for_the_verbs_and_not_available_for_status() {
    let (_d, sock) = no_daemon();
    let c = conf("1.1.0", &sock);
    for (verb, want) in [
        ("ADD", 11),
        ("DEL", 11),
        ("CHECK", 11),
        ("GC", 11),
        ("STATUS", 50),
    ] {
        let mut vars = add_env("/proc/self/ns/net");
        vars[0] = ("CNI_COMMAND", verb);
        let out = run(&vars, &c);
        let (code, msg) = out.error("1.1.0");
        assert_eq!(code, want, "{verb}: {msg}");
        assert!(msg.contains("trellisd is not reachable"), "{verb}: {msg}");
        let details = out.json()["details"].as_str().unwrap().to_owned();
        assert!(details.contains(&sock), "{verb}: {details}");
        // Logs on stderr, one line; stdout only the document.
        assert!(out.stderr.starts_with("trellis-cni: "), "{:?}", out.stderr);
        assert_eq!(out.stdout.lines().count(), 1);
        tried(
            &format!("{verb} with trellisd down (no socket)"),
            code,
            &msg,
        );
    }
}
