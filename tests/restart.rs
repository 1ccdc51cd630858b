//! Restarting the node core disturbs no running container: traffic through a
//! published port (bridge mode) and pod to pod (routed mode) keeps flowing,
//! counted, while the agent is dropped and a new one opens the same redb
//! store and reconciles; and reconcile finds nothing to change.

mod util;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use trellis_agent::{Agent, ReconcileReport};
use trellis_store::RedbStore;
use trellis_testlab::seed::{HOST_IP, SeedLab};
use trellis_testlab::{Counts, Netns, TcpServer, require_root, tcp_traffic};
use trellis_types::Protocol;
use util::{agent_on, attach, bridge_spec, routed_spec};

async fn open(lab: &SeedLab, path: &std::path::Path) -> Agent {
    agent_on(&lab.host, Arc::new(RedbStore::open(path).unwrap())).await
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[test]
fn restarting_disturbs_no_running_container() {
    require_root();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let lab = SeedLab::build();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("trellis.redb");
    let (c1, p1, p2) = (Netns::new("c1"), Netns::new("p1"), Netns::new("p2"));
    let (agent, ep1, ep2) = rt.block_on(async {
        let agent = open(&lab, &db).await;
        agent.reconcile().await.unwrap();
        let spec = bridge_spec("web", "192.168.171.0/24", "trweb0");
        agent.create_network(spec).await.unwrap();
        let spec = routed_spec("pods", &["10.246.0.0/16"]);
        agent.create_network(spec).await.unwrap();
        let ep1 = attach(&agent, "web", "c1", &c1, &[(Protocol::Tcp, 8085, 80)]).await;
        attach(&agent, "pods", "p1", &p1, &[]).await;
        let ep2 = attach(&agent, "pods", "p2", &p2, &[]).await;
        (agent, ep1, ep2)
    });
    let _web = TcpServer::start(&c1, SocketAddr::new(ep1.addresses[0].addr(), 80), "c1");
    let pod = TcpServer::start(&p2, SocketAddr::new(ep2.addresses[0].addr(), 80), "p2");
    let published: SocketAddr = (IpAddr::V4(HOST_IP), 8085).into();
    let stop = AtomicBool::new(false);
    let (via_port, pod_to_pod) = (Counts::default(), Counts::default());

    let (before, report) = std::thread::scope(|s| {
        s.spawn(|| tcp_traffic(&lab.pc, published, &stop, &via_port));
        s.spawn(|| tcp_traffic(&p1, pod.addr(), &stop, &pod_to_pod));
        // A failure below must still stop the traffic, or the scope would
        // wait for it forever.
        let _stop = StopOnDrop(&stop);
        std::thread::sleep(Duration::from_millis(500));
        let before = (via_port.get().0, pod_to_pod.get().0);
        // The restart: the old agent and its store go away entirely.
        drop(agent);
        let report = rt.block_on(async {
            let agent = open(&lab, &db).await;
            let report = agent.reconcile().await.unwrap();
            assert!(agent.status().await.ready);
            assert_eq!(agent.endpoints().await.unwrap().len(), 3);
            report
        });
        std::thread::sleep(Duration::from_millis(700));
        stop.store(true, Ordering::SeqCst);
        (before, report)
    });
    assert_eq!(
        report,
        ReconcileReport::default(),
        "reconcile changed something"
    );
    let streams = [
        ("published port", &via_port, before.0),
        ("pod to pod", &pod_to_pod, before.1),
    ];
    for (what, counts, ok_before) in streams {
        let (ok, failed) = counts.get();
        assert_eq!(
            failed, 0,
            "{what}: {failed} requests failed across the restart"
        );
        assert!(ok_before > 0, "{what}: no traffic before the restart");
        assert!(
            ok > ok_before + 5,
            "{what}: too little traffic after the restart ({ok_before} -> {ok})"
        );
    }
}

/// Sets the flag when dropped, also while a panic unwinds.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
