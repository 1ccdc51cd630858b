//! The `trellis.v1.Controller` service: convert, forward to the core,
//! convert back.
//!
//! Nothing here decides anything about pools, nodes or blocks; each method
//! is the caller's admission ([`super::access`]: who the caller is, from
//! [`crate::identity`], and whether the table lets it call the method for
//! the node the request names), input conversion ([`super::input`]), one
//! call into [`trellis_cluster::Controller`], and output conversion
//! ([`super::output`]), with errors mapped by [`super::code`].

use super::access::{Method, authorize};
use super::errors::status;
use super::{input, output, watch};
use crate::errors::invalid;
use crate::identity::{self, TcpClients};
use std::sync::Arc;
use tokio::sync::watch as stop;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::Routes;
use tonic::{Request, Response, Status};
use trellis_cluster::Controller;
use trellis_proto::v1 as pb;

/// The gRPC service over one controller.
#[derive(Clone)]
pub struct ControllerService {
    controller: Arc<Controller>,
    /// Flipped to `true` at shutdown, so that open Watch streams end and a
    /// graceful shutdown does not wait for watchers forever.
    stopping: stop::Sender<bool>,
    /// What a TCP caller without a client certificate is.
    tcp_clients: TcpClients,
    /// Whether this replica of an HA controller holds office (`None`: a
    /// single controller, always serving). Checked before anything else, so
    /// a follower refuses every call with UNAVAILABLE naming the leader.
    office: Option<tokio::sync::watch::Receiver<trellis_cluster::Office>>,
    /// How this controller reads nodes' Agent APIs (`None`: it reads none:
    /// CheckIpam compares nothing with the nodes, ListNodeEndpoints is
    /// FAILED_PRECONDITION).
    nodes: Option<super::NodeClients>,
}

impl ControllerService {
    /// A service answering from `controller`, to which a TCP caller without
    /// a client certificate is the admin ([`TcpClients::Trusted`]; see
    /// [`Self::tcp_clients`]).
    pub fn new(controller: Arc<Controller>) -> Self {
        Self {
            controller,
            stopping: stop::channel(false).0,
            tcp_clients: TcpClients::default(),
            office: None,
            nodes: None,
        }
    }

    /// The service, reading nodes' Agent APIs with `nodes` (for
    /// ListNodeEndpoints and CheckIpam's comparison with the nodes).
    pub fn node_clients(mut self, nodes: super::NodeClients) -> Self {
        self.nodes = Some(nodes);
        self
    }

    /// The service of one replica of an HA controller: it answers only while
    /// `office` says it is the leader, and refuses with UNAVAILABLE naming
    /// the leader otherwise.
    pub fn office(mut self, office: tokio::sync::watch::Receiver<trellis_cluster::Office>) -> Self {
        self.office = Some(office);
        self
    }

    /// The service, with TCP callers without a client certificate treated
    /// as `tcp` says: [`TcpClients::Certified`] when the TCP listener
    /// requires client certificates, so that such a caller is refused
    /// rather than taken for the admin.
    pub fn tcp_clients(mut self, tcp: TcpClients) -> Self {
        self.tcp_clients = tcp;
        self
    }

    /// The controller behind the service.
    pub fn controller(&self) -> &Arc<Controller> {
        &self.controller
    }

    /// What ends a Watch stream: the shutdown, or — on a replica of an HA
    /// controller — losing office, so that the node watches the new leader
    /// instead of a replica that no longer hears of changes first.
    fn watch_ends(&self) -> stop::Receiver<bool> {
        let Some(office) = &self.office else {
            return self.stopping.subscribe();
        };
        let (tx, rx) = stop::channel(false);
        let mut stopping = self.stopping.subscribe();
        let mut office = office.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stopping.wait_for(|s| *s) => {}
                _ = office.wait_for(|o| *o != trellis_cluster::Office::Leader) => {}
                () = tx.closed() => return,
            }
            let _ = tx.send(true);
        });
        rx
    }

    /// Ends every open Watch stream (and any opened later).
    pub fn stop_watches(&self) {
        self.stopping.send_replace(true);
    }
}

