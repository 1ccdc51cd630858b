//! The process: state kept across a restart, a clean stop on SIGTERM that
//! does not wait for watchers, and the configurations and places it refuses.

use crate::util::{Daemon, claim, node, routed_pool, run, stderr};
use std::time::Duration;
use trellis_proto::v1 as pb;

#[tokio::test]
async fn state_survives_a_restart_and_sigterm_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path(), &[]);
    let mode = std::fs::metadata(&d.socket).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let mut c = d.client().await;
    c.create_pool(routed_pool("pods", "10.244.0.0/16", 0))
        .await
        .unwrap();
    c.register_node(node("n1", "192.0.2.1")).await.unwrap();
    let b = c
        .claim_block(claim("n1", "pods"))
        .await
        .unwrap()
        .into_inner();
    let before = c.controller_status(pb::ControllerStatusRequest {}).await;
    let before = before.unwrap().into_inner();
    drop(c);

    let status = d.terminate().await;
    assert!(status.success(), "exit {status}:\n{}", d.log());
    assert!(!d.socket.exists(), "the socket is removed at exit");
    assert!(dir.path().join("state/controller.redb").exists());

    let d = Daemon::start(dir.path(), &[]);
    let mut c = d.client().await;
    let blocks = c.list_blocks(pb::ListBlocksRequest::default()).await;
    assert_eq!(blocks.unwrap().into_inner().blocks, vec![b]);
    let n = c.get_node(pb::GetNodeRequest { name: "n1".into() }).await;
    let n = n.unwrap().into_inner();
    assert_eq!((n.state, n.blocks), (pb::NodeState::Ready as i32, 1));
    let after = c.controller_status(pb::ControllerStatusRequest {}).await;
    let after = after.unwrap().into_inner();
    assert_eq!((after.nodes, after.pools, after.blocks), (1, 1, 1));
    assert!(after.revision >= before.revision);
}

/// A parent that blocks SIGTERM and SIGINT (to wait for them itself, as
/// trellis-bench does) hands that mask down across exec; the daemon unblocks
/// them, so it still stops cleanly on SIGTERM.
#[tokio::test]
async fn sigterm_stops_it_even_when_its_parent_blocked_the_signal() {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    // The mask of the spawning thread is the child's: block in a thread of
    // its own, so the test's threads keep theirs.
    let mut d = std::thread::spawn(move || {
        let mut set = SigSet::empty();
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGINT);
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None).unwrap();
        Daemon::start(&path, &[])
    })
    .join()
    .unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    let blocked = status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())
        .unwrap();
    assert_eq!(
        blocked & (1 << 14),
        0,
        "SIGTERM blocked in the daemon: {status}"
    );
    let status = d.terminate().await;
    assert!(status.success(), "exit {status}:\n{}", d.log());
}

#[tokio::test]
async fn sigterm_ends_open_watches_and_does_not_wait_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path(), &[]);
    let mut c = d.client().await;
    let req = pb::ControllerWatchRequest { from_revision: 0 };
    let mut w = c.watch(req).await.unwrap().into_inner();
    assert!(w.message().await.unwrap().is_some(), "the snapshot");

    // Within 5 s, though the drain would wait 10 s for an open call.
    let status = d.terminate().await;
    assert!(status.success(), "exit {status}:\n{}", d.log());
    let end = tokio::time::timeout(Duration::from_secs(5), w.message()).await;
    assert!(
        matches!(end, Ok(Ok(None) | Err(_))),
        "the watch ended: {end:?}"
    );
}

#[test]
fn tcp_without_tls_is_refused_unless_asked_for() {
    let out = run(&["--socket=/nonexistent/s", "--listen=127.0.0.1:0"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("has no TLS"), "{}", stderr(&out));
    let out = run(&["--lease-ttl=10 days"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--lease-ttl"), "{}", stderr(&out));
}

#[tokio::test]
async fn plaintext_tcp_serves_with_insecure_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &["--listen=127.0.0.1:0", "--insecure-tcp"]);
    assert!(d.log().contains("WITHOUT TLS"), "{}", d.log());
    let url = format!("http://{}", d.tcp_addr());
    let mut c = pb::ControllerClient::connect(url).await.unwrap();
    let s = c.controller_status(pb::ControllerStatusRequest {}).await;
    assert_eq!(s.unwrap().into_inner().nodes, 0);
}

#[tokio::test]
async fn a_second_controller_on_the_same_state_or_socket_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let first = Daemon::start(dir.path(), &[]);
    let mut second = Daemon::spawn(dir.path(), &[]);
    let status = second.wait_exit(Duration::from_secs(10)).await;
    assert!(!status.success(), "{}", second.log());
    assert!(second.log().contains("error"), "{}", second.log());

    // Another state directory, the same live socket.
    let other = tempfile::tempdir().unwrap();
    let state = other.path().join("state");
    let out = run(&[
        "--state-dir",
        state.to_str().unwrap(),
        "--socket",
        first.socket.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("in use"), "{}", stderr(&out));
    let mut c = first.client().await;
    c.list_pools(pb::ListPoolsRequest {}).await.unwrap();
}
