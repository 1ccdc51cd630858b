//! Podman 4.3 (CNI backend, runc) run by a test inside a network namespace the
//! test made, with all of its state in one temporary directory per
//! [`Podman`] harness: for tests of CNI plugins and of what containers see.
//!
//! # Design decisions
//!
//! - **Inside the test's namespace, never the machine's.** Every command is
//!   `nsenter --net=/run/netns/<host> --mount=<dir>/mntns/mnt podman …`. It is
//!   `nsenter`, not `ip netns exec`: the latter remounts `/sys`, which hides
//!   the cgroup mounts runc needs. Bridges, host-side veths and the
//!   iptables rules of CNI plugins all land in the test's namespace.
//! - **All state in the harness's directory** (`$TMPDIR/trellis-pm…`):
//!   `containers.conf` and `storage.conf` (named by `CONTAINERS_CONF` and
//!   `CONTAINERS_STORAGE_CONF`), an empty `registries.conf`, graph root and
//!   run root (vfs driver), libpod's tmp dir with file locks (not the shared
//!   `/dev/shm/libpod_lock`), the event log, image-copy temp files and the CNI
//!   config dir. [`Podman::command`] also passes the main paths as flags, so
//!   they show in `ps` and in the cleanup command conmon runs.
//! - **A mount namespace of its own** for what podman 4.3 cannot be told to
//!   put elsewhere: libcni's result cache (`/var/lib/cni/results`), the
//!   `host-local` IPAM default `dataDir` (`/var/lib/cni/networks`) and the
//!   blob-info cache of `podman import` (`/var/lib/containers/cache`). In it
//!   `/var/lib` is the harness's `var-lib` directory, for podman, conmon and
//!   every CNI plugin. Its propagation is *slave*: namespaces that tests add
//!   under `/run/netns` later still show up in it, while podman's own mounts
//!   (container netns, `/dev/shm` of containers) stay in it and vanish with it.
//! - **Own cgroups.** `cgroups = "no-conmon"` keeps conmon in the test's
//!   cgroup, and [`Podman::run`] puts containers under a cgroup parent named
//!   after the harness, which `Drop` finds, empties and removes.
//! - **Nothing outlives the harness.** `Drop` runs `podman rm -af -t 0`,
//!   SIGKILLs what is left (processes in the mount namespace: conmon, podman;
//!   processes in the cgroup parent: containers), removes the cgroups, the
//!   mount namespace and the directory, and reports (does not panic) what it
//!   could not undo. The host namespace itself belongs to the test's
//!   [`crate::Netns`].
//!
//! # What podman 4.3.1 taught us (Debian 12, runc 1.1.5, CNI plugins 1.1.1)
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
//! - `--log-level debug` makes conmon log to syslog, and `podman run` then
//!   waits 20 s for the exit ("Exceeded conmon timeout").
//! - The `nofile`/`nproc` limits cannot be raised here: `default_ulimits`
//!   sets both to 1024:1024 for every container.

use serde_json::Value;
use std::fmt;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
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
/// The harness's directories (see [`containers_conf`]); `mntns` holds the
/// mount namespace's file.
const HARNESS_DIRS: [&str; 7] = [
    "cni/net.d",
    "storage",
    "run",
    "libpod",
    "tmp",
    "var-lib",
    "mntns",
];
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
    /// `/trellis-pm…`: the cgroup parent of the harness's containers.
    cgroup_parent: String,
    /// The inode of the harness's mount namespace, once it exists.
    mnt_ns: Option<u64>,
}

