//! The watch hub: one store watch for every watcher, and what happens to a
//! watcher that falls behind or whose hub fails.

use super::*;
use crate::hub::IDLE_CHECK;
use futures::FutureExt;
use trellis_store::{InstrumentedStore, KvStore};

/// A controller over a counting store, letting a watcher fall `buffer`
/// changes behind.
fn counted(buffer: usize) -> (Arc<InstrumentedStore>, Arc<Controller>) {
    let store = Arc::new(InstrumentedStore::default());
    let config = Config {
        watch_buffer: buffer,
        ..Config::default()
    };
    (Arc::clone(&store), Arc::new(Controller::new(store, config)))
}

/// Pool "p" and nodes n0..n`nodes`.
async fn cluster(c: &Controller, nodes: usize) -> PoolName {
    c.create_pool(routed("p", "10.1.0.0/16", 26, 64))
        .await
        .unwrap();
    for i in 0..nodes {
        register(c, &format!("n{i}"), "192.0.2.1").await;
    }
    pool_name("p")
}

/// `n` claims, one per node n0, n1, …: `3 * n` changes.
async fn claims(c: &Controller, pool: &PoolName, n: usize) {
    for i in 0..n {
        c.claim_block(&node_name(&format!("n{i}")), pool)
            .await
            .unwrap();
    }
}

fn snapshot_of(e: Option<Result<Event, Error>>) -> Arc<Snapshot> {
    match e {
        Some(Ok(Event::Snapshot(s))) => s,
        other => panic!("no snapshot first: {other:?}"),
    }
}

/// The next `n` changes of `w`.
async fn changes(w: &mut EventStream, n: usize) -> Vec<(u64, Change)> {
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
            Ok(Some(Ok(Event::Change(rev, ch)))) => out.push((rev, ch)),
            other => panic!("change {} of {n}: {other:?}", out.len() + 1),
        }
    }
    out
}

/// The revisions of the store's next `n` events under the controller's
/// keys from `from`, read from the store itself.
async fn store_revisions(store: &dyn KvStore, from: u64, n: usize) -> Vec<u64> {
    let w = store.watch(keys::ROOT, from).await.unwrap();
    let events: Vec<_> = w.take(n).collect().await;
    events.into_iter().map(|e| e.unwrap().revision()).collect()
}

fn increasing(changes: &[(u64, Change)]) -> bool {
    changes.windows(2).all(|w| w[0].0 < w[1].0)
}

/// Nothing more is ready on `w`.
fn quiet(w: &mut EventStream) -> bool {
    w.next().now_or_never().is_none()
}

#[tokio::test]
async fn two_hundred_watchers_share_one_store_watch_and_see_every_change_once() {
    let (store, c) = counted(DEFAULT_WATCH_BUFFER);
    let pool = cluster(&c, 20).await;
    let mut watchers = Vec::new();
    for _ in 0..200 {
        watchers.push(c.watch(0).await.unwrap());
    }
    claims(&c, &pool, 20).await;
    let mut first: Option<(u64, Vec<(u64, Change)>)> = None;
    for w in &mut watchers {
        let s = snapshot_of(w.next().await);
        let seen = changes(w, 60).await;
        assert!(quiet(w), "a change twice, or one too many");
        assert!(seen[0].0 > s.revision && increasing(&seen), "{seen:?}");
        match &first {
            None => first = Some((s.revision, seen)),
            Some(f) => assert_eq!((s.revision, &seen), (f.0, &f.1)),
        }
    }
    assert_eq!(store.watches(), 1, "each watcher opened a store watch");
    let (at, seen) = first.unwrap();
    let revisions: Vec<u64> = seen.iter().map(|(r, _)| *r).collect();
    assert_eq!(revisions, store_revisions(&*store, at + 1, 60).await);
}

#[tokio::test]
async fn a_watch_resumed_from_a_mid_revision_gets_exactly_the_changes_after_it() {
    let (store, c) = counted(DEFAULT_WATCH_BUFFER);
    let pool = cluster(&c, 6).await;
    let mut w = c.watch(0).await.unwrap();
    snapshot_of(w.next().await);
    claims(&c, &pool, 5).await;
    let all = changes(&mut w, 15).await;
    let mut resumed = c.watch(all[7].0).await.unwrap();
    assert_eq!(changes(&mut resumed, 8).await, all[7..]);
    assert!(quiet(&mut resumed));
    assert_eq!(
        store.watches(),
        1,
        "the resumed watch was not served by the hub"
    );
    // Then both follow on.
    c.claim_block(&node_name("n5"), &pool).await.unwrap();
    let next = changes(&mut w, 3).await;
    assert!(next[0].0 > all[14].0);
    assert_eq!(changes(&mut resumed, 3).await, next);
}

#[tokio::test]
async fn a_watch_from_before_the_hub_began_reads_the_store_then_follows_the_hub() {
    let (store, c) = counted(DEFAULT_WATCH_BUFFER);
    let pool = cluster(&c, 4).await;
    let before = c.snapshot().await.unwrap().revision + 1;
    claims(&c, &pool, 2).await;
    // The hub begins after those two claims.
    let mut w = c.watch(0).await.unwrap();
    snapshot_of(w.next().await);
    let mut old = c.watch(before).await.unwrap();
    assert_eq!(store.watches(), 2, "the old watch reads the store itself");
    c.claim_block(&node_name("n2"), &pool).await.unwrap();
    c.claim_block(&node_name("n3"), &pool).await.unwrap();
    let seen = changes(&mut old, 12).await;
    assert!(quiet(&mut old));
    assert!(increasing(&seen), "{seen:?}");
    let revisions: Vec<u64> = seen.iter().map(|(r, _)| *r).collect();
    assert_eq!(revisions, store_revisions(&*store, before, 12).await);
    assert_eq!(changes(&mut w, 6).await, seen[6..]);
}

