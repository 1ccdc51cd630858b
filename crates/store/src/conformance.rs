//! The behaviour every [`KvStore`] backend must show (feature `conformance`).
//!
//! A backend's tests call [`run_all`] with a function that makes a fresh,
//! empty store; each check gets its own store. "Empty" means no keys: the
//! store's revision need not start at 0 (an etcd backend gives each check a
//! fresh key namespace of one shared etcd, whose revision is wherever the
//! previous checks left it), so the checks measure revisions from a base
//! they read at their start. Nothing else may write to the store while a
//! check runs: "the next revision" must be the check's own. The checks panic
//! with a message naming what broke, like any test assertion. Run it on a
//! multi-threaded runtime so that the concurrency check really races.

use crate::{Error, Expect, KvStore, Op, Versioned, WatchEvent};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;

/// Runs every check against stores made by `make`.
pub async fn run_all<S: KvStore + 'static>(make: impl Fn() -> S) {
    put_cas(&make()).await;
    delete_cas(&make()).await;
    absent_semantics(&make()).await;
    list_by_prefix(&make()).await;
    invalid_keys(&make()).await;
    watch_in_order(&make()).await;
    concurrent_cas(Arc::new(make())).await;
    txn_all_or_nothing(&make()).await;
    txn_watch(&make()).await;
    txn_edge_cases(&make()).await;
    concurrent_txn(Arc::new(make())).await;
}

/// `put_if` succeeds exactly when the expectation holds, and a failed put
/// changes nothing.
pub async fn put_cas(s: &dyn KvStore) {
    let r1 = s.put_if("k", b"1".to_vec(), Expect::Absent).await.unwrap();
    let err = s
        .put_if("k", b"x".to_vec(), Expect::Absent)
        .await
        .unwrap_err();
    assert_conflict(&err, "k", Expect::Absent, Some(r1));
    let r2 = s
        .put_if("k", b"2".to_vec(), Expect::Revision(r1))
        .await
        .unwrap();
    assert!(r2 > r1, "revisions increase: {r1} then {r2}");
    let err = s
        .put_if("k", b"x".to_vec(), Expect::Revision(r1))
        .await
        .unwrap_err();
    assert_conflict(&err, "k", Expect::Revision(r1), Some(r2));
    let got = s.get("k").await.unwrap();
    assert_eq!(
        got,
        Some(Versioned {
            value: b"2".to_vec(),
            revision: r2
        })
    );
    let r3 = s.put_if("k", b"3".to_vec(), Expect::Any).await.unwrap();
    assert!(r3 > r2);
    let other = s.put_if("other", b"o".to_vec(), Expect::Any).await.unwrap();
    assert_eq!(other, r3 + 1, "revisions are store-global");
}

/// `delete_if` succeeds exactly when the expectation holds.
pub async fn delete_cas(s: &dyn KvStore) {
    let r1 = s.put_if("k", b"1".to_vec(), Expect::Absent).await.unwrap();
    let err = s
        .delete_if("k", Expect::Revision(r1 + 100))
        .await
        .unwrap_err();
    assert_conflict(&err, "k", Expect::Revision(r1 + 100), Some(r1));
    let err = s.delete_if("k", Expect::Absent).await.unwrap_err();
    assert_conflict(&err, "k", Expect::Absent, Some(r1));
    assert!(
        s.get("k").await.unwrap().is_some(),
        "a failed delete deleted"
    );
    let rd = s.delete_if("k", Expect::Revision(r1)).await.unwrap();
    assert_eq!(rd, Some(r1 + 1), "a delete takes the next revision");
    assert_eq!(s.get("k").await.unwrap(), None);
    let r2 = s.put_if("k", b"2".to_vec(), Expect::Any).await.unwrap();
    assert_eq!(s.delete_if("k", Expect::Any).await.unwrap(), Some(r2 + 1));
}

