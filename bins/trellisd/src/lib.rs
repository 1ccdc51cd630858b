//! trellisd, the node daemon: the trellis agent served over gRPC.
//!
//! Design decisions:
//!
//! * **Standalone by default.** With no controller configured the daemon keeps
//!   its state in a redb file under the state directory and needs nothing
//!   else; every path is a flag so that tests run it in a temporary directory
//!   inside a network namespace of their own.
//! * **The unix socket is the API's front door**, mode 0600: only root drives
//!   the daemon. TCP is optional and refused without TLS unless
//!   `--insecure-tcp` says otherwise, explicitly. With `--tls-client-ca`,
//!   TCP callers are known by their certificates: the admin's may do
//!   everything, the controller's only read (it shows the node's endpoints
//!   and compares its blocks with the block map), a node's nothing
//!   (`trellis_grpc::access`); the node registers where the controller
//!   reads it (`--agent-address`).
//! * **Metrics from the outside in.** RPC counts, codes and latencies come
//!   from a tower layer around the whole gRPC server, not from the service;
//!   state gauges are read from the agent when Prometheus scrapes.
//! * **A bounded number of calls under way.** At most `--max-in-flight`
//!   calls and, counted apart, `--max-watches` Watch streams, over the unix
//!   socket and TCP together; one more is answered UNAVAILABLE at once
//!   rather than queued, so a storm of clients costs bounded memory
//!   (`trellis_daemon::limit`). Health checks are always answered.
//! * **Servers take listeners and a shutdown future** ([`server::serve`]), as
//!   in mini-redis: `main` binds and waits for SIGTERM/SIGINT, tests bind
//!   what they like.

pub mod bgp;
pub mod config;
pub mod fs;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod server;

use anyhow::{Context, Result};
use config::Config;
use std::future::Future;
use std::sync::Arc;
use trellis_agent::{Agent, Backends, HostPolicy};
use trellis_store::RedbStore;

/// Runs the daemon described by `cfg` until `shutdown` completes: opens the
/// store, opens the agent on the host's namespace, binds, serves, and removes
/// the socket on the way out.
///
/// It serves as soon as the agent is open, and reconciles the node in the
/// background meanwhile (`Status` says `ready=false` until that is done):
/// a node with a thousand containers must not refuse attaches and detaches
/// for the seconds a full convergence takes after every restart. Requests
/// and the convergence may run at once; the convergence leaves alone what
/// requests made or took meanwhile (see `trellis_agent`'s `converge`).
/// After it the node is converged again every `[reconcile] interval`.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<()> {
    let agent = Arc::new(open_agent(&cfg).await?);
    let metrics = Arc::new(metrics::Metrics::new());
    let tcp_clients = cfg.tcp_clients();
    let edge = trellis_grpc::AgentService::new(agent.clone()).tcp_clients(tcp_clients);
    let mut services = server::Services::with_edge(edge).await;
    let listeners = bind(&cfg).await?;
    let bgp = match &cfg.bgp {
        Some(b) => Some(bgp::BgpNode::start(b, &agent).await?),
        None => None,
    };
    if let Some(b) = &bgp {
        metrics.set_bgp(b.speaker().clone());
    }
    services.routes =
        trellis_grpc::BgpService::new(bgp.clone().map(|b| b as Arc<dyn trellis_grpc::BgpCore>))
            .tcp_clients(tcp_clients)
            .route(std::mem::take(&mut services.routes));
    let exporting = bgp.clone().map(|b| tokio::spawn(b.export(agent.clone())));
    tracing::info!(
        node = %cfg.node,
        socket = %cfg.socket.display(),
        tcp = ?cfg.tcp.as_ref().map(|t| t.listen),
        metrics = ?cfg.metrics,
        max_in_flight = cfg.limits.max_in_flight,
        max_watches = cfg.limits.max_watches,
        "trellisd serving; reconciling in the background"
    );
    notify::notify("READY=1");
    let every = cfg.reconcile.every();
    let reconciling = tokio::spawn(reconcile(agent.clone(), metrics.clone(), every));
    let member = match &cfg.cluster {
        Some(c) => Some(tokio::spawn(join(agent.clone(), &cfg.node, c)?)),
        None => None,
    };
    let stopping = async {
        shutdown.await;
        notify::notify("STOPPING=1");
    };
    let gauges = Some(agent.clone());
    let limits = cfg.limits.into();
    let served = server::serve(services, listeners, metrics, gauges, limits, stopping).await;
    // An unfinished reconcile is safe to stop: the next start does it again.
    reconciling.abort();
    if let Some(m) = member {
        m.abort();
    }
    if let Some(e) = exporting {
        e.abort();
    }
    if let Some(b) = &bgp {
        b.stop().await;
    }
    // Retired veths still queued for deletion go before the process does,
    // so a clean stop leaves none (a crash leaves them to the next start).
    if tokio::time::timeout(SETTLE, agent.settle()).await.is_err() {
        tracing::warn!(grace = ?SETTLE, "retired veths still being deleted at exit; the next start sweeps them");
    }
    fs::remove_socket(&cfg.socket);
    served
}