#[tokio::test]
async fn a_watcher_that_does_not_read_is_cut_off_and_slows_nobody() {
    let (_store, c) = counted(8);
    let pool = cluster(&c, 12).await;
    let mut slow = c.watch(0).await.unwrap();
    let mut fast = c.watch(0).await.unwrap();
    let s = snapshot_of(fast.next().await);
    let mut seen = Vec::new();
    for i in 0..12 {
        c.claim_block(&node_name(&format!("n{i}")), &pool)
            .await
            .unwrap();
        seen.extend(changes(&mut fast, 3).await);
    }
    assert!(seen[0].0 > s.revision && increasing(&seen), "{seen:?}");
    assert!(quiet(&mut fast));
    // The slow one: its snapshot, then the end.
    snapshot_of(slow.next().await);
    match slow.next().await {
        Some(Err(e @ Error::WatchEnded(_))) => {
            assert!(e.to_string().contains("behind the others"), "{e}");
            assert_eq!(e.class(), ErrorClass::Unavailable);
        }
        other => panic!("the slow watcher was not cut off: {other:?}"),
    }
    assert!(slow.next().await.is_none(), "an error ends the stream");
    // It watches again from where it was, and gets the rest.
    let mut again = c.watch(s.revision + 1).await.unwrap();
    assert_eq!(changes(&mut again, 36).await, seen);
}

/// A store watch that fails (here: it fell behind a store keeping four
/// events) ends every watcher's stream with the error; the next watch
/// starts a new one.
#[tokio::test]
async fn a_failed_store_watch_ends_its_watchers_and_the_next_watch_starts_anew() {
    let c = controller_on(Arc::new(MemoryStore::with_history(4)));
    c.create_pool(routed("p", "10.1.0.0/16", 26, 0))
        .await
        .unwrap();
    let mut w1 = c.watch(0).await.unwrap();
    let mut w2 = c.watch(0).await.unwrap();
    snapshot_of(w1.next().await);
    snapshot_of(w2.next().await);
    for i in 0..10 {
        register(&c, &format!("n{i}"), "192.0.2.1").await;
    }
    for w in [&mut w1, &mut w2] {
        match w.next().await {
            Some(Err(e @ Error::Compacted(_))) => assert_eq!(e.class(), ErrorClass::OutOfRange),
            other => panic!("the watch did not end with the store's error: {other:?}"),
        }
        assert!(w.next().await.is_none());
    }
    let mut w3 = c.watch(0).await.unwrap();
    let s = snapshot_of(w3.next().await);
    assert_eq!(s.nodes.len(), 10);
    register(&c, "late", "192.0.2.9").await;
    let Some(Ok(Event::Change(rev, Change::Node(n)))) = w3.next().await else {
        panic!("the new watch missed a change")
    };
    assert!(rev > s.revision);
    assert_eq!(n.record.spec.name, node_name("late"));
}

#[tokio::test(start_paused = true)]
async fn the_hub_stops_when_nobody_watches_and_when_the_replica_takes_office() {
    let (store, c) = counted(DEFAULT_WATCH_BUFFER);
    cluster(&c, 0).await;
    drop(c.watch(0).await.unwrap());
    tokio::time::sleep(IDLE_CHECK * 2).await;
    let mut w = c.watch(0).await.unwrap();
    assert_eq!(store.watches(), 2, "the unwatched hub did not stop");
    snapshot_of(w.next().await);
    c.take_office();
    match w.next().await {
        Some(Err(e @ Error::WatchEnded(_))) => {
            assert!(e.to_string().contains("took office"), "{e}")
        }
        other => panic!("the watch outlived the hub: {other:?}"),
    }
    assert!(w.next().await.is_none());
    let mut w = c.watch(0).await.unwrap();
    assert_eq!(store.watches(), 3);
    let s = snapshot_of(w.next().await);
    register(&c, "a", "192.0.2.1").await;
    let Some(Ok(Event::Change(rev, Change::Node(_)))) = w.next().await else {
        panic!("the new hub missed a change")
    };
    assert!(rev > s.revision);
}

/// Watches opened while claims are committed, on several threads: each
/// gets exactly the store's changes from the revision it asked for, none
/// missed between the hub's ring and its broadcast, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watches_opened_during_claims_miss_nothing_and_repeat_nothing() {
    let (store, c) = counted(DEFAULT_WATCH_BUFFER);
    let pool = cluster(&c, 40).await;
    let claimer = {
        let c = Arc::clone(&c);
        tokio::spawn(async move { claims(&c, &pool, 40).await })
    };
    let mut opened = Vec::new();
    for _ in 0..40 {
        let from = c.snapshot().await.unwrap().revision + 1;
        opened.push((from, c.watch(from).await.unwrap()));
        tokio::task::yield_now().await;
    }
    claimer.await.unwrap();
    let last = c.snapshot().await.unwrap().revision;
    for (from, mut w) in opened {
        let mut seen = Vec::new();
        while seen.last().is_none_or(|(r, _)| *r < last) && from <= last {
            seen.extend(changes(&mut w, 1).await);
        }
        assert!(quiet(&mut w), "a change twice after {from}");
        let revisions: Vec<u64> = seen.iter().map(|(r, _)| *r).collect();
        assert_eq!(revisions, store_revisions(&*store, from, seen.len()).await);
    }
}