/// Absent keys: `get` gives `None`, deletes of them are idempotent unless a
/// revision is expected, a put expecting a revision fails.
pub async fn absent_semantics(s: &dyn KvStore) {
    let base = s.list("").await.unwrap().revision;
    assert_eq!(s.get("nope").await.unwrap(), None);
    assert_eq!(s.delete_if("nope", Expect::Any).await.unwrap(), None);
    assert_eq!(s.delete_if("nope", Expect::Absent).await.unwrap(), None);
    let err = s.delete_if("nope", Expect::Revision(1)).await.unwrap_err();
    assert_conflict(&err, "nope", Expect::Revision(1), None);
    let err = s
        .put_if("nope", b"x".to_vec(), Expect::Revision(1))
        .await
        .unwrap_err();
    assert_conflict(&err, "nope", Expect::Revision(1), None);
    assert_eq!(
        s.list("").await.unwrap().revision,
        base,
        "no-op deletes took a revision"
    );
}

/// `list` returns a subtree in key order, with the store revision.
pub async fn list_by_prefix(s: &dyn KvStore) {
    let base = s.list("").await.unwrap().revision;
    for k in ["a/b", "a/b/x", "a/b/y/z", "a/bc", "a/bc/x", "a", "b/x"] {
        s.put_if(k, k.as_bytes().to_vec(), Expect::Absent)
            .await
            .unwrap();
    }
    let keys = |l: crate::Listing| l.entries.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        keys(s.list("a/b").await.unwrap()),
        ["a/b", "a/b/x", "a/b/y/z"]
    );
    assert_eq!(
        keys(s.list("a/b/").await.unwrap()),
        ["a/b", "a/b/x", "a/b/y/z"]
    );
    assert_eq!(keys(s.list("a/bc").await.unwrap()), ["a/bc", "a/bc/x"]);
    assert_eq!(keys(s.list("zzz").await.unwrap()), Vec::<String>::new());
    let all = s.list("").await.unwrap();
    assert_eq!(all.revision, base + 7, "seven puts, seven revisions");
    assert_eq!(all.entries.len(), 7);
    let (k, v) = &all.entries[0];
    assert_eq!(
        (k.as_str(), v.value.as_slice(), v.revision),
        ("a", &b"a"[..], base + 6)
    );
}

/// Malformed keys are refused by every operation that takes a key.
pub async fn invalid_keys(s: &dyn KvStore) {
    for bad in ["", "/a", "a/", "a//b"] {
        let err = s.put_if(bad, vec![], Expect::Any).await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidKey { .. }),
            "put {bad:?}: {err}"
        );
        assert!(
            matches!(s.get(bad).await, Err(Error::InvalidKey { .. })),
            "get {bad:?}"
        );
        let del = s.delete_if(bad, Expect::Any).await;
        assert!(
            matches!(del, Err(Error::InvalidKey { .. })),
            "delete {bad:?}"
        );
    }
}

/// A watch replays history from a revision, in order, then follows live
/// writes, and only reports keys under its prefix.
pub async fn watch_in_order(s: &dyn KvStore) {
    let r1 = s
        .put_if("w/a", b"1".to_vec(), Expect::Absent)
        .await
        .unwrap();
    s.put_if("wx/a", b"sibling".to_vec(), Expect::Absent)
        .await
        .unwrap();
    let r3 = s
        .put_if("w/b", b"2".to_vec(), Expect::Absent)
        .await
        .unwrap();
    let mut from_start = s.watch("w", r1).await.unwrap();
    let mut from_now = s.watch("w", 0).await.unwrap();
    let mut from_r3 = s.watch("w/", r3).await.unwrap();
    let r4 = s
        .delete_if("w/a", Expect::Revision(r1))
        .await
        .unwrap()
        .unwrap();
    let r5 = s
        .put_if("w/c", b"3".to_vec(), Expect::Absent)
        .await
        .unwrap();

    let put = |k: &str, v: &[u8], r| WatchEvent::Put {
        key: k.into(),
        value: v.to_vec(),
        revision: r,
    };
    let del = WatchEvent::Delete {
        key: "w/a".into(),
        revision: r4,
    };
    let expected = [
        put("w/a", b"1", r1),
        put("w/b", b"2", r3),
        del.clone(),
        put("w/c", b"3", r5),
    ];
    for want in &expected {
        assert_eq!(&next(&mut from_start).await, want);
    }
    for want in &expected[2..] {
        assert_eq!(&next(&mut from_now).await, want);
    }
    for want in &expected[1..] {
        assert_eq!(&next(&mut from_r3).await, want);
    }
    let idle = tokio::time::timeout(Duration::from_millis(50), from_start.next()).await;
    assert!(
        idle.is_err(),
        "a watch reported an event nobody wrote: {idle:?}"
    );
}

