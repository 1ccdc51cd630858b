//! Podman 4.3 (runc, with its CNI or its netavark network backend) run by a
//! test inside a network namespace the test made, with all of its state in
//! one temporary directory per [`Podman`] harness: for tests of CNI plugins,
//! of what containers see, and for benchmarks that set podman's own network
//! stack beside a CNI plugin.
//!
//! # Design decisions
//!
//! - **Inside the test's namespace, never the machine's.** Every command is
//!   `nsenter --net=/run/netns/<host> -t <holder> --mount --root --wd podman …`
//!   (the mount namespace's holder process: see [`MountNs`]). It is
//!   `nsenter`, not `ip netns exec`: the latter remounts `/sys`, which hides
//!   the cgroup mounts runc needs. Bridges, host-side veths and the
//!   iptables rules of CNI plugins and of netavark all land in the test's
//!   namespace.
//! - **All state in the harness's directory** (`$TMPDIR/trellis-pm…`):
//!   `containers.conf` and `storage.conf` (named by `CONTAINERS_CONF` and
//!   `CONTAINERS_STORAGE_CONF`), an empty `registries.conf`, graph root and
//!   run root (vfs driver), libpod's tmp dir with file locks (not the shared
//!   `/dev/shm/libpod_lock`), the event log, image-copy temp files and the
//!   network config dir (CNI conflists, or netavark's network files).
//!   [`Podman::command`] also passes the main paths as flags, so they show
//!   in `ps` and in the cleanup command conmon runs.
//! - **A mount namespace of its own** for what podman 4.3 cannot be told to
//!   put elsewhere: libcni's result cache (`/var/lib/cni/results`), the
//!   `host-local` IPAM default `dataDir` (`/var/lib/cni/networks`) and the
//!   blob-info cache of `podman import` (`/var/lib/containers/cache`). In it
//!   `/var/lib` is the harness's `var-lib` directory, for podman, conmon and
//!   every CNI plugin. Its propagation is *slave*: namespaces that tests add
//!   under `/run/netns` later still show up in it, while podman's own mounts
//!   (container netns, `/dev/shm` of containers) stay in it and vanish with it.
//! - **netavark's fixed run directory, covered.** With netavark, rootful
//!   podman 4.3 keeps its IPAM database and netavark's `--config` directory
//!   in `/run/containers/networks`, a path no flag or containers.conf key
//!   moves (containers/common 0.50: "we cannot use the runroot for
//!   rootful"). So a [`Backend::Netavark`] harness's mount namespace sees the
//!   harness's `netavark/run` directory as `/run`, with every entry of the
//!   machine's `/run` (as it was when the harness was made) bound back into
//!   it — `/run/netns` (still a slave, so later namespaces show up),
//!   `/run/runc`, `/run/lock`, … — and `/run/containers` left to be created
//!   inside the harness's directory. The machine's `/run` never gains it.
//! - **netavark's firewall, pinned.** netavark 1.4 would configure a running
//!   firewalld over D-Bus — in the machine's namespace. The harness runs it
//!   with `NETAVARK_FW=iptables`, so its NAT chains go into the test's
//!   namespace, as those of CNI plugins do.
//! - **Own cgroups.** `cgroups = "no-conmon"` keeps conmon in the test's
//!   cgroup, and [`Podman::run`] puts containers under a cgroup parent named
//!   after the harness, which `Drop` finds, empties and removes.
//! - **Nothing outlives the harness.** `Drop` runs `podman rm -af -t 0`,
//!   unbinds the mount namespace (no command enters it any more), SIGKILLs
//!   what is left, looking again until nothing is (processes in the mount
//!   namespace: conmon, podman; processes in the cgroup parent: containers),
//!   removes the cgroups and the directory, and reports (does not panic)
//!   what it could not undo. The host namespace itself belongs to the test's
//!   [`crate::Netns`]. A process stopped by a signal, whose harnesses are
//!   never dropped, calls [`remove_own_harnesses`] (as it calls
//!   [`crate::remove_own_namespaces`]).
//!
//! # What podman 4.3.1 taught us (Debian 12, runc 1.1.5, CNI plugins 1.1.1, netavark 1.4)
//!
//! - `CONTAINERS_CONF` replaces every other containers.conf, and conmon passes
//!   it on to the cleanup command it runs at container exit;
//!   `CONTAINERS_STORAGE_CONF` does not reach that command, but the
//!   `--root`/`--runroot`/`--storage-driver` flags do.
//! - runc's state stays in `/run/runc` (emptied when containers go): a
//!   `--runtime-flag root=…` is not passed to the exit command, which then
//!   cannot delete the container, leaving its cgroup behind.
//! - Without `--cgroup-parent`, cgroupfs puts containers under `/libpod_parent`
//!   (and conmon under `/libpod_parent/conmon`), created and never removed.
//! - Container netns are bind-mounted at `/run/netns/netns-<uuid>` (fixed for
//!   root); the empty file shows on the host while the container runs.
//! - Without `--network` a container joins the built-in `podman` network
//!   (10.88.0.0/16, bridge `cni-podman0`, firewall plugin): here
//!   `netns = "none"` makes that an explicit choice.
//! - The `bridge` plugin and `portmap` need nothing set up in the host
//!   namespace (not even `lo` up); `portmap` (and `ipMasq`, which the tests
//!   leave off) write iptables rules (nft backend) in that namespace only.
//! - `--network-config-dir` is honoured by the netavark backend too (`podman
//!   network create` writes `<name>.json` there). netavark 1.4 has no way to
//!   leave masquerading off but `--internal`; it creates the network's bridge
//!   and NAT chains with its first container and deletes them with its last,
//!   and sets `ip_forward` in the host namespace.
//! - `--log-level debug` makes conmon log to syslog, and `podman run` then
//!   waits 20 s for the exit ("Exceeded conmon timeout").
//! - The `nofile`/`nproc` limits cannot be raised here: `default_ulimits`
//!   sets both to 1024:1024 for every container.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