/// The node's membership of the cluster `c`: joined to the agent now, its
/// loops (lease, watch, blocks) returned to be spawned.
fn join(
    agent: Arc<Agent>,
    node: &str,
    c: &config::Cluster,
) -> Result<impl Future<Output = ()> + Send + 'static> {
    // The controller lets a node act only as the node its certificate
    // names: one that names another would be refused on every call, so it
    // stops here, saying so, instead of retrying forever.
    if let Some((cert, _)) = &c.identity {
        let pem =
            std::fs::read(cert).with_context(|| format!("--controller-cert {}", cert.display()))?;
        let named = trellis_grpc::identity::from_pem(&pem)
            .with_context(|| format!("--controller-cert {}", cert.display()))?;
        match named {
            trellis_grpc::identity::Caller::Node(n) if n.as_str() == node => {}
            other => anyhow::bail!(
                "--controller-cert {} names {other}, not node:{node}: the controller would refuse every call of this node (make one with scripts/certs node {node})",
                cert.display()
            ),
        }
    }
    let tls = c.ca.clone().map(|ca| trellis_member::TlsFiles {
        ca,
        identity: c.identity.clone(),
    });
    let api = trellis_member::GrpcController::new(&c.controller, tls.as_ref())
        .map_err(anyhow::Error::msg)?;
    let mut mc = trellis_member::MemberConfig::new(trellis_cluster::NodeSpec {
        name: trellis_types::NodeName::parse("node", node)?,
        address_v4: c.address_v4,
        address_v6: c.address_v6,
        labels: Default::default(),
        agent_address: c.agent_address.clone(),
    });
    mc.claim_ahead = c.claim_ahead;
    mc.release_empty_after = std::time::Duration::from_secs(c.release_empty_after);
    tracing::info!(
        controller = %c.controller,
        agent_address = c.agent_address.as_ref().map_or("none (the controller cannot read this node)", |a| a.as_str()),
        "joining the cluster"
    );
    let member = trellis_member::Member::join(agent, Arc::new(api), mc);
    Ok(member.run(std::future::pending()))
}

/// How long a clean stop waits for queued deletions.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(10);

/// Start-up reconciliation: records whose netns is gone are detached,
/// trellis's kernel objects with no record are removed, missing pieces put
/// back. Failures of single items are reported, not fatal.
/// A failure of the whole (the store unreadable) is tried again, with a
/// growing pause, until it succeeds.
///
/// Then, with `every`, the same convergence again and again, each `every`
/// after the last one ended — so two never overlap, and a slow one (a
/// node of thousands of containers) delays the next rather than piling up.
/// A veth, route, bridge address or nftables element deleted behind
/// trellis's back comes back within about `every`, without a restart.
async fn reconcile(
    agent: Arc<Agent>,
    metrics: Arc<metrics::Metrics>,
    every: Option<std::time::Duration>,
) {
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(500);
    loop {
        match agent.reconcile().await {
            Ok(report) => {
                metrics.reconciled(&report);
                report_reconcile(&agent, &report, started);
                break;
            }
            Err(e) => {
                metrics.reconcile_failed();
                tracing::error!(error = %e, retry_in = ?pause, "start-up reconciliation failed; not ready");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(30));
            }
        }
    }
    let Some(every) = every else {
        return;
    };
    loop {
        tokio::time::sleep(every).await;
        let started = std::time::Instant::now();
        match agent.reconcile().await {
            Ok(report) => {
                metrics.reconciled(&report);
                report_convergence(&report, started);
            }
            Err(e) => {
                metrics.reconcile_failed();
                tracing::warn!(error = %e, retry_in = ?every, "periodic convergence failed")
            }
        }
    }
}