impl Podman {
    /// A harness whose containers attach to networks inside the namespace
    /// `/run/netns/<host_netns_name>`, using CNI plugins from `cni_bin_dir`
    /// first and then from `/usr/lib/cni`. Panics without root, as
    /// [`crate::require_root`] does.
    pub fn new(host_netns_name: &str, cni_bin_dir: &Path) -> Result<Podman, PodmanError> {
        crate::require_root();
        let netns = Path::new("/run/netns").join(host_netns_name);
        if host_netns_name.contains('/') || !netns.exists() {
            return Err(PodmanError::Invalid(format!(
                "network namespace {host_netns_name:?} does not exist (no {})",
                netns.display()
            )));
        }
        if !cni_bin_dir.is_absolute() || !cni_bin_dir.is_dir() {
            return Err(PodmanError::Invalid(format!(
                "CNI plugin directory {} is not an absolute path to a directory",
                cni_bin_dir.display()
            )));
        }
        let name = crate::unique_name("pm");
        let dir = std::env::temp_dir().join(format!("trellis-{name}"));
        io(std::fs::create_dir(&dir), || {
            format!("create {}", dir.display())
        })?;
        // From here on `Drop` undoes whatever the setup got to.
        let mut podman = Podman {
            dir,
            netns,
            cgroup_parent: format!("/trellis-{name}"),
            mnt_ns: None,
        };
        podman.write_config(cni_bin_dir)?;
        podman.mnt_ns = Some(teardown::make_mount_ns(&podman.dir)?);
        Ok(podman)
    }

    fn write_config(&self, cni_bin_dir: &Path) -> Result<(), PodmanError> {
        mkdirs(&self.dir, &HARNESS_DIRS)?;
        let mut plugin_dirs = vec![cni_bin_dir.to_path_buf()];
        if cni_bin_dir != Path::new(SYSTEM_CNI_DIR) {
            plugin_dirs.push(SYSTEM_CNI_DIR.into());
        }
        self.write("containers.conf", &containers_conf(&self.dir, &plugin_dirs))?;
        self.write("storage.conf", &storage_conf(&self.dir))?;
        self.write("registries.conf", "unqualified-search-registries = []\n")?;
        Ok(())
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
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.netns.display()))
            .arg(format!("--mount={}", self.dir.join("mntns/mnt").display()))
            .arg("--")
            .arg(program);
        cmd
    }

    /// `podman <args>` inside the host namespace and the harness's mount
    /// namespace, with the harness's configuration, ready to be spawned.
    pub fn command(&self, args: &[&str]) -> Command {
        let d = |sub: &str| self.dir.join(sub);
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.netns.display()))
            .arg(format!("--mount={}", d("mntns/mnt").display()))
            .args(["--", "podman", "--root"])
            .arg(d("storage"))
            .arg("--runroot")
            .arg(d("run"))
            .arg("--tmpdir")
            .arg(d("libpod"))
            .arg("--network-config-dir")
            .arg(d("cni/net.d"))
            .args(["--network-backend", "cni", "--storage-driver", "vfs"])
            .args(["--cgroup-manager", "cgroupfs", "--runtime", "runc"])
            .args(["--events-backend", "file"])
            .args(args)
            .env("CONTAINERS_CONF", d("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", d("storage.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", d("registries.conf"))
            .env("TMPDIR", d("tmp"))
            .env_remove("CONTAINER_HOST")
            .env_remove("CONTAINER_CONNECTION");
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
        let ns_netns = match self.mnt_ns {
            Some(_) => {
                // The ordinary way first: stops containers, tears down their
                // networks with the CNI plugins, unmounts, removes.
                let rm = ["rm", "--all", "--force", "--time", "0"];
                if let Err(e) = output_within(self.command(&rm), Duration::from_secs(30)) {
                    problems.push(e.to_string());
                }
                teardown::podman_netns_mounts(&self.dir)
            }
            None => Vec::new(),
        };
        teardown::kill_leftovers(self.mnt_ns, &self.cgroup_parent, &mut problems);
        teardown::delete_runc_state(&self.cgroup_parent, &mut problems);
        teardown::remove_cgroups(&self.cgroup_parent, &mut problems);
        teardown::remove_mount_ns(&self.dir, &mut problems);
        teardown::remove_placeholders(&ns_netns, &mut problems);
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            problems.push(format!("remove {}: {e}", self.dir.display()));
        }
        if !problems.is_empty() {
            eprintln!(
                "testlab: podman harness {} left something behind:\n  {}",
                self.dir.display(),
                problems.join("\n  ")
            );
        }
    }
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

