//! A load generator speaking the controller's API: simulated nodes, each on
//! its own connection to the controller's unix socket (as every real node
//! holds one), registering, keeping its lease at the interval the
//! controller answered, reporting the usage of its blocks, claiming blocks
//! and watching the cluster — what trellisd's member does, without a
//! kernel behind it.
//!
//! Keep-alives are spread evenly over the interval (node `i` of `n` starts
//! `i/n` of an interval after it registered), as nodes that joined at
//! different times would be. Every node reports one address in use in each
//! block it holds, so its first report after a claim is a write and every
//! later one (unchanged) is not, as with real nodes at rest.

use anyhow::{Context, Result, bail, ensure};
use futures::StreamExt;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::transport::Channel;
use trellis_proto::v1::{self as pb, ControllerClient};

/// One simulated node.
pub struct SimNode {
    /// `sim-<i>`.
    pub name: String,
    client: ControllerClient<Channel>,
    /// The blocks it holds.
    blocks: Mutex<Vec<String>>,
}

impl SimNode {
    fn usage(&self) -> Vec<pb::BlockUsage> {
        let blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        blocks
            .iter()
            .map(|prefix| pb::BlockUsage {
                pool: String::new(),
                prefix: prefix.clone(),
                used: 1,
            })
            .collect()
    }

    async fn keep_alive(&self) -> Result<(), tonic::Status> {
        let req = pb::KeepAliveRequest {
            node: self.name.clone(),
            usage: self.usage(),
        };
        self.client.clone().keep_alive(req).await.map(drop)
    }
}

/// What the fleet's background tasks have counted.
#[derive(Debug, Default)]
pub struct Counters {
    /// KeepAlives answered OK.
    pub keepalives: AtomicU64,
    /// KeepAlives refused or lost.
    pub keepalive_failures: AtomicU64,
    /// Block claims seen, summed over every watcher.
    pub block_events: AtomicU64,
    /// Watch streams that ended with an error.
    pub watch_failures: AtomicU64,
    /// The first failure of either kind.
    pub first_failure: Mutex<Option<String>>,
}

impl Counters {
    fn failed(&self, what: String) {
        let mut f = self.first_failure.lock().unwrap_or_else(|e| e.into_inner());
        f.get_or_insert(what);
    }
}

/// What a batch of claims measured.
#[derive(Debug, Default)]
pub struct ClaimRun {
    /// Latency of each claim answered OK.
    pub latencies: Vec<Duration>,
    /// Claims refused (the first refusal in `first_error`).
    pub failed: usize,
    /// Why the first refused claim was.
    pub first_error: Option<String>,
    /// From the first claim sent to the last answered.
    pub wall: Duration,
}

impl ClaimRun {
    /// Claims answered OK per second of wall time.
    pub fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// The simulated nodes and their background tasks (lease keeping, watch
/// draining), which end when the fleet is dropped.
pub struct Fleet {
    /// The nodes, in joining order.
    pub nodes: Vec<Arc<SimNode>>,
    /// The keep-alive interval the controller answered.
    pub interval: Duration,
    /// What the tasks counted.
    pub counters: Arc<Counters>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    /// Watches end on their own signal ([`Fleet::close_watches`]).
    stop_watches: watch::Sender<bool>,
    watchers: JoinSet<()>,
}

impl Fleet {
    /// An empty fleet.
    pub fn new() -> Self {
        Fleet {
            nodes: Vec::new(),
            interval: Duration::ZERO,
            counters: Arc::default(),
            stop: watch::channel(false).0,
            tasks: JoinSet::new(),
            stop_watches: watch::channel(false).0,
            watchers: JoinSet::new(),
        }
    }

