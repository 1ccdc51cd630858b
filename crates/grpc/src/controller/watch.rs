//! Watch: the core's snapshot and changes, as a server stream.
//!
//! Every watch is fed by the core's one store watch (its hub). A task pulls
//! the core's stream into a small channel, so a watcher that reads slowly
//! costs [`BUFFER`] messages here and its place in the hub's buffer; once
//! it falls further behind than the hub keeps (`Config::watch_buffer`
//! changes), it is cut off with UNAVAILABLE and resumes from the revision
//! after the last it saw (from the hub's ring, or the store; a revision the
//! store compacted gets a fresh snapshot marked `reset`). Nothing is
//! buffered without bound, no watcher slows the others, and nothing is
//! skipped silently. A snapshot goes out in parts ([`output::SNAPSHOT_PART`]
//! objects each), so no message grows with the cluster.

use super::errors::status;
use super::output;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use trellis_cluster::Controller;
use trellis_proto::v1 as pb;

/// Events buffered per watcher between the core and the connection.
pub const BUFFER: usize = 4;

type Item = Result<pb::ControllerEvent, Status>;

/// A stream of the cluster's events from `from_revision` (0: a snapshot
/// first). It ends when the client goes, when `stopping` turns true, or
/// after the first error.
pub async fn start(
    controller: Arc<Controller>,
    from_revision: u64,
    mut stopping: watch::Receiver<bool>,
) -> Result<ReceiverStream<Item>, Status> {
    let mut events = controller.watch(from_revision).await.map_err(status)?;
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                _ = tx.closed() => return,
                _ = stopping.wait_for(|s| *s) => return,
                e = events.next() => e,
            };
            let Some(next) = next else { return };
            // A snapshot's parts are made one at a time, as the channel
            // takes them.
            let items: Box<dyn Iterator<Item = Item> + Send> = match next {
                Ok(e) => Box::new(output::events(e, output::SNAPSHOT_PART).map(Ok)),
                Err(e) => Box::new(std::iter::once(Err(status(e)))),
            };
            for item in items {
                let end = item.is_err();
                tokio::select! {
                    sent = tx.send(item) => if sent.is_err() || end { return },
                    _ = stopping.wait_for(|s| *s) => return,
                }
            }
        }
    });
    Ok(ReceiverStream::new(rx))
}