/// The image [`Podman::import_busybox`] is usually asked for.
pub const BUSYBOX_IMAGE: &str = "localhost/trellis-busybox:latest";
/// How long one podman command may take before it is killed.
pub const COMMAND_WITHIN: Duration = Duration::from_secs(60);
/// Debian's busybox-static, statically linked: the whole userland of the image.
const BUSYBOX: &str = "/bin/busybox";
/// Plugins of Debian's containernetworking-plugins, searched after the
/// harness's own plugin directory.
const SYSTEM_CNI_DIR: &str = "/usr/lib/cni";
/// The harness's directories (see [`containers_conf`]).
const HARNESS_DIRS: [&str; 6] = ["cni/net.d", "storage", "run", "libpod", "tmp", "var-lib"];
/// A netavark harness's own directories: the network config dir, what its
/// mount namespace sees as `/run`, and where the machine's `/run` is held
/// in that namespace (see [`teardown::cover_run`]).
const NETAVARK_DIRS: [&str; 3] = ["netavark/networks", "netavark/run", "netavark/host-run"];
/// Where Debian (`/usr/lib/podman`) and Fedora (`/usr/libexec/podman`) put
/// netavark; podman's default `helper_binaries_dir` has both.
const NETAVARK_CANDIDATES: [&str; 2] = ["/usr/lib/podman/netavark", "/usr/libexec/podman/netavark"];
/// The busybox image's directories.
const ROOTFS_DIRS: [&str; 12] = [
    "bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "run", "proc", "sys", "dev", "tmp",
    "var/tmp",
];

/// Why a harness step failed.
#[derive(Debug)]
pub enum PodmanError {
    /// The caller asked for something impossible (named in the message).
    Invalid(String),
    /// A file or directory of the harness could not be read or written.
    Io {
        /// What was being done, with the path.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// A command exited unsuccessfully.
    Failed {
        /// The command line.
        command: String,
        /// How it exited.
        status: ExitStatus,
        /// What it printed.
        stdout: String,
        /// What it complained about.
        stderr: String,
    },
    /// A command did not finish within its time and was killed.
    Timeout {
        /// The command line.
        command: String,
        /// The time it had.
        after: Duration,
    },
}

impl fmt::Display for PodmanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PodmanError::Invalid(msg) => f.write_str(msg),
            PodmanError::Io { what, source } => write!(f, "cannot {what}: {source}"),
            PodmanError::Failed {
                command,
                status,
                stdout,
                stderr,
            } => write!(
                f,
                "{command} failed ({status}):\nstderr: {}\nstdout: {}",
                stderr.trim_end(),
                stdout.trim_end()
            ),
            PodmanError::Timeout { command, after } => {
                write!(
                    f,
                    "{command} did not finish within {after:?} and was killed"
                )
            }
        }
    }
}

impl std::error::Error for PodmanError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PodmanError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The network stack podman drives for a harness's containers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// libcni with the CNI plugins of this directory first, then those of
    /// `/usr/lib/cni`; networks are conflists ([`Podman::write_conflist`]).
    Cni(PathBuf),
    /// netavark (firewall through iptables); networks are made with `podman
    /// network create`.
    Netavark,
}

impl Backend {
    /// The name podman knows it by (`--network-backend`).
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Cni(_) => "cni",
            Backend::Netavark => "netavark",
        }
    }
}

/// What a successful command printed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodmanOutput {
    /// Standard output.
    pub stdout: String,
    /// Standard error (podman's warnings, image copy progress).
    pub stderr: String,
}

/// A podman whose state lives in one temporary directory and whose
/// containers live in a test's network namespace; see the module docs.
#[derive(Debug)]
pub struct Podman {
    dir: PathBuf,
    netns: PathBuf,
    backend: Backend,
    /// `/trellis-pm…`: the cgroup parent of the harness's containers.
    cgroup_parent: String,
    /// The inode of the harness's mount namespace, once it exists.
    mnt_ns: Option<MountNs>,
}

impl Podman {
    /// A harness whose containers attach to networks inside the namespace
    /// `/run/netns/<host_netns_name>`, using CNI plugins from `cni_bin_dir`
    /// first and then from `/usr/lib/cni`. Panics without root, as
    /// [`crate::require_root`] does.
    pub fn new(host_netns_name: &str, cni_bin_dir: &Path) -> Result<Podman, PodmanError> {
        Podman::with_backend(host_netns_name, Backend::Cni(cni_bin_dir.to_owned()))
    }

