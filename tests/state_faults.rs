//! trellisd's state file under faults, with the real binary.
//!
//! * **Damaged:** a state file that recorded a network and an endpoint is
//!   damaged in several ways (garbage header, emptied, truncated, a live
//!   record's bytes flipped — after a clean stop and after a crash — random
//!   bytes mid-file, a directory in its place); trellisd must exit non-zero
//!   naming the file and saying what to do, and leave it byte for byte as it
//!   was. Put back whole, the file starts with everything in it.
//! * **Read-only, full:** trellisd runs with its state directory on a small
//!   tmpfs of its own, in a private mount namespace (`unshare --mount`), so
//!   that the test can turn it read-only or fill it (`nsenter --mount`)
//!   without touching the machine's mounts. Attach and CreateNetwork must
//!   then fail with a status naming the file and the OS error, leaving
//!   nothing made (no veth, no nft element, no address held, no record, no
//!   bridge); once the file can be written again the same calls succeed,
//!   without a restart.

mod daemons;

use daemons::binary;
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tonic::Code;
use tonic::transport::Channel;
use trellis_proto::v1::{
    AgentClient, AttachRequest, CreateNetworkRequest, Endpoint, ListEndpointsRequest,
    ListNetworksRequest, NetworkMode, NetworkSpec, PortMapping, Protocol,
};
use trellis_testlab::daemon::{Daemon, clean_command, free_log};
use trellis_testlab::report::record;
use trellis_testlab::{Netns, require_root};

const AREA: &str = "trellisd state";
/// The name of the store in the state directory (trellisd's `store_path`).
const STATE_FILE: &str = "trellis.redb";
/// A container id easy to find in the state file's bytes.
const MARKER_ID: &str = "sfmarker-c1-5e2f9a";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// trellisd's arguments for a state directory and socket.
fn args(state: &Path, socket: &Path) -> Vec<String> {
    vec![
        "--node".into(),
        "sf".into(),
        "--state-dir".into(),
        state.display().to_string(),
        "--socket".into(),
        socket.display().to_string(),
    ]
}

/// trellisd in `host` on `state`, started (not waited for).
fn spawn(host: &Netns, dir: &Path, state: &Path) -> Daemon {
    let socket = dir.join("trellisd.sock");
    let mut cmd = clean_command("ip", "TRELLISD_");
    cmd.args(["netns", "exec", host.name()])
        .arg(binary("TRELLISD_BIN", "trellisd"))
        .args(args(state, &socket));
    Daemon::spawn("trellisd", cmd, socket, free_log(dir, "trellisd"))
}

async fn client(d: &Daemon) -> AgentClient<Channel> {
    trellis_proto::connect_unix(&d.socket)
        .await
        .expect("connect")
}

fn bridge(name: &str, subnet: &str, bridge: &str) -> CreateNetworkRequest {
    let spec = NetworkSpec {
        name: name.into(),
        mode: NetworkMode::Bridge as i32,
        subnets: vec![subnet.into()],
        bridge: bridge.into(),
        ..Default::default()
    };
    CreateNetworkRequest { spec: Some(spec) }
}

fn attach_req(network: &str, id: &str, c: &Netns) -> AttachRequest {
    AttachRequest {
        network: network.into(),
        container_id: id.into(),
        netns: c.path_str(),
        ifname: "eth0".into(),
        ..Default::default()
    }
}

async fn endpoints(a: &mut AgentClient<Channel>) -> Vec<Endpoint> {
    let list = a.list_endpoints(ListEndpointsRequest::default()).await;
    list.expect("list endpoints").into_inner().endpoints
}

