//! A stopped bench leaves nothing behind: SIGINT in the middle of a run
//! kills its trellisd and deletes every namespace it made.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[test]
fn sigint_mid_run_removes_every_namespace_and_daemon() {
    trellis_testlab::require_root();
    // The trellisd this workspace build made (scripts/test names it), not
    // one the bench would build itself under cargo.
    let bench_exe = std::path::Path::new(env!("CARGO_BIN_EXE_trellis-bench"));
    let trellisd = std::env::var_os("TRELLISD_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| bench_exe.with_file_name("trellisd"));
    assert!(
        trellisd.is_file(),
        "no trellisd at {} (cargo build -p trellisd, or set TRELLISD_BIN)",
        trellisd.display()
    );
    let mut bench = Command::new(bench_exe)
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
    let prefix = trellis_testlab::names_of("tl", pid);
    let mine = || -> Vec<String> {
        std::fs::read_dir("/run/netns")
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.starts_with(&prefix))
                    .collect()
            })
            .unwrap_or_default()
    };
    // Wait until its container namespaces are made and its run is under
    // way, then interrupt it.
    let mut stderr = BufReader::new(bench.stderr.take().unwrap());
    let mut log = String::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !log.contains("running:") {
        assert!(Instant::now() < deadline, "the bench did not start:\n{log}");
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "the bench ended:\n{log}"
        );
        log.push_str(&line);
    }
    std::thread::sleep(Duration::from_millis(300));
    let made = mine().len();
    assert!(
        made > 200,
        "only {made} namespaces of the bench exist:\n{log}"
    );
    // Its daemon (children of the bench named trellisd).
    let daemons: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|p| {
            let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
            status.starts_with("Name:\ttrellisd\n") && status.contains(&format!("\nPPid:\t{pid}\n"))
        })
        .collect();
    assert_eq!(daemons.len(), 1, "the bench's trellisd: {daemons:?}\n{log}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = bench.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    log.push_str(&rest);
    assert_eq!(status.code(), Some(130), "{status}:\n{log}");
    assert!(log.contains("trellis-bench: SIGINT"), "{log}");
    let left = mine();
    assert!(left.is_empty(), "left behind: {left:?}\n{log}");
    for d in &daemons {
        let state = std::fs::read_to_string(format!("/proc/{d}/stat")).unwrap_or_default();
        // Gone, or a zombie waiting for init to reap it.
        let state = state.rsplit(") ").next().and_then(|r| r.chars().next());
        assert!(matches!(state, None | Some('Z')), "trellisd {d} still runs");
    }
}
