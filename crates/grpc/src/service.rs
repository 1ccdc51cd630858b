//! The `trellis.v1.Agent` service: convert, forward to the core, convert back.
//!
//! Nothing here decides anything about networks or endpoints; each method is
//! the caller's admission ([`crate::access`]: the admin may do everything,
//! the controller may only read, a node nothing), input conversion
//! ([`crate::input`]), one call into [`trellis_agent::Agent`], and output
//! conversion ([`crate::output`]), with errors mapped by [`crate::errors`].

use crate::access::{AgentMethod, Gate};
use crate::errors::{invalid, status};
use crate::identity::TcpClients;
use crate::{input, output, watch};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch as stop;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::Routes;
use tonic::{Request, Response, Status};
use trellis_agent::Agent;
use trellis_proto::v1 as pb;

/// The gRPC service over one agent.
#[derive(Clone)]
pub struct AgentService {
    agent: Arc<Agent>,
    /// Flipped to `true` at shutdown, so that open Watch streams end and a
    /// graceful shutdown does not wait for watchers forever.
    stopping: stop::Sender<bool>,
    /// Who may call what.
    gate: Gate,
}

impl AgentService {
    /// A service answering from `agent`, to which a TCP caller without a
    /// client certificate is the admin ([`TcpClients::Trusted`]; see
    /// [`Self::tcp_clients`]).
    pub fn new(agent: Arc<Agent>) -> Self {
        Self {
            agent,
            stopping: stop::channel(false).0,
            gate: Gate::default(),
        }
    }

    /// The service, with TCP callers without a client certificate treated
    /// as `tcp` says: [`TcpClients::Certified`] when the TCP listener
    /// requires client certificates (trellisd's `--tls-client-ca`), so that
    /// callers are known by their certificates (the controller may read, a
    /// node nothing) and one without a certificate is refused.
    pub fn tcp_clients(mut self, tcp: TcpClients) -> Self {
        self.gate.tcp_clients = tcp;
        self
    }

    /// The agent behind the service.
    pub fn agent(&self) -> &Arc<Agent> {
        &self.agent
    }

    /// Ends every open Watch stream (and any opened later).
    pub fn stop_watches(&self) {
        self.stopping.send_replace(true);
    }

    /// Endpoint counts by network.
    async fn counts(&self) -> Result<HashMap<trellis_types::NetworkName, usize>, Status> {
        let mut counts = HashMap::new();
        for ep in self.agent.endpoints().await.map_err(status)? {
            *counts.entry(ep.request.network).or_default() += 1;
        }
        Ok(counts)
    }

    async fn network_reply(&self, n: trellis_agent::Network) -> Result<pb::Network, Status> {
        let count = self
            .counts()
            .await?
            .remove(n.spec.name.as_str())
            .unwrap_or(0);
        Ok(output::network(n, count))
    }
}

impl crate::Core for Agent {
    type Edge = AgentService;

    fn edge(core: Arc<Self>) -> AgentService {
        AgentService::new(core)
    }
}

impl crate::Edge for AgentService {
    const NAME: &'static str = trellis_proto::SERVICE_NAME;

    fn route(self, routes: Routes) -> Routes {
        routes.add_service(pb::AgentServer::new(self))
    }

    fn stop_watches(&self) {
        AgentService::stop_watches(self)
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl pb::Agent for AgentService {
    async fn create_network(&self, req: Request<pb::CreateNetworkRequest>) -> Reply<pb::Network> {
        self.gate.admit(&req, AgentMethod::CreateNetwork)?;
        let spec = input::network_spec(req.into_inner().spec).map_err(invalid)?;
        let net = self.agent.create_network(spec).await.map_err(status)?;
        Ok(Response::new(self.network_reply(net).await?))
    }

    async fn get_network(&self, req: Request<pb::GetNetworkRequest>) -> Reply<pb::Network> {
        self.gate.admit(&req, AgentMethod::GetNetwork)?;
        let name = input::network_name("name", &req.get_ref().name).map_err(invalid)?;
        let net = self.agent.network(name.as_str()).map_err(status)?;
        Ok(Response::new(self.network_reply(net).await?))
    }

    async fn list_networks(
        &self,
        req: Request<pb::ListNetworksRequest>,
    ) -> Reply<pb::ListNetworksResponse> {
        self.gate.admit(&req, AgentMethod::ListNetworks)?;
        let mut counts = self.counts().await?;
        let networks = self
            .agent
            .networks()
            .into_iter()
            .map(|n| {
                let count = counts.remove(n.spec.name.as_str()).unwrap_or(0);
                output::network(n, count)
            })
            .collect();
        Ok(Response::new(pb::ListNetworksResponse { networks }))
    }

    async fn delete_network(
        &self,
        req: Request<pb::DeleteNetworkRequest>,
    ) -> Reply<pb::DeleteNetworkResponse> {
        self.gate.admit(&req, AgentMethod::DeleteNetwork)?;
        let name = input::network_name("name", &req.get_ref().name).map_err(invalid)?;
        self.agent
            .delete_network(name.as_str())
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeleteNetworkResponse {}))
    }

