//! Prometheus metrics: RPC counters and latencies recorded by a tower layer
//! around the whole gRPC server ([`RpcMetricsLayer`]), and gauges of the
//! agent's state (endpoints, IPAM use) collected when scraped.
//!
//! The layer sees only HTTP/2 requests and `grpc-status`, so it measures every
//! service the server hosts (the Agent, health, reflection) without knowing
//! any of them. Gauges are read from the agent at scrape time rather than
//! kept in step with every change, so they cannot drift from the store.
//!
//! | name | type | labels |
//! |---|---|---|
//! | `trellis_rpc_requests_total` | counter | service, method, code |
//! | `trellis_rpc_errors_total` | counter (code ≠ OK) | service, method, code |
//! | `trellis_rpc_duration_seconds` | histogram | service, method |
//! | `trellis_rpc_refused_total` | counter | service, method |
//! | `trellis_networks` | gauge | — |
//! | `trellis_endpoints` | gauge | network |
//! | `trellis_ipam_capacity_addresses` | gauge | network, pool |
//! | `trellis_ipam_used_addresses` | gauge | network, pool |
//! | `trellis_ipam_free_addresses` | gauge | network, pool |
//! | `trellis_ipam_claimed_blocks` | gauge | network, pool |
//! | `trellis_metrics_collect_errors_total` | counter | — |
//! | `trellis_reconcile_objects_total` | counter | action |
//! | `trellis_bgp_session_established` | gauge (1/0) | peer |
//! | `trellis_bgp_session_uptime_seconds` | gauge | peer |
//! | `trellis_bgp_prefixes_advertised` | gauge | peer |
//! | `trellis_bgp_messages` | gauge (count since start) | peer, direction, type |
//! | `trellis_bgp_events` | gauge (count since start) | peer, event |
//!
//! The BGP figures are the speaker's own counters, copied at scrape time
//! like the agent's gauges (so they read as gauges; each only grows while
//! trellisd runs). `event` is `established`, `hold_timer_expired`,
//! `connect_failure`, `treat_as_withdraw`, `attribute_discarded`,
//! `prefix_announced` or `prefix_withdrawn`.
//!
//! A call refused because too many were under way
//! (`trellis_daemon::limit`) counts in `trellis_rpc_refused_total` as well
//! as in the requests and errors with `code="UNAVAILABLE"`.
//!
//! `action` is what a convergence of the node (at start-up and every
//! `[reconcile] interval` after) did to an object: `repaired` (put back or
//! brought in line), `removed` (an orphan), `detached` (an endpoint whose
//! container is gone) or `failed`. Anything but `failed` after the start
//! means something was changed behind trellis's back.
//!
//! Attach and Detach latency are `trellis_rpc_duration_seconds` with
//! `method="Attach"` / `method="Detach"`.

mod http;
mod layer;

pub use http::serve as serve_http;
pub use layer::{RpcMetricsLayer, RpcMetricsService};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use trellis_agent::Agent;

/// Labels of one RPC method.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    /// The fully qualified service (`trellis.v1.Agent`).
    pub service: String,
    /// The method (`Attach`).
    pub method: String,
}

/// Labels of one RPC method and its outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    /// The fully qualified service.
    pub service: String,
    /// The method.
    pub method: String,
    /// The gRPC status code name (`OK`, `INVALID_ARGUMENT`, …).
    pub code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NetworkLabels {
    network: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MessageLabels {
    peer: String,
    direction: String,
    r#type: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    peer: String,
    event: String,
}

/// Gauges of the BGP speaker's peers, refilled at every scrape.
#[derive(Debug, Default)]
struct BgpGauges {
    established: Family<PeerLabels, Gauge>,
    uptime: Family<PeerLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    advertised: Family<PeerLabels, Gauge>,
    messages: Family<MessageLabels, Gauge>,
    events: Family<EventLabels, Gauge>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    network: String,
    pool: String,
}

type HistogramFamily = Family<MethodLabels, Histogram, fn() -> Histogram>;

/// The RPC metrics that the layer updates.
#[derive(Debug, Clone)]
pub struct RpcMetrics {
    requests: Family<CodeLabels, Counter>,
    errors: Family<CodeLabels, Counter>,
    duration: HistogramFamily,
    refused: Family<MethodLabels, Counter>,
}

impl RpcMetrics {
    /// Counts one call refused for the limits on calls under way (it is
    /// [`record`](Self::record)ed too, as UNAVAILABLE).
    pub fn refused(&self, method: &MethodLabels) {
        self.refused.get_or_create(method).inc();
    }

    /// Records one finished call.
    pub fn record(&self, method: MethodLabels, code: &str, seconds: f64) {
        let labels = CodeLabels {
            service: method.service.clone(),
            method: method.method.clone(),
            code: code.to_owned(),
        };
        self.requests.get_or_create(&labels).inc();
        if code != "OK" {
            self.errors.get_or_create(&labels).inc();
        }
        self.duration.get_or_create(&method).observe(seconds);
    }
}

/// Gauges of the agent's state, refilled at every scrape.
#[derive(Debug, Default)]
struct StateGauges {
    networks: Gauge,
    endpoints: Family<NetworkLabels, Gauge>,
    capacity: Family<PoolLabels, Gauge>,
    used: Family<PoolLabels, Gauge>,
    free: Family<PoolLabels, Gauge>,
    blocks: Family<PoolLabels, Gauge>,
    collect_errors: Counter,
}

/// Every metric trellisd exports, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    rpc: RpcMetrics,
    state: StateGauges,
    bgp: BgpGauges,
    /// What convergences of the node did, by action.
    reconcile: Family<ActionLabels, Counter>,
    /// The speaker whose peers `bgp` shows, when BGP is on.
    speaker: std::sync::OnceLock<trellis_bgp::Speaker>,
    /// One scrape at a time: collection clears and refills the gauges.
    scrape: tokio::sync::Mutex<()>,
}

