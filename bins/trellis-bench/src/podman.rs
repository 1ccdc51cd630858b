//! `trellis-bench podman [--runs N]`: what a container start costs a podman
//! user with each network stack, all in one run on one machine (issue 14's
//! second benchmark).
//!
//! What is timed: `podman run --rm --network NET localhost/trellis-busybox:latest
//! true`, from the spawn of `nsenter --net=<host> -t <harness's mount ns holder> --mount -- podman
//! run …` to its exit: podman creating the container, the network set up,
//! runc starting `true`, the container's exit, the network torn down and the
//! container removed. Four setups, each with its own fresh host namespace
//! and its own podman harness (`trellis_testlab::podman`: podman 4.3, runc,
//! vfs storage, every piece of state in a temporary directory and a mount
//! namespace of its own), each with the same busybox image imported:
//!
//! * **none**: `--network none`, the floor: podman and runc with no network
//!   stack at all.
//! * **trellis-cni**: a conflist (CNI 1.0.0) of one `trellis-cni` plugin,
//!   bridge mode, no masquerade, talking to a trellisd started in the
//!   harness's namespaces (as `tests/podman.rs` runs it, so that trellisd
//!   sees the container namespaces podman mounts).
//! * **CNI bridge**: the reference `bridge` plugin with `host-local`, CNI
//!   1.0.0, no masquerade (no `portmap`: no port is published).
//! * **netavark**: podman's own backend (netavark 1.4), a network made with
//!   `podman network create --disable-dns`. netavark 1.4 cannot leave
//!   masquerading off (only `--internal` networks have none, and no default
//!   route either), so its row pays for its NAT chains (iptables execs); and
//!   it deletes a network's bridge and chains with its last container, so
//!   with one container at a time every run makes them again.
//!
//! All three networks are 10.89.0.0/24, each in its own host namespace.
//! Before any timing, one container per setup proves that it gets an
//! address of the network (`none`: no eth0). Then every setup runs
//! [`WARMUP`] times uncounted and `--runs` times counted, interleaved
//! round-robin (the setup that starts a round rotates), so the machine's
//! noise falls on all of them alike. A setup that cannot be made, or fails
//! a run, is printed as skipped with the reason; the others go on.
//!
//! The plugins' own ADD/DEL costs are `trellis-bench grpc`'s; here they are
//! what they amount to in a whole `podman run`.

use crate::daemon::{self, Daemon};
use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use trellis_testlab::Netns;
use trellis_testlab::podman::{BUSYBOX_IMAGE, Backend, Podman};

/// Default counted runs per setup.
pub const DEFAULT_RUNS: usize = 20;
/// Uncounted runs per setup before the counted ones.
pub const WARMUP: usize = 2;
/// The subnet of every network (each in its own host namespace).
const SUBNET: &str = "10.89.0.0/24";
/// The addresses a container of [`SUBNET`] gets start so.
const SUBNET_PREFIX: &str = "inet 10.89.0.";
/// How long one `podman run` may take before it is killed.
const RUN_WITHIN: Duration = Duration::from_secs(60);

/// The options of `trellis-bench podman`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Counted runs per setup.
    pub runs: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { runs: DEFAULT_RUNS }
    }
}

impl crate::Flags for Options {
    fn flag<'a>(&mut self, flag: &'a str, rest: &mut dyn Iterator<Item = &'a str>) -> Result<bool> {
        match flag {
            "--runs" | "-n" => self.runs = crate::number(rest, flag, 1..=10_000)?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// A network setup of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Setup {
    None,
    TrellisCni,
    CniBridge,
    Netavark,
}

impl Setup {
    /// Every setup, in the order of the table.
    pub(crate) const ALL: [Setup; 4] = [
        Setup::None,
        Setup::TrellisCni,
        Setup::CniBridge,
        Setup::Netavark,
    ];

    /// How the table names it.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Setup::None => "--network none (podman alone)",
            Setup::TrellisCni => "trellis-cni (bridge, via trellisd)",
            Setup::CniBridge => "cni bridge+host-local",
            Setup::Netavark => "netavark 1.4 (bridge, NAT)",
        }
    }

    /// The `--network` of its runs.
    fn network(self) -> &'static str {
        match self {
            Setup::None => "none",
            Setup::TrellisCni => "trellis-br",
            Setup::CniBridge => "cni-br",
            Setup::Netavark => "nv-br",
        }
    }

    /// The role in its host namespace's name.
    fn role(self) -> &'static str {
        match self {
            Setup::None => "pm-none",
            Setup::TrellisCni => "pm-trellis",
            Setup::CniBridge => "pm-cni",
            Setup::Netavark => "pm-netavark",
        }
    }
}

