//! The happy path over gRPC: health, reflection, and a full round trip that
//! leaves the kernel as it found it.
//!
//! Which tier proves what: health, reflection and the round trip run on the
//! fake kernel (unprivileged), where "as it found it" is the fake's whole
//! state, container namespaces included, but for the host's forwarding
//! switches (left on by design); the same round trip runs through
//! real namespaces (privileged), the edge proven end to end against the
//! kernel, where it is the host namespace as `ip` and `nft` show it.

use crate::util::{Container, Harness, attach, bridge, create, tcp};
use tokio_stream::StreamExt;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use trellis_proto::v1 as pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_says_serving_and_reflection_lists_the_agent() {
    let h = Harness::fake().await;
    let mut health = HealthClient::new(h.channel.clone());
    for service in ["trellis.v1.Agent", ""] {
        let req = HealthCheckRequest {
            service: service.into(),
        };
        let status = health.check(req).await.unwrap().into_inner().status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }

    let mut reflection = ServerReflectionClient::new(h.channel.clone());
    let ask = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::once(ask))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("unexpected reflection answer {answer:?}");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"trellis.v1.Agent"), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_attach_list_detach_delete_round_trip() {
    round_trip(Harness::fake().await).await;
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_attach_list_detach_delete_round_trip_through_real_namespaces() {
    round_trip(Harness::start().await).await;
}

async fn round_trip(h: Harness) {
    let mut c = h.client.clone();
    let (c1, c2) = (h.container("c1").await, h.container("c2").await);
    let empty = h.kernel_state().without_host_forwarding();

    let net = create(&mut c, bridge("web", "10.88.0.0/24", "tbrweb")).await;
    assert_eq!(net.gateways, ["10.88.0.1"]);
    assert_eq!(net.spec.as_ref().unwrap().gateway, "10.88.0.1");
    let mut events = c
        .watch(pb::WatchRequest { replay: true })
        .await
        .unwrap()
        .into_inner();
    let first = events.next().await.unwrap().unwrap();
    assert_eq!(first.kind, pb::event::Kind::NetworkCreated as i32);

    let mut req = attach("web", "c1", &c1);
    req.ports = vec![tcp(8080, 80)];
    req.labels = [("app".to_owned(), "shop".to_owned())].into();
    let ep = c.attach(req.clone()).await.unwrap().into_inner();
    assert_eq!(ep.ifname, "eth0");
    assert_eq!(ep.addresses, ["10.88.0.2/24"]);
    assert_eq!(ep.ports[0].container_ip, "10.88.0.2");
    // Attach is idempotent.
    assert_eq!(c.attach(req).await.unwrap().into_inner(), ep);
    let attached = events.next().await.unwrap().unwrap();
    assert_eq!(attached.kind, pb::event::Kind::EndpointAttached as i32);
    assert_eq!(
        attached.object,
        Some(pb::event::Object::Endpoint(ep.clone()))
    );

    check_listings(&mut c, &ep).await;
    let check = pb::CheckRequest {
        container_id: "c1".into(),
        ifname: String::new(),
    };
    let check = c.check(check).await.unwrap().into_inner();
    assert!(check.ok, "{:?}", check.problems);
    let status = c.status(pb::StatusRequest {}).await.unwrap().into_inner();
    assert!(status.ready, "{:?}", status.reasons);
    assert_eq!(
        (status.node.as_str(), status.networks, status.endpoints),
        ("node1", 1, 1)
    );

    garbage_collect_keeps_c1(&mut c, &c2).await;
    let detach = pb::DetachRequest {
        container_id: "c1".into(),
        ifname: "eth0".into(),
    };
    c.detach(detach.clone()).await.unwrap();
    // Detach of something unknown succeeds.
    c.detach(detach).await.unwrap();
    let name = pb::DeleteNetworkRequest { name: "web".into() };
    c.delete_network(name).await.unwrap();
    // Detached veths are deleted in the background; wait for that.
    h.agent.settle().await;
    let left = h.kernel_state().without_host_forwarding();
    assert!(
        left == empty,
        "the round trip left something:\n    {}",
        left.diff(&empty)
    );
    // Stopping ends the open watch rather than waiting for it.
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_mac_is_set_and_a_collection_keeps_to_its_network() {
    mac_and_scoped_gc(Harness::fake().await).await;
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_mac_is_set_and_a_collection_keeps_to_its_network_in_real_namespaces() {
    mac_and_scoped_gc(Harness::start().await).await;
}

/// The CNI plugin's two needs: the `mac` capability (the container's
/// interface gets the MAC asked for, in either case, and the endpoint says
/// it in lower case) and GC per network configuration.
async fn mac_and_scoped_gc(h: Harness) {
    let mut c = h.client.clone();
    let (c1, c2) = (h.container("c1").await, h.container("c2").await);
    create(&mut c, bridge("web", "10.88.0.0/24", "tbrweb")).await;
    create(&mut c, bridge("db", "10.89.0.0/24", "tbrdb")).await;
    let mut req = attach("web", "c1", &c1);
    req.mac = "0A:58:0A:58:00:02".into();
    let ep = c.attach(req.clone()).await.unwrap().into_inner();
    assert_eq!(ep.mac, "0a:58:0a:58:00:02");
    assert_eq!(h.mac_in(&c1, "eth0").as_deref(), Some("0a:58:0a:58:00:02"));
    assert_eq!(c.attach(req.clone()).await.unwrap().into_inner(), ep);
    req.mac = "0a:58:0a:58:00:03".into();
    let other = c.attach(req).await.unwrap_err();
    assert_eq!(other.code(), tonic::Code::AlreadyExists, "{other:?}");
    let check = pb::CheckRequest {
        container_id: "c1".into(),
        ifname: String::new(),
    };
    let check = c.check(check).await.unwrap().into_inner();
    assert!(check.ok, "{:?}", check.problems);

    // db's collection, keeping nothing, takes c2 and leaves web's c1.
    c.attach(attach("db", "c2", &c2)).await.unwrap();
    let gc = pb::GarbageCollectRequest {
        valid: Vec::new(),
        network: "db".into(),
    };
    let report = c.garbage_collect(gc).await.unwrap().into_inner();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let removed = pb::Attachment {
        container_id: "c2".into(),
        ifname: "eth0".into(),
    };
    assert_eq!(report.removed, [removed]);
    let all = pb::ListEndpointsRequest::default();
    let left = c.list_endpoints(all).await.unwrap().into_inner().endpoints;
    assert_eq!(left, [ep]);
    assert_eq!(h.mac_in(&c2, "eth0"), None);
    assert!(h.mac_in(&c1, "eth0").is_some());
    h.stop().await;
}

async fn check_listings(c: &mut pb::AgentClient<tonic::transport::Channel>, ep: &pb::Endpoint) {
    let by_label = pb::ListEndpointsRequest {
        labels: [("app".to_owned(), "shop".to_owned())].into(),
        ..Default::default()
    };
    let list = c.list_endpoints(by_label).await.unwrap().into_inner();
    assert_eq!(list.endpoints, std::slice::from_ref(ep));
    let other = pb::ListEndpointsRequest {
        network: "other".into(),
        ..Default::default()
    };
    let list = c.list_endpoints(other).await.unwrap().into_inner();
    assert!(list.endpoints.is_empty());
    let got = pb::GetEndpointRequest {
        container_id: "c1".into(),
        ifname: String::new(),
    };
    assert_eq!(&c.get_endpoint(got).await.unwrap().into_inner(), ep);
    let net = pb::GetNetworkRequest { name: "web".into() };
    assert_eq!(c.get_network(net).await.unwrap().into_inner().endpoints, 1);
    let nets = c.list_networks(pb::ListNetworksRequest {}).await.unwrap();
    assert_eq!(nets.into_inner().networks[0].endpoints, 1);
}

/// A second container that the orchestrator no longer knows is collected.
async fn garbage_collect_keeps_c1(
    c: &mut pb::AgentClient<tonic::transport::Channel>,
    c2: &Container,
) {
    c.attach(attach("web", "c2", c2)).await.unwrap();
    let keep = pb::Attachment {
        container_id: "c1".into(),
        ifname: String::new(),
    };
    let gc = pb::GarbageCollectRequest {
        valid: vec![keep],
        network: String::new(),
    };
    let report = c.garbage_collect(gc).await.unwrap().into_inner();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let removed = pb::Attachment {
        container_id: "c2".into(),
        ifname: "eth0".into(),
    };
    assert_eq!(report.removed, [removed]);
}