/// A state file with the network "sfweb" and one endpoint (container
/// [`MARKER_ID`]) recorded, left by a clean stop (SIGTERM) or a crash
/// (SIGKILL): its bytes and the endpoint.
fn recorded_state(host: &Netns, c1: &Netns, dir: &Path, crash: bool) -> (Vec<u8>, Endpoint) {
    let state = dir.join("state");
    let mut d = spawn(host, dir, &state);
    d.wait_ready();
    let ep = rt().block_on(async {
        let mut a = client(&d).await;
        let net = bridge("sfweb", "172.31.250.0/24", "trsfweb0");
        a.create_network(net).await.expect("create network");
        let req = attach_req("sfweb", MARKER_ID, c1);
        a.attach(req).await.expect("attach").into_inner()
    });
    let signal = if crash {
        Signal::SIGKILL
    } else {
        Signal::SIGTERM
    };
    d.signal(signal);
    d.wait_exit(Duration::from_secs(20));
    (std::fs::read(state.join(STATE_FILE)).unwrap(), ep)
}

/// One way of damaging the state file at `path`.
struct Damage {
    what: &'static str,
    /// Damages the file.
    apply: fn(&Path),
    /// Whether trellisd may still start: only if the damage missed every
    /// live page, and then every record must still be there.
    may_start: bool,
}

fn overwrite(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    f(&mut bytes);
    std::fs::write(path, bytes).unwrap();
}

/// Deterministic noise (a linear congruential generator).
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as u8
        })
        .collect()
}

fn flip_marker(path: &Path) {
    overwrite(path, |bytes| {
        let marker = MARKER_ID.as_bytes();
        let hits: Vec<usize> = (0..bytes.len().saturating_sub(marker.len()))
            .filter(|&i| &bytes[i..i + marker.len()] == marker)
            .collect();
        assert!(!hits.is_empty(), "the endpoint's record is not in the file");
        for i in hits {
            bytes[i + 4] ^= 0xff;
        }
    });
}

const DAMAGES: &[Damage] = &[
    Damage {
        what: "its first 512 bytes (the header) overwritten with noise",
        apply: |p| overwrite(p, |b| b[..512].copy_from_slice(&noise(512, 1))),
        may_start: false,
    },
    Damage {
        what: "truncated to zero length",
        apply: |p| std::fs::write(p, b"").unwrap(),
        may_start: false,
    },
    Damage {
        what: "truncated to half its length",
        apply: |p| overwrite(p, |b| b.truncate(b.len() / 2)),
        may_start: false,
    },
    Damage {
        what: "one byte flipped in every copy of a live endpoint record (mid-file)",
        apply: flip_marker,
        may_start: false,
    },
    Damage {
        what: "4 KiB of random bytes written over the middle of the file",
        apply: |p| {
            overwrite(p, |b| {
                let at = (b.len() / 2) & !4095;
                b[at..at + 4096].copy_from_slice(&noise(4096, 7));
            })
        },
        may_start: true,
    },
];

