//! Serving: the agent service, health and reflection on one listener.
//!
//! Callers pass the listener and the shutdown signal in (mini-redis style),
//! so that trellisd binds its unix socket with the permissions it wants and
//! tests bind a socket in a tempdir or TCP port 0 and stop the server cleanly.

use crate::AgentService;
use std::future::Future;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio_stream::Stream;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::Routes;
use tonic::transport::server::Connected;
use tonic::transport::{Error, Server};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use trellis_agent::Agent;
use trellis_proto::v1::AgentServer;
use trellis_proto::{FILE_DESCRIPTOR_SET, SERVICE_NAME};

/// The gRPC services of one agent, routed by path, for callers that build
/// their own [`Server`] (trellisd adds a metrics layer and TLS).
pub struct Services {
    /// `trellis.v1.Agent`, `grpc.health.v1.Health` and server reflection
    /// (`grpc.reflection.v1` and `v1alpha`), so that `grpcurl` and
    /// `grpc_health_probe` work without the proto file.
    pub routes: Routes,
    /// The health reporter: SERVING for `trellis.v1.Agent` and for the server
    /// as a whole (`""`) from the start.
    pub health: HealthReporter,
    service: AgentService,
}

impl Services {
    /// The services over `agent`.
    pub async fn new(agent: Arc<Agent>) -> Self {
        let service = AgentService::new(agent);
        let (health, health_service) = tonic_health::server::health_reporter();
        for name in ["", SERVICE_NAME] {
            health
                .set_service_status(name, ServingStatus::Serving)
                .await;
        }
        let (v1, v1alpha) = reflection();
        let routes = Routes::new(health_service)
            .add_service(v1)
            .add_service(v1alpha)
            .add_service(AgentServer::new(service.clone()));
        Services {
            routes,
            health,
            service,
        }
    }

    /// Call when shutdown begins: health turns NOT_SERVING and open Watch
    /// streams end, so a graceful shutdown does not wait for watchers.
    pub async fn shutting_down(&self) {
        for name in ["", SERVICE_NAME] {
            let status = ServingStatus::NotServing;
            self.health.set_service_status(name, status).await;
        }
        self.service.stop_watches();
    }
}

/// Serves `agent` ([`Services`]) on the connections of `incoming` until
/// `shutdown` resolves, then finishes the requests under way.
pub async fn serve<S, IO, IE>(
    agent: Arc<Agent>,
    incoming: S,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error>
where
    S: Stream<Item = Result<IO, IE>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let services = Services::new(agent).await;
    let routes = services.routes.clone();
    let shutdown = async move {
        shutdown.await;
        services.shutting_down().await;
    };
    Server::builder()
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// [`serve`] on a unix socket (trellisd's usual listener), each connection's
/// `:authority` normalised ([`crate::authority`]).
pub async fn serve_unix(
    agent: Arc<Agent>,
    listener: UnixListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    serve(agent, crate::unix_incoming(listener), shutdown).await
}

/// [`serve`] on TCP (for remote management; put TLS or a proxy in front).
pub async fn serve_tcp(
    agent: Arc<Agent>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    serve(agent, TcpListenerStream::new(listener), shutdown).await
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