    /// A harness like [`Podman::new`]'s whose podman drives `backend`.
    pub fn with_backend(host_netns_name: &str, backend: Backend) -> Result<Podman, PodmanError> {
        crate::require_root();
        let netns = Path::new("/run/netns").join(host_netns_name);
        if host_netns_name.contains('/') || !netns.exists() {
            return Err(PodmanError::Invalid(format!(
                "network namespace {host_netns_name:?} does not exist (no {})",
                netns.display()
            )));
        }
        check_backend(&backend)?;
        let name = crate::unique_name("pm");
        let dir = std::env::temp_dir().join(format!("trellis-{name}"));
        io(std::fs::create_dir(&dir), || {
            format!("create {}", dir.display())
        })?;
        // From here on `Drop` undoes whatever the setup got to.
        let mut podman = Podman {
            dir,
            netns,
            backend,
            cgroup_parent: format!("/trellis-{name}"),
            mnt_ns: None,
        };
        podman.write_config()?;
        let made = teardown::make_mount_ns(&podman.dir);
        podman.mnt_ns = made.as_ref().ok().copied();
        live().insert(podman.dir.clone(), podman.remains());
        made?;
        if podman.backend == Backend::Netavark {
            teardown::cover_run(&podman.dir, podman.mnt_ns.expect("made above"))?;
        }
        Ok(podman)
    }

    fn write_config(&self) -> Result<(), PodmanError> {
        mkdirs(&self.dir, &HARNESS_DIRS)?;
        if self.backend == Backend::Netavark {
            mkdirs(&self.dir, &NETAVARK_DIRS)?;
        }
        self.write(
            "containers.conf",
            &containers_conf(&self.dir, &self.backend),
        )?;
        self.write("storage.conf", &storage_conf(&self.dir))?;
        self.write("registries.conf", "unqualified-search-registries = []\n")?;
        Ok(())
    }

    /// What `Drop`, or [`remove_own_harnesses`], undoes.
    fn remains(&self) -> Remains {
        Remains {
            mnt_ns: self.mnt_ns,
            cgroup_parent: self.cgroup_parent.clone(),
        }
    }

    fn write(&self, file: &str, text: &str) -> Result<PathBuf, PodmanError> {
        let path = self.dir.join(file);
        write_file(&path, text)?;
        Ok(path)
    }

    /// The harness's directory (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where podman reads CNI network configurations (`*.conflist`).
    pub fn cni_config_dir(&self) -> PathBuf {
        self.dir.join("cni/net.d")
    }

    /// The network stack podman drives.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Where podman keeps network configurations (`--network-config-dir`):
    /// [`Podman::cni_config_dir`], or netavark's `<name>.json` files.
    pub fn network_config_dir(&self) -> PathBuf {
        match self.backend {
            Backend::Cni(_) => self.cni_config_dir(),
            Backend::Netavark => self.dir.join("netavark/networks"),
        }
    }

    /// netavark only: what podman and netavark see as
    /// `/run/containers/networks` (podman's IPAM database, netavark's
    /// `--config` directory).
    pub fn netavark_run_dir(&self) -> Option<PathBuf> {
        (self.backend == Backend::Netavark)
            .then(|| self.dir.join("netavark/run/containers/networks"))
    }

    /// What podman, conmon and CNI plugins see as `/var/lib`: `host-local`
    /// keeps its leases under `cni/networks/<network>` here.
    pub fn var_lib(&self) -> PathBuf {
        self.dir.join("var-lib")
    }

    /// The cgroup parent [`Podman::run`] gives containers; a test that
    /// builds `podman create` itself should pass it as `--cgroup-parent`.
    pub fn cgroup_parent(&self) -> &str {
        &self.cgroup_parent
    }

    /// `program` run inside the host namespace and the harness's mount
    /// namespace, ready to be spawned: for a daemon the containers' plugins
    /// talk to (trellisd), which must see the container namespaces podman
    /// mounts at `/run/netns/netns-…` — they exist in that mount namespace
    /// only.
    pub fn enter(&self, program: &Path) -> Command {
        let mut cmd = self.nsenter();
        cmd.arg("--").arg(program);
        cmd
    }

