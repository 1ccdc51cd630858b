//! Serving: the controller's gRPC routes on the unix socket and
//! (optionally) TCP with TLS, all stopped by one shutdown future.
//!
//! Unix-socket connections go through `trellis_grpc::unix_incoming`, so that
//! gRPC C-core clients (Python, Java, C++) are not refused by h2.

use std::future::Future;
use std::time::Duration;
use tokio::net::{TcpListener, UnixListener};
use tonic::transport::ServerTlsConfig;
use trellis_daemon::limit::{CallLimitLayer, CallLimits};
use trellis_daemon::{Error, Servers};
use trellis_grpc::ControllerServices;

/// How long in-flight calls get to finish after the shutdown signal before
/// their connections are dropped (open Watch streams end at once).
pub const GRACE: Duration = Duration::from_secs(10);

/// The sockets the controller serves on, bound before [`serve`] is called.
pub struct Listeners {
    /// gRPC over the unix socket.
    pub unix: UnixListener,
    /// gRPC over TCP, with the TLS settings to apply (`None`: plaintext).
    pub tcp: Option<(TcpListener, Option<ServerTlsConfig>)>,
}

/// Loads the TLS identity (and client CA) named in the config.
pub fn tls_config(tls: &crate::config::Tls) -> Result<ServerTlsConfig, Error> {
    trellis_daemon::tls::server_config(&tls.cert, &tls.key, tls.client_ca.as_deref())
}

/// Serves `services` on `listeners` until `shutdown` completes; then health
/// turns NOT_SERVING, Watch streams end, and calls under way get at most
/// [`GRACE`] to finish. At most `limits` calls are under way at once (the
/// unix socket's and TCP's together); the excess is refused UNAVAILABLE.
pub async fn serve(
    services: &ControllerServices,
    listeners: Listeners,
    limits: CallLimits,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let mut servers = Servers::new();
    let unix = trellis_grpc::unix_incoming(listeners.unix);
    let layer = CallLimitLayer::new("trellis-controller", limits);
    servers.spawn_grpc(layer, &services.routes, unix, listeners.tcp)?;
    servers.wait(shutdown).await?;
    services.shutting_down().await;
    servers.drain(GRACE).await
}