    async fn attach(&self, req: Request<pb::AttachRequest>) -> Reply<pb::Endpoint> {
        self.gate.admit(&req, AgentMethod::Attach)?;
        let req = input::attach_request(req.into_inner()).map_err(invalid)?;
        let ep = self.agent.attach(req).await.map_err(status)?;
        Ok(Response::new(output::endpoint(ep)))
    }

    async fn detach(&self, req: Request<pb::DetachRequest>) -> Reply<pb::DetachResponse> {
        self.gate.admit(&req, AgentMethod::Detach)?;
        let r = req.get_ref();
        let h = input::handle(&r.container_id, &r.ifname).map_err(invalid)?;
        self.agent
            .detach(&h.container, &h.ifname)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DetachResponse {}))
    }

    async fn get_endpoint(&self, req: Request<pb::GetEndpointRequest>) -> Reply<pb::Endpoint> {
        self.gate.admit(&req, AgentMethod::GetEndpoint)?;
        let r = req.get_ref();
        let h = input::handle(&r.container_id, &r.ifname).map_err(invalid)?;
        let ep = self.agent.endpoint(&h.container, &h.ifname).await;
        match ep.map_err(status)? {
            Some(ep) => Ok(Response::new(output::endpoint(ep))),
            None => Err(status(trellis_agent::Error::EndpointNotFound(
                h.to_string(),
            ))),
        }
    }

    async fn list_endpoints(
        &self,
        req: Request<pb::ListEndpointsRequest>,
    ) -> Reply<pb::ListEndpointsResponse> {
        self.gate.admit(&req, AgentMethod::ListEndpoints)?;
        let filter = input::filter(req.into_inner()).map_err(invalid)?;
        let eps = self.agent.list_endpoints(&filter).await.map_err(status)?;
        let endpoints = eps.into_iter().map(output::endpoint).collect();
        Ok(Response::new(pb::ListEndpointsResponse { endpoints }))
    }

    async fn check(&self, req: Request<pb::CheckRequest>) -> Reply<pb::CheckResponse> {
        self.gate.admit(&req, AgentMethod::Check)?;
        let r = req.get_ref();
        let h = input::handle(&r.container_id, &r.ifname).map_err(invalid)?;
        let problems = self
            .agent
            .check(&h.container, &h.ifname)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CheckResponse {
            ok: problems.is_empty(),
            problems,
        }))
    }

    async fn garbage_collect(
        &self,
        req: Request<pb::GarbageCollectRequest>,
    ) -> Reply<pb::GarbageCollectResponse> {
        self.gate.admit(&req, AgentMethod::GarbageCollect)?;
        let r = req.get_ref();
        let network = input::gc_network(&r.network).map_err(invalid)?;
        let valid = input::valid(&r.valid).map_err(invalid)?;
        let report = self
            .agent
            .garbage_collect(network.as_ref(), &valid)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GarbageCollectResponse {
            removed: report.removed.into_iter().map(output::attachment).collect(),
            errors: report.errors,
        }))
    }

    async fn status(&self, req: Request<pb::StatusRequest>) -> Reply<pb::StatusResponse> {
        self.gate.admit(&req, AgentMethod::Status)?;
        let s = self.agent.status().await;
        Ok(Response::new(output::status(s, self.agent.node())))
    }

    async fn list_held_blocks(
        &self,
        req: Request<pb::ListHeldBlocksRequest>,
    ) -> Reply<pb::ListHeldBlocksResponse> {
        self.gate.admit(&req, AgentMethod::ListHeldBlocks)?;
        let held = self.agent.held_blocks().await.map_err(status)?;
        Ok(Response::new(pb::ListHeldBlocksResponse {
            blocks: held.into_iter().map(output::held_block).collect(),
        }))
    }

    type WatchStream = ReceiverStream<Result<pb::Event, Status>>;

    async fn watch(&self, req: Request<pb::WatchRequest>) -> Reply<Self::WatchStream> {
        self.gate.admit(&req, AgentMethod::Watch)?;
        let stream = watch::start(
            self.agent.clone(),
            req.get_ref().replay,
            self.stopping.subscribe(),
        )
        .await?;
        Ok(Response::new(stream))
    }
}