    /// `nsenter` into the host namespace and the harness's mount namespace
    /// (by its holder process: see [`MountNs`]).
    fn nsenter(&self) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.netns.display()));
        if let Some(m) = &self.mnt_ns {
            cmd.args(m.nsenter_args());
        }
        cmd
    }

    /// `podman <args>` inside the host namespace and the harness's mount
    /// namespace, with the harness's configuration, ready to be spawned.
    pub fn command(&self, args: &[&str]) -> Command {
        let d = |sub: &str| self.dir.join(sub);
        let mut cmd = self.nsenter();
        cmd.args(["--", "podman", "--root"])
            .arg(d("storage"))
            .arg("--runroot")
            .arg(d("run"))
            .arg("--tmpdir")
            .arg(d("libpod"))
            .arg("--network-config-dir")
            .arg(self.network_config_dir())
            .args(["--network-backend", self.backend.name()])
            .args(["--storage-driver", "vfs"])
            .args(["--cgroup-manager", "cgroupfs", "--runtime", "runc"])
            .args(["--events-backend", "file"])
            .args(args)
            .env("CONTAINERS_CONF", d("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", d("storage.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", d("registries.conf"))
            .env("TMPDIR", d("tmp"))
            .env_remove("CONTAINER_HOST")
            .env_remove("CONTAINER_CONNECTION");
        if self.backend == Backend::Netavark {
            // podman hands its environment on to netavark: no firewalld
            // (which lives in the machine's namespace), whatever runs.
            cmd.env("NETAVARK_FW", "iptables");
        }
        cmd
    }

    /// Runs `podman <args>` (see [`Podman::command`]) to completion within
    /// [`COMMAND_WITHIN`]; an error carries the command line and stderr.
    pub fn podman(&self, args: &[&str]) -> Result<PodmanOutput, PodmanError> {
        output_within(self.command(args), COMMAND_WITHIN)
    }

    /// Runs `podman run --cgroup-parent <ours> <args>`, e.g.
    /// `["--rm", "--network", "net1", BUSYBOX_IMAGE, "ip", "addr"]`.
    pub fn run(&self, args: &[&str]) -> Result<PodmanOutput, PodmanError> {
        let mut all = vec!["run", "--cgroup-parent", &self.cgroup_parent];
        all.extend_from_slice(args);
        self.podman(&all)
    }

    /// `podman info` as JSON: to check which settings podman honours.
    pub fn info(&self) -> Result<Value, PodmanError> {
        let out = self.podman(&["info", "--format", "json"])?;
        serde_json::from_str(&out.stdout)
            .map_err(|e| PodmanError::Invalid(format!("podman info printed no JSON: {e}")))
    }

    /// Builds a rootfs of Debian's static busybox (every applet linked where
    /// `busybox --list-full` puts it, `/etc/passwd` with root) and imports it
    /// as `image` (e.g. [`BUSYBOX_IMAGE`]), with `PATH` set and `sh` as CMD.
    pub fn import_busybox(&self, image: &str) -> Result<(), PodmanError> {
        let root = self.dir.join("busybox-rootfs");
        build_busybox_rootfs(&root)?;
        let tarball = self.dir.join("busybox-rootfs.tar");
        let mut tar = Command::new("tar");
        tar.args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
            .arg(&root)
            .arg("-cf")
            .arg(&tarball)
            .arg(".");
        output_within(tar, COMMAND_WITHIN)?;
        let tarball_arg = tarball.to_string_lossy();
        self.podman(&[
            "import",
            "--change",
            r#"CMD ["/bin/sh"]"#,
            "--change",
            "ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            &tarball_arg,
            image,
        ])?;
        let _ = std::fs::remove_file(&tarball);
        let _ = std::fs::remove_dir_all(&root);
        Ok(())
    }

    /// Writes `config` as `<cni config dir>/<name>.conflist`; podman knows
    /// the network by the `"name"` inside. Returns the file's path.
    pub fn write_conflist(&self, name: &str, config: &Value) -> Result<PathBuf, PodmanError> {
        if self.backend == Backend::Netavark {
            return Err(PodmanError::Invalid(format!(
                "conflist {name:?}: this harness runs netavark, which reads no conflists \
                 (make its networks with `podman network create`)"
            )));
        }
        let plain = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
        if name.is_empty() || name.starts_with('.') || !name.chars().all(plain) {
            return Err(PodmanError::Invalid(format!(
                "conflist name {name:?} is not a plain file name ([A-Za-z0-9._-], no leading dot)"
            )));
        }
        let text = serde_json::to_string_pretty(config).expect("a JSON value serialises");
        self.write(&format!("cni/net.d/{name}.conflist"), &text)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let mut problems = Vec::new();
        if self.mnt_ns.is_some() {
            // The ordinary way first: stops containers, tears down their
            // networks with the CNI plugins or netavark, unmounts, removes.
            let rm = ["rm", "--all", "--force", "--time", "0"];
            if let Err(e) = output_within(self.command(&rm), Duration::from_secs(30)) {
                problems.push(e.to_string());
            }
        }
        self.remains().undo(&self.dir, &mut problems);
        report_remains(&self.dir, &problems);
        // Last: a signal meanwhile has [`remove_own_harnesses`] undo it too.
        live().remove(&self.dir);
    }
}

/// What a harness leaves outside its directory until it is undone: the
/// mount namespace (its holder process) and the cgroup parent.
#[derive(Clone, Debug)]
struct Remains {
    mnt_ns: Option<MountNs>,
    cgroup_parent: String,
}

/// The harness's mount namespace, held by a process of its own (`unshare
/// --mount --propagation slave sleep infinity`, a child of this process):
/// commands enter it with `nsenter -t <holder> --mount --root --wd`, which
/// takes the holder's root directory along. (A namespace bound to a file
/// and entered with `--mount=<file>` would put them at the namespace's
/// root mount instead — outside the chroot, when the tests run in one.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MountNs {
    /// The holder's pid.
    pub holder: u32,
    /// The namespace's inode (`/proc/<pid>/ns/mnt`).
    pub inode: u64,
}

impl MountNs {
    fn nsenter_args(&self) -> [String; 5] {
        [
            "-t".into(),
            self.holder.to_string(),
            "--mount".into(),
            "--root".into(),
            "--wd".into(),
        ]
    }
}

impl Remains {
    /// Unbinds the mount namespace (so no new `nsenter` gets in: a thread of
    /// the process may still be starting podman), kills what is left in it,
    /// then removes runc's state, the cgroups, netns placeholders and `dir`;
    /// collects what failed.
    fn undo(&self, dir: &Path, problems: &mut Vec<String>) {
        let ns_netns = match self.mnt_ns {
            Some(m) => teardown::podman_netns_mounts(m),
            None => Vec::new(),
        };
        if let Some(m) = self.mnt_ns {
            teardown::remove_mount_ns(m, problems);
        }
        teardown::kill_leftovers(self.mnt_ns.map(|m| m.inode), &self.cgroup_parent, problems);
        teardown::delete_runc_state(&self.cgroup_parent, problems);
        teardown::remove_cgroups(&self.cgroup_parent, problems);
        teardown::remove_placeholders(&ns_netns, problems);
        if let Err(e) = std::fs::remove_dir_all(dir) {
            problems.push(format!("remove {}: {e}", dir.display()));
        }
    }
}