/// The conflist of the trellis network: one `trellis-cni` plugin, bridge
/// mode, no masquerade, talking to trellisd at `socket`.
fn trellis_conflist(socket: &Path) -> serde_json::Value {
    json!({
        "cniVersion": "1.0.0",
        "name": Setup::TrellisCni.network(),
        "plugins": [{
            "type": "trellis-cni",
            "socket": socket.display().to_string(),
            "mode": "bridge",
            "subnet": SUBNET,
            "bridge": "trpm0",
            "masquerade": false,
        }]
    })
}

/// The conflist of the reference plugins: `bridge` + `host-local`, a
/// gateway and a default route, no masquerade.
fn cni_bridge_conflist() -> serde_json::Value {
    json!({
        "cniVersion": "1.0.0",
        "name": Setup::CniBridge.network(),
        "plugins": [{
            "type": "bridge",
            "bridge": "cnipm0",
            "isGateway": true,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": SUBNET}]],
                "routes": [{"dst": "0.0.0.0/0"}]
            }
        }]
    })
}

/// The binaries of the trellis setup.
struct Binaries {
    trellisd: PathBuf,
    trellis_cni: PathBuf,
}

/// One setup's podman, in a host namespace of its own, ready to time.
/// Fields drop in order: the harness first (its `podman rm` may still need
/// trellisd), then trellisd, the plugin directory, the namespace.
struct Lane {
    podman: Podman,
    trellisd: Option<Daemon>,
    _plugins: Option<TempDir>,
    _host: Netns,
}

impl Lane {
    /// Makes `setup`'s namespace, harness and network, and checks that a
    /// container gets an address of it.
    fn new(setup: Setup, bins: &Result<Binaries>) -> Result<Lane> {
        let host = Netns::new(setup.role());
        let plugins = match setup {
            Setup::TrellisCni => {
                let bins = bins.as_ref().map_err(|e| anyhow!("{e:#}"))?;
                // The plugin directory: trellis-cni and nothing else of ours.
                let dir = tempfile::tempdir().context("tempdir for the CNI plugin")?;
                std::fs::copy(&bins.trellis_cni, dir.path().join("trellis-cni"))
                    .with_context(|| format!("copy {}", bins.trellis_cni.display()))?;
                Some(dir)
            }
            _ => None,
        };
        let backend = match (setup, &plugins) {
            (Setup::Netavark, _) => Backend::Netavark,
            (_, Some(dir)) => Backend::Cni(dir.path().to_owned()),
            (_, None) => Backend::Cni(crate::cni::CNI_PATH.into()),
        };
        let podman = Podman::with_backend(host.name(), backend)?;
        podman.import_busybox(BUSYBOX_IMAGE)?;
        let mut trellisd = None;
        match setup {
            Setup::None => {}
            Setup::TrellisCni => {
                let bins = bins.as_ref().map_err(|e| anyhow!("{e:#}"))?;
                let cmd = podman.enter(&bins.trellisd);
                let d = Daemon::start_command(cmd, &bins.trellisd, &["--node", "bench"])?;
                podman.write_conflist(setup.network(), &trellis_conflist(d.socket()))?;
                trellisd = Some(d);
            }
            Setup::CniBridge => {
                podman.write_conflist(setup.network(), &cni_bridge_conflist())?;
            }
            Setup::Netavark => {
                let create = ["network", "create", "--disable-dns", "--subnet", SUBNET];
                podman.podman(&[&create[..], &[setup.network()]].concat())?;
            }
        }
        let lane = Lane {
            podman,
            trellisd,
            _plugins: plugins,
            _host: host,
        };
        lane.check_address(setup)?;
        Ok(lane)
    }

