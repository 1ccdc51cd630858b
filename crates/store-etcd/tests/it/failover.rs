//! Failover between members: a member killed during writes, a member that
//! is not there, and a write whose answer is lost.

use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use trellis_store::{Error, Expect, KvStore, WatchEvent};
use trellis_store_etcd::EtcdStore;
use trellis_store_etcd::testing::{Etcd, free_port};

/// Writes to make, and after how many the first member is killed.
const WRITES: usize = 60;
const KILL_AFTER: usize = 20;

/// `put_if(Absent)` until it is known to have landed: an indeterminate
/// write is sent again, and a conflict after one means the first landed.
/// Returns how many attempts were indeterminate.
async fn put_once(s: &EtcdStore, key: &str) -> usize {
    let mut unsure = 0;
    loop {
        match s.put_if(key, key.as_bytes().to_vec(), Expect::Absent).await {
            Ok(_) => return unsure,
            Err(e) if e.is_indeterminate() => unsure += 1,
            Err(Error::Conflict {
                actual: Some(_), ..
            }) if unsure > 0 => return unsure,
            Err(e) => panic!("write {key}: {e}"),
        }
    }
}

/// Kills the member `pick` chooses while a writer writes through it and a
/// watch follows on it: every write lands exactly once (some after an
/// indeterminate answer, re-sent by [`put_once`]), and the watch, resumed
/// on another member, reports each once, in order. Returns how many writes
/// were indeterminate and how long the slowest took.
async fn kill_during_writes(pick: fn(&Etcd) -> usize) -> (usize, Duration) {
    let mut etcd = Etcd::start(3).await;
    let victim = pick(&etcd);
    // The store talks to the first member until it fails: the victim.
    let mut urls = etcd.urls();
    urls.swap(0, victim);
    let store = EtcdStore::connect(&urls, Some("failover")).unwrap();
    let start = store.put_if("start", vec![], Expect::Absent).await.unwrap();
    let mut watch = store.watch("w", start + 1).await.unwrap();

    let done = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (store, done) = (store.clone(), Arc::clone(&done));
        tokio::spawn(async move {
            let mut unsure = 0;
            let mut slowest = Duration::ZERO;
            for i in 0..WRITES {
                let t = Instant::now();
                unsure += put_once(&store, &format!("w/{i:03}")).await;
                slowest = slowest.max(t.elapsed());
                done.fetch_add(1, Ordering::SeqCst);
            }
            (unsure, slowest)
        })
    };
    while done.load(Ordering::SeqCst) < KILL_AFTER {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    etcd.kill(victim);
    let killed_at = done.load(Ordering::SeqCst);
    let (unsure, slowest) = tokio::time::timeout(Duration::from_secs(60), writer)
        .await
        .unwrap_or_else(|_| panic!("writes stopped after the kill\n{}", etcd.logs()))
        .unwrap();
    eprintln!(
        "killed member {victim} after {killed_at} writes; {unsure} indeterminate; \
         slowest write {slowest:?}"
    );

    // Every write, once, in order, through the watch that began on the
    // killed member.
    let mut seen: Vec<WatchEvent> = Vec::new();
    while seen.len() < WRITES {
        match tokio::time::timeout(Duration::from_secs(20), watch.next()).await {
            Ok(Some(Ok(e))) => seen.push(e),
            other => panic!(
                "watch stopped after {} events: {other:?}\n{}",
                seen.len(),
                etcd.logs()
            ),
        }
    }
    let keys: Vec<String> = seen.iter().map(|e| e.key().to_owned()).collect();
    let wanted: Vec<String> = (0..WRITES).map(|i| format!("w/{i:03}")).collect();
    assert_eq!(keys, wanted, "the watch lost or repeated an event");
    assert!(
        seen.windows(2).all(|p| p[0].revision() < p[1].revision()),
        "revisions out of order"
    );
    let idle = tokio::time::timeout(Duration::from_millis(300), watch.next()).await;
    assert!(idle.is_err(), "an event nobody wrote: {idle:?}");
    assert_eq!(store.list("w").await.unwrap().entries.len(), WRITES);
    (unsure, slowest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(feature = "etcd"),
    ignore = "needs Debian's etcd-server: the etcd tier, scripts/test turns it on"
)]
async fn writes_and_a_watch_go_on_when_a_follower_is_killed() {
    let (unsure, slowest) = kill_during_writes(|etcd| (etcd.leader() + 1) % 3).await;
    // Only the write in flight on the killed member can be in doubt; the
    // others go straight to a live member.
    assert!(unsure <= 1, "{unsure} indeterminate writes");
    assert!(slowest < Duration::from_secs(3), "a write took {slowest:?}");
    trellis_testlab::report::record(
        "etcd store",
        "an etcd follower SIGKILLed during a stream of writes and a watch (3 members)",
        &format!(
            "every write done, {unsure} indeterminate (the one in flight), slowest {:.2} s; the watch saw every write",
            slowest.as_secs_f64()
        ),
    );
}

