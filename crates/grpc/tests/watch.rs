//! A Watch consumer that stops reading: it is cut off — its stream ends
//! with UNAVAILABLE saying it fell behind and how to resume — after a
//! bounded backlog, while a watcher that reads sees every event promptly
//! and attaches go on as before.
//!
//! Events are made cheaply: a network definition is rewritten in the store
//! by hand (as another node or tool would), each time with a different
//! 4 KiB warning, and the agent's follower of the store announces each as
//! `NetworkCreated`. 4 KiB events fill the stalled connection's HTTP/2
//! window (2 MiB by default in tonic's client) after about 500 of them.

use crate::util::{Harness, attach, bridge, create};
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::Streaming;
use trellis_proto::v1 as pb;
use trellis_proto::v1::AgentClient;
use trellis_store::Expect;

/// Events written in all.
const EVENTS: usize = 4000;
/// Events written before the reading watcher must have seen them all.
const BATCH: usize = 100;
/// The size of each event's warning.
const PAD: usize = 4096;
/// How long the reading watcher may take to see an event.
const PROMPT: Duration = Duration::from_secs(5);

/// A Watch on a connection of its own: a stalled stream holds its
/// connection's flow-control window, which other calls on that connection
/// share.
async fn watch(h: &Harness) -> Streaming<pb::Event> {
    let channel = trellis_proto::channel_unix(h.path("trellis.sock"))
        .await
        .unwrap();
    let req = pb::WatchRequest { replay: false };
    let stream = AgentClient::new(channel).watch(req).await;
    stream.unwrap().into_inner()
}

/// The stored definition of network `w` with warning `n` (a JSON object
/// with its last brace replaced).
fn rewritten(stored: &[u8], n: usize) -> Vec<u8> {
    let text = std::str::from_utf8(stored).unwrap();
    let body = text.trim_end().strip_suffix('}').unwrap();
    let warning = format!("{n:06} {}", "x".repeat(PAD));
    format!("{body},\"warnings\":[\"{warning}\"]}}").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_does_not_read_is_cut_off_without_slowing_the_others() {
    let h = Harness::fake().await;
    let mut c = h.client.clone();
    create(&mut c, bridge("w", "10.88.0.0/24", "trw")).await;
    let stored = h.agent.store().get("agent/networks/w").await.unwrap();
    let stored = stored.expect("network w is stored").value;

    // Both open before the first event; the stalled one is never polled
    // until the end.
    let mut stalled = watch(&h).await;
    let mut reader = watch(&h).await;
    let mut slowest = Duration::ZERO;
    let mut attach_took = Duration::ZERO;
    let started = Instant::now();
    for batch in 0..EVENTS / BATCH {
        let sent = Instant::now();
        for i in batch * BATCH..(batch + 1) * BATCH {
            let value = rewritten(&stored, i);
            let key = "agent/networks/w";
            h.agent
                .store()
                .put_if(key, value, Expect::Any)
                .await
                .unwrap();
        }
        for i in batch * BATCH..(batch + 1) * BATCH {
            let e = tokio::time::timeout(PROMPT, reader.next()).await;
            let e = e.unwrap_or_else(|_| panic!("event {i} not seen within {PROMPT:?}"));
            let e = e.expect("the reader's stream goes on").expect("an event");
            assert_eq!(e.kind, pb::event::Kind::NetworkCreated as i32);
            let Some(pb::event::Object::Network(n)) = e.object else {
                panic!("event {i} carries no network: {e:?}");
            };
            let prefix = format!("{i:06} ");
            assert!(n.warnings[0].starts_with(&prefix), "event {i} out of order");
        }
        slowest = slowest.max(sent.elapsed());
        // Halfway, an attach: answered as on a quiet node.
        if batch == EVENTS / BATCH / 2 {
            let c1 = h.container("c1").await;
            let t = Instant::now();
            c.attach(attach("w", "c1", &c1)).await.unwrap();
            attach_took = t.elapsed();
            let e = reader.next().await.unwrap().unwrap();
            assert_eq!(e.kind, pb::event::Kind::EndpointAttached as i32);
        }
    }
    let flood = started.elapsed();

    // Now the stalled watcher reads: a bounded backlog, then the cut-off.
    let mut backlog = 0;
    let status = loop {
        let next = tokio::time::timeout(PROMPT, stalled.next()).await;
        match next.expect("the stalled stream answers when polled") {
            Some(Ok(_)) => backlog += 1,
            Some(Err(status)) => break status,
            None => panic!("the stalled stream ended without a status after {backlog} events"),
        }
    };
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let message = status.message();
    assert!(
        message.contains("fell") && message.contains("behind") && message.contains("replay"),
        "{message}"
    );
    assert!(
        backlog < EVENTS / 2,
        "the stalled watcher was fed {backlog} of {EVENTS} events: its backlog is not bounded"
    );
    assert!(
        stalled.next().await.is_none(),
        "the stream ends after the status"
    );

    // The agent goes on: a new watcher sees new events.
    let mut again = watch(&h).await;
    let value = rewritten(&stored, EVENTS);
    let key = "agent/networks/w";
    h.agent
        .store()
        .put_if(key, value, Expect::Any)
        .await
        .unwrap();
    let e = tokio::time::timeout(PROMPT, again.next()).await.unwrap();
    assert_eq!(
        e.unwrap().unwrap().kind,
        pb::event::Kind::NetworkCreated as i32
    );

    println!(
        "{EVENTS} events of {PAD} B in {flood:?}; the reader saw every batch of {BATCH} within {slowest:?}; an attach mid-flood took {attach_took:?}; the stalled watcher got {backlog} events, then {:?}: {message}",
        status.code()
    );
    trellis_testlab::report::record(
        "trellisd",
        &format!(
            "a Watch client that never reads its stream while {EVENTS} events of ~4 KiB are sent (a second watcher reads, an attach is made mid-flood)"
        ),
        &format!(
            "the reading watcher saw all {EVENTS} events in order, each batch of {BATCH} within {} ms; the attach took {} ms; the stalled stream, polled at last, gave {backlog} buffered events then UNAVAILABLE \"{message}\" and ended",
            slowest.as_millis(),
            attach_took.as_millis(),
        ),
    );
    h.stop().await;
}
