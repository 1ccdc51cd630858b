//! Serving: the gRPC routes on the unix socket and (optionally) TCP with TLS,
//! plus the metrics endpoint, all stopped by one shutdown future.
//!
//! Unix-socket connections go through `trellis_grpc::unix_incoming`, which
//! normalises the `:authority` that gRPC C-core clients (Python, Java, C++)
//! send, so that h2 does not refuse their calls.
//!
//! Following mini-redis, [`serve`] takes bound listeners and a shutdown
//! future, so that tests can bind what they like and stop it when they like.

use crate::metrics::{Metrics, RpcMetricsLayer};
use anyhow::{Context, Result};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use trellis_agent::Agent;

/// How long in-flight calls (and open Watch streams) get to finish after the
/// shutdown signal before their connections are dropped.
pub const GRACE: Duration = Duration::from_secs(10);

/// The sockets trellisd serves on, bound before [`serve`] is called.
pub struct Listeners {
    /// gRPC over the unix socket.
    pub unix: UnixListener,
    /// gRPC over TCP, with the TLS settings to apply (`None`: plaintext).
    pub tcp: Option<(TcpListener, Option<ServerTlsConfig>)>,
    /// Prometheus metrics over HTTP.
    pub metrics: Option<TcpListener>,
}

/// The gRPC services trellisd hosts — trellis.v1.Agent, health and
/// reflection — and what shutdown must tell them (health NOT_SERVING, open
/// Watch streams ended): trellis-grpc's, so the daemon and the library's own
/// `serve` expose exactly the same set.
pub use trellis_grpc::Services;

/// Loads the TLS identity (and client CA) named in the config.
pub fn tls_config(tls: &crate::config::Tls) -> Result<ServerTlsConfig> {
    let read = |p: &std::path::Path, what: &str| {
        std::fs::read(p).with_context(|| format!("read TLS {what} {}", p.display()))
    };
    let identity = Identity::from_pem(read(&tls.cert, "certificate")?, read(&tls.key, "key")?);
    let mut cfg = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &tls.client_ca {
        cfg = cfg.client_ca_root(Certificate::from_pem(read(ca, "client CA")?));
    }
    Ok(cfg)
}

/// Serves `services` on `listeners` (and metrics from `metrics` and `agent`)
/// until `shutdown` completes, then drains for at most [`GRACE`].
pub async fn serve(
    services: Services,
    listeners: Listeners,
    metrics: Arc<Metrics>,
    agent: Option<Arc<Agent>>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let layer = RpcMetricsLayer::new(metrics.rpc());
    let mut tasks = JoinSet::new();
    let unix = Server::builder()
        .layer(layer.clone())
        .add_routes(services.routes.clone())
        .serve_with_incoming_shutdown(trellis_grpc::unix_incoming(listeners.unix), stopped());
    tasks.spawn(async move { unix.await.context("gRPC on the unix socket") });
    if let Some((listener, tls)) = listeners.tcp {
        let mut builder = Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls).context("TLS configuration")?;
        }
        let tcp = builder
            .layer(layer)
            .add_routes(services.routes.clone())
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stopped());
        tasks.spawn(async move { tcp.await.context("gRPC over TCP") });
    }
    if let Some(listener) = listeners.metrics {
        let render = move || {
            let (metrics, agent) = (metrics.clone(), agent.clone());
            async move { metrics.scrape(agent.as_deref()).await }
        };
        let http = crate::metrics::serve_http(listener, render, stopped());
        tasks.spawn(async move {
            http.await;
            Ok(())
        });
    }
    tokio::select! {
        () = shutdown => tracing::info!("shutting down"),
        Some(done) = tasks.join_next() => {
            // A server ended on its own: that is an error, stop the others.
            let _ = stop_tx.send(true);
            tasks.abort_all();
            return done.context("server task")?.and_then(|()| anyhow::bail!("a server stopped unexpectedly"));
        }
    }
    services.shutting_down().await;
    let _ = stop_tx.send(true);
    drain(tasks).await
}

/// Waits for the servers to finish their calls, for at most [`GRACE`].
async fn drain(mut tasks: JoinSet<Result<()>>) -> Result<()> {
    let all = async {
        let mut first_err = None;
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done.context("server task").and_then(|r| r) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    };
    match tokio::time::timeout(GRACE, all).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(grace = ?GRACE, "calls still open after the grace period; dropping them");
            Ok(())
        }
    }
}