    /// Connects and registers nodes `sim-<i>` for every `i` of `which`,
    /// `parallel` at a time, and starts keeping their leases.
    pub async fn join(
        &mut self,
        socket: &Path,
        which: Range<usize>,
        parallel: usize,
    ) -> Result<()> {
        let n = which.len();
        let joined: Vec<Result<(SimNode, Duration)>> = futures::stream::iter(which)
            .map(|i| register(socket, i))
            .buffered(parallel)
            .collect()
            .await;
        for (k, j) in joined.into_iter().enumerate() {
            let (node, interval) = j?;
            self.interval = interval;
            let node = Arc::new(node);
            let offset = interval.mul_f64(k as f64 / n as f64);
            let (c, stop) = (self.counters.clone(), self.stop.subscribe());
            self.tasks
                .spawn(keep_lease(node.clone(), interval, offset, c, stop));
            self.nodes.push(node);
        }
        Ok(())
    }

    /// Each node of `which` claims one block of `pool`, `parallel` at once.
    pub async fn claim_each(&self, which: Range<usize>, pool: &str, parallel: usize) -> ClaimRun {
        let nodes = &self.nodes[which];
        let start = Instant::now();
        let results: Vec<_> = futures::stream::iter(nodes)
            .map(|n| claim(n, pool))
            .buffer_unordered(parallel)
            .collect()
            .await;
        tally(results, start)
    }

    /// Nodes `claimers` claim `total` blocks of `pool` between them, each
    /// one claim after another (as a node's member does), all at once.
    pub async fn claim_many(&self, claimers: Range<usize>, pool: &str, total: usize) -> ClaimRun {
        let nodes = &self.nodes[claimers];
        let k = nodes.len();
        let start = Instant::now();
        let per_node = nodes.iter().enumerate().map(|(j, n)| async move {
            let count = total / k + usize::from(j < total % k);
            let mut out = Vec::with_capacity(count);
            for _ in 0..count {
                out.push(claim(n, pool).await);
            }
            out
        });
        let results = futures::future::join_all(per_node).await.concat();
        tally(results, start)
    }

    /// One KeepAlive from every node, now, with its usage: after claims,
    /// the writes that record it. How long until all are answered.
    pub async fn report_usage(&self, parallel: usize) -> Result<Duration> {
        let start = Instant::now();
        let results: Vec<_> = futures::stream::iter(&self.nodes)
            .map(|n| async move { n.keep_alive().await.map_err(|s| (n.name.clone(), s)) })
            .buffer_unordered(parallel)
            .collect()
            .await;
        for r in results {
            if let Err((name, s)) = r {
                bail!("KeepAlive of {name}: {} {}", s.code(), s.message());
            }
        }
        Ok(start.elapsed())
    }

    /// Every node opens a Watch from 0 (a snapshot first), `parallel` at a
    /// time, each reading its whole snapshot (every part), as a node does
    /// before it acts; then its stream is drained in the background, block
    /// claims counted. The largest snapshot's encoded size in bytes, and its
    /// parts.
    pub async fn watch_all(&mut self, parallel: usize) -> Result<(usize, usize)> {
        let opened: Vec<Result<Opened>> = futures::stream::iter(&self.nodes)
            .map(|n| open_watch(n))
            .buffered(parallel)
            .collect()
            .await;
        let mut largest = (0, 0);
        for o in opened {
            let (stream, size) = o?;
            largest = largest.max(size);
            let (c, stop) = (self.counters.clone(), self.stop_watches.subscribe());
            self.watchers.spawn(drain(stream, c, stop));
        }
        Ok(largest)
    }