fn report_remains(dir: &Path, problems: &[String]) {
    if !problems.is_empty() {
        eprintln!(
            "testlab: podman harness {} left something behind:\n  {}",
            dir.display(),
            problems.join("\n  ")
        );
    }
}

/// The harnesses of this process that no drop has undone yet, by directory.
static LIVE: Mutex<BTreeMap<PathBuf, Remains>> = Mutex::new(BTreeMap::new());

fn live() -> MutexGuard<'static, BTreeMap<PathBuf, Remains>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Undoes every harness of this process that is still there, the hard way
/// (no `podman rm`: its processes are SIGKILLed, then everything `Drop`
/// removes is removed); how many there were. For a process stopped by a
/// signal, whose [`Podman`] values are never dropped (`trellis-bench` calls
/// it from its signal thread before [`crate::remove_own_namespaces`], then
/// exits). The list stays locked throughout and after, so a thread dropping
/// a harness meanwhile waits instead of racing the removal.
pub fn remove_own_harnesses() -> usize {
    let mut live = live();
    let n = live.len();
    for (dir, remains) in std::mem::take(&mut *live) {
        let mut problems = Vec::new();
        remains.undo(&dir, &mut problems);
        report_remains(&dir, &problems);
    }
    // Held until the process exits.
    std::mem::forget(live);
    n
}

/// The live (not zombie) `conmon` processes whose command line mentions
/// `dir`: after a harness with that [`Podman::dir`] is dropped, none.
pub fn conmon_processes_of(dir: &Path) -> Vec<u32> {
    let dir = dir.to_string_lossy().into_owned();
    teardown::pids()
        .filter(|&pid| teardown::is_alive(pid))
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            let program = cmdline.split('\0').next().unwrap_or("");
            program.rsplit('/').next() == Some("conmon") && cmdline.contains(&dir)
        })
        .collect()
}

/// Whether `backend` can run here: a CNI plugin directory that exists, or
/// an installed netavark and a temporary directory outside `/run` (which
/// the netavark harness covers).
fn check_backend(backend: &Backend) -> Result<(), PodmanError> {
    match backend {
        Backend::Cni(plugin_dir) if !plugin_dir.is_absolute() || !plugin_dir.is_dir() => {
            Err(PodmanError::Invalid(format!(
                "CNI plugin directory {} is not an absolute path to a directory",
                plugin_dir.display()
            )))
        }
        Backend::Cni(_) => Ok(()),
        Backend::Netavark => {
            if !NETAVARK_CANDIDATES.iter().any(|p| Path::new(p).is_file()) {
                return Err(PodmanError::Invalid(format!(
                    "netavark is not installed (none of {NETAVARK_CANDIDATES:?}; Debian package \
                     netavark)"
                )));
            }
            let tmp = std::env::temp_dir();
            if tmp.starts_with("/run") {
                return Err(PodmanError::Invalid(format!(
                    "a netavark harness covers /run in its mount namespace, so its directory \
                     cannot be under it (TMPDIR is {})",
                    tmp.display()
                )));
            }
            Ok(())
        }
    }
}

/// containers.conf for a harness in `dir`.
fn containers_conf(dir: &Path, backend: &Backend) -> String {
    let q = |sub: &str| quote(&dir.join(sub));
    let network = match backend {
        Backend::Cni(plugin_dir) => {
            let mut dirs = vec![quote(plugin_dir)];
            if plugin_dir != Path::new(SYSTEM_CNI_DIR) {
                dirs.push(quote(Path::new(SYSTEM_CNI_DIR)));
            }
            format!(
                "network_backend = \"cni\"\ncni_plugin_dirs = [{}]\nnetwork_config_dir = {}",
                dirs.join(", "),
                q("cni/net.d")
            )
        }
        Backend::Netavark => format!(
            "network_backend = \"netavark\"\nnetwork_config_dir = {}",
            q("netavark/networks")
        ),
    };
    format!(
        r#"# Written by trellis_testlab::podman for one test harness.
[containers]
cgroups = "no-conmon"
netns = "none"
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[network]
{network}

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = {events}
lock_type = "file"
tmp_dir = {tmp_dir}
static_dir = {static_dir}
volume_path = {volumes}
image_copy_tmp_dir = {tmp}
hooks_dir = []
"#,
        events = q("events.log"),
        tmp_dir = q("libpod"),
        static_dir = q("storage/libpod"),
        volumes = q("storage/volumes"),
        tmp = q("tmp"),
    )
}

/// storage.conf for a harness in `dir`.
fn storage_conf(dir: &Path) -> String {
    format!(
        "[storage]\ndriver = \"vfs\"\ngraphroot = {}\nrunroot = {}\n",
        quote(&dir.join("storage")),
        quote(&dir.join("run"))
    )
}