fn latency_histogram() -> Histogram {
    // 250 µs … ~8 s: attach is expected in single milliseconds, detach in tens.
    Histogram::new(exponential_buckets(0.00025, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("trellis");
        let rpc = RpcMetrics {
            requests: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            refused: Family::default(),
        };
        let state = StateGauges::default();
        let r = &mut registry;
        r.register(
            "rpc_requests",
            "gRPC calls finished, by code",
            rpc.requests.clone(),
        );
        r.register(
            "rpc_errors",
            "gRPC calls that ended with a code other than OK",
            rpc.errors.clone(),
        );
        r.register(
            "rpc_duration_seconds",
            "gRPC call latency, until the status is sent",
            rpc.duration.clone(),
        );
        r.register(
            "rpc_refused",
            "gRPC calls answered UNAVAILABLE at once because too many were under way",
            rpc.refused.clone(),
        );
        r.register(
            "networks",
            "Networks known to the agent",
            state.networks.clone(),
        );
        r.register(
            "endpoints",
            "Endpoints recorded, by network",
            state.endpoints.clone(),
        );
        r.register(
            "ipam_capacity_addresses",
            "Addresses an IPAM pool spans",
            state.capacity.clone(),
        );
        r.register(
            "ipam_used_addresses",
            "Addresses allocated from an IPAM pool",
            state.used.clone(),
        );
        r.register(
            "ipam_free_addresses",
            "Addresses still allocatable in an IPAM pool",
            state.free.clone(),
        );
        r.register(
            "ipam_claimed_blocks",
            "Blocks of an IPAM pool claimed by some host",
            state.blocks.clone(),
        );
        r.register(
            "metrics_collect_errors",
            "Scrapes that could not read the agent's state",
            state.collect_errors.clone(),
        );
        let bgp = BgpGauges::default();
        r.register(
            "bgp_session_established",
            "1 while the BGP session with the peer is Established",
            bgp.established.clone(),
        );
        r.register(
            "bgp_session_uptime_seconds",
            "How long the BGP session has been Established",
            bgp.uptime.clone(),
        );
        r.register(
            "bgp_prefixes_advertised",
            "Prefixes the peer has from this node now",
            bgp.advertised.clone(),
        );
        r.register(
            "bgp_messages",
            "BGP messages sent and received since trellisd started",
            bgp.messages.clone(),
        );
        r.register(
            "bgp_events",
            "BGP session events since trellisd started",
            bgp.events.clone(),
        );
        let reconcile = Family::default();
        r.register(
            "reconcile_objects",
            "Objects convergences of the node repaired, removed, detached or failed at",
            Family::clone(&reconcile),
        );
        Metrics {
            registry,
            rpc,
            state,
            bgp,
            reconcile,
            speaker: std::sync::OnceLock::new(),
            scrape: tokio::sync::Mutex::new(()),
        }
    }

    /// The RPC metrics, for [`RpcMetricsLayer`].
    pub fn rpc(&self) -> RpcMetrics {
        self.rpc.clone()
    }

    /// Counts what one convergence of the node did.
    pub fn reconciled(&self, report: &trellis_agent::ReconcileReport) {
        for (action, n) in [
            ("repaired", report.repaired.len()),
            ("removed", report.removed.len()),
            ("detached", report.detached.len()),
            ("failed", report.errors.len()),
        ] {
            let c = self.reconcile.get_or_create(&ActionLabels { action });
            c.inc_by(n as u64);
        }
    }

    /// Counts a convergence that failed as a whole.
    pub fn reconcile_failed(&self) {
        let failed = ActionLabels { action: "failed" };
        self.reconcile.get_or_create(&failed).inc();
    }

    /// Shows `speaker`'s peers from now on.
    pub fn set_bgp(&self, speaker: trellis_bgp::Speaker) {
        let _ = self.speaker.set(speaker);
    }

    fn collect_bgp(&self, speaker: &trellis_bgp::Speaker) {
        let b = &self.bgp;
        b.established.clear();
        b.uptime.clear();
        b.advertised.clear();
        b.messages.clear();
        b.events.clear();
        for p in speaker.peers() {
            let peer = p.config.address.to_string();
            let l = PeerLabels { peer: peer.clone() };
            let up = p.state == trellis_bgp::SessionState::Established;
            b.established.get_or_create(&l).set(i64::from(up));
            b.uptime
                .get_or_create(&l)
                .set(p.uptime().map_or(0.0, |d| d.as_secs_f64()));
            b.advertised
                .get_or_create(&l)
                .set(p.advertised.len() as i64);
            let c = &p.counters;
            for (dir, kind, n) in [
                ("in", "open", c.opens_in),
                ("out", "open", c.opens_out),
                ("in", "update", c.updates_in),
                ("out", "update", c.updates_out),
                ("in", "keepalive", c.keepalives_in),
                ("out", "keepalive", c.keepalives_out),
                ("in", "notification", c.notifications_in),
                ("out", "notification", c.notifications_out),
                ("in", "route_refresh", c.route_refreshes_in),
            ] {
                let m = MessageLabels {
                    peer: peer.clone(),
                    direction: dir.into(),
                    r#type: kind.into(),
                };
                b.messages.get_or_create(&m).set(clamp(u128::from(n)));
            }
            for (event, n) in [
                ("established", c.established),
                ("hold_timer_expired", c.hold_timer_expired),
                ("connect_failure", c.connect_failures),
                ("treat_as_withdraw", c.treat_as_withdraw),
                ("attribute_discarded", c.attributes_discarded),
                ("prefix_announced", c.prefixes_announced),
                ("prefix_withdrawn", c.prefixes_withdrawn),
            ] {
                let e = EventLabels {
                    peer: peer.clone(),
                    event: event.into(),
                };
                b.events.get_or_create(&e).set(clamp(u128::from(n)));
            }
        }
    }

    /// Reads the agent's state into the gauges and encodes every metric in
    /// the Prometheus text format.
    pub async fn scrape(&self, agent: Option<&Agent>) -> String {
        let _one = self.scrape.lock().await;
        if let Some(agent) = agent
            && let Err(e) = self.collect(agent).await
        {
            tracing::warn!(error = %e, "metrics: cannot read the agent's state");
            self.state.collect_errors.inc();
        }
        if let Some(speaker) = self.speaker.get() {
            self.collect_bgp(speaker);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("encoding into a String cannot fail");
        out
    }

    async fn collect(&self, agent: &Agent) -> Result<(), trellis_agent::Error> {
        let s = &self.state;
        let networks = agent.networks();
        let endpoints = agent.endpoints().await?;
        let mut per_network: BTreeMap<String, i64> = networks
            .iter()
            .map(|n| (n.spec.name.to_string(), 0))
            .collect();
        for ep in &endpoints {
            *per_network
                .entry(ep.request.network.to_string())
                .or_default() += 1;
        }
        s.networks.set(clamp(networks.len() as u128));
        for family in [&s.capacity, &s.used, &s.free, &s.blocks] {
            family.clear();
        }
        s.endpoints.clear();
        for (network, n) in per_network {
            s.endpoints.get_or_create(&NetworkLabels { network }).set(n);
        }
        for net in &networks {
            for (pool, _) in net.pools() {
                let u = match agent.ipam().usage(pool.as_str()).await {
                    Ok(u) => u,
                    Err(e) => {
                        tracing::warn!(%pool, error = %e, "metrics: cannot read IPAM usage");
                        s.collect_errors.inc();
                        continue;
                    }
                };
                let l = PoolLabels {
                    network: net.spec.name.to_string(),
                    pool: pool.into(),
                };
                s.capacity.get_or_create(&l).set(clamp(u.capacity));
                s.used.get_or_create(&l).set(clamp(u.used));
                s.free.get_or_create(&l).set(clamp(u.free));
                s.blocks.get_or_create(&l).set(clamp(u.claimed_blocks));
            }
        }
        Ok(())
    }
}

/// IPv6 pools span more than an `i64`: saturate.
fn clamp(v: u128) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
