//! Controller HA on etcd (the etcd tier): three replicas of the real binary
//! on a three-member etcd cluster on loopback; one leads, the others refuse
//! with UNAVAILABLE naming it. Three nodes claim blocks concurrently through
//! trellis-member's client, which fails over between the replicas; the
//! leader is SIGKILLed in the middle and must be replaced within 5 s, then an
//! etcd member is killed; afterwards the invariant checker finds no block
//! with two owners, and every claim a node was answered is its block.

use crate::util::Daemon;
use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use trellis_cluster::{NodeSpec, check_invariants};
use trellis_member::{ControllerApi, GrpcController};
use trellis_proto::v1 as pb;
use trellis_store_etcd::EtcdStore;
use trellis_store_etcd::testing::{Etcd, free_port};
use trellis_types::{NodeName, PoolName};

const REPLICAS: usize = 3;

struct Replica {
    daemon: Daemon,
    url: String,
    _dir: tempfile::TempDir,
}

fn start_replicas(etcd: &Etcd) -> Vec<Replica> {
    let store = format!(
        "etcd://{}",
        etcd.urls()
            .iter()
            .map(|u| u.trim_start_matches("http://").to_owned())
            .collect::<Vec<_>>()
            .join(",")
    );
    (0..REPLICAS)
        .map(|i| {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let url = format!("http://127.0.0.1:{port}");
            let listen = format!("127.0.0.1:{port}");
            let name = format!("ctl-{i}");
            let daemon = Daemon::start(
                dir.path(),
                &[
                    "--store",
                    &store,
                    "--name",
                    &name,
                    "--listen",
                    &listen,
                    "--insecure-tcp",
                    "--advertise-url",
                    &url,
                    "--leader-ttl",
                    "2s",
                    "--lease-ttl",
                    "30s",
                ],
            );
            Replica {
                daemon,
                url,
                _dir: dir,
            }
        })
        .collect()
}

/// The replica that answers ControllerStatus (the others refuse, naming it).
async fn leader(replicas: &[Replica], skip: Option<usize>) -> Option<usize> {
    let mut named = None;
    for (i, r) in replicas.iter().enumerate() {
        if Some(i) == skip {
            continue;
        }
        match r
            .daemon
            .client()
            .await
            .controller_status(pb::ControllerStatusRequest {})
            .await
        {
            Ok(_) => return Some(i),
            Err(e) if e.code() == tonic::Code::Unavailable => {
                if let Some((_, rest)) = e.message().split_once("the leader is ") {
                    named = Some(rest.to_owned());
                }
            }
            Err(e) => panic!("replica {i}: {e}"),
        }
    }
    let _ = named;
    None
}

async fn wait_leader(replicas: &[Replica], skip: Option<usize>, within: Duration) -> usize {
    let t0 = Instant::now();
    loop {
        if let Some(i) = leader(replicas, skip).await {
            return i;
        }
        assert!(t0.elapsed() < within, "no leader within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn node_spec(name: &str, i: usize) -> NodeSpec {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "address_v4": format!("10.1.253.{}", 101 + i),
        "address_v6": null,
        "labels": {}
    }))
    .expect("a node spec")
}

