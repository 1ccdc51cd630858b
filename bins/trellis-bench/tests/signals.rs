//! A stopped bench leaves nothing behind: SIGINT in the middle of a run
//! kills its trellisd and deletes every namespace it made — and, for the
//! podman bench, every podman harness (processes, mounts, directory).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary `name` that this workspace build made beside the bench.
fn beside_bench(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_trellis-bench")).with_file_name(name);
    assert!(
        path.is_file(),
        "no {name} at {} (cargo build -p {name})",
        path.display()
    );
    path
}

/// Reads the bench's stderr into `log` until a line contains `needle`.
fn read_until(stderr: &mut BufReader<ChildStderr>, log: &mut String, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !log.contains(needle) {
        assert!(Instant::now() < deadline, "no {needle:?} yet:\n{log}");
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "the bench ended:\n{log}"
        );
        log.push_str(&line);
    }
}

/// The namespaces process `pid` made (`trellis_testlab::Netns` names).
fn namespaces_of(pid: u32) -> Vec<String> {
    let prefix = trellis_testlab::names_of("tl", pid);
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// The children of `pid` whose process name is `name`.
fn children_named(pid: u32, name: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|p| {
            let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
            status.starts_with(&format!("Name:\t{name}\n"))
                && status.contains(&format!("\nPPid:\t{pid}\n"))
        })
        .collect()
}

/// SIGINT to the bench; its exit (130, having said so) and what it printed.
fn interrupt(mut bench: Child, mut stderr: BufReader<ChildStderr>, mut log: String) -> String {
    let pid = nix::unistd::Pid::from_raw(bench.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = bench.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    log.push_str(&rest);
    assert_eq!(status.code(), Some(130), "{status}:\n{log}");
    assert!(log.contains("trellis-bench: SIGINT"), "{log}");
    log
}

/// Each of `pids` is gone, or a zombie waiting for init to reap it.
fn assert_gone(pids: &[String]) {
    for p in pids {
        let state = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let state = state.rsplit(") ").next().and_then(|r| r.chars().next());
        assert!(matches!(state, None | Some('Z')), "process {p} still runs");
    }
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[test]
fn sigint_mid_run_removes_every_namespace_and_daemon() {
    trellis_testlab::require_root();
    // The trellisd this workspace build made (scripts/test names it), not
    // one the bench would build itself under cargo.
    let trellisd = std::env::var_os("TRELLISD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| beside_bench("trellisd"));
    let mut bench = Command::new(env!("CARGO_BIN_EXE_trellis-bench"))
        .args([
            "grpc",
            "--max",
            "200",
            "--samples",
            "1",
            "--no-peers",
            "--trellisd",
        ])
        .arg(&trellisd)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start trellis-bench");
    let pid = bench.id();
    // Wait until its container namespaces are made and its run is under
    // way, then interrupt it.
    let mut stderr = BufReader::new(bench.stderr.take().unwrap());
    let mut log = String::new();
    read_until(&mut stderr, &mut log, "running:");
    std::thread::sleep(Duration::from_millis(300));
    let made = namespaces_of(pid).len();
    assert!(
        made > 200,
        "only {made} namespaces of the bench exist:\n{log}"
    );
    let daemons = children_named(pid, "trellisd");
    assert_eq!(daemons.len(), 1, "the bench's trellisd: {daemons:?}\n{log}");
    let log = interrupt(bench, stderr, log);
    let left = namespaces_of(pid);
    assert!(left.is_empty(), "left behind: {left:?}\n{log}");
    assert_gone(&daemons);
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root, podman and runc, builds network namespaces; scripts/test runs it"
)]
#[test]
fn sigint_mid_podman_run_removes_every_harness_namespace_and_daemon() {
    trellis_testlab::require_root();
    beside_bench("trellisd");
    beside_bench("trellis-cni");
    let mut bench = Command::new(env!("CARGO_BIN_EXE_trellis-bench"))
        .args(["podman", "--runs", "1000"])
        // The binaries beside it, not ones it would build under cargo.
        .env_remove("CARGO")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start trellis-bench");
    let pid = bench.id();
    let mut stderr = BufReader::new(bench.stderr.take().unwrap());
    let mut log = String::new();
    read_until(&mut stderr, &mut log, "round 3/");
    // Its harnesses: `$TMPDIR/trellis-pm<pid>x…` (trellis_testlab::unique_name).
    let harness = format!("trellis-{}", trellis_testlab::names_of("pm", pid));
    let harnesses = || -> Vec<PathBuf> {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(&harness))
            .map(|e| e.path())
            .collect()
    };
    let dirs = harnesses();
    assert_eq!(dirs.len(), 4, "the bench's harnesses: {dirs:?}\n{log}");
    assert_eq!(namespaces_of(pid).len(), 4, "{log}");
    let daemons = children_named(pid, "trellisd");
    assert_eq!(daemons.len(), 1, "the bench's trellisd: {daemons:?}\n{log}");

    let log = interrupt(bench, stderr, log);
    assert!(log.contains("removed 4 podman harnesses"), "{log}");
    assert_eq!(harnesses(), Vec::<PathBuf>::new(), "{log}");
    let left = namespaces_of(pid);
    assert!(left.is_empty(), "left behind: {left:?}\n{log}");
    assert_gone(&daemons);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&harness), "mounts left: {mounts}");
    for dir in &dirs {
        let conmons = trellis_testlab::podman::conmon_processes_of(dir);
        assert!(
            conmons.is_empty(),
            "conmon {conmons:?} of {}",
            dir.display()
        );
    }
}
