//! The controller's commands through the whole of netctl, in process: a fake
//! controller serves a unix socket in a temporary directory and
//! [`crate::run::run`] is given a parsed command line, as `main` does.
//! What is checked is netctl's side: the socket address reaches the server,
//! requests carry the flags, answers render, statuses become exit codes.

use std::path::Path;
use std::process::ExitCode;

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};
use trellis_proto::v1::{self, ControllerServer};

use crate::cli::Cli;

/// Answers a few RPCs with canned values and the others UNIMPLEMENTED.
struct Fake;

type Answer<T> = Result<Response<T>, Status>;

/// The fake's impl: the RPCs it serves as written, the others answering
/// UNIMPLEMENTED. (The whole impl comes out of the macro so that
/// `async_trait` sees every method.)
macro_rules! controller {
    (
        serves { $($served:tt)* }
        refuses { $($rpc:ident($req:ident) -> $resp:ident;)* }
    ) => {
        #[tonic::async_trait]
        impl v1::Controller for Fake {
            $($served)*
            $(
                async fn $rpc(&self, _: Request<v1::$req>) -> Answer<v1::$resp> {
                    Err(Status::unimplemented(stringify!($rpc)))
                }
            )*
        }
    };
}

fn pool(name: &str) -> v1::Pool {
    v1::Pool {
        spec: Some(v1::PoolSpec {
            name: name.into(),
            prefix: "10.244.0.0/16".into(),
            block_size: 26,
            mode: v1::PoolMode::Routed as i32,
            outgoing_nat: false,
            max_blocks_per_node: 64,
        }),
        blocks_total: 1024,
        blocks_held: 1,
    }
}

fn block(prefix: &str, node: &str) -> v1::Block {
    v1::Block {
        pool: "pods".into(),
        prefix: prefix.into(),
        node: node.into(),
        node_address_v4: "192.0.2.11".into(),
        ..Default::default()
    }
}

controller! {
serves {
    type WatchStream = tokio_stream::Empty<Result<v1::ControllerEvent, Status>>;

    async fn get_pool(&self, r: Request<v1::GetPoolRequest>) -> Answer<v1::Pool> {
        match r.into_inner().name.as_str() {
            "pods" => Ok(Response::new(pool("pods"))),
            other => Err(Status::not_found(format!("pool {other:?}"))),
        }
    }

    async fn create_pool(&self, r: Request<v1::CreatePoolRequest>) -> Answer<v1::Pool> {
        // Echo the spec, with the controller's default block size filled in.
        let mut spec = r.into_inner().spec.unwrap_or_default();
        spec.block_size = spec.block_size.max(26);
        let p = v1::Pool {
            spec: Some(spec),
            ..Default::default()
        };
        Ok(Response::new(p))
    }

    async fn delete_pool(
        &self,
        r: Request<v1::DeletePoolRequest>,
    ) -> Answer<v1::DeletePoolResponse> {
        match r.into_inner().name.as_str() {
            "busy" => Err(Status::failed_precondition("pool \"busy\" has 3 blocks held")),
            _ => Ok(Response::new(v1::DeletePoolResponse {})),
        }
    }

    async fn list_blocks(
        &self,
        r: Request<v1::ListBlocksRequest>,
    ) -> Answer<v1::ListBlocksResponse> {
        // Out of address order, and filtered by node, as the controller would.
        let node = r.into_inner().node;
        let blocks = [block("10.244.0.128/26", "n1"), block("10.244.0.64/26", "n1")]
            .into_iter()
            .chain([block("10.244.1.0/26", "n2")])
            .filter(|b| node.is_empty() || b.node == node)
            .collect();
        Ok(Response::new(v1::ListBlocksResponse { blocks }))
    }

    async fn check_ipam(&self, _: Request<v1::CheckIpamRequest>) -> Answer<v1::CheckIpamResponse> {
        let problem = v1::IpamProblem {
            kind: v1::ipam_problem::Kind::DeadOwner as i32,
            pool: "pods".into(),
            prefix: "10.244.1.0/26".into(),
            node: "n2".into(),
            detail: "lease lapsed".into(),
            releasable: true,
        };
        let problems = vec![problem];
        Ok(Response::new(v1::CheckIpamResponse { problems }))
    }

    async fn list_node_endpoints(
        &self,
        r: Request<v1::ListNodeEndpointsRequest>,
    ) -> Answer<v1::ListEndpointsResponse> {
        // The node's endpoints, out of order; the filter reaches the node.
        let r = r.into_inner();
        if r.node != "h1" {
            return Err(Status::unavailable(format!(
                "node {:?}'s Agent API at https://192.0.2.12:7444 is unreachable: connection refused",
                r.node
            )));
        }
        let network = r.filter.unwrap_or_default().network;
        let endpoint = |id: &str| v1::Endpoint {
            network: network.clone(),
            container_id: id.into(),
            ifname: "eth0".into(),
            addresses: vec!["10.244.0.2/32".into()],
            ..Default::default()
        };
        let endpoints = vec![endpoint("web2"), endpoint("web1")];
        Ok(Response::new(v1::ListEndpointsResponse { endpoints }))
    }

    async fn controller_status(
        &self,
        _: Request<v1::ControllerStatusRequest>,
    ) -> Answer<v1::ControllerStatusResponse> {
        Err(Status::unavailable("the store is not reachable"))
    }

    async fn watch(&self, _: Request<v1::ControllerWatchRequest>) -> Answer<Self::WatchStream> {
        Err(Status::unimplemented("watch"))
    }
}
refuses {
        list_pools(ListPoolsRequest) -> ListPoolsResponse;
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
        release_ipam(ReleaseIpamRequest) -> ReleaseIpamResponse;
}
}