    /// A container of `setup` has an address of [`SUBNET`] on eth0 (none:
    /// no eth0 at all).
    fn check_address(&self, setup: Setup) -> Result<()> {
        let script = "ip -4 -o addr show eth0 2>&1 || true";
        let out = self
            .podman
            .run(&[
                "--rm",
                "--network",
                setup.network(),
                BUSYBOX_IMAGE,
                "sh",
                "-c",
                script,
            ])
            .map_err(|e| self.failed(e.into()))?;
        let has = out.stdout.contains(SUBNET_PREFIX);
        if has != (setup != Setup::None) {
            bail!(
                "a container on {} shows {:?} for eth0",
                setup.network(),
                out.stdout.trim()
            );
        }
        Ok(())
    }

    /// One timed `podman run --rm --network <net> busybox true`.
    fn run_once(&self, setup: Setup) -> Result<Duration> {
        let args = [
            "run",
            "--cgroup-parent",
            self.podman.cgroup_parent(),
            "--rm",
            "--network",
            setup.network(),
            BUSYBOX_IMAGE,
            "true",
        ];
        timed(self.podman.command(&args), RUN_WITHIN).map_err(|e| self.failed(e))
    }

    /// `e`, with trellisd's log when there is one.
    fn failed(&self, e: anyhow::Error) -> anyhow::Error {
        match &self.trellisd {
            Some(d) => anyhow!("{e:#}\ntrellisd log (tail):\n{}", d.log()),
            None => e,
        }
    }
}

/// Spawns `cmd` (stdin and stdout closed, stderr kept for errors) and waits
/// for its exit, at most `within` (then it is killed); the time from just
/// before the spawn to the exit. The wait blocks on a thread of its own, so
/// the exit is seen at once (no polling interval in the number).
fn timed(mut cmd: Command, within: Duration) -> Result<Duration> {
    let mut stderr = tempfile::tempfile().context("tempfile for stderr")?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr.try_clone().context("stderr file")?);
    let what = format!("{cmd:?}");
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("spawn {what}"))?;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let status = child.wait();
        let _ = tx.send((status, start.elapsed()));
    });
    let (status, took) = match rx.recv_timeout(within) {
        Ok(done) => done,
        Err(_) => {
            // Not reaped yet (the waiter has not returned): still our child.
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = rx.recv();
            bail!("{what} did not finish within {within:?} and was killed");
        }
    };
    let status = status.with_context(|| format!("wait for {what}"))?;
    if !status.success() {
        let mut text = String::new();
        stderr.rewind().ok();
        let _ = stderr.read_to_string(&mut text);
        bail!("podman run failed ({status}): {}", text.trim_end());
    }
    Ok(took)
}

/// One setup's lane (or why there is none) and its counted samples:
/// sample `i` is from counted round `i` (a failure ends a setup).
pub(crate) struct Outcome {
    /// Which setup.
    pub(crate) setup: Setup,
    lane: Result<Lane, String>,
    /// The counted runs, in round order.
    pub(crate) samples: Vec<Duration>,
}

impl Outcome {
    /// Why the setup has no row, if it has none.
    pub(crate) fn skipped(&self) -> Option<String> {
        match &self.lane {
            Err(why) => Some(why.clone()),
            Ok(_) if self.samples.is_empty() => Some("no runs".into()),
            Ok(_) => None,
        }
    }
}

