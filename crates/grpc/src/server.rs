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
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::transport::server::Connected;
use tonic::transport::{Error, Server};
use tonic_health::ServingStatus;
use trellis_agent::Agent;
use trellis_proto::v1::AgentServer;
use trellis_proto::{FILE_DESCRIPTOR_SET, SERVICE_NAME};

/// Serves `agent` on the connections of `incoming` until `shutdown` resolves,
/// then finishes the requests under way (open Watch streams are ended).
///
/// Besides `trellis.v1.Agent`: `grpc.health.v1.Health` (SERVING for
/// `trellis.v1.Agent` and for the server as a whole) and server reflection
/// (`grpc.reflection.v1` and `v1alpha`), so `grpcurl` and `grpc_health_probe`
/// work without the proto file.
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
    let service = AgentService::new(agent);
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(SERVICE_NAME, ServingStatus::Serving)
        .await;
    let (v1, v1alpha) = reflection();
    let stopper = service.clone();
    let shutdown = async move {
        shutdown.await;
        health
            .set_service_status(SERVICE_NAME, ServingStatus::NotServing)
            .await;
        stopper.stop_watches();
    };
    Server::builder()
        .add_service(health_service)
        .add_service(v1)
        .add_service(v1alpha)
        .add_service(AgentServer::new(service))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// [`serve`] on a unix socket (trellisd's usual listener).
pub async fn serve_unix(
    agent: Arc<Agent>,
    listener: UnixListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    serve(agent, UnixListenerStream::new(listener), shutdown).await
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