/// `path` as a TOML basic string.
fn quote(path: &Path) -> String {
    let s = path.to_string_lossy();
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn build_busybox_rootfs(root: &Path) -> Result<(), PodmanError> {
    mkdirs(root, &ROOTFS_DIRS)?;
    for sticky in ["tmp", "var/tmp"] {
        let path = root.join(sticky);
        let mode = std::fs::Permissions::from_mode(0o1777);
        io(std::fs::set_permissions(&path, mode), || {
            format!("chmod {}", path.display())
        })?;
    }
    io(std::fs::copy(BUSYBOX, root.join("bin/busybox")), || {
        format!("copy {BUSYBOX} (package busybox-static)")
    })?;
    let mut list = Command::new(BUSYBOX);
    list.arg("--list-full");
    // Relative paths ("usr/bin/wget"), each linked to the absolute
    // `/bin/busybox`, which resolves inside the container's root.
    for applet in output_within(list, COMMAND_WITHIN)?.stdout.lines() {
        if applet == "bin/busybox" || applet.is_empty() || applet.contains("..") {
            continue;
        }
        let link = root.join(applet);
        io(std::os::unix::fs::symlink("/bin/busybox", &link), || {
            format!("link {}", link.display())
        })?;
    }
    write_file(&root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    write_file(&root.join("etc/group"), "root:x:0:\n")
}

fn mkdirs(root: &Path, subs: &[&str]) -> Result<(), PodmanError> {
    for sub in subs {
        let path = root.join(sub);
        io(std::fs::create_dir_all(&path), || {
            format!("create {}", path.display())
        })?;
    }
    Ok(())
}

fn write_file(path: &Path, text: &str) -> Result<(), PodmanError> {
    io(std::fs::write(path, text), || {
        format!("write {}", path.display())
    })
}

fn io<T>(r: std::io::Result<T>, what: impl FnOnce() -> String) -> Result<T, PodmanError> {
    r.map_err(|source| PodmanError::Io {
        what: what(),
        source,
    })
}

/// Runs `cmd` (stdin closed) until it exits or `within` passes, when it is
/// killed; `Ok` only if it exited 0. Output is collected on two threads,
/// waited for at most a second after the exit: a daemon it started that
/// keeps the pipes open must not hang the caller.
fn output_within(mut cmd: Command, within: Duration) -> Result<PodmanOutput, PodmanError> {
    let command = format!("{cmd:?}");
    let mut child = io(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn(),
        || format!("run {command}"),
    )?;
    let (tx, rx) = mpsc::channel();
    collect(child.stdout.take().expect("piped"), 0, tx.clone());
    collect(child.stderr.take().expect("piped"), 1, tx);
    let deadline = Instant::now() + within;
    let mut nap = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(PodmanError::Timeout {
                    command,
                    after: within,
                });
            }
            Ok(None) => std::thread::sleep(nap),
            Err(e) => return io(Err(e), || format!("wait for {command}")),
        }
        nap = (nap * 2).min(Duration::from_millis(20));
    };
    let mut texts = [String::new(), String::new()];
    for _ in 0..2 {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok((i, text)) => texts[i] = text,
            Err(_) => break,
        }
    }
    let [stdout, stderr] = texts;
    if status.success() {
        Ok(PodmanOutput { stdout, stderr })
    } else {
        Err(PodmanError::Failed {
            command,
            status,
            stdout,
            stderr,
        })
    }
}

/// Reads `reader` to its end on a thread of its own and sends the text,
/// tagged `i`.
fn collect(mut reader: impl Read + Send + 'static, i: usize, tx: mpsc::Sender<(usize, String)>) {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = reader.read_to_end(&mut buf);
        let _ = tx.send((i, String::from_utf8_lossy(&buf).into_owned()));
    });
}

/// Making and unmaking what lives outside the harness's directory: the
/// mount namespace, leftover processes, cgroups, netns placeholder files.
mod teardown {
    use super::{PodmanError, io, output_within};
    use nix::errno::Errno;
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    use std::collections::BTreeSet;
    use std::os::unix::fs::MetadataExt;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::{Duration, Instant};

    /// How long killed processes may take to go.
    const GONE_WITHIN: Duration = Duration::from_secs(5);

    fn run(cmd: Command) -> Result<(), PodmanError> {
        output_within(cmd, super::COMMAND_WITHIN).map(drop)
    }