/// Serves [`Fake`] on `dir/controller.sock` until the test's runtime ends.
fn serve(dir: &Path) -> String {
    let path = dir.join("controller.sock");
    let listener = UnixListener::bind(&path).expect("bind the socket");
    let server = tonic::transport::Server::builder()
        .add_service(ControllerServer::new(Fake))
        .serve_with_incoming(UnixListenerStream::new(listener));
    tokio::spawn(server);
    format!("unix:{}", path.display())
}

/// `netctl --controller ADDR ARGS`: the exit code and standard output, or
/// the error line and exit code as `main` prints them.
async fn netctl(addr: &str, args: &[&str]) -> Result<(u8, String), (String, ExitCode)> {
    let argv = ["netctl", "--controller", addr]
        .into_iter()
        .chain(args.iter().copied());
    let cli = <Cli as clap::Parser>::try_parse_from(argv).expect("valid command line");
    let mut out = Vec::new();
    match crate::run::run(cli, &mut out).await {
        Ok(code) => Ok((code, String::from_utf8(out).unwrap())),
        Err(e) => Err(crate::exit::report(&e)),
    }
}

#[tokio::test]
async fn answers_render_and_statuses_become_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(dir.path());

    let (code, text) = netctl(&addr, &["pool", "get", "pods"]).await.unwrap();
    assert_eq!(code, 0);
    assert!(text.starts_with("Name:                 pods\n"), "{text}");
    let (_, json) = netctl(&addr, &["-o", "json", "pool", "get", "pods"])
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (v["mode"].as_str(), v["blocks_held"].as_u64()),
        (Some("routed"), Some(1))
    );

    let args = [
        "-o",
        "yaml",
        "pool",
        "create",
        "p",
        "--prefix",
        "10.1.0.0/16",
    ];
    let (_, yaml) = netctl(&addr, &args).await.unwrap();
    assert!(
        yaml.contains("prefix: 10.1.0.0/16\nmode: routed\nblock_size: 26\n"),
        "{yaml}"
    );

    let (_, table) = netctl(&addr, &["block", "ls", "--node", "n1"])
        .await
        .unwrap();
    let prefixes: Vec<&str> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(prefixes, ["10.244.0.64/26", "10.244.0.128/26"]);

    let args = ["-o", "json", "node", "endpoints", "h1", "--network", "pods"];
    let (_, json) = netctl(&addr, &args).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let seen: Vec<_> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["container_id"].as_str(), e["network"].as_str()))
        .collect();
    assert_eq!(
        seen,
        [(Some("web1"), Some("pods")), (Some("web2"), Some("pods"))]
    );

    let (code, text) = netctl(&addr, &["ipam", "check"]).await.unwrap();
    assert_eq!(code, crate::exit::PROBLEMS, "{text}");
    assert!(text.starts_with("ipam: 1 problem(s)\n"), "{text}");

    // The same classes, and the same lines, as trellisd's statuses.
    let cases: [(&[&str], &str, u8); 5] = [
        (
            &["node", "endpoints", "h2"],
            "UNAVAILABLE: node \"h2\"'s Agent API at https://192.0.2.12:7444 is unreachable: \
             connection refused",
            10,
        ),
        (&["pool", "get", "nosuch"], "NOT_FOUND: pool \"nosuch\"", 5),
        (
            &["pool", "rm", "old", "busy"],
            "FAILED_PRECONDITION: pool \"busy\" has 3 blocks held",
            7,
        ),
        (
            &["cluster", "status"],
            "UNAVAILABLE: the store is not reachable",
            10,
        ),
        (&["node", "ls"], "UNIMPLEMENTED: list_nodes", 1),
    ];
    for (args, line, code) in cases {
        let err = netctl(&addr, args).await.unwrap_err();
        assert_eq!(err, (line.to_owned(), ExitCode::from(code)), "{args:?}");
    }
}

#[tokio::test]
async fn no_controller_is_a_connection_failure() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("unix:{}/controller.sock", dir.path().display());
    let (line, code) = netctl(&missing, &["pool", "ls"]).await.unwrap_err();
    assert_eq!(code, ExitCode::from(crate::exit::CONNECT));
    assert!(line.starts_with("cannot connect to "), "{line}");
}