/// Runs the benchmark and prints its table.
pub fn run(o: &Options) -> Result<()> {
    trellis_testlab::require_root();
    let run_start = Instant::now();
    let bins = daemon::locate(None).and_then(|trellisd| {
        let trellis_cni = daemon::locate_binary(None, "trellis-cni", "--trellis-cni")?;
        Ok(Binaries {
            trellisd,
            trellis_cni,
        })
    });
    crate::print_header(&format!(
        "trellis-bench podman: podman run --rm --network NET {BUSYBOX_IMAGE} true, {} runs per \
         network setup (after {WARMUP} uncounted), round-robin",
        o.runs
    ));
    println!("podman: {}", first_line("podman", &["--version"]));
    println!("runc: {}", first_line("runc", &["--version"]));
    if let Ok(b) = &bins {
        println!("trellisd: {}", b.trellisd.display());
        println!("trellis-cni: {}", b.trellis_cni.display());
    }
    println!(
        "what: wall time from the spawn of `nsenter --net=<host netns> -t <holder of the harness mount ns> --mount --root --wd \
         -- podman run --cgroup-parent <harness> --rm --network NET {BUSYBOX_IMAGE} true` to its \
         exit (container created, network set up, runc runs `true`, network torn down, container \
         removed). Each setup: its own fresh host netns and podman harness (podman 4.3, runc, vfs, \
         state in a temp dir); networks 10.89.0.0/24, no masquerade but netavark's (1.4 has no \
         switch for it). Runs interleaved round-robin, the first setup of a round rotating."
    );

    let mut outcomes = Vec::new();
    for setup in Setup::ALL {
        eprintln!("setting up: {} ...", setup.label());
        let lane = Lane::new(setup, &bins).map_err(|e| format!("{e:#}"));
        if let Err(e) = &lane {
            eprintln!("  skipped: {e}");
        }
        outcomes.push(Outcome {
            setup,
            lane,
            samples: Vec::with_capacity(o.runs),
        });
    }
    round_robin(&mut outcomes, o.runs);
    crate::podman_report::print(&outcomes);
    // Harnesses, trellisd and namespaces go here, in the lanes' drop order.
    drop(outcomes);
    println!("total run time {:.0} s", run_start.elapsed().as_secs_f64());
    Ok(())
}

/// [`WARMUP`] + `runs` rounds; in round r every setup still standing runs
/// once, starting from setup r (mod their number). A failed run ends its
/// setup.
fn round_robin(outcomes: &mut [Outcome], runs: usize) {
    let n = outcomes.len();
    for round in 0..WARMUP + runs {
        eprintln!(
            "round {}/{}{} ...",
            round + 1,
            WARMUP + runs,
            if round < WARMUP { " (warm-up)" } else { "" }
        );
        for k in 0..n {
            let o = &mut outcomes[(round + k) % n];
            let Ok(lane) = &o.lane else { continue };
            match lane.run_once(o.setup) {
                Ok(took) if round >= WARMUP => o.samples.push(took),
                Ok(_) => {}
                Err(e) => {
                    let why = format!("run {} failed: {e:#}", round + 1);
                    eprintln!("  {}: {why}", o.setup.label());
                    o.lane = Err(why);
                }
            }
        }
    }
}

/// The first line `program args` prints, or why not.
fn first_line(program: &str, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned(),
        Ok(o) => format!("? ({program} exited {})", o.status),
        Err(e) => format!("? ({program}: {e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflists_are_cni_1_0_0_bridges_of_the_subnet_without_masquerade() {
        let t = trellis_conflist(Path::new("/x/trellisd.sock"));
        let p = &t["plugins"][0];
        assert_eq!(t["cniVersion"], "1.0.0");
        assert_eq!(t["name"], Setup::TrellisCni.network());
        assert_eq!(
            (p["type"].as_str(), p["mode"].as_str(), p["subnet"].as_str()),
            (Some("trellis-cni"), Some("bridge"), Some(SUBNET))
        );
        assert_eq!(p["socket"], "/x/trellisd.sock");
        assert_eq!(p["masquerade"], false);
        let c = cni_bridge_conflist();
        let p = &c["plugins"][0];
        assert_eq!(c["cniVersion"], "1.0.0");
        assert_eq!(c["name"], Setup::CniBridge.network());
        assert_eq!(
            (p["type"].as_str(), p["ipMasq"].as_bool()),
            (Some("bridge"), Some(false))
        );
        assert_eq!(p["ipam"]["ranges"][0][0]["subnet"], SUBNET);
        assert_eq!(c["plugins"].as_array().unwrap().len(), 1, "no portmap");
    }

    #[test]
    fn timed_sees_the_exit_and_the_failure() {
        let mut sleep = Command::new("sleep");
        sleep.arg("0.05");
        let took = timed(sleep, Duration::from_secs(10)).unwrap();
        assert!(
            took >= Duration::from_millis(50) && took < Duration::from_secs(5),
            "{took:?}"
        );
        let mut fail = Command::new("sh");
        fail.args(["-c", "echo nope >&2; exit 2"]);
        let e = timed(fail, Duration::from_secs(10))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
        let mut slow = Command::new("sleep");
        slow.arg("5");
        let e = timed(slow, Duration::from_millis(50))
            .unwrap_err()
            .to_string();
        assert!(e.contains("killed"), "{e}");
    }
}
