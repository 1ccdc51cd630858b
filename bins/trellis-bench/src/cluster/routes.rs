//! How long a block newly claimed by node A takes to be routed on node B:
//! the controller commits the claim, B's watch hears of it, B's member syncs
//! and installs `block via A`.
//!
//! The claim is made straight at the controller, for A (`ClaimBlock`, node
//! h1, in a pool no network uses, so A has nothing to do with it): the
//! cleanest start of the clock, the moment the claim is answered. The end is
//! read in B's namespace by a [`RouteMonitor`] keeping trellisd's routes
//! ([`RTPROT_TRELLIS`]; an rtnetlink subscription, no polling). One claim
//! at a time, B idle in between (the route is seen, then a short pause), so
//! every sample is one newly claimed block.
//!
//! The route may be in B's kernel before the claim's answer reaches the
//! bench (both leave the controller at about the same time): such a sample
//! counts as zero from the answer, and the two are counted.

use super::rig::CLAIM_POOL;
use crate::monitor::RouteMonitor;
use anyhow::{Context, Result};
use ipnet::IpNet;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tonic::transport::Channel;
use trellis_proto::v1::{self as pb, ControllerClient};
use trellis_route::RTPROT_TRELLIS;
use trellis_testlab::Netns;

/// How long B may take to route one block before the run fails.
pub const ROUTE_LIMIT: Duration = Duration::from_secs(10);
/// The pause between samples.
pub const PAUSE: Duration = Duration::from_millis(10);

/// What the claims measured.
#[derive(Debug, Default)]
pub struct Propagation {
    /// Claim answered → route in B's kernel (0 when the route came first).
    pub from_answer: Vec<Duration>,
    /// Claim sent → route in B's kernel.
    pub from_request: Vec<Duration>,
    /// The `ClaimBlock` round trips themselves.
    pub claim: Vec<Duration>,
    /// Samples whose route was there before the claim's answer.
    pub route_first: usize,
}

/// Claims `samples` blocks for node `a` (one untimed first) and times each
/// until its route shows in `b`.
pub fn claim_to_route(
    rt: &Runtime,
    ctl: &mut ControllerClient<Channel>,
    a: &str,
    b: &Netns,
    samples: usize,
) -> Result<Propagation> {
    let mut monitor = RouteMonitor::start(b, RTPROT_TRELLIS)?;
    let mut out = Propagation::default();
    for round in 0..=samples {
        let req = pb::ClaimBlockRequest {
            node: a.into(),
            pool: CLAIM_POOL.0.into(),
        };
        let sent = Instant::now();
        let block = rt
            .block_on(ctl.claim_block(req))
            .with_context(|| format!("ClaimBlock #{round} for {a}"))?
            .into_inner();
        let answered = Instant::now();
        let prefix: IpNet = block
            .prefix
            .parse()
            .with_context(|| format!("ClaimBlock answered prefix {:?}", block.prefix))?;
        let routed = monitor
            .wait_for(prefix, ROUTE_LIMIT)
            .with_context(|| format!("block {prefix} claimed for {a}: route on B"))?;
        if round > 0 {
            out.claim.push(answered - sent);
            out.from_request
                .push(routed.saturating_duration_since(sent));
            out.from_answer
                .push(routed.saturating_duration_since(answered));
            out.route_first += usize::from(routed < answered);
        }
        std::thread::sleep(PAUSE);
    }
    Ok(out)
}
