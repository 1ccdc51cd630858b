//! Serving: the gRPC routes on the unix socket and (optionally) TCP with TLS,
//! plus the metrics endpoint, all stopped by one shutdown future.
//!
//! Unix-socket connections go through `trellis_grpc::unix_incoming`, which
//! normalises the `:authority` that gRPC C-core clients (Python, Java, C++)
//! send, so that h2 does not refuse their calls.
//!
//! Every gRPC call passes two layers, shared by the unix socket and TCP: the
//! RPC metrics outside, and inside them the limits on calls under way
//! (`trellis_daemon::limit`), so that refused calls are counted too.
//!
//! Following mini-redis, [`serve`] takes bound listeners and a shutdown
//! future, so that tests can bind what they like and stop it when they like.

use crate::metrics::{Metrics, RpcMetricsLayer};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UnixListener};
use tonic::transport::ServerTlsConfig;
use tower::ServiceBuilder;
use tower::layer::util::{Identity, Stack};
use trellis_agent::Agent;
use trellis_daemon::limit::{CallLimitLayer, CallLimits};
use trellis_daemon::{Error, Servers};

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
pub fn tls_config(tls: &crate::config::Tls) -> Result<ServerTlsConfig, Error> {
    trellis_daemon::tls::server_config(&tls.cert, &tls.key, tls.client_ca.as_deref())
}

/// The layers around every gRPC call: metrics, then the call limits.
pub type GrpcLayer = ServiceBuilder<Stack<CallLimitLayer, Stack<RpcMetricsLayer, Identity>>>;

/// The layers around every gRPC call, recording into `metrics` and
/// refusing calls beyond `limits`: one value, cloned for each server, so
/// that the limits count the unix socket's calls and TCP's together.
pub fn grpc_layer(metrics: &Metrics, limits: CallLimits) -> GrpcLayer {
    ServiceBuilder::new()
        .layer(RpcMetricsLayer::new(metrics.rpc()))
        .layer(CallLimitLayer::new("trellisd", limits))
}

/// Serves `services` on `listeners` (and metrics from `metrics` and `agent`)
/// until `shutdown` completes, then drains for at most [`GRACE`]. At most
/// `limits` calls are served at once.
pub async fn serve(
    services: Services,
    listeners: Listeners,
    metrics: Arc<Metrics>,
    agent: Option<Arc<Agent>>,
    limits: CallLimits,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut servers = Servers::new();
    let layer = grpc_layer(&metrics, limits);
    let unix = trellis_grpc::unix_incoming(listeners.unix);
    servers.spawn_grpc(layer, &services.routes, unix, listeners.tcp)?;
    if let Some(listener) = listeners.metrics {
        let render = move || {
            let (metrics, agent) = (metrics.clone(), agent.clone());
            async move { metrics.scrape(agent.as_deref()).await }
        };
        let http = crate::metrics::serve_http(listener, render, servers.stopped());
        servers.spawn("metrics", async move {
            http.await;
            Ok::<_, Infallible>(())
        });
    }
    servers.wait(shutdown).await?;
    services.shutting_down().await;
    Ok(servers.drain(GRACE).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroUsize;
    use tonic::body::Body;
    use tonic::codegen::http::{Request, Response};
    use tower::{Service, ServiceExt};

    #[tokio::test]
    async fn refused_calls_are_counted() {
        let metrics = Metrics::new();
        let one = NonZeroUsize::new(1).unwrap();
        let limits = CallLimits {
            calls: one,
            watches: one,
        };
        let never = tower::service_fn(|_: Request<()>| async {
            std::future::pending::<Result<Response<Body>, std::convert::Infallible>>().await
        });
        let mut svc = grpc_layer(&metrics, limits).service(never);
        let call = || {
            Request::builder()
                .uri("/trellis.v1.Agent/Attach")
                .body(())
                .unwrap()
        };
        let _held = svc.ready().await.unwrap().call(call());
        let refused = svc.ready().await.unwrap().call(call()).await.unwrap();
        assert_eq!(refused.headers()["grpc-status"], "14");
        let m = metrics.scrape(None).await;
        let method = r#"service="trellis.v1.Agent",method="Attach""#;
        for series in [
            format!("trellis_rpc_refused_total{{{method}}} 1"),
            format!(r#"trellis_rpc_requests_total{{{method},code="UNAVAILABLE"}} 1"#),
        ] {
            assert!(m.lines().any(|l| l == series), "no {series}:\n{m}");
        }
    }
}
