//! Attach latency on a cluster node beside the same on a standalone node,
//! interleaved in one run: the cluster's promise is that an attach stays
//! local (the node allocates inside blocks it already holds; the controller
//! is not on the path).
//!
//! As `trellis-bench grpc`'s "attach @1": one probe container per node,
//! attached (timed) and detached (timed) `samples` times, a fresh container
//! id each time, so the node holds exactly one endpoint while an attach is
//! timed. The two nodes take turns, and which goes first alternates every
//! round, so neither always runs just after the other's detach. One
//! untimed round first (the cluster node may claim its first block then).

use super::rig::{CLUSTER_NET, Node, SOLO_NET};
use anyhow::{Context, Result, bail};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use trellis_proto::v1 as pb;
use trellis_testlab::Netns;

/// What one node's probes measured.
#[derive(Debug, Default)]
pub struct Probes {
    /// Attach latencies.
    pub attach: Vec<Duration>,
    /// Detach latencies.
    pub detach: Vec<Duration>,
}

/// The cluster node's probes and the standalone node's.
#[derive(Debug, Default)]
pub struct Interleaved {
    /// On the cluster member, network [`CLUSTER_NET`].
    pub cluster: Probes,
    /// On the standalone node, network [`SOLO_NET`].
    pub solo: Probes,
}

/// Runs `samples` rounds on `cluster` and `solo`.
pub fn interleaved(
    rt: &Runtime,
    cluster: &mut Node,
    solo: &mut Node,
    samples: usize,
) -> Result<Interleaved> {
    let (c_ns, s_ns) = (Netns::new("cprobe"), Netns::new("sprobe"));
    let mut out = Interleaved::default();
    for round in 0..=samples {
        let mut turns = [
            (&mut *cluster, CLUSTER_NET, &c_ns, &mut out.cluster),
            (&mut *solo, SOLO_NET.0, &s_ns, &mut out.solo),
        ];
        if round % 2 == 1 {
            turns.reverse();
        }
        for (node, network, ns, probes) in turns {
            let id = format!("{}-probe{round}", node.name);
            let (a, d) = probe(rt, node, network, ns, &id, round == 0)
                .with_context(|| format!("round {round} on {}", node.name))?;
            if round > 0 {
                probes.attach.push(a);
                probes.detach.push(d);
            }
        }
    }
    Ok(out)
}

/// Attaches container `id` in `ns` to `network` on `node`, then detaches
/// it; both timed from before the request to the decoded answer. The
/// untimed first attach (`warmup`) is retried while a cluster node is not
/// yet registered (UNAVAILABLE), for up to 10 s; a timed one never is.
fn probe(
    rt: &Runtime,
    node: &mut Node,
    network: &str,
    ns: &Netns,
    id: &str,
    warmup: bool,
) -> Result<(Duration, Duration)> {
    let req = pb::AttachRequest {
        network: network.into(),
        container_id: id.into(),
        netns: ns.path_str(),
        ifname: "eth0".into(),
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let attached = loop {
        let start = Instant::now();
        let r = rt.block_on(node.agent.attach(req.clone()));
        let took = start.elapsed();
        match r {
            Ok(_) => break took,
            Err(s)
                if warmup && s.code() == tonic::Code::Unavailable && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(s) => bail!(
                "Attach: {} {}\ntrellisd log (tail):\n{}",
                s.code(),
                s.message(),
                node.daemon.log()
            ),
        }
    };
    let req = pb::DetachRequest {
        container_id: id.into(),
        ifname: "eth0".into(),
    };
    let start = Instant::now();
    let r = rt.block_on(node.agent.detach(req));
    let detached = start.elapsed();
    if let Err(s) = r {
        bail!("Detach: {} {}", s.code(), s.message());
    }
    Ok((attached, detached))
}
