//! The nf_tables thread: every socket send and receive of an `NftNat` happens
//! on a thread of its own, never on the caller's (debug builds also assert
//! that on every exchange), and that thread ends with the `NftNat`.

use crate::util::{lab, tcp};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::time::MissedTickBehavior;
use trellis_nat::{Nat, NatState};
use trellis_testlab::Netns;

/// The names of this process's threads that are inside `ns`: an `NftNat`'s
/// thread lives in the namespace of its socket, and a lab's namespace is its
/// own, so these are exactly the lab's.
fn threads_in(ns: &Netns) -> Vec<String> {
    let want = std::fs::metadata(ns.path()).expect("the lab's netns").ino();
    let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
    tasks
        .filter_map(|task| {
            let task = task.ok()?.path();
            let ino = std::fs::metadata(task.join("ns/net")).ok()?.ino();
            let comm = std::fs::read_to_string(task.join("comm")).ok()?;
            (ino == want).then(|| comm.trim().to_owned())
        })
        .collect()
}

/// The `NETLINK_NETFILTER` (12) sockets of user space in `ns` (the kernel's
/// own has port id 0), from the namespace's `/proc/net/netlink`.
fn nf_sockets(ns: &Netns) -> usize {
    let table = ns.enter(|| {
        std::fs::read_to_string("/proc/thread-self/net/netlink").expect("/proc/net/netlink")
    });
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&"12") && fields.get(2) != Some(&"0")
        })
        .count()
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn a_current_thread_runtime_keeps_ticking_while_nat_waits_on_the_kernel() {
    assert_eq!(
        Handle::current().runtime_flavor(),
        RuntimeFlavor::CurrentThread,
        "the strictest case: one thread runs every task and timer"
    );
    let (ns, nat) = lab("tick");
    assert_eq!(
        threads_in(&ns),
        ["trellis-nft"],
        "one named thread, in the netns"
    );
    nat.ensure_table().await.unwrap();
    let ticks = Arc::new(AtomicU32::new(0));
    let ticker = tokio::spawn({
        let ticks = ticks.clone();
        async move {
            let mut every = tokio::time::interval(Duration::from_millis(2));
            every.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                ticks.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    tokio::task::yield_now().await;

    // One large batch (the kernel works on it inside `send`), then small
    // exchanges back to back for a while. Nothing in this loop yields but
    // the NAT calls: were the socket I/O done on this thread, the ticker
    // could not run once until it ends.
    let before = ticks.load(Ordering::Relaxed);
    let t = Instant::now();
    let ports = (10_000..15_000).map(|p| tcp(p, "10.0.0.2", 80)).collect();
    let state = NatState {
        ports,
        ..NatState::default()
    };
    nat.sync(&state).await.unwrap();
    let (m, mut calls) = (tcp(8081, "10.0.0.3", 80), 1);
    while t.elapsed() < Duration::from_millis(100) {
        nat.publish(&[m]).await.unwrap();
        nat.unpublish(&[m]).await.unwrap();
        calls += 2;
    }
    let during = ticks.load(Ordering::Relaxed) - before;
    let took = t.elapsed();
    ticker.abort();
    eprintln!("{calls} NAT calls in {took:?}; the 2 ms ticker ticked {during} times meanwhile");
    assert!(
        during >= 10,
        "the runtime stalled: {during} ticks of 2 ms in {took:?}"
    );
    assert_eq!(nat.list_published().await.unwrap().len(), 5000);
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn dropping_the_nat_ends_its_thread_and_closes_its_socket() {
    let (ns, nat) = lab("drop");
    nat.ensure_table().await.unwrap();
    assert_eq!(threads_in(&ns), ["trellis-nft"]);
    assert_eq!(nf_sockets(&ns), 1, "the NftNat's socket, in its netns");
    drop(nat);
    // Nothing joins the thread (a drop must not wait on the kernel): it
    // sees the channel close and returns.
    let t = Instant::now();
    while !threads_in(&ns).is_empty() || nf_sockets(&ns) > 0 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "left behind: threads {:?}, {} sockets",
            threads_in(&ns),
            nf_sockets(&ns)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn errors_keep_their_wording_across_the_thread() {
    let (_ns, nat) = lab("errors");
    let err = nat.publish(&[tcp(80, "10.0.0.2", 80)]).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the nftables table inet trellis does not exist (ensure_table was not called)"
    );
    let path = trellis_types::NetnsPath::parse("netns", "/run/netns/trellis-no-such").unwrap();
    let err = trellis_nat::NftNat::in_netns(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        "open netlink socket in netns: No such file or directory (os error 2)"
    );
}
