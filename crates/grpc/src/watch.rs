//! Watch: the agent's broadcast of events, as a server stream.
//!
//! The subscription is taken *before* the replay is read, so an event that
//! happens during the replay is seen (possibly twice: once in the replay,
//! once live), never lost. A watcher that falls more than the broadcast's
//! capacity behind gets UNAVAILABLE and the stream ends: it must watch again
//! with `replay` to resynchronise, rather than silently miss changes.
//!
//! A watcher that stops reading is never waited for, and is cut off once
//! the ring has moved on past it: the agent sends on the broadcast without
//! waiting for anyone, so only this watcher's task waits — on its own
//! [`BUFFER`], behind what its connection's HTTP/2 window lets through —
//! while the shared ring moves on. What it holds here is bounded (that
//! buffer, and one receiver of a ring every watcher shares); when it reads
//! again it gets the bounded backlog, then UNAVAILABLE saying how far it
//! fell behind. Measured with tonic's default 2 MiB window and 4 KiB events
//! (`tests/watch.rs`): 581 events, then the cut-off, while a reader beside
//! it saw all 4000.

use crate::errors::status;
use crate::output;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use trellis_agent::{Agent, Event};
use trellis_proto::v1 as pb;

/// Events buffered per watcher between the agent and the connection.
const BUFFER: usize = 64;

type Item = Result<pb::Event, Status>;

/// A stream of events, starting with the current state when `replay`.
pub async fn start(
    agent: Arc<Agent>,
    replay: bool,
    mut stopping: watch::Receiver<bool>,
) -> Result<ReceiverStream<Item>, Status> {
    let mut events = agent.subscribe();
    let mut first = Vec::new();
    if replay {
        first.extend(agent.networks().into_iter().map(Event::NetworkCreated));
        let eps = agent.endpoints().await.map_err(status)?;
        first.extend(eps.into_iter().map(Event::EndpointAttached));
    }
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(async move {
        for e in first.into_iter().filter_map(output::event) {
            if tx.send(Ok(e)).await.is_err() {
                return;
            }
        }
        loop {
            let item = tokio::select! {
                _ = tx.closed() => return,
                _ = stopping.wait_for(|s| *s) => return,
                r = events.recv() => r,
            };
            let item = match item {
                Ok(e) => match output::event(e) {
                    Some(e) => Ok(e),
                    None => continue,
                },
                Err(RecvError::Lagged(n)) => Err(Status::unavailable(format!(
                    "watch fell {n} events behind; watch again with replay"
                ))),
                Err(RecvError::Closed) => return,
            };
            let end = item.is_err();
            if tx.send(item).await.is_err() || end {
                return;
            }
        }
    });
    Ok(ReceiverStream::new(rx))
}