/// The worst case: writes in flight when the leader dies wait for etcd's
/// proposal timeout (7 s) and come back indeterminate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(feature = "etcd"),
    ignore = "needs Debian's etcd-server: the etcd tier, scripts/test turns it on"
)]
async fn writes_and_a_watch_go_on_when_the_leader_is_killed() {
    let (unsure, _) = kill_during_writes(Etcd::leader).await;
    // The one in flight on the leader, and the ones a follower forwarded
    // to the dead leader before it noticed.
    assert!(unsure <= 3, "{unsure} indeterminate writes");
    trellis_testlab::report::record(
        "etcd store",
        "etcd's leader SIGKILLed during a stream of writes and a watch (3 members)",
        &format!(
            "every write done, {unsure} indeterminate (in flight to the dead leader: reported, not sent again); the watch saw every write"
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "etcd"),
    ignore = "needs Debian's etcd-server: the etcd tier, scripts/test turns it on"
)]
async fn a_member_that_is_not_there_is_skipped_even_for_writes() {
    let etcd = Etcd::start(1).await;
    let mut urls = vec![format!("127.0.0.1:{}", free_port())];
    urls.extend(etcd.urls());
    let s = EtcdStore::connect(&urls, Some("skip")).unwrap();
    let r = s.put_if("k", vec![1], Expect::Absent).await.unwrap();
    assert_eq!(s.get("k").await.unwrap().unwrap().revision, r);
}

/// A "member" that accepts connections, reads until the request naming
/// `marker` has arrived, and hangs up without answering.
async fn swallowing_member(marker: &'static [u8]) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !got.windows(marker.len()).any(|w| w == marker) {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "etcd"),
    ignore = "needs Debian's etcd-server: the etcd tier, scripts/test turns it on"
)]
async fn a_write_whose_answer_is_lost_is_indeterminate_and_not_sent_again() {
    let etcd = Etcd::start(1).await;
    let mut urls = vec![swallowing_member(b"lost/key").await];
    urls.extend(etcd.urls());
    let s = EtcdStore::connect(&urls, Some("ambiguous")).unwrap();
    let err = s
        .put_if("lost/key", vec![1], Expect::Absent)
        .await
        .unwrap_err();
    assert!(err.is_indeterminate(), "{err}");
    assert!(err.to_string().contains("lost/key"), "{err}");
    // Not sent to the real member either; a read fails over to it.
    assert_eq!(s.get("lost/key").await.unwrap(), None);
    let direct = EtcdStore::connect(&etcd.urls(), Some("ambiguous")).unwrap();
    assert_eq!(direct.get("lost/key").await.unwrap(), None);
    trellis_testlab::report::record(
        "etcd store",
        "a member that takes a write and hangs up without answering",
        &format!("the write is reported indeterminate (\"{err}\") and not sent to another member"),
    );
}