/// A periodic convergence is logged only when it changed something (at
/// info, naming each object) or failed at something (at warn): a node at
/// rest logs nothing every interval.
fn report_convergence(report: &trellis_agent::ReconcileReport, started: std::time::Instant) {
    for e in &report.errors {
        tracing::warn!(error = %e, "periodic convergence");
    }
    if report.detached.is_empty() && report.removed.is_empty() && report.repaired.is_empty() {
        return;
    }
    let detached: Vec<String> = report.detached.iter().map(ToString::to_string).collect();
    tracing::info!(
        detached = ?detached,
        removed = ?report.removed,
        repaired = ?report.repaired,
        took_ms = started.elapsed().as_millis() as u64,
        "converged: the node had drifted behind trellis's back"
    );
}

fn report_reconcile(
    agent: &Agent,
    report: &trellis_agent::ReconcileReport,
    started: std::time::Instant,
) {
    for e in &report.errors {
        tracing::warn!(error = %e, "reconcile");
    }
    tracing::info!(
        networks = agent.networks().len(),
        detached = report.detached.len(),
        removed = report.removed.len(),
        repaired = report.repaired.len(),
        errors = report.errors.len(),
        took_ms = started.elapsed().as_millis() as u64,
        "reconciled: ready"
    );
}

async fn open_agent(cfg: &Config) -> Result<Agent> {
    fs::ensure_state_dir(&cfg.state_dir)?;
    let path = cfg.store_path();
    // The store names its file and says what to do if it is damaged; it
    // never replaces a file it cannot open.
    let store = RedbStore::open(&path).context("cannot open the state store")?;
    let backends = Backends::kernel(None, Arc::new(store))
        .await
        .context("open netlink and nf_tables sockets")?;
    let agent = Agent::open(backends, &cfg.node)
        .await
        .context("load networks and endpoints from the store")?
        .with_host_policy(HostPolicy {
            forwarding: cfg.host.forwarding,
            firewall: cfg.host.firewall,
        });
    tracing::info!(
        networks = agent.networks().len(),
        store = %path.display(),
        "agent opened"
    );
    Ok(agent)
}

/// Binds every listener the config names.
pub async fn bind(cfg: &Config) -> Result<server::Listeners> {
    let unix = fs::bind_unix(&cfg.socket)?;
    let tcp = match &cfg.tcp {
        Some(tcp) => {
            let listener = tokio::net::TcpListener::bind(tcp.listen)
                .await
                .with_context(|| format!("bind TCP {}", tcp.listen))?;
            let tls = tcp.tls.as_ref().map(server::tls_config).transpose()?;
            match tcp.tls.as_ref().map(|t| t.client_ca.is_some()) {
                None => {
                    tracing::warn!(listen = %tcp.listen, "serving gRPC over TCP WITHOUT TLS (--insecure-tcp)")
                }
                Some(false) => tracing::warn!(
                    listen = %tcp.listen,
                    "serving gRPC over TCP with TLS but WITHOUT client certificates: every TCP client is the admin"
                ),
                Some(true) => tracing::info!(
                    listen = %tcp.listen,
                    "serving gRPC over TCP with mutual TLS: the admin's certificate may do everything, the controller's only read"
                ),
            }
            Some((listener, tls))
        }
        None => None,
    };
    let metrics = match cfg.metrics {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("bind metrics {addr}"))?,
        ),
        None => None,
    };
    Ok(server::Listeners { unix, tcp, metrics })
}