impl crate::Core for Controller {
    type Edge = ControllerService;

    fn edge(core: Arc<Self>) -> ControllerService {
        ControllerService::new(core)
    }
}

impl crate::Edge for ControllerService {
    const NAME: &'static str = trellis_proto::CONTROLLER_SERVICE_NAME;

    fn route(self, routes: Routes) -> Routes {
        routes.add_service(pb::ControllerServer::new(self))
    }

    fn stop_watches(&self) {
        ControllerService::stop_watches(self)
    }
}

type Reply<T> = Result<Response<T>, Status>;

impl ControllerService {
    /// Admits `req` to `method` if its caller may call it: `node` is the
    /// value of the field naming a node, for a method a node may call only
    /// for itself. UNAUTHENTICATED for a caller without an identity,
    /// PERMISSION_DENIED for one the table refuses.
    fn admit<T>(&self, req: &Request<T>, method: Method, node: Option<&str>) -> Result<(), Status> {
        if let Some(office) = &self.office
            && let Some(why) = office.borrow().refusal()
        {
            return Err(Status::unavailable(why));
        }
        let caller = identity::caller(req, self.tcp_clients).inspect_err(|e| {
            tracing::warn!(error = %e, method = method.name(), "refused a caller without an identity");
        })?;
        authorize(&caller, method, node)
    }
}

fn reply<T>(t: T) -> Reply<T> {
    Ok(Response::new(t))
}

#[tonic::async_trait]
impl pb::Controller for ControllerService {
    async fn create_pool(&self, req: Request<pb::CreatePoolRequest>) -> Reply<pb::Pool> {
        self.admit(&req, Method::CreatePool, None)?;
        let spec = input::pool_spec(req.into_inner().spec).map_err(invalid)?;
        let pool = self.controller.create_pool(spec).await.map_err(status)?;
        reply(output::pool(pool))
    }

    async fn get_pool(&self, req: Request<pb::GetPoolRequest>) -> Reply<pb::Pool> {
        self.admit(&req, Method::GetPool, None)?;
        let name = input::pool_name("name", &req.get_ref().name).map_err(invalid)?;
        let pool = self.controller.pool(&name).await.map_err(status)?;
        reply(output::pool(pool))
    }

    async fn list_pools(&self, req: Request<pb::ListPoolsRequest>) -> Reply<pb::ListPoolsResponse> {
        self.admit(&req, Method::ListPools, None)?;
        let pools = self.controller.list_pools().await.map_err(status)?;
        let pools = pools.into_iter().map(output::pool).collect();
        reply(pb::ListPoolsResponse { pools })
    }

    async fn delete_pool(
        &self,
        req: Request<pb::DeletePoolRequest>,
    ) -> Reply<pb::DeletePoolResponse> {
        self.admit(&req, Method::DeletePool, None)?;
        let name = input::pool_name("name", &req.get_ref().name).map_err(invalid)?;
        self.controller.delete_pool(&name).await.map_err(status)?;
        reply(pb::DeletePoolResponse {})
    }

    async fn create_cluster_network(
        &self,
        req: Request<pb::CreateClusterNetworkRequest>,
    ) -> Reply<pb::ClusterNetwork> {
        self.admit(&req, Method::CreateClusterNetwork, None)?;
        let spec = input::network_spec(req.into_inner().spec).map_err(invalid)?;
        let net = self.controller.create_cluster_network(spec).await;
        reply(output::network(net.map_err(status)?))
    }

    async fn get_cluster_network(
        &self,
        req: Request<pb::GetClusterNetworkRequest>,
    ) -> Reply<pb::ClusterNetwork> {
        self.admit(&req, Method::GetClusterNetwork, None)?;
        let name = input::network_name("name", &req.get_ref().name).map_err(invalid)?;
        let net = self.controller.cluster_network(&name).await;
        reply(output::network(net.map_err(status)?))
    }

