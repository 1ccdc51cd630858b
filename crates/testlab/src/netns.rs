//! A network namespace owned by a test.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call: `<prefix><pid base36><counter base36>`.
/// With a short prefix (≤ 4 bytes) it fits an interface name (15 bytes).
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}{}", names_of(prefix, std::process::id()), base36(n))
}

/// How every name [`unique_name`] gives process `pid` with `prefix` begins
/// (`<prefix><pid base36>x`): for a test that watches another process's
/// namespaces.
pub fn names_of(prefix: &str, pid: u32) -> String {
    format!("{prefix}{}x", base36(pid))
}

/// The namespaces [`Netns::new`] made in this process and no drop has
/// deleted yet.
static LIVE: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

fn live() -> std::sync::MutexGuard<'static, BTreeSet<String>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Deletes every namespace this process made with [`Netns::new`] that is
/// still there; how many were listed. For a process stopped by a signal,
/// whose [`Netns`] values are never dropped (`trellis-bench` calls it from
/// its signal thread, then exits). Only names this process made are
/// touched. The list stays locked throughout and after, so another thread
/// of the process making or dropping a namespace meanwhile waits (and a
/// main thread unwinding, or returning, waits at its first drop) instead of
/// racing the deletion or ending the process half-way.
pub fn remove_own_namespaces() -> usize {
    let mut live = live();
    let n = live.len();
    let script: String = live
        .iter()
        .map(|name| format!("netns del {name}\n"))
        .collect();
    let deleted = Command::new("ip")
        .args(["-force", "-batch", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .and_then(|mut ip| {
            use std::io::Write;
            ip.stdin
                .take()
                .expect("piped stdin")
                .write_all(script.as_bytes())?;
            ip.wait()
        });
    if let Err(e) = deleted {
        eprintln!("testlab: cannot run ip -batch to delete namespaces: {e}");
    }
    live.clear();
    // Held until the process exits.
    std::mem::forget(live);
    n
}

fn base36(mut n: u32) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

/// A named network namespace (`/run/netns/<name>`), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a fresh namespace whose name ends in `role` (for readable
    /// failures), with `lo` up. Calls [`crate::require_root`] first, so that a
    /// test building a namespace is held to the tiers even if it forgot to.
    pub fn new(role: &str) -> Self {
        crate::require_root();
        let name = format!("{}-{role}", unique_name("tl"));
        // Listed first: a namespace is never there unlisted (see
        // `remove_own_namespaces`).
        live().insert(name.clone());
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.ip("link set lo up");
        ns
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind-mounted path of the namespace.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    /// The path as a string, for APIs that take text.
    pub fn path_str(&self) -> String {
        self.path().to_string_lossy().into_owned()
    }

    /// Runs `ip -n <ns> <args>` (args split on whitespace) and returns stdout;
    /// panics with stderr if it fails.
    pub fn ip(&self, args: &str) -> String {
        let mut cmd = Command::new("ip");
        cmd.args(["-n", &self.name]).args(args.split_whitespace());
        run(&mut cmd)
    }

    /// Runs `ip netns exec <ns> <argv…>` and returns its output, success or not.
    pub fn exec(&self, argv: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(argv)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {argv:?} in {}: {e}", self.name))
    }

    /// Like [`Netns::exec`], but panics unless the command succeeds; returns stdout.
    pub fn exec_ok(&self, argv: &[&str]) -> String {
        let out = self.exec(argv);
        assert!(
            out.status.success(),
            "{argv:?} in netns {} failed: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Sets a sysctl inside the namespace (`net.ipv4.ip_forward`, …) by writing
    /// its /proc/sys file from a thread inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let value = value.to_owned();
        self.enter(move || {
            std::fs::write(&path, value).unwrap_or_else(|e| panic!("write {path}: {e}"))
        });
    }

    /// Reads a sysctl inside the namespace.
    pub fn read_sysctl(&self, key: &str) -> String {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.enter(move || {
            std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("read {path}: {e}"))
                .trim()
                .to_owned()
        })
    }

    /// Runs `f` on a fresh OS thread that has joined this namespace, and returns
    /// its result (panics in `f` propagate). The caller's thread never moves.
    pub fn enter<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        let handle = self.enter_background(f);
        match handle.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Starts `f` on a fresh OS thread inside this namespace and returns at once.
    pub fn enter_background<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> std::thread::JoinHandle<R> {
        let file = File::open(self.path())
            .unwrap_or_else(|e| panic!("open {}: {e}", self.path().display()));
        std::thread::spawn(move || {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("setns into the test namespace");
            f()
        })
    }

    /// Joins `self` and `other` with a veth pair `a` (here) ↔ `b` (there), both up.
    pub fn veth_to(&self, a: &str, other: &Netns, b: &str) {
        self.ip(&format!(
            "link add {a} type veth peer name {b} netns {}",
            other.name
        ));
        self.ip(&format!("link set {a} up"));
        other.ip(&format!("link set {b} up"));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        live().remove(&self.name);
        // Best effort, and never a second panic while unwinding.
        let out = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        if let Ok(o) = out
            && !o.status.success()
        {
            eprintln!(
                "testlab: cannot delete netns {}: {}",
                self.name,
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_fit_an_interface_name() {
        let a = unique_name("tv");
        let b = unique_name("tv");
        assert_ne!(a, b);
        assert!(a.len() <= 15, "{a}");
    }
}
