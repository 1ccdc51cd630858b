//! Serving an edge — the agent's or the controller's — with gRPC health and
//! reflection beside it, on one listener.
//!
//! Both edges are served the same way, so the way is written once, generic
//! over the [`Core`] behind the edge: [`EdgeServices`] routes the edge's
//! service beside health and reflection and knows what a shutdown must tell
//! them, and [`serve`], [`serve_unix`] and [`serve_tcp`] run them.
//!
//! Callers pass the listener and the shutdown signal in (mini-redis style),
//! so that a daemon binds its unix socket with the permissions it wants and
//! tests bind a socket in a tempdir or TCP port 0 and stop the server cleanly.

use std::future::Future;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio_stream::Stream;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::Routes;
use tonic::transport::server::Connected;
use tonic::transport::{Error, Server, ServerTlsConfig};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use trellis_proto::FILE_DESCRIPTOR_SET;

/// A core that trellis serves over gRPC: the node agent
/// ([`trellis_agent::Agent`]) or the cluster controller
/// ([`trellis_cluster::Controller`]).
pub trait Core: Send + Sync + 'static {
    /// The thin edge over it.
    type Edge: Edge;

    /// The edge answering from `core`.
    fn edge(core: Arc<Self>) -> Self::Edge;
}

/// A core's gRPC service, as it is served beside health and reflection.
pub trait Edge: Clone + Send + Sync + 'static {
    /// Its fully qualified name (`trellis.v1.Agent`), under which health
    /// reports it.
    const NAME: &'static str;

    /// `routes` with this service added.
    fn route(self, routes: Routes) -> Routes;

    /// Ends every open Watch stream (and any opened later), so that a
    /// graceful shutdown does not wait for watchers.
    fn stop_watches(&self);
}

/// The gRPC services of one core, routed by path, for callers that build
/// their own [`Server`] (trellisd adds a metrics layer and TLS, and both
/// daemons serve a unix socket and TCP): [`crate::Services`] for the agent,
/// [`crate::ControllerServices`] for the controller.
pub struct EdgeServices<E> {
    /// The core's service (`trellis.v1.Agent`, `trellis.v1.Controller`),
    /// `grpc.health.v1.Health` and server reflection (`grpc.reflection.v1`
    /// and `v1alpha`), so that `grpcurl` and `grpc_health_probe` work
    /// without the proto file.
    pub routes: Routes,
    /// The health reporter: SERVING for the core's service and for the
    /// server as a whole (`""`) from the start.
    pub health: HealthReporter,
    service: E,
}

/// The agent's services: `trellis.v1.Agent`, health and reflection.
pub type Services = EdgeServices<crate::AgentService>;

impl<E: Edge> EdgeServices<E> {
    /// The services over `core`.
    pub async fn new<C: Core<Edge = E>>(core: Arc<C>) -> Self {
        Self::with_edge(C::edge(core)).await
    }

    /// The services around an edge the caller built (the controller's, told
    /// what TCP callers without a client certificate are).
    pub async fn with_edge(service: E) -> Self {
        let (health, health_service) = tonic_health::server::health_reporter();
        let (v1, v1alpha) = reflection();
        let routes = Routes::new(health_service)
            .add_service(v1)
            .add_service(v1alpha);
        let services = EdgeServices {
            routes: service.clone().route(routes),
            health,
            service,
        };
        services.set_health(ServingStatus::Serving).await;
        services
    }

    /// Call when shutdown begins: health turns NOT_SERVING and open Watch
    /// streams end, so a graceful shutdown does not wait for watchers.
    pub async fn shutting_down(&self) {
        self.set_health(ServingStatus::NotServing).await;
        self.service.stop_watches();
    }

    async fn set_health(&self, status: ServingStatus) {
        for name in ["", E::NAME] {
            self.health.set_service_status(name, status).await;
        }
    }
}

/// Serves `core` ([`EdgeServices`]) on the connections of `incoming`, with
/// TLS when `tls` is given, until `shutdown` resolves; then finishes the
/// calls under way (open Watch streams end at once).
pub async fn serve<C, S, IO, IE>(
    core: Arc<C>,
    incoming: S,
    tls: Option<ServerTlsConfig>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error>
where
    C: Core,
    S: Stream<Item = Result<IO, IE>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let services = EdgeServices::new(core).await;
    let routes = services.routes.clone();
    let shutdown = async move {
        shutdown.await;
        services.shutting_down().await;
    };
    builder
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// [`serve`] on a unix socket (the daemons' usual listener), each
/// connection's `:authority` normalised ([`crate::authority`]) so that gRPC
/// C-core clients are not refused.
pub async fn serve_unix<C: Core>(
    core: Arc<C>,
    listener: UnixListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    serve(core, crate::unix_incoming(listener), None, shutdown).await
}

/// [`serve`] on TCP, with TLS when `tls` is given (plaintext otherwise: for
/// labs and tests, or behind a proxy).
pub async fn serve_tcp<C: Core>(
    core: Arc<C>,
    listener: TcpListener,
    tls: Option<ServerTlsConfig>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    serve(core, TcpListenerStream::new(listener), tls, shutdown).await
}

/// Reflection over trellis.v1 and grpc.health.v1, in both protocol versions.
fn reflection() -> (
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
) {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    // The descriptor sets are compiled in and checked by a unit test.
    let v1 = builder()
        .build_v1()
        .expect("embedded descriptor sets are valid");
    let v1alpha = builder()
        .build_v1alpha()
        .expect("embedded descriptor sets are valid");
    (v1, v1alpha)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reflection_accepts_the_embedded_descriptor_sets() {
        let _ = super::reflection();
    }
}
