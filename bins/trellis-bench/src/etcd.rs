//! etcd for the benchmarks of the controller on etcd: a real cluster of
//! Debian's `etcd` (3 members for `cluster --store etcd`) started by the
//! store's own test harness ([`trellis_store_etcd::testing::Etcd`]), but on
//! the loopback of one of the bench's namespaces, never the machine's: the
//! harness runs on a thread that entered the namespace, so the members it
//! spawns are born there, its free ports are taken there and its readiness
//! reads are made there. Controllers started in the same namespace reach
//! the members at `127.0.0.1`.
//!
//! Every member is a child of this process (the harness spawns them), so
//! the bench's signal thread ([`kill_members`]) finds them by parentage —
//! its own children named `etcd`, by pid — and kills them before it removes
//! the namespaces, even one that was still starting when the signal came.

use anyhow::{Context, Result, anyhow};
use std::process::Command;
use trellis_store_etcd::testing::Etcd;
use trellis_testlab::Netns;

/// The kernel's name for an etcd member (`/proc/<pid>/comm`).
const COMM: &str = "etcd";

/// A running etcd cluster inside a namespace; its members are killed and
/// their data removed when it is dropped.
pub struct EtcdCluster {
    etcd: Option<Etcd>,
    /// The members' pids, in no particular order.
    pids: Vec<u32>,
}

impl EtcdCluster {
    /// Starts `members` members on the loopback of `ns` and waits until
    /// each answers a linearizable read.
    pub fn start(ns: &Netns, members: usize) -> Result<Self> {
        let before = own_children(COMM);
        let started = ns
            .enter_background(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for etcd's start");
                rt.block_on(Etcd::start(members))
            })
            .join()
            .map_err(|panic| {
                anyhow!(
                    "{members} etcd members did not start: {}",
                    panic_message(&panic)
                )
            })?;
        let pids: Vec<u32> = own_children(COMM)
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        Ok(EtcdCluster {
            etcd: Some(started),
            pids,
        })
    }

    fn etcd(&self) -> &Etcd {
        self.etcd.as_ref().expect("running until dropped")
    }

    /// The controller's `--store` value: `etcd://127.0.0.1:P1,…`.
    pub fn store_flag(&self) -> String {
        let hosts: Vec<String> = self
            .etcd()
            .urls()
            .iter()
            .map(|u| u.trim_start_matches("http://").to_owned())
            .collect();
        format!("etcd://{}", hosts.join(","))
    }

    /// Each member's (VmRSS, VmHWM) in KiB.
    pub fn memory(&self) -> Result<Vec<(u64, u64)>> {
        self.pids
            .iter()
            .map(|p| crate::daemon::memory(*p))
            .collect()
    }

    /// The tail of every member's log, for errors.
    pub fn logs(&self) -> String {
        self.etcd().logs()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        // The harness kills and reaps its members, then removes their data.
        drop(self.etcd.take());
    }
}

/// The pids of this process's children whose `/proc/<pid>/comm` is `comm`.
fn own_children(comm: &str) -> Vec<u32> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            parent_and_comm(&stat).is_some_and(|(ppid, c)| ppid == me && c == comm)
        })
        .collect()
}

/// (parent pid, command name) of a `/proc/<pid>/stat` line: the name is
/// field 2, in parentheses (it may hold both); the parent is field 4, the
/// second after the last `)`.
fn parent_and_comm(stat: &str) -> Option<(u32, &str)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    let ppid = stat
        .get(close + 1..)?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((ppid, comm))
}

/// SIGKILLs every etcd member this process started that still runs, and
/// reaps it (the bench's signal thread, before it removes the namespaces).
pub fn kill_members() {
    for pid in own_children(COMM) {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
    }
}

/// The message a thread panicked with (the harness panics on failure).
pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)")
}

/// `etcd --version`'s first line (`etcd Version: 3.4.23`), or why not.
pub fn version() -> Result<String> {
    let bin = std::env::var("ETCD_BIN").unwrap_or_else(|_| COMM.into());
    let out = Command::new(&bin)
        .arg("--version")
        .output()
        .with_context(|| format!("run {bin} --version (Debian's etcd-server, or ETCD_BIN)"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().next().unwrap_or("?").trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_parent_and_name_of_a_stat_line() {
        let stat = "4242 (etcd) S 77 4242 4242 0 -1 4194560 1200 0 0 0 350 125";
        assert_eq!(parent_and_comm(stat), Some((77, "etcd")));
        // A name with a space and a parenthesis in it.
        let odd = "9 (a (b) c) R 1 9 9 0";
        assert_eq!(parent_and_comm(odd), Some((1, "a (b) c")));
        assert_eq!(parent_and_comm("9 (x"), None);
        assert_eq!(parent_and_comm(""), None);
    }
}