    /// Creates the harness's mount namespace, held by a process of its own
    /// (see [`super::MountNs`]), with `<dir>/var-lib` over `/var/lib`.
    pub(super) fn make_mount_ns(dir: &Path) -> Result<super::MountNs, PodmanError> {
        let ours = std::fs::read_link("/proc/self/ns/mnt").ok();
        let child = io(
            Command::new("unshare")
                .args([
                    "--mount",
                    "--propagation",
                    "slave",
                    "--",
                    "sleep",
                    "infinity",
                ])
                .current_dir(dir)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn(),
            || "spawn unshare --mount".to_owned(),
        )?;
        let holder = child.id();
        // unshare execs sleep once the namespace is made.
        let deadline = Instant::now() + GONE_WITHIN;
        let inode = loop {
            let link = std::fs::read_link(format!("/proc/{holder}/ns/mnt")).ok();
            let exe = std::fs::read_link(format!("/proc/{holder}/exe")).ok();
            if link.is_some() && link != ours && exe.is_some_and(|e| e.ends_with("sleep")) {
                let meta = io(std::fs::metadata(format!("/proc/{holder}/ns/mnt")), || {
                    format!("stat /proc/{holder}/ns/mnt")
                })?;
                break meta.ino();
            }
            if Instant::now() >= deadline {
                let _ = kill(Pid::from_raw(holder as i32), Signal::SIGKILL);
                return Err(PodmanError::Invalid(
                    "unshare --mount made no mount namespace within 5 s".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        // The holder is reaped when it is killed (remove_mount_ns).
        std::mem::forget(child);
        let ns = super::MountNs { holder, inode };
        let mut var_lib = Command::new("nsenter");
        var_lib
            .args(ns.nsenter_args())
            .args(["mount", "--bind"])
            .arg(dir.join("var-lib"))
            .arg("/var/lib");
        if let Err(e) = run(var_lib) {
            remove_mount_ns(ns, &mut Vec::new());
            return Err(e);
        }
        Ok(ns)
    }

    /// Run by `sh -ec COVER_RUN sh <holder> <run>` in the harness's mount
    /// namespace: the machine's `/run` is held at `<holder>`, `<run>` is
    /// bound over `/run`, and every entry of the machine's `/run` is put
    /// back (directories bound recursively, with what is mounted under them;
    /// files and sockets bound; symlinks copied). New mounts here are
    /// slaves of the machine's (the namespace's propagation), so namespaces
    /// added under `/run/netns` later still show up. Commands are one per
    /// line: `set -e` does not stop at a failed command inside `a && b`.
    const COVER_RUN: &str = r#"
holder=$1
run=$2
mount --rbind /run "$holder"
mount --bind "$run" /run
for src in "$holder"/* "$holder"/.[!.]*; do
    [ -e "$src" ] || [ -L "$src" ] || continue
    dst=/run/${src##*/}
    if [ -L "$src" ]; then
        cp -P "$src" "$dst"
    elif [ -d "$src" ]; then
        mkdir -p "$dst"
        mount --rbind "$src" "$dst"
    else
        : > "$dst"
        mount --bind "$src" "$dst"
    fi
done
"#;

    /// Makes the harness's `netavark/run` the `/run` of its mount namespace,
    /// with the machine's `/run` bound back into it (see the module docs:
    /// podman's netavark backend keeps its state in
    /// `/run/containers/networks`, which then lands in the harness's
    /// directory). Entries the machine adds to `/run` later do not show.
    pub(super) fn cover_run(dir: &Path, ns: super::MountNs) -> Result<(), PodmanError> {
        let mut cover = Command::new("nsenter");
        cover
            .args(ns.nsenter_args())
            .args(["sh", "-ec", COVER_RUN, "sh"])
            .arg(dir.join("netavark/host-run"))
            .arg(dir.join("netavark/run"));
        run(cover)
    }

    /// Kills the namespace's holder (and reaps it), so that no new
    /// `nsenter` gets in: the namespace goes with its last process.
    pub(super) fn remove_mount_ns(ns: super::MountNs, problems: &mut Vec<String>) {
        let pid = Pid::from_raw(ns.holder as i32);
        match kill(pid, Signal::SIGKILL) {
            Ok(()) => {
                let _ = nix::sys::wait::waitpid(pid, None);
            }
            Err(Errno::ESRCH) => {}
            Err(e) => problems.push(format!("kill the mount namespace's holder {pid}: {e}")),
        }
    }

    /// Netns podman still has mounted under `/run/netns` in the harness's
    /// mount namespace: their (empty) placeholder files are on the host.
    pub(super) fn podman_netns_mounts(ns: super::MountNs) -> Vec<PathBuf> {
        let mut cmd = Command::new("nsenter");
        cmd.args(ns.nsenter_args())
            .args(["cat", "/proc/self/mountinfo"]);
        let Ok(out) = output_within(cmd, Duration::from_secs(10)) else {
            return Vec::new();
        };
        mount_points(&out.stdout)
            .filter(|p| p.starts_with("/run/netns/netns-"))
            .map(PathBuf::from)
            .collect()
    }

    /// Removes the placeholder files of `netns` unless the host mounts them.
    pub(super) fn remove_placeholders(netns: &[PathBuf], problems: &mut Vec<String>) {
        let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mounted: BTreeSet<&str> = mount_points(&host).collect();
        for path in netns {
            if mounted.contains(path.to_string_lossy().as_ref()) {
                continue;
            }
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    problems.push(format!("remove {}: {e}", path.display()))
                }
                _ => {}
            }
        }
    }

    /// SIGKILLs the processes of the mount namespace with inode `mnt_ns`
    /// (conmon, podman) and of the cgroup `parent` (containers) until none
    /// is left: looked for again after every round, so that what a dying
    /// podman forked meanwhile, or a podman another thread of the process
    /// was starting, goes too.
    pub(super) fn kill_leftovers(mnt_ns: Option<u64>, parent: &str, problems: &mut Vec<String>) {
        let deadline = Instant::now() + GONE_WITHIN;
        loop {
            let victims = processes_of(mnt_ns, parent);
            if victims.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                problems.push(format!("processes {victims:?} survived SIGKILL"));
                return;
            }
            for &pid in &victims {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The live processes of the mount namespace with inode `mnt_ns` and
    /// of the cgroup `parent`.
    fn processes_of(mnt_ns: Option<u64>, parent: &str) -> BTreeSet<u32> {
        let mut found = BTreeSet::new();
        for cgroup in cgroup_dirs(parent) {
            for dir in std::iter::once(cgroup.clone()).chain(subdirs(&cgroup)) {
                let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                found.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
            }
        }
        if let Some(ino) = mnt_ns {
            let ours = format!("mnt:[{ino}]");
            found.extend(pids().filter(|pid| {
                std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
                    .is_ok_and(|l| l.to_string_lossy() == ours)
            }));
        }
        found.retain(|&pid| is_alive(pid));
        found
    }

    /// Has runc forget the containers of the cgroup `parent` that podman
    /// did not remove (their `/run/runc/<id>`): their processes are gone.
    pub(super) fn delete_runc_state(parent: &str, problems: &mut Vec<String>) {
        let ids: BTreeSet<String> = cgroup_dirs(parent)
            .iter()
            .flat_map(|cgroup| subdirs(cgroup))
            .filter_map(|d| Some(d.file_name()?.to_str()?.strip_prefix("libpod-")?.to_owned()))
            .filter(|id| Path::new("/run/runc").join(id).exists())
            .collect();
        for id in ids {
            let mut delete = Command::new("runc");
            delete.args(["delete", "--force", &id]);
            if let Err(e) = run(delete) {
                problems.push(e.to_string());
            }
        }
    }

    /// Removes the cgroup `parent` and its children in every hierarchy.
    pub(super) fn remove_cgroups(parent: &str, problems: &mut Vec<String>) {
        for cgroup in cgroup_dirs(parent) {
            for dir in subdirs(&cgroup).chain(std::iter::once(cgroup.clone())) {
                match std::fs::remove_dir(&dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        problems.push(format!("rmdir {}: {e}", dir.display()))
                    }
                    _ => {}
                }
            }
        }
    }

    /// `parent` in each mounted cgroup hierarchy where it exists.
    fn cgroup_dirs(parent: &str) -> Vec<PathBuf> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut seen = BTreeSet::new();
        mountinfo
            .lines()
            .filter(|l| {
                let fstype = l.split(" - ").nth(1).and_then(|r| r.split(' ').next());
                matches!(fstype, Some("cgroup" | "cgroup2"))
            })
            .filter_map(|l| l.split(' ').nth(4))
            .map(|m| Path::new(m).join(parent.trim_start_matches('/')))
            // A hierarchy mounted twice is one directory, seen once.
            .filter(|d| {
                std::fs::metadata(d).is_ok_and(|m| m.is_dir() && seen.insert((m.dev(), m.ino())))
            })
            .collect()
    }

    fn subdirs(dir: &Path) -> impl Iterator<Item = PathBuf> {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
    }

    /// The mount points (fifth field) of a mountinfo text.
    fn mount_points(mountinfo: &str) -> impl Iterator<Item = &str> {
        mountinfo.lines().filter_map(|l| l.split(' ').nth(4))
    }

    /// Every process id in /proc.
    pub(super) fn pids() -> impl Iterator<Item = u32> {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
    }

    /// Whether `pid` exists and is not a zombie (which only its parent, or
    /// init, can reap).
    pub(super) fn is_alive(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit_once(')').is_some_and(|(_, rest)| {
                !matches!(rest.trim_start().bytes().next(), Some(b'Z' | b'X'))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_conf_keeps_everything_in_the_harness_directory() {
        let conf = containers_conf(Path::new("/tmp/h"), &Backend::Cni("/opt/cni".into()));
        for line in [
            r#"cni_plugin_dirs = ["/opt/cni", "/usr/lib/cni"]"#,
            r#"network_config_dir = "/tmp/h/cni/net.d""#,
            r#"events_logfile_path = "/tmp/h/events.log""#,
            r#"tmp_dir = "/tmp/h/libpod""#,
            r#"static_dir = "/tmp/h/storage/libpod""#,
            r#"volume_path = "/tmp/h/storage/volumes""#,
            r#"image_copy_tmp_dir = "/tmp/h/tmp""#,
            r#"lock_type = "file""#,
            r#"runtime = "runc""#,
        ] {
            assert!(conf.lines().any(|l| l == line), "{line} missing in\n{conf}");
        }
        assert_eq!(
            storage_conf(Path::new("/tmp/h")),
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"/tmp/h/storage\"\nrunroot = \"/tmp/h/run\"\n"
        );
    }

    #[test]
    fn a_netavark_harness_keeps_its_networks_in_its_directory_and_names_no_cni() {
        let conf = containers_conf(Path::new("/tmp/h"), &Backend::Netavark);
        for line in [
            r#"network_backend = "netavark""#,
            r#"network_config_dir = "/tmp/h/netavark/networks""#,
            r#"tmp_dir = "/tmp/h/libpod""#,
        ] {
            assert!(conf.lines().any(|l| l == line), "{line} missing in\n{conf}");
        }
        assert!(!conf.contains("cni"), "{conf}");
        let cni = containers_conf(Path::new("/tmp/h"), &Backend::Cni(SYSTEM_CNI_DIR.into()));
        assert!(
            cni.lines()
                .any(|l| l == r#"cni_plugin_dirs = ["/usr/lib/cni"]"#),
            "{cni}"
        );
        assert_eq!(
            (
                Backend::Netavark.name(),
                Backend::Cni(SYSTEM_CNI_DIR.into()).name()
            ),
            ("netavark", "cni")
        );
    }

    #[test]
    fn paths_are_quoted_as_toml_strings() {
        assert_eq!(quote(Path::new(r#"/a "b"\c"#)), r#""/a \"b\"\\c""#);
    }

    #[test]
    fn a_failed_command_names_itself_and_shows_stderr() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo oops >&2; exit 3"]);
        let err = output_within(cmd, COMMAND_WITHIN).unwrap_err().to_string();
        assert!(
            err.contains("\"sh\"") && err.contains("stderr: oops"),
            "{err}"
        );
        let mut slow = Command::new("sleep");
        slow.arg("5");
        let err = output_within(slow, Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, PodmanError::Timeout { .. }), "{err}");
    }
}