/// What trellisd did on `state`: its exit status and log if it exited
/// within 30 s, else `None` (it started and serves).
fn run_once(host: &Netns, dir: &Path, state: &Path) -> (Daemon, Option<(Option<i32>, String)>) {
    let mut d = spawn(host, dir, state);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = d.try_wait() {
            let log = d.log();
            return (d, Some((status.code(), log)));
        }
        if std::os::unix::net::UnixStream::connect(&d.socket).is_ok() {
            return (d, None);
        }
        assert!(Instant::now() < deadline, "neither served nor exited");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `s` with the test's temporary directory written `<tmp>`, so that the
/// report reads the same from run to run.
fn scrub(s: &str, dir: &Path) -> String {
    s.replace(&dir.display().to_string(), "<tmp>")
}

/// The error line trellisd printed.
fn error_line(log: &str) -> String {
    log.lines()
        .find(|l| l.starts_with("trellisd: error:"))
        .unwrap_or_else(|| panic!("no error line in:\n{log}"))
        .to_owned()
}

/// Checks that trellisd, which exited with `code` and `log` on the damaged
/// file, refused it and left it as `before`; returns what was observed.
fn refused(file: &Path, before: &[u8], exited: (Option<i32>, String), what: &str) -> String {
    let (code, log) = exited;
    let line = error_line(&log);
    assert_ne!(code, Some(0), "{what}: exit status 0");
    assert!(line.contains(&file.display().to_string()), "{what}: {line}");
    assert!(
        line.contains("corrupt") && line.contains("move it aside"),
        "{what}: {line}"
    );
    let after = std::fs::read(file).unwrap();
    assert!(after == before, "{what}: the state file was changed");
    eprintln!("{what}: exit {code:?}: {line}");
    format!(
        "exit {}: {line} (the file is byte for byte as it was)",
        code.unwrap_or(-1)
    )
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[test]
fn a_damaged_state_file_stops_trellisd_and_is_left_as_it_was() {
    require_root();
    let (host, c1) = (Netns::new("sfhost"), Netns::new("sfc1"));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = state.join(STATE_FILE);
    let (clean, ep) = recorded_state(&host, &c1, dir.path(), false);

    for damage in DAMAGES {
        std::fs::write(&file, &clean).unwrap();
        (damage.apply)(&file);
        let what = format!("state file (after a clean stop): {}", damage.what);
        let before = std::fs::read(&file).unwrap();
        let (d, exited) = run_once(&host, dir.path(), &state);
        let observed = match exited {
            Some(exited) => refused(&file, &before, exited, &what),
            None => {
                assert!(damage.may_start, "{what}: trellisd started");
                // It missed every live page: nothing may be lost.
                let eps = rt().block_on(async { endpoints(&mut client(&d).await).await });
                assert_eq!(eps, std::slice::from_ref(&ep), "{what}: records lost");
                "trellisd started: the bytes hit no live page, and the endpoint is still recorded"
                    .to_owned()
            }
        };
        drop(d);
        record(AREA, &what, &scrub(&observed, dir.path()));
    }

    // The file a crash leaves needs redb's crash repair, which must go on;
    // a damaged one must be refused, not rolled back to an older commit.
    // (Another host: the first left its bridge, as a stop does.)
    std::fs::remove_file(&file).unwrap();
    let (host, c1) = (Netns::new("sfhost"), Netns::new("sfc1"));
    let (crashed, _) = recorded_state(&host, &c1, dir.path(), true);
    std::fs::write(&file, &crashed).unwrap();
    flip_marker(&file);
    let what = "state file left by a crash (SIGKILL), then a live record's bytes flipped";
    let before = std::fs::read(&file).unwrap();
    let (_d, exited) = run_once(&host, dir.path(), &state);
    let exited = exited.unwrap_or_else(|| panic!("{what}: trellisd started"));
    let observed = refused(&file, &before, exited, what);
    record(AREA, what, &scrub(&observed, dir.path()));

    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    let what = "a directory where the state file should be";
    let (_d, exited) = run_once(&host, dir.path(), &state);
    let (code, log) = exited.expect("trellisd started with a directory for a state file");
    let line = error_line(&log);
    assert_ne!(code, Some(0));
    assert!(
        line.contains("not a regular file but a directory"),
        "{line}"
    );
    assert!(file.is_dir(), "the directory was removed");
    let observed = format!("exit {}: {line}", code.unwrap_or(-1));
    record(AREA, what, &scrub(&observed, dir.path()));
    std::fs::remove_dir(&file).unwrap();

    // Restored from the "backup", it starts with everything in it; so
    // does the crashed file, undamaged (redb's crash repair).
    for (what, bytes) in [("clean", &clean), ("crashed", &crashed)] {
        std::fs::write(&file, bytes).unwrap();
        let (d, exited) = run_once(&host, dir.path(), &state);
        assert!(exited.is_none(), "the {what} file did not start trellisd");
        let eps = rt().block_on(async { endpoints(&mut client(&d).await).await });
        assert_eq!(eps.len(), 1, "{what}: {eps:?}");
        assert_eq!(eps[0].container_id, MARKER_ID);
        drop(d);
    }
    record(
        AREA,
        "the undamaged state file put back (after a clean stop, and after a crash)",
        "trellisd starts and lists the recorded endpoint",
    );
}

/// trellisd with its state directory on a filesystem of its own, mounted
/// in a private mount namespace (the machine's mounts never see it; it
/// goes with trellisd's namespace, a loop device with it).
struct Confined {
    d: Daemon,
    state: PathBuf,
    /// The ext4 image behind the state directory, if it is one.
    image: Option<PathBuf>,
}

impl Confined {
    /// trellisd on `state_dir`, after `mount` (a shell command) has
    /// mounted a filesystem on `<dir>/state`.
    fn spawn(host: &Netns, dir: &Path, state_dir: &Path, mount: &str) -> Daemon {
        std::fs::create_dir_all(dir.join("state")).unwrap();
        let socket = dir.join("trellisd.sock");
        let script = format!("{mount} && exec ip netns exec {} \"$@\"", host.name());
        let mut cmd = clean_command("unshare", "TRELLISD_");
        cmd.args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            "sh",
        ])
        .arg(binary("TRELLISD_BIN", "trellisd"))
        .args(args(state_dir, &socket));
        Daemon::spawn("trellisd", cmd, socket, free_log(dir, "trellisd"))
    }

    fn tmpfs(dir: &Path, opts: &str) -> String {
        let state = dir.join("state").display().to_string();
        format!("mount -t tmpfs -o {opts} trellis-test-state {state}")
    }

    /// On a tmpfs of `size`.
    fn on_tmpfs(host: &Netns, dir: &Path, size: &str) -> Self {
        let state = dir.join("state");
        let mount = Self::tmpfs(dir, &format!("size={size},mode=0700"));
        let mut d = Self::spawn(host, dir, &state, &mount);
        d.wait_ready();
        Confined {
            d,
            state,
            image: None,
        }
    }

    /// On a fresh ext4 (a 32 MiB image on a loop device) that turns
    /// read-only on an error, as a disk's filesystem does.
    fn on_ext4(host: &Netns, dir: &Path) -> Self {
        let (state, image) = (dir.join("state"), dir.join("state.ext4"));
        let made = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "truncate -s 32M {0} && mkfs.ext4 -q -F {0}",
                image.display()
            ))
            .status()
            .expect("mkfs.ext4");
        assert!(made.success(), "mkfs.ext4: {made}");
        let mount = format!(
            "mount -o loop,errors=remount-ro {} {}",
            image.display(),
            state.display()
        );
        let mut d = Self::spawn(host, dir, &state, &mount);
        d.wait_ready();
        Confined {
            d,
            state,
            image: Some(image),
        }
    }

    /// Runs `argv` in trellisd's mount namespace, under trellisd's root
    /// (`--root --wd`: entering a mount namespace alone starts at that
    /// namespace's own root, which inside a chroot is outside it).
    fn nsenter(&self, argv: &[&str]) -> Output {
        let pid = self.d.pid().to_string();
        Command::new("nsenter")
            .args(["-t", &pid, "--mount", "--root", "--wd", "--"])
            .args(argv)
            .output()
            .expect("run nsenter")
    }

    fn nsenter_ok(&self, argv: &[&str]) -> String {
        let out = self.nsenter(argv);
        assert!(
            out.status.success(),
            "{argv:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Makes the ext4 under the state directory hit an error (ext4's own
    /// test trigger): with `errors=remount-ro` it turns read-only at once,
    /// under trellisd's open file (a plain `remount,ro` is refused while a
    /// file is open for writing: EBUSY).
    fn fs_error(&self) {
        let state = self.state.display().to_string();
        let source = self.nsenter_ok(&["findmnt", "-n", "-o", "SOURCE", &state]);
        let dev = source.trim().trim_start_matches("/dev/").to_owned();
        assert!(dev.starts_with("loop"), "{source}");
        std::fs::write(format!("/sys/fs/ext4/{dev}/trigger_fs_error"), "1")
            .expect("trigger an ext4 error");
        let opts = self.nsenter_ok(&["findmnt", "-n", "-o", "OPTIONS", &state]);
        assert!(opts.contains("ro"), "still writable: {opts}");
    }

    /// What an operator does about it: unmounts the filesystem (lazily:
    /// trellisd still holds the file), checks it, mounts it again.
    fn fsck_and_remount(&self) {
        let image = self.image.as_ref().expect("an ext4 image").display();
        let state = self.state.display();
        let script = format!(
            "umount -l {state} && (e2fsck -fy {image} >/dev/null; mount -o loop,errors=remount-ro {image} {state})"
        );
        self.nsenter_ok(&["sh", "-c", &script]);
    }
}

/// What a failed call left in the kernel: the veths in `host`, whether the
/// container has an `eth0`, whether nftables mentions `port`, whether the
/// bridge `bridge` exists.
fn leftovers(host: &Netns, c: &Netns, port: u32, bridge: &str) -> (usize, bool, bool, bool) {
    let veths = host.ip("-o link show type veth").lines().count();
    let eth0 = c.exec(&["ip", "link", "show", "eth0"]).status.success();
    let nft = host.exec_ok(&["nft", "list", "ruleset"]);
    let bridge = host.exec(&["ip", "link", "show", bridge]).status.success();
    (veths, eth0, nft.contains(&port.to_string()), bridge)
}

/// c2's attach: a fixed address and a published port, so that a leak of
/// either would show.
fn c2_attach(c2: &Netns) -> AttachRequest {
    AttachRequest {
        fixed_addresses: vec!["172.31.251.9".into()],
        ports: vec![PortMapping {
            protocol: Protocol::Tcp as i32,
            host_port: PORT,
            container_port: 80,
            ..Default::default()
        }],
        ..attach_req("sfnet", "sfc2", c2)
    }
}

const PORT: u32 = 8097;
const NEW_BRIDGE: &str = "trsfnew0";

/// A fault that makes the state file unwritable while trellisd runs.
struct Fault {
    /// What is done, for the report.
    what: &'static str,
    /// Starts trellisd on a filesystem that can suffer it.
    confine: fn(&Netns, &Path) -> Confined,
    /// Does it.
    strike: fn(&Confined),
    /// Undoes it, as an operator would.
    mend: fn(&Confined),
    /// What to undo it takes, for the report.
    mended: &'static str,
    /// The status code expected.
    code: Code,
    /// The OS error the status must name.
    os_error: &'static str,
    /// Whether CreateNetwork must fail too: on a full disk a small write
    /// may still fit in space the file already has.
    create_fails: bool,
}

/// `fault` struck while trellisd runs: Attach (and CreateNetwork) must fail
/// with the fault's code, naming the file and the OS error, and leave
/// nothing; once mended, the same calls succeed without a restart.
fn unwritable_then_mended(fault: &Fault) {
    require_root();
    let (host, c1, c2) = (Netns::new("sfhost"), Netns::new("sfc1"), Netns::new("sfc2"));
    let dir = tempfile::tempdir().unwrap();
    let t = (fault.confine)(&host, dir.path());
    let file = t.state.join(STATE_FILE).display().to_string();
    let new_net = bridge("sfnew", "172.31.252.0/24", NEW_BRIDGE);
    rt().block_on(async {
        let mut a = client(&t.d).await;
        let net = bridge("sfnet", "172.31.251.0/24", "trsfnet0");
        a.create_network(net).await.expect("create network");
        a.attach(attach_req("sfnet", "sfc1", &c1))
            .await
            .expect("attach c1");
        let clean = leftovers(&host, &c2, PORT, NEW_BRIDGE);

        (fault.strike)(&t);
        let started = Instant::now();
        let err = a.attach(c2_attach(&c2)).await.unwrap_err();
        let took = started.elapsed();
        let msg = err.message().to_owned();
        eprintln!("{}: attach {:?} after {took:?}: {msg}", fault.what, err.code());
        assert_eq!(err.code(), fault.code, "attach: {msg}");
        assert!(msg.contains(&file) && msg.contains(fault.os_error), "{msg}");
        assert_eq!(
            leftovers(&host, &c2, PORT, NEW_BRIDGE),
            clean,
            "the failed attach left something (veths, eth0, nft port, bridge)"
        );
        let mut calls = "Attach (fixed address, published port)".to_owned();
        if fault.create_fails {
            let net_err = a.create_network(new_net.clone()).await.unwrap_err();
            let m = net_err.message();
            eprintln!("{}: create network {:?}: {m}", fault.what, net_err.code());
            assert_eq!(net_err.code(), fault.code, "create network: {m}");
            assert!(m.contains(&file) && m.contains(fault.os_error), "{m}");
            assert_eq!(leftovers(&host, &c2, PORT, NEW_BRIDGE), clean);
            calls.push_str(" and CreateNetwork");
        }
        record(
            AREA,
            &format!("{} while trellisd runs; then {calls}", fault.what),
            &scrub(
                &format!(
                    "{:?} in {} ms: \"{msg}\"; no veth, no eth0 in the container, no nft rule for the port, no bridge left",
                    err.code(),
                    took.as_millis()
                ),
                dir.path(),
            ),
        );

        (fault.mend)(&t);
        let started = Instant::now();
        let ep = a.attach(c2_attach(&c2)).await;
        let took = started.elapsed();
        let ep = ep.expect("the same attach once mended").into_inner();
        assert_eq!(ep.addresses, ["172.31.251.9/24"], "the fixed address");
        if fault.create_fails {
            a.create_network(new_net.clone())
                .await
                .expect("create network once mended");
        }
        let eps = endpoints(&mut a).await;
        let mut ids: Vec<_> = eps.iter().map(|e| e.container_id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, ["sfc1", "sfc2"]);
        let nets = a.list_networks(ListNetworksRequest::default()).await;
        let nets = nets.expect("list networks").into_inner().networks;
        let names: Vec<_> = nets.into_iter().filter_map(|n| n.spec).map(|s| s.name).collect();
        let want = if fault.create_fails { 2 } else { 1 };
        assert_eq!(names.len(), want, "{names:?}");
        eprintln!("{}: {}; the same attach succeeded in {took:?}", fault.what, fault.mended);
        record(
            AREA,
            &format!("{}, then {} (trellisd not restarted); the same {calls} again", fault.what, fault.mended),
            &format!(
                "succeeded ({} ms for the attach, which got the fixed address the failed one asked for); {} endpoints and {} networks listed",
                took.as_millis(),
                ids.len(),
                want
            ),
        );
    });
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[test]
fn a_state_dir_turned_read_only_fails_calls_cleanly_and_recovers_without_a_restart() {
    unwritable_then_mended(&Fault {
        what: "state directory's ext4 (errors=remount-ro) hit by an error and turned read-only",
        confine: Confined::on_ext4,
        strike: Confined::fs_error,
        mend: Confined::fsck_and_remount,
        mended: "unmounted, checked with e2fsck and mounted again",
        code: Code::Unavailable,
        os_error: "Read-only file system",
        create_fails: true,
    });
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[test]
fn a_full_disk_fails_calls_cleanly_and_recovers_once_space_is_freed() {
    unwritable_then_mended(&Fault {
        what: "state directory's filesystem (a 2 MiB tmpfs) filled to ENOSPC",
        confine: |host, dir| Confined::on_tmpfs(host, dir, "2m"),
        strike: |t| {
            let filler = t.state.join("filler").display().to_string();
            // dd stops at ENOSPC (and says so): the filesystem is full.
            let out = t.nsenter(&["dd", "if=/dev/zero", &format!("of={filler}"), "bs=4096"]);
            let said = String::from_utf8_lossy(&out.stderr);
            assert!(said.contains("No space left on device"), "{said}");
        },
        mend: |t| {
            let filler = t.state.join("filler").display().to_string();
            t.nsenter_ok(&["rm", &filler]);
        },
        mended: "the filler file removed",
        code: Code::ResourceExhausted,
        os_error: "No space left on device",
        create_fails: false,
    });
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[test]
fn a_state_dir_that_cannot_be_written_at_start_is_named() {
    require_root();
    let host = Netns::new("sfhost");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    for (what, state_dir, needle) in [
        (
            "state directory on a read-only filesystem at start",
            state.clone(),
            STATE_FILE,
        ),
        (
            "state directory to be created on a read-only filesystem at start",
            state.join("sub"),
            "create state directory",
        ),
    ] {
        let ro = Confined::tmpfs(dir.path(), "ro,size=1m");
        let mut d = Confined::spawn(&host, dir.path(), &state_dir, &ro);
        let status = d.wait_exit(Duration::from_secs(30));
        let line = error_line(&d.log());
        assert!(!status.success(), "{what}: {status}");
        assert!(
            line.contains(&state_dir.display().to_string())
                && line.contains(needle)
                && line.contains("Read-only file system"),
            "{what}: {line}"
        );
        eprintln!("{what}: {status}: {line}");
        let observed = format!("exit {}: {line}", status.code().unwrap_or(-1));
        record(AREA, what, &scrub(&observed, dir.path()));
    }
}

/// Attaches and detaches `c` on and on until the daemon goes away,
/// counting the calls answered OK in `done`.
async fn churn(socket: PathBuf, id: String, c: String, done: Arc<AtomicUsize>) {
    let Ok(mut a) = trellis_proto::connect_unix(&socket).await else {
        return;
    };
    loop {
        let req = AttachRequest {
            network: "sfweb".into(),
            container_id: id.clone(),
            netns: c.clone(),
            ifname: "eth0".into(),
            ..Default::default()
        };
        let attached = a.attach(req).await;
        let detach = trellis_proto::v1::DetachRequest {
            container_id: id.clone(),
            ifname: "eth0".into(),
        };
        let detached = a.detach(detach).await;
        let ok = usize::from(attached.is_ok()) + usize::from(detached.is_ok());
        done.fetch_add(ok, Ordering::Relaxed);
        if let (Err(e), _) | (_, Err(e)) = (&attached, &detached)
            && e.code() == Code::Unavailable
        {
            return;
        }
    }
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[test]
fn crashes_in_the_middle_of_writes_never_make_the_state_file_refused() {
    require_root();
    const KILLS: usize = 20;
    let host = Netns::new("sfhost");
    let cs: Vec<Netns> = (0..4).map(|i| Netns::new(&format!("sfk{i}"))).collect();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let rt = rt();
    let mut d = spawn(&host, dir.path(), &state);
    d.wait_ready();
    rt.block_on(async {
        let net = bridge("sfweb", "172.31.253.0/24", "trsfkill0");
        client(&d).await.create_network(net).await.expect("create");
    });
    let mut seed = 0x5eed_u64;
    let mut starts = Vec::new();
    let done = Arc::new(AtomicUsize::new(0));
    for _ in 0..KILLS {
        let churners: Vec<_> = cs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let churn = churn(
                    d.socket.clone(),
                    format!("k{i}"),
                    c.path_str(),
                    done.clone(),
                );
                rt.spawn(churn)
            })
            .collect();
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(50 + (seed >> 33) % 300));
        d.signal(Signal::SIGKILL);
        d.wait_exit(Duration::from_secs(10));
        for c in churners {
            c.abort();
        }
        let started = Instant::now();
        d = spawn(&host, dir.path(), &state);
        d.wait_ready();
        starts.push(started.elapsed());
    }
    let eps = rt.block_on(async { endpoints(&mut client(&d).await).await });
    assert!(eps.len() <= cs.len(), "{eps:?}");
    let slowest = starts.iter().max().unwrap();
    let done = done.load(Ordering::Relaxed);
    assert!(
        done >= KILLS,
        "only {done} calls answered: the kills hit no writes"
    );
    eprintln!(
        "{KILLS} SIGKILLs mid-churn ({done} attach/detach calls answered): every restart opened the store; slowest start {slowest:?}"
    );
    record(
        AREA,
        &format!(
            "{KILLS} SIGKILLs of trellisd at random moments while 4 clients attach and detach"
        ),
        &format!(
            "every restart opened the state file (redb's crash repair ran; no refusal); {done} calls answered between kills; slowest start to serving {} ms",
            slowest.as_millis()
        ),
    );
}
