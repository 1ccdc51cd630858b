//! The trellisd binary end to end, inside a network namespace of its own:
//! ready on its socket, healthy over gRPC, metrics scraped from inside the
//! namespace, a clean exit on SIGTERM, and recovery from a crash.

use crate::util::{Daemon, mode, sample, scrape};
use nix::sys::signal::Signal;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use trellis_proto::v1::{
    AgentClient, AttachRequest, CreateNetworkRequest, Endpoint, NetworkMode, NetworkSpec,
    StatusRequest,
};
use trellis_proto::{SERVICE_NAME, connect_unix};
use trellis_testlab::{Netns, require_root};

const METRICS: &str = "127.0.0.1:9464";

/// The health of `service` ("" for the server as a whole) over the socket.
async fn health(socket: &Path, service: &str) -> Result<i32, tonic::Status> {
    let channel = trellis_proto::channel_unix(socket)
        .await
        .expect("connect to the socket");
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await?;
    Ok(reply.into_inner().status)
}

/// Creates the bridge network `e2e` (10.77.0.0/24) and attaches `c` to it.
async fn attach_one(agent: &mut AgentClient<tonic::transport::Channel>, c: &Netns) -> Endpoint {
    let spec = NetworkSpec {
        name: "e2e".into(),
        mode: NetworkMode::Bridge as i32,
        subnets: vec!["10.77.0.0/24".into()],
        bridge: "tre2e0".into(),
        ..Default::default()
    };
    let req = CreateNetworkRequest { spec: Some(spec) };
    agent.create_network(req).await.expect("create network");
    let req = AttachRequest {
        network: "e2e".into(),
        container_id: "c1".into(),
        netns: c.path_str(),
        ifname: "eth0".into(),
        ..Default::default()
    };
    agent.attach(req).await.expect("attach").into_inner()
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_health_and_metrics_and_stops_cleanly_on_sigterm() {
    require_root();
    let ns = Netns::new("tdd");
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(
        &ns,
        dir.path(),
        &["--metrics-addr", METRICS, "--log-format", "json"],
    );
    d.wait_ready();
    assert_eq!(mode(&d.socket), 0o600, "socket mode");
    assert_eq!(mode(&dir.path().join("state")), 0o700, "state dir mode");
    assert!(dir.path().join("state/trellis.redb").is_file());

    let serving = ServingStatus::Serving as i32;
    assert_eq!(health(&d.socket, "").await.unwrap(), serving);
    let unknown = health(&d.socket, "no.such.Service").await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    assert_eq!(health(&d.socket, SERVICE_NAME).await.unwrap(), serving);
    let mut agent = connect_unix(&d.socket).await.unwrap();
    let status = agent.status(StatusRequest {}).await.unwrap().into_inner();
    assert!(status.ready, "not ready: {:?}", status.reasons);
    assert_eq!((status.node.as_str(), status.networks), ("e2e", 0));

    let c1 = Netns::new("c1");
    let ep = attach_one(&mut agent, &c1).await;
    assert_eq!(ep.addresses, ["10.77.0.2/24"]);

    let addr: SocketAddr = METRICS.parse().unwrap();
    let m = scrape(&ns, addr);
    assert_eq!(
        sample(&m, r#"trellis_endpoints{network="e2e"}"#),
        Some(1.0),
        "{m}"
    );
    let pool = r#"{network="e2e",pool="e2e.v4"}"#;
    assert_eq!(
        sample(&m, &format!("trellis_ipam_used_addresses{pool}")),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, &format!("trellis_ipam_capacity_addresses{pool}")),
        Some(256.0),
        "{m}"
    );
    let attach =
        r#"trellis_rpc_duration_seconds_count{service="trellis.v1.Agent",method="Attach"}"#;
    assert_eq!(sample(&m, attach), Some(1.0), "{m}");
    let ok =
        r#"trellis_rpc_requests_total{service="grpc.health.v1.Health",method="Check",code="OK"}"#;
    assert_eq!(sample(&m, ok), Some(2.0), "{m}");
    let nf = r#"trellis_rpc_errors_total{service="grpc.health.v1.Health",method="Check",code="NOT_FOUND"}"#;
    assert_eq!(sample(&m, nf), Some(1.0), "{m}");
    let count =
        r#"trellis_rpc_duration_seconds_count{service="grpc.health.v1.Health",method="Check"}"#;
    assert_eq!(sample(&m, count), Some(3.0), "{m}");
    assert_eq!(sample(&m, "trellis_networks"), Some(1.0), "{m}");
    assert_eq!(
        sample(&m, "trellis_metrics_collect_errors_total"),
        Some(0.0),
        "{m}"
    );

    let status = d.terminate();
    assert!(status.success(), "exit {status}:\n{}", d.log());
    assert!(!d.socket.exists(), "socket left behind");
    let log = d.log();
    assert!(
        log.contains(r#""message":"trellisd serving; reconciling in the background""#),
        "{log}"
    );
    assert!(log.contains(r#""message":"reconciled: ready""#), "{log}");
    assert!(log.contains(r#""message":"shutting down""#), "{log}");
    drop(ns);
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[test]
fn recovers_from_a_crash_and_refuses_a_second_daemon() {
    require_root();
    let ns = Netns::new("tdc");
    let dir = tempfile::tempdir().unwrap();
    let mut first = Daemon::start(&ns, dir.path(), &[]);
    first.wait_ready();

    // A second daemon on the same socket and state must not start.
    let mut second = Daemon::start(&ns, dir.path(), &[]);
    let status = second.wait_exit(Duration::from_secs(30));
    assert!(!status.success());
    let log = second.log();
    assert!(log.contains("trellisd: error:"), "{log}");
    assert!(
        first.socket.exists(),
        "the first daemon's socket was removed"
    );

    // SIGKILL leaves the socket behind; the next start replaces it.
    first.signal(Signal::SIGKILL);
    first.wait_exit(Duration::from_secs(10));
    assert!(
        first.socket.exists(),
        "a killed daemon cannot remove its socket"
    );
    let mut third = Daemon::start(&ns, dir.path(), &[]);
    third.wait_ready();
    assert!(
        third.log().contains("removing a stale socket"),
        "{}",
        third.log()
    );
    trellis_testlab::report::record(
        "trellisd",
        "SIGKILL leaves its unix socket behind; trellisd started again on it",
        "the new trellisd removes the stale socket (says so in its log) and serves",
    );
    let status = third.terminate();
    assert!(status.success(), "exit {status}:\n{}", third.log());
}
