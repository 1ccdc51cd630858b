//! trellis-controller and trellisd as processes, each in the namespace of
//! its lab machine, stopped and waited for when dropped.
//!
//! Each daemon runs in a process group of its own, so a Ctrl-C at the
//! terminal reaches the lab alone: the lab then stops the daemons in order
//! (nodes before their controller) instead of racing them.

use anyhow::{Context, Result, bail, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use trellis_testlab::Netns;

/// How long a daemon gets to answer on its socket after it is started.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// How long a daemon gets to exit after SIGTERM before it is killed.
const EXIT_WITHIN: Duration = Duration::from_secs(5);

/// The daemon binaries the lab runs.
pub struct Binaries {
    /// trellisd.
    pub trellisd: PathBuf,
    /// trellis-controller.
    pub controller: PathBuf,
}

impl Binaries {
    /// The binaries `$TRELLISD_BIN` and `$TRELLIS_CONTROLLER_BIN`, else those
    /// beside this executable (the same cargo profile's build); an error
    /// saying how to build them if they are not there.
    pub fn find() -> Result<Self> {
        let exe = std::env::current_exe().context("the path of trellis-lab")?;
        let dir = exe.parent().context("the directory of trellis-lab")?;
        let release = if dir.ends_with("debug") {
            ""
        } else {
            " --release"
        };
        let build = format!("cargo build{release} -p trellisd -p trellis-controller");
        Ok(Binaries {
            trellisd: binary(dir, "TRELLISD_BIN", "trellisd", &build)?,
            controller: binary(dir, "TRELLIS_CONTROLLER_BIN", "trellis-controller", &build)?,
        })
    }
}

/// `$env`, else `dir/name`; either must be a file.
fn binary(dir: &Path, env: &str, name: &str, build: &str) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        ensure!(p.is_file(), "{env}={} is not a file", p.display());
        return Ok(p);
    }
    let p = dir.join(name);
    ensure!(
        p.is_file(),
        "no {name} beside trellis-lab (at {}): build the daemons first with `{build}`, \
         or name the binary in {env}",
        p.display()
    );
    Ok(p)
}

/// A daemon process in a lab namespace; SIGTERM, then SIGKILL, and waited
/// for on drop.
pub struct Daemon {
    /// A short name for messages: `ctl`, `h1`.
    pub name: String,
    child: Child,
    exited: bool,
    /// Its gRPC unix socket.
    pub socket: PathBuf,
    /// Its log (stdout and stderr).
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `bin args…` in `ns` with `ip netns exec`, logging to `log`.
    /// The caller waits for it with [`Daemon::ready`].
    pub fn spawn(
        name: &str,
        ns: &Netns,
        bin: &Path,
        args: &[String],
        socket: PathBuf,
        log: PathBuf,
    ) -> Result<Self> {
        let out = std::fs::File::create(&log)
            .with_context(|| format!("create the log {}", log.display()))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns.name()])
            .arg(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0);
        // The user's daemon settings must not leak into the lab's daemons.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("TRELLISD_") || key.starts_with("TRELLIS_CONTROLLER_") {
                cmd.env_remove(&*key);
            }
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("start {} in {}", bin.display(), ns.name()))?;
        Ok(Daemon {
            name: name.to_owned(),
            child,
            exited: false,
            socket,
            log,
        })
    }

    /// Waits until the daemon answers on its socket; fails with the end of
    /// its log if it exits first or takes longer than 30 s.
    pub async fn ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_WITHIN;
        while tokio::net::UnixStream::connect(&self.socket).await.is_err() {
            if let Some(status) = self.child.try_wait()? {
                self.exited = true;
                bail!(
                    "{} exited ({status}); its log:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not answering on {} after {READY_WITHIN:?}; its log:\n{}",
                    self.name,
                    self.socket.display(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// The last 30 lines of its log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Sends SIGTERM (no-op once it is known to have exited).
    pub fn terminate(&mut self) {
        if !self.exited {
            // `ip netns exec` execs the daemon: the child is the daemon.
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        }
    }

    /// Waits for the exit until `deadline`, then kills it and waits.
    pub fn reap(&mut self, deadline: Instant) {
        while !self.exited {
            match self.child.try_wait() {
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(None) => {
                    eprintln!("{} did not stop after SIGTERM: killing it", self.name);
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    self.exited = true;
                }
                Ok(Some(_)) | Err(_) => self.exited = true,
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.terminate();
        self.reap(Instant::now() + EXIT_WITHIN);
    }
}

/// Stops `daemons` together: SIGTERM to all, then waits for each (each
/// killed if not gone within 5 s).
pub fn stop_all(daemons: &mut [Daemon]) {
    for d in daemons.iter_mut() {
        d.terminate();
    }
    let deadline = Instant::now() + EXIT_WITHIN;
    for d in daemons {
        d.reap(deadline);
    }
}