/// containers.conf for a harness in `dir`.
fn containers_conf(dir: &Path, plugin_dirs: &[PathBuf]) -> String {
    let q = |sub: &str| quote(&dir.join(sub));
    let plugins: Vec<String> = plugin_dirs.iter().map(|p| quote(p)).collect();
    format!(
        r#"# Written by trellis_testlab::podman for one test harness.
[containers]
cgroups = "no-conmon"
netns = "none"
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[network]
network_backend = "cni"
cni_plugin_dirs = [{plugins}]
network_config_dir = {net_d}

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
        plugins = plugins.join(", "),
        net_d = q("cni/net.d"),
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
    use nix::mount::{MntFlags, umount2};
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

    /// Creates the harness's mount namespace, bound at `<dir>/mntns/mnt`,
    /// with `<dir>/var-lib` over `/var/lib`; returns its inode.
    pub(super) fn make_mount_ns(dir: &Path) -> Result<u64, PodmanError> {
        let holder = dir.join("mntns");
        let file = holder.join("mnt");
        // The kernel binds a namespace file only onto a mount that does not
        // propagate (no loops): a private bind of the directory on itself.
        let mut bind = Command::new("mount");
        bind.arg("--bind").arg(&holder).arg(&holder);
        run(bind)?;
        let mut private = Command::new("mount");
        private.arg("--make-private").arg(&holder);
        run(private)?;
        io(std::fs::File::create(&file), || {
            format!("create {}", file.display())
        })?;
        let mut unshare = Command::new("unshare");
        unshare
            .arg(format!("--mount={}", file.display()))
            .args(["--propagation", "slave", "true"]);
        run(unshare)?;
        let mut var_lib = Command::new("nsenter");
        var_lib
            .arg(format!("--mount={}", file.display()))
            .args(["mount", "--bind"])
            .arg(dir.join("var-lib"))
            .arg("/var/lib");
        run(var_lib)?;
        io(std::fs::metadata(&file), || {
            format!("stat {}", file.display())
        })
        .map(|m| m.ino())
    }

    /// Unbinds the mount namespace: it goes with its last process.
    pub(super) fn remove_mount_ns(dir: &Path, problems: &mut Vec<String>) {
        let holder = dir.join("mntns");
        for path in [holder.join("mnt"), holder] {
            match umount2(&path, MntFlags::MNT_DETACH) {
                // Not (or no longer) a mount point: nothing to undo.
                Ok(()) | Err(Errno::EINVAL | Errno::ENOENT) => {}
                Err(e) => problems.push(format!("umount {}: {e}", path.display())),
            }
        }
    }

    /// Netns podman still has mounted under `/run/netns` in the harness's
    /// mount namespace: their (empty) placeholder files are on the host.
    pub(super) fn podman_netns_mounts(dir: &Path) -> Vec<PathBuf> {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--mount={}", dir.join("mntns/mnt").display()))
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
    /// (conmon, podman) and of the cgroup `parent` (containers), and waits
    /// until they are gone.
    pub(super) fn kill_leftovers(mnt_ns: Option<u64>, parent: &str, problems: &mut Vec<String>) {
        let mut victims = BTreeSet::new();
        for cgroup in cgroup_dirs(parent) {
            for dir in std::iter::once(cgroup.clone()).chain(subdirs(&cgroup)) {
                let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                victims.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
            }
        }
        if let Some(ino) = mnt_ns {
            let ours = format!("mnt:[{ino}]");
            victims.extend(pids().filter(|pid| {
                std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
                    .is_ok_and(|l| l.to_string_lossy() == ours)
            }));
        }
        victims.retain(|&pid| is_alive(pid));
        for &pid in &victims {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        let deadline = Instant::now() + GONE_WITHIN;
        while !victims.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            victims.retain(|&pid| is_alive(pid));
        }
        if !victims.is_empty() {
            problems.push(format!("processes {victims:?} survived SIGKILL"));
        }
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
        let conf = containers_conf(
            Path::new("/tmp/h"),
            &["/opt/cni".into(), SYSTEM_CNI_DIR.into()],
        );
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