#[cfg_attr(
    not(feature = "etcd"),
    ignore = "needs Debian's etcd-server: the etcd tier, scripts/test turns it on"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leader_killed_during_claims_is_replaced_and_no_block_has_two_owners() {
    let mut etcd = Etcd::start(3).await;
    let replicas = start_replicas(&etcd);
    let first = wait_leader(&replicas, None, Duration::from_secs(15)).await;
    // The followers refuse naming the leader's address.
    for (i, r) in replicas.iter().enumerate().filter(|(i, _)| *i != first) {
        let e = r
            .daemon
            .client()
            .await
            .list_pools(pb::ListPoolsRequest {})
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable, "replica {i}: {e}");
        assert!(
            e.message()
                .contains(&format!("the leader is {}", replicas[first].url)),
            "replica {i}: {e}"
        );
    }
    replicas[first]
        .daemon
        .client()
        .await
        .create_pool(pb::CreatePoolRequest {
            spec: Some(pb::PoolSpec {
                name: "pods".into(),
                prefix: "10.244.0.0/16".into(),
                mode: pb::PoolMode::Routed.into(),
                block_size: 28,
                max_blocks_per_node: 4000,
                ..Default::default()
            }),
        })
        .await
        .expect("create the pool on the leader");

    let urls: Vec<String> = replicas.iter().map(|r| r.url.clone()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let claimed = Arc::new(AtomicU64::new(0));
    let mut nodes = Vec::new();
    for i in 0..3 {
        let api = GrpcController::new(&urls.join(","), None).unwrap();
        let (stop, refused, claimed) = (stop.clone(), refused.clone(), claimed.clone());
        nodes.push(tokio::spawn(async move {
            let name = NodeName::parse("node", &format!("n{i}")).unwrap();
            let pool = PoolName::parse("pool", "pods").unwrap();
            let spec = node_spec(name.as_str(), i);
            let mut got = Vec::new();
            let mut registered = false;
            while !stop.load(Ordering::SeqCst) {
                if !registered {
                    registered = api.register(&spec).await.is_ok();
                    if !registered {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    continue;
                }
                match api.claim_block(&name, &pool).await {
                    Ok(b) => {
                        got.push(b.prefix);
                        claimed.fetch_add(1, Ordering::SeqCst);
                        // Steady, not flat out: a few hundred claims in all.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(e) => {
                        refused.fetch_add(1, Ordering::SeqCst);
                        if e.to_string().contains("not registered") {
                            registered = false;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (name, got)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // The leader dies mid-claims: another replica leads within 5 s.
    let killed_at = Instant::now();
    replicas[first].daemon.signal(Signal::SIGKILL);
    let second = wait_leader(&replicas, Some(first), Duration::from_secs(5)).await;
    let took = killed_at.elapsed();
    assert_ne!(second, first);
    // netctl, given every replica, finds the new leader.
    let netctl = std::path::Path::new(crate::util::BIN).with_file_name("netctl");
    assert!(
        netctl.is_file(),
        "no netctl beside the controller ({}): build it (cargo build -p netctl)",
        netctl.display()
    );
    let out = std::process::Command::new(&netctl)
        .args(["--controller", &urls.join(","), "pool", "ls"])
        .output()
        .expect("run netctl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("pods"),
        "netctl pool ls over the replicas: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // An etcd member (not etcd's leader) dies: claims go on, unhindered.
    let etcd_leader = etcd.leader();
    let (claims_before, refusals_before) = (
        claimed.load(Ordering::SeqCst),
        refused.load(Ordering::SeqCst),
    );
    etcd.kill((etcd_leader + 1) % 3);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    let claims_after = claimed.load(Ordering::SeqCst) - claims_before;
    let refusals_after = refused.load(Ordering::SeqCst) - refusals_before;
    assert!(
        claims_after > 10,
        "{claims_after} claims after an etcd member died"
    );
    // A write in flight to the dead member may come back indeterminate: at
    // most one per node.
    assert!(
        refusals_after <= 3,
        "{refusals_after} claims refused after an etcd member died"
    );

    let mut answered: BTreeMap<String, Vec<ipnet::IpNet>> = BTreeMap::new();
    for n in nodes {
        let (name, got) = n.await.unwrap();
        assert!(!got.is_empty(), "node {name} claimed nothing");
        answered.insert(name.to_string(), got);
    }
    // Every block answered to a node is that node's, and no block twice.
    let store = EtcdStore::connect(&etcd.urls(), Some("trellis")).unwrap();
    let problems = check_invariants(&store).await.unwrap();
    assert!(problems.is_empty(), "invariants: {problems:?}");
    let mut all: Vec<ipnet::IpNet> = answered.values().flatten().copied().collect();
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), total, "a block answered to two claims");
    let mut client = replicas[second].daemon.client().await;
    for (node, blocks) in &answered {
        let held: Vec<String> = client
            .list_blocks(pb::ListBlocksRequest {
                node: node.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .blocks
            .into_iter()
            .map(|b| b.prefix)
            .collect();
        for b in blocks {
            assert!(
                held.contains(&b.to_string()),
                "{node} was given {b}, the map has {held:?}"
            );
        }
    }
    println!(
        "leader {first} killed; replica {second} led {took:?} later; {total} blocks claimed by 3 nodes, \
         {refusals_before} calls refused or unreachable before the etcd member died; after it: \
         {claims_after} claims, {refusals_after} refused",
    );
    assert!(took < Duration::from_secs(5));
    trellis_testlab::report::record(
        "cluster",
        "the leading trellis-controller replica SIGKILLed during concurrent claims by 3 nodes (3 replicas on etcd)",
        &format!(
            "another replica led {:.2} s later; netctl given every replica found it; {total} blocks claimed, invariant checker clean, no block answered twice",
            took.as_secs_f64()
        ),
    );
    trellis_testlab::report::record(
        "cluster",
        "an etcd member (not etcd's leader) SIGKILLed during claims",
        &format!(
            "{claims_after} claims went on in 1.5 s, {refusals_after} refused (a write in flight to the dead member)"
        ),
    );
    // The replicas (killed on drop) before the etcd members.
    drop(replicas);
}