    async fn list_cluster_networks(
        &self,
        req: Request<pb::ListClusterNetworksRequest>,
    ) -> Reply<pb::ListClusterNetworksResponse> {
        self.admit(&req, Method::ListClusterNetworks, None)?;
        let nets = self.controller.list_cluster_networks().await;
        let networks = nets.map_err(status)?.into_iter().map(output::network);
        reply(pb::ListClusterNetworksResponse {
            networks: networks.collect(),
        })
    }

    async fn delete_cluster_network(
        &self,
        req: Request<pb::DeleteClusterNetworkRequest>,
    ) -> Reply<pb::DeleteClusterNetworkResponse> {
        self.admit(&req, Method::DeleteClusterNetwork, None)?;
        let name = input::network_name("name", &req.get_ref().name).map_err(invalid)?;
        let done = self.controller.delete_cluster_network(&name).await;
        done.map_err(status)?;
        reply(pb::DeleteClusterNetworkResponse {})
    }

    async fn register_node(
        &self,
        req: Request<pb::RegisterNodeRequest>,
    ) -> Reply<pb::RegisterNodeResponse> {
        self.admit(
            &req,
            Method::RegisterNode,
            Some(req.get_ref().spec.as_ref().map_or("", |s| &s.name)),
        )?;
        let spec = input::node_spec(req.into_inner().spec).map_err(invalid)?;
        let node = self.controller.register_node(spec).await.map_err(status)?;
        reply(output::registered(node, self.controller.config()))
    }

    async fn keep_alive(&self, req: Request<pb::KeepAliveRequest>) -> Reply<pb::KeepAliveResponse> {
        self.admit(&req, Method::KeepAlive, Some(&req.get_ref().node))?;
        let r = req.get_ref();
        let node = input::node_name("node", &r.node).map_err(invalid)?;
        let usage = input::usage(&r.usage).map_err(invalid)?;
        let state = self.controller.keep_alive(&node, &usage).await;
        reply(pb::KeepAliveResponse {
            lease_ttl_ms: output::ms(self.controller.config().lease_ttl),
            state: output::node_state(state.map_err(status)?).into(),
        })
    }

    async fn get_node(&self, req: Request<pb::GetNodeRequest>) -> Reply<pb::Node> {
        self.admit(&req, Method::GetNode, Some(&req.get_ref().name))?;
        let name = input::node_name("name", &req.get_ref().name).map_err(invalid)?;
        let node = self.controller.node(&name).await.map_err(status)?;
        reply(output::node(node))
    }

    async fn list_nodes(&self, req: Request<pb::ListNodesRequest>) -> Reply<pb::ListNodesResponse> {
        self.admit(&req, Method::ListNodes, None)?;
        let nodes = self.controller.list_nodes().await.map_err(status)?;
        let nodes = nodes.into_iter().map(output::node).collect();
        reply(pb::ListNodesResponse { nodes })
    }

    async fn drain_node(&self, req: Request<pb::DrainNodeRequest>) -> Reply<pb::Node> {
        self.admit(&req, Method::DrainNode, None)?;
        let name = input::node_name("name", &req.get_ref().name).map_err(invalid)?;
        let node = self.controller.drain_node(&name).await.map_err(status)?;
        reply(output::node(node))
    }

    async fn remove_node(
        &self,
        req: Request<pb::RemoveNodeRequest>,
    ) -> Reply<pb::RemoveNodeResponse> {
        self.admit(&req, Method::RemoveNode, None)?;
        let r = req.get_ref();
        let name = input::node_name("name", &r.name).map_err(invalid)?;
        let released = self.controller.remove_node(&name, r.force).await;
        reply(pb::RemoveNodeResponse {
            released: output::prefixes(released.map_err(status)?),
        })
    }

    async fn claim_block(&self, req: Request<pb::ClaimBlockRequest>) -> Reply<pb::Block> {
        self.admit(&req, Method::ClaimBlock, Some(&req.get_ref().node))?;
        let r = req.get_ref();
        let node = input::node_name("node", &r.node).map_err(invalid)?;
        let pool = input::pool_name("pool", &r.pool).map_err(invalid)?;
        let block = self.controller.claim_block(&node, &pool).await;
        reply(output::block(block.map_err(status)?))
    }

