//! Helpers for the privileged tests: network namespaces that clean up after
//! themselves, commands inside them, and reading the ruleset back with nft(8).

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use trellis_types::NetnsPath;

/// Fails the test unless it runs as root: privileged tests never pass by skipping.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "trellis-nat's privileged tests need root (CAP_NET_ADMIN, CAP_SYS_ADMIN) to create network namespaces; run them as root"
    );
}

/// Runs a command and panics with its output if it fails.
pub fn run(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("spawn");
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace of this test, deleted on drop (also on panic).
pub struct Netns {
    /// Its name under /run/netns.
    pub name: String,
}

impl Netns {
    /// Creates `tnat-<pid>-<n>-<role>` with loopback up.
    pub fn new(role: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        require_root();
        let n = N.fetch_add(1, Ordering::Relaxed);
        let name = format!("tnat-{}-{n}-{role}", std::process::id());
        run(&["ip", "netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Its path, as trellis takes it.
    pub fn path(&self) -> NetnsPath {
        NetnsPath::parse("netns", &format!("/run/netns/{}", self.name)).unwrap()
    }

    /// `ip -n <ns> <args>`.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut v = vec!["ip", "-n", &self.name];
        v.extend(args);
        run(&v)
    }

    /// `ip netns exec <ns> <args>`.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut v = vec!["ip", "netns", "exec", &self.name];
        v.extend(args);
        run(&v)
    }

    /// `nft list table inet trellis`, or None when there is no such table.
    pub fn nft_table(&self) -> Option<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "list", "table", "inet", "trellis"])
            .output()
            .unwrap();
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `nft -j list ruleset` of the namespace.
    pub fn ruleset(&self) -> serde_json::Value {
        serde_json::from_str(&self.exec(&["nft", "-j", "list", "ruleset"])).unwrap()
    }

    /// Runs `f` on a thread that entered this namespace; returns its result.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(path).unwrap();
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}
