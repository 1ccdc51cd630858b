//! trellis-client against servers in the same process: fake controller
//! replicas on 127.0.0.1, plaintext, each a leader or a follower naming the
//! leader, to check that [`trellis_client::controller`] finds the leader of
//! an HA controller as the real one's followers point the way.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};
use trellis_client::{Address, ConnectError, Error, Tls};
use trellis_proto::v1::{self, ControllerServer};

/// How a fake replica answers ControllerStatus.
#[derive(Clone)]
enum Role {
    /// Answers, with its name as the version.
    Leader,
    /// Refuses with UNAVAILABLE naming the leader, as a follower does.
    Follower { leader: String },
    /// Refuses with UNAVAILABLE naming no one (it has lost the store).
    Lost,
    /// Refuses the caller with PERMISSION_DENIED, as only a leader checks.
    Refusing,
}

/// One replica: its name, its role, and how many status calls it has had.
#[derive(Clone)]
struct Replica {
    name: &'static str,
    role: Role,
    calls: Arc<AtomicUsize>,
}

type Answer<T> = Result<Response<T>, Status>;

/// The fake's impl: ControllerStatus as [`Role`] says, every other RPC
/// UNIMPLEMENTED. (The whole impl comes out of the macro so that
/// `async_trait` sees every method.)
macro_rules! controller {
    ($($rpc:ident($req:ident) -> $resp:ident;)*) => {
        #[tonic::async_trait]
        impl v1::Controller for Replica {
            type WatchStream = tokio_stream::Empty<Result<v1::ControllerEvent, Status>>;

            async fn controller_status(
                &self,
                _: Request<v1::ControllerStatusRequest>,
            ) -> Answer<v1::ControllerStatusResponse> {
                self.calls.fetch_add(1, Ordering::SeqCst);
                self.status()
            }

            async fn watch(
                &self,
                _: Request<v1::ControllerWatchRequest>,
            ) -> Answer<Self::WatchStream> {
                Err(Status::unimplemented("watch"))
            }

            $(
                async fn $rpc(&self, _: Request<v1::$req>) -> Answer<v1::$resp> {
                    Err(Status::unimplemented(stringify!($rpc)))
                }
            )*
        }
    };
}

controller! {
    create_pool(CreatePoolRequest) -> Pool;
    get_pool(GetPoolRequest) -> Pool;
    list_pools(ListPoolsRequest) -> ListPoolsResponse;
    delete_pool(DeletePoolRequest) -> DeletePoolResponse;
    create_cluster_network(CreateClusterNetworkRequest) -> ClusterNetwork;
    get_cluster_network(GetClusterNetworkRequest) -> ClusterNetwork;
    list_cluster_networks(ListClusterNetworksRequest) -> ListClusterNetworksResponse;
    delete_cluster_network(DeleteClusterNetworkRequest) -> DeleteClusterNetworkResponse;
    register_node(RegisterNodeRequest) -> RegisterNodeResponse;
    keep_alive(KeepAliveRequest) -> KeepAliveResponse;
    get_node(GetNodeRequest) -> Node;
    list_nodes(ListNodesRequest) -> ListNodesResponse;
    drain_node(DrainNodeRequest) -> Node;
    remove_node(RemoveNodeRequest) -> RemoveNodeResponse;
    claim_block(ClaimBlockRequest) -> Block;
    release_block(ReleaseBlockRequest) -> ReleaseBlockResponse;
    list_blocks(ListBlocksRequest) -> ListBlocksResponse;
    check_ipam(CheckIpamRequest) -> CheckIpamResponse;
    release_ipam(ReleaseIpamRequest) -> ReleaseIpamResponse;
    list_node_endpoints(ListNodeEndpointsRequest) -> ListEndpointsResponse;
}

impl Replica {
    fn new(name: &'static str, role: Role) -> Self {
        let calls = Arc::default();
        Replica { name, role, calls }
    }

    fn status(&self) -> Answer<v1::ControllerStatusResponse> {
        match &self.role {
            Role::Leader => Ok(Response::new(v1::ControllerStatusResponse {
                version: self.name.to_owned(),
                ..Default::default()
            })),
            // The wording of trellis_cluster's office.
            Role::Follower { leader } => Err(Status::unavailable(format!(
                "this controller replica is not the leader: the leader is {leader} (ctl)"
            ))),
            Role::Lost => Err(Status::unavailable("the store is not reachable")),
            Role::Refusing => Err(Status::permission_denied("who are you?")),
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// A free port on 127.0.0.1 and its URL; nothing listens there until
/// [`serve`] is given it.
async fn bind() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

/// Serves `replica` on `listener` until the test's runtime ends.
fn serve(listener: TcpListener, replica: &Replica) {
    let server = tonic::transport::Server::builder()
        .add_service(ControllerServer::new(replica.clone()))
        .serve_with_incoming(TcpListenerStream::new(listener));
    tokio::spawn(server);
}

async fn controller(
    urls: &[&str],
) -> Result<v1::ControllerClient<tonic::transport::Channel>, Error> {
    let addr: Address = urls.join(",").parse().unwrap();
    trellis_client::controller(&addr, "--controller", &Tls::default()).await
}

/// The name of the replica that `client` reaches.
async fn reached(client: &mut v1::ControllerClient<tonic::transport::Channel>) -> String {
    let status = client
        .controller_status(v1::ControllerStatusRequest {})
        .await;
    status.expect("the leader answers").into_inner().version
}

#[tokio::test]
async fn a_followers_pointer_leads_past_a_replica_that_is_down() {
    let ((l1, u1), (l2, down), (l3, u3)) = (bind().await, bind().await, bind().await);
    drop(l2);
    let follower = Replica::new("ctl1", Role::Follower { leader: u3.clone() });
    let leader = Replica::new("ctl3", Role::Leader);
    serve(l1, &follower);
    serve(l3, &leader);
    let mut client = controller(&[&u1, &down, &u3]).await.unwrap();
    assert_eq!(reached(&mut client).await, "ctl3");
    // The follower was asked once, and the leader straight after.
    assert_eq!((follower.calls(), leader.calls()), (1, 2));
}

#[tokio::test]
async fn a_replica_that_refuses_the_caller_is_the_leader() {
    let ((l1, u1), (l2, u2)) = (bind().await, bind().await);
    let lost = Replica::new("ctl1", Role::Lost);
    let refusing = Replica::new("ctl2", Role::Refusing);
    serve(l1, &lost);
    serve(l2, &refusing);
    let mut client = controller(&[&u1, &u2]).await.unwrap();
    let err = client
        .controller_status(v1::ControllerStatusRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert_eq!(refusing.calls(), 2);
}

#[tokio::test]
async fn when_no_replica_leads_each_says_why() {
    let ((l1, u1), (l2, u2)) = (bind().await, bind().await);
    // Each names the other: the leader moved on, or they disagree.
    serve(
        l1,
        &Replica::new("ctl1", Role::Follower { leader: u2.clone() }),
    );
    serve(
        l2,
        &Replica::new("ctl2", Role::Follower { leader: u1.clone() }),
    );
    let err = controller(&[&u1, &u2]).await.unwrap_err();
    let Error::Connect(ConnectError::NoLeader { tried }) = &err else {
        panic!("not NoLeader: {err:?}");
    };
    let why = |url: &str, leader: &str| {
        format!("{url}: this controller replica is not the leader: the leader is {leader} (ctl)")
    };
    assert_eq!(tried, &[why(&u1, &u2), why(&u2, &u1), why(&u1, &u2)]);
    let msg = err.to_string();
    assert!(msg.starts_with("no controller replica leads: "), "{msg}");
}