    /// Ends every watch stream (the nodes go on keeping their leases).
    pub async fn close_watches(&mut self) {
        let _ = self.stop_watches.send(true);
        while self.watchers.join_next().await.is_some() {}
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let _ = self.stop_watches.send(true);
        self.tasks.abort_all();
        self.watchers.abort_all();
    }
}

/// Node `sim-<i>`, on a connection of its own, registered; the interval
/// the controller answered.
async fn register(socket: &Path, i: usize) -> Result<(SimNode, Duration)> {
    let name = format!("sim-{i}");
    let channel = trellis_proto::channel_unix(socket).await?;
    let mut client = ControllerClient::new(channel);
    // 10.200.0.1, …: distinct underlay addresses, never routed (no trellisd
    // runs beside this controller).
    let ip = format!("10.{}.{}.{}", 200 + i / 64_000, i / 250 % 256, i % 250 + 1);
    let r = client
        .register_node(pb::RegisterNodeRequest {
            spec: Some(pb::NodeSpec {
                name: name.clone(),
                address_v4: ip,
                ..Default::default()
            }),
        })
        .await
        .with_context(|| format!("RegisterNode {name}"))?
        .into_inner();
    ensure!(
        r.keepalive_interval_ms > 0,
        "RegisterNode {name}: the controller answered a keep-alive interval of 0"
    );
    let node = SimNode {
        name,
        client,
        blocks: Mutex::default(),
    };
    Ok((node, Duration::from_millis(r.keepalive_interval_ms)))
}

/// Renews `node`'s lease every `interval`, the first `offset` from now.
async fn keep_lease(
    node: Arc<SimNode>,
    interval: Duration,
    offset: Duration,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    let mut next = tokio::time::Instant::now() + offset;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep_until(next) => {}
        }
        next += interval;
        match node.keep_alive().await {
            Ok(()) => counters.keepalives.fetch_add(1, Ordering::Relaxed),
            Err(s) => {
                counters.failed(format!(
                    "KeepAlive of {}: {} {}",
                    node.name,
                    s.code(),
                    s.message()
                ));
                counters.keepalive_failures.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

async fn claim(node: &SimNode, pool: &str) -> Result<Duration, String> {
    let req = pb::ClaimBlockRequest {
        node: node.name.clone(),
        pool: pool.into(),
    };
    let start = Instant::now();
    let r = node.client.clone().claim_block(req).await;
    let took = start.elapsed();
    match r {
        Ok(b) => {
            let mut blocks = node.blocks.lock().unwrap_or_else(|e| e.into_inner());
            blocks.push(b.into_inner().prefix);
            Ok(took)
        }
        Err(s) => Err(format!(
            "ClaimBlock by {}: {} {}",
            node.name,
            s.code(),
            s.message()
        )),
    }
}

fn tally(results: Vec<Result<Duration, String>>, start: Instant) -> ClaimRun {
    let mut run = ClaimRun {
        wall: start.elapsed(),
        ..ClaimRun::default()
    };
    for r in results {
        match r {
            Ok(d) => run.latencies.push(d),
            Err(e) => {
                run.failed += 1;
                run.first_error.get_or_insert(e);
            }
        }
    }
    run
}

/// An open watch stream, and its snapshot's encoded size and parts.
type Opened = (tonic::Streaming<pb::ControllerEvent>, (usize, usize));

/// A watch stream of `node`, its whole snapshot read (parts until one says
/// no `more`), and the snapshot's encoded size and parts.
async fn open_watch(node: &SimNode) -> Result<Opened> {
    let mut stream = node
        .client
        .clone()
        .watch(pb::ControllerWatchRequest { from_revision: 0 })
        .await
        .with_context(|| format!("Watch by {}", node.name))?
        .into_inner();
    let (mut bytes, mut parts) = (0, 0);
    loop {
        match stream.message().await {
            Ok(Some(
                e @ pb::ControllerEvent {
                    event: Some(pb::controller_event::Event::Snapshot(_)),
                },
            )) => {
                bytes += prost::Message::encoded_len(&e);
                parts += 1;
                let Some(pb::controller_event::Event::Snapshot(s)) = e.event else {
                    unreachable!("matched a snapshot")
                };
                if !s.more {
                    return Ok((stream, (bytes, parts)));
                }
            }
            other => bail!(
                "Watch by {}: expected a snapshot's part {}, got {other:?}",
                node.name,
                parts + 1
            ),
        }
    }
}

/// Reads a watch stream until `stop`, counting block claims.
async fn drain(
    mut stream: tonic::Streaming<pb::ControllerEvent>,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    use pb::controller_change::Object;
    loop {
        let next = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            m = stream.message() => m,
        };
        match next {
            Ok(Some(pb::ControllerEvent {
                event: Some(pb::controller_event::Event::Change(c)),
            })) if matches!(c.object, Some(Object::Block(_))) && !c.deleted => {
                counters.block_events.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                counters.failed("a Watch stream ended".into());
                counters.watch_failures.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(s) => {
                counters.failed(format!("Watch: {} {}", s.code(), s.message()));
                counters.watch_failures.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
}