    async fn release_block(
        &self,
        req: Request<pb::ReleaseBlockRequest>,
    ) -> Reply<pb::ReleaseBlockResponse> {
        self.admit(&req, Method::ReleaseBlock, Some(&req.get_ref().node))?;
        let r = req.get_ref();
        let node = input::node_name("node", &r.node).map_err(invalid)?;
        let pool = input::pool_name("pool", &r.pool).map_err(invalid)?;
        let prefix = input::prefix("prefix", &r.prefix).map_err(invalid)?;
        let done = self.controller.release_block(&node, &pool, prefix).await;
        done.map_err(status)?;
        reply(pb::ReleaseBlockResponse {})
    }

    async fn list_blocks(
        &self,
        req: Request<pb::ListBlocksRequest>,
    ) -> Reply<pb::ListBlocksResponse> {
        self.admit(&req, Method::ListBlocks, Some(&req.get_ref().node))?;
        let (pool, node) = input::block_filter(req.get_ref()).map_err(invalid)?;
        let blocks = self
            .controller
            .list_blocks(pool.as_ref(), node.as_ref())
            .await
            .map_err(status)?;
        reply(pb::ListBlocksResponse {
            blocks: blocks.into_iter().map(output::block).collect(),
        })
    }

    type WatchStream = ReceiverStream<Result<pb::ControllerEvent, Status>>;

    async fn watch(&self, req: Request<pb::ControllerWatchRequest>) -> Reply<Self::WatchStream> {
        self.admit(&req, Method::Watch, None)?;
        let stream = watch::start(
            self.controller.clone(),
            req.get_ref().from_revision,
            self.watch_ends(),
        )
        .await?;
        reply(stream)
    }

    async fn check_ipam(&self, req: Request<pb::CheckIpamRequest>) -> Reply<pb::CheckIpamResponse> {
        self.admit(&req, Method::CheckIpam, None)?;
        let nodes = self
            .nodes
            .as_ref()
            .map(|n| n as &dyn trellis_cluster::NodeReader);
        let problems = self.controller.check_ipam_with(nodes).await;
        let problems = problems.map_err(status)?;
        reply(pb::CheckIpamResponse {
            problems: problems.into_iter().map(output::problem).collect(),
        })
    }

    async fn release_ipam(
        &self,
        req: Request<pb::ReleaseIpamRequest>,
    ) -> Reply<pb::ReleaseIpamResponse> {
        self.admit(&req, Method::ReleaseIpam, None)?;
        let only = input::prefixes(&req.get_ref().prefixes).map_err(invalid)?;
        let released = self.controller.release_ipam(&only).await;
        reply(pb::ReleaseIpamResponse {
            released: output::prefixes(released.map_err(status)?),
        })
    }

    async fn list_node_endpoints(
        &self,
        req: Request<pb::ListNodeEndpointsRequest>,
    ) -> Reply<pb::ListEndpointsResponse> {
        self.admit(&req, Method::ListNodeEndpoints, None)?;
        let r = req.into_inner();
        let node = input::node_name("node", &r.node).map_err(invalid)?;
        let Some(nodes) = &self.nodes else {
            return Err(Status::failed_precondition(
                "this controller reads no nodes (it was started without node clients)",
            ));
        };
        let address = self.controller.agent_address(&node).await;
        let address = address.map_err(status)?;
        let filter = r.filter.unwrap_or_default();
        reply(nodes.endpoints(&node, &address, filter).await?)
    }

    async fn controller_status(
        &self,
        req: Request<pb::ControllerStatusRequest>,
    ) -> Reply<pb::ControllerStatusResponse> {
        self.admit(&req, Method::ControllerStatus, None)?;
        let snapshot = self.controller.snapshot().await.map_err(status)?;
        reply(output::status(&snapshot))
    }
}