/// Many tasks race CAS updates of one key: in every round exactly one wins.
pub async fn concurrent_cas<S: KvStore + 'static>(s: Arc<S>) {
    const TASKS: usize = 8;
    const ROUNDS: usize = 20;
    let mut rev = s
        .put_if("race", b"0".to_vec(), Expect::Absent)
        .await
        .unwrap();
    for round in 0..ROUNDS {
        let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let (s, barrier) = (Arc::clone(&s), Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    let value = format!("{round}/{t}").into_bytes();
                    s.put_if("race", value, Expect::Revision(rev)).await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Ok(new_rev) => winners.push(new_rev),
                Err(e) => assert!(e.is_conflict(), "round {round}: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        rev = winners[0];
        assert_eq!(s.get("race").await.unwrap().unwrap().revision, rev);
    }
}

/// A transaction applies every op or none: one failed expectation (here the
/// last op's) is reported by key and leaves every key and the revision as
/// they were.
pub async fn txn_all_or_nothing(s: &dyn KvStore) {
    let ra = s
        .put_if("t/a", b"a0".to_vec(), Expect::Absent)
        .await
        .unwrap();
    let rb = s
        .put_if("t/b", b"b0".to_vec(), Expect::Absent)
        .await
        .unwrap();
    let before = s.list("").await.unwrap();
    let err = s
        .txn(vec![
            Op::put("t/a", b"a1".to_vec(), Expect::Revision(ra)),
            Op::put("t/new", b"n".to_vec(), Expect::Absent),
            Op::delete("t/b", Expect::Revision(rb + 100)),
        ])
        .await
        .unwrap_err();
    assert_conflict(&err, "t/b", Expect::Revision(rb + 100), Some(rb));
    assert_eq!(
        s.list("").await.unwrap(),
        before,
        "a failed transaction changed the store"
    );

    let rev = s
        .txn(vec![
            Op::put("t/a", b"a1".to_vec(), Expect::Revision(ra)),
            Op::put("t/new", b"n".to_vec(), Expect::Absent),
            Op::delete("t/b", Expect::Revision(rb)),
        ])
        .await
        .unwrap();
    let after = s.list("").await.unwrap();
    assert_eq!(
        after.revision, rev,
        "txn returns the store revision after it"
    );
    let keys: Vec<(&str, &[u8])> = after
        .entries
        .iter()
        .map(|(k, v)| (k.as_str(), v.value.as_slice()))
        .collect();
    assert_eq!(keys, [("t/a", &b"a1"[..]), ("t/new", &b"n"[..])]);
    for (k, v) in &after.entries {
        assert!(
            v.revision > before.revision && v.revision <= rev,
            "{k} written at {} outside ({}, {rev}]",
            v.revision,
            before.revision
        );
    }
}

/// A watcher sees every write of a transaction, in op order, and nothing of a
/// failed one.
pub async fn txn_watch(s: &dyn KvStore) {
    let r0 = s
        .put_if("w/x", b"0".to_vec(), Expect::Absent)
        .await
        .unwrap();
    let mut w = s.watch("w", 0).await.unwrap();
    let failed = s
        .txn(vec![
            Op::put("w/y", b"never".to_vec(), Expect::Absent),
            Op::put("w/x", b"never".to_vec(), Expect::Absent),
        ])
        .await;
    assert!(failed.is_err(), "a transaction on a taken key succeeded");
    let rev = s
        .txn(vec![
            Op::put("w/y", b"1".to_vec(), Expect::Absent),
            Op::put("other/z", b"2".to_vec(), Expect::Any),
            Op::delete("w/x", Expect::Revision(r0)),
        ])
        .await
        .unwrap();
    let first = next(&mut w).await;
    let second = next(&mut w).await;
    match (&first, &second) {
        (WatchEvent::Put { key, value, .. }, WatchEvent::Delete { key: deleted, .. }) => {
            assert_eq!((key.as_str(), value.as_slice()), ("w/y", &b"1"[..]));
            assert_eq!(deleted, "w/x");
        }
        other => panic!("expected put w/y then delete w/x, got {other:?}"),
    }
    assert!(
        r0 < first.revision() && first.revision() <= second.revision() && second.revision() <= rev,
        "revisions {r0} < {} <= {} <= {rev}",
        first.revision(),
        second.revision()
    );
    let idle = tokio::time::timeout(Duration::from_millis(50), w.next()).await;
    assert!(
        idle.is_err(),
        "a watch reported an event nobody wrote: {idle:?}"
    );
}

/// Empty and no-op transactions change nothing; a key twice and a malformed
/// key are refused before anything is written.
pub async fn txn_edge_cases(s: &dyn KvStore) {
    let r = s
        .put_if("e/a", b"1".to_vec(), Expect::Absent)
        .await
        .unwrap();
    assert_eq!(s.txn(Vec::new()).await.unwrap(), r, "empty transaction");
    let noop = s
        .txn(vec![
            Op::delete("e/gone", Expect::Any),
            Op::delete("e/gone2", Expect::Absent),
        ])
        .await
        .unwrap();
    assert_eq!(noop, r, "deleting absent keys took a revision");
    let twice = s
        .txn(vec![
            Op::put("e/b", b"1".to_vec(), Expect::Absent),
            Op::put("e/b", b"2".to_vec(), Expect::Any),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(twice, Error::InvalidKey { ref key, .. } if key == "e/b"),
        "{twice}"
    );
    let bad = s
        .txn(vec![
            Op::put("e/c", b"1".to_vec(), Expect::Absent),
            Op::put("e//d", b"2".to_vec(), Expect::Any),
        ])
        .await
        .unwrap_err();
    assert!(matches!(bad, Error::InvalidKey { .. }), "{bad}");
    assert_eq!(
        s.list("").await.unwrap().revision,
        r,
        "a refused transaction wrote"
    );
    assert_eq!(s.get("e/b").await.unwrap(), None);
    assert_eq!(s.get("e/c").await.unwrap(), None);
}

/// Tasks race transactions that bump one shared counter and create a key of
/// their own: with retries on conflict no update is lost, and every task's
/// key exists exactly when its bump counted.
pub async fn concurrent_txn<S: KvStore + 'static>(s: Arc<S>) {
    const TASKS: usize = 8;
    const EACH: usize = 10;
    s.put_if("count", b"0".to_vec(), Expect::Absent)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                for i in 0..EACH {
                    loop {
                        let cur = s.get("count").await.unwrap().unwrap();
                        let n: usize = std::str::from_utf8(&cur.value).unwrap().parse().unwrap();
                        let ops = vec![
                            Op::put(
                                "count",
                                (n + 1).to_string().into_bytes(),
                                Expect::Revision(cur.revision),
                            ),
                            Op::put(
                                format!("mine/{t}/{i}"),
                                n.to_string().into_bytes(),
                                Expect::Absent,
                            ),
                        ];
                        match s.txn(ops).await {
                            Ok(_) => break,
                            Err(e) => assert!(e.is_conflict(), "task {t}: {e}"),
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let count = s.get("count").await.unwrap().unwrap();
    assert_eq!(
        count.value,
        (TASKS * EACH).to_string().into_bytes(),
        "lost updates"
    );
    let mine = s.list("mine").await.unwrap().entries;
    assert_eq!(mine.len(), TASKS * EACH);
    let mut seen: Vec<Vec<u8>> = mine.into_iter().map(|(_, v)| v.value).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen.len(),
        TASKS * EACH,
        "two transactions read the same count"
    );
}

async fn next(w: &mut crate::WatchStream) -> WatchEvent {
    match tokio::time::timeout(Duration::from_secs(5), w.next()).await {
        Ok(Some(Ok(event))) => event,
        other => panic!("expected a watch event, got {other:?}"),
    }
}

fn assert_conflict(err: &Error, key: &str, expected: Expect, actual: Option<u64>) {
    match err {
        Error::Conflict {
            key: k,
            expected: e,
            actual: a,
        } => {
            assert_eq!((k.as_str(), *e, *a), (key, expected, actual), "{err}");
        }
        other => panic!("expected a conflict on {key:?}, got {other}"),
    }
}
