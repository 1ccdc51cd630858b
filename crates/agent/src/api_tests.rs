//! The daemon-facing API over mocks: fixed addresses and labels (refused
//! before anything changes, a taken address is ALREADY_EXISTS), a routable
//! network's contradictions, filters, events after success, readiness.

use crate::attach_tests::{Fail, agent_failing_at, request};
use crate::{Agent, EndpointFilter, Error, ErrorClass, Event, NetworkMode, NetworkSpec};
use std::net::IpAddr;
use trellis_types::InvalidInput;

type Labels = Vec<(String, String)>;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

async fn state(agent: &Agent) -> (Vec<(String, Vec<u8>)>, usize) {
    let dump = agent.store().list("").await.unwrap().entries;
    let dump = dump.into_iter().map(|(k, v)| (k, v.value)).collect();
    (dump, agent.endpoints().await.unwrap().len())
}

fn field(e: &Error) -> &'static str {
    match e {
        Error::Invalid(InvalidInput { field, .. }) => field,
        other => panic!("not invalid input: {other:?}"),
    }
}

#[tokio::test]
async fn a_fixed_address_is_given_and_a_taken_one_is_refused_changing_nothing() {
    let (agent, seen) = agent_failing_at(Fail::Nothing, false).await;
    let mut req = request("c1", 8081);
    req.fixed_addresses = vec![ip("10.5.0.77")];
    let ep = agent.attach(req).await.unwrap();
    assert_eq!(ep.addresses[0].to_string(), "10.5.0.77/24");

    let before = state(&agent).await;
    let mut req = request("c2", 8082);
    req.fixed_addresses = vec![ip("10.5.0.77")];
    let e = agent.attach(req).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::AlreadyExists, "{e}");
    assert!(e.to_string().contains("10.5.0.77"), "{e}");
    assert_eq!(
        before,
        state(&agent).await,
        "a refused attach changed the store"
    );
    assert!(
        seen.lock().unwrap().deleted.is_empty(),
        "no veth was made to undo"
    );
    // The refused attach released its host port.
    agent.attach(request("c3", 8082)).await.unwrap();
}

#[tokio::test]
async fn bad_fixed_addresses_and_labels_are_refused_naming_the_field() {
    let (agent, seen) = agent_failing_at(Fail::Nothing, false).await;
    let before = state(&agent).await;
    let cases: Vec<(Vec<IpAddr>, Labels, &str)> = vec![
        (vec![ip("10.6.0.5")], vec![], "fixed_addresses"),
        (
            vec![ip("10.5.0.5"), ip("10.5.0.6")],
            vec![],
            "fixed_addresses",
        ),
        (vec![ip("10.5.0.1")], vec![], "fixed_addresses"), // the gateway
        (vec![ip("10.5.0.255")], vec![], "fixed_addresses"), // broadcast
        (vec![ip("fd00::5")], vec![], "fixed_addresses"),  // no v6 subnet
        (vec![], vec![(String::new(), "v".into())], "labels"),
        (vec![], vec![("k".repeat(64), "v".into())], "labels"),
        (vec![], vec![("a b".into(), "v".into())], "labels"),
        (vec![], vec![("app".into(), "v".repeat(256))], "labels"),
    ];
    for (fixed, labels, want) in cases {
        let mut req = request("c1", 8081);
        req.fixed_addresses = fixed.clone();
        req.labels = labels.into_iter().collect();
        let e = agent.attach(req).await.unwrap_err();
        assert_eq!(field(&e), want, "{fixed:?}: {e}");
        assert_eq!(before, state(&agent).await, "{fixed:?} changed something");
    }
    assert!(seen.lock().unwrap().deleted.is_empty());
    // Good labels pass: 63-byte key with every allowed character class.
    let mut req = request("c1", 8081);
    let key = format!("example.com/app_{}", "x".repeat(47));
    assert_eq!(key.len(), 63);
    req.labels = [(key, "v".repeat(255))].into_iter().collect();
    agent.attach(req).await.unwrap();
}

#[tokio::test]
async fn endpoints_are_listed_by_network_container_and_labels() {
    let (agent, _) = agent_failing_at(Fail::Nothing, false).await;
    for (id, port, role) in [("a", 8001, "web"), ("b", 8002, "db"), ("c", 8003, "web")] {
        let mut req = request(id, port);
        req.labels = [("role".to_owned(), role.to_owned())].into_iter().collect();
        agent.attach(req).await.unwrap();
    }
    let ids = |eps: Vec<crate::Endpoint>| -> Vec<String> {
        eps.iter()
            .map(|e| e.request.container.to_string())
            .collect()
    };
    let all = agent
        .list_endpoints(&EndpointFilter::default())
        .await
        .unwrap();
    assert_eq!(ids(all), ["a", "b", "c"]);
    let mut f = EndpointFilter::default();
    f.labels.insert("role".into(), "web".into());
    assert_eq!(ids(agent.list_endpoints(&f).await.unwrap()), ["a", "c"]);
    f.container = Some(request("c", 1).container);
    assert_eq!(ids(agent.list_endpoints(&f).await.unwrap()), ["c"]);
    let f = EndpointFilter {
        network: Some("other".parse().unwrap()),
        ..Default::default()
    };
    assert!(agent.list_endpoints(&f).await.unwrap().is_empty());
}

#[tokio::test]
async fn routable_contradictions_are_refused_each_by_name_creating_nothing() {
    let (agent, _) = agent_failing_at(Fail::Nothing, false).await;
    let good = NetworkSpec {
        name: "direct".parse().unwrap(),
        subnets: vec!["10.6.0.0/24".parse().unwrap()],
        gateway: None,
        mode: NetworkMode::Bridge {
            bridge: trellis_types::IfName::parse("bridge", "tbr2").unwrap(),
        },
        masquerade: false,
        routable: true,
        ..agent.network("n").unwrap().spec
    };
    let cases = [
        (
            NetworkSpec {
                mode: NetworkMode::Routed,
                ..good.clone()
            },
            "a routed network's blocks are always announced",
        ),
        (
            NetworkSpec {
                internal: true,
                ..good.clone()
            },
            "internal",
        ),
        (
            NetworkSpec {
                masquerade: true,
                ..good.clone()
            },
            "masquerade",
        ),
    ];
    let before = state(&agent).await;
    for (spec, words) in cases {
        let e = agent.create_network(spec.clone()).await.unwrap_err();
        assert_eq!(e.class(), ErrorClass::InvalidArgument, "{e}");
        assert_eq!(field(&e), "routable", "{e}");
        assert!(e.to_string().contains(words), "{spec:?}: {e}");
        assert_eq!(before, state(&agent).await, "{spec:?} changed the store");
        assert_eq!(agent.networks().len(), 1, "{spec:?} made a network");
    }
    let net = agent.create_network(good).await.unwrap();
    assert!(net.spec.routable && !net.spec.masquerade);
}

#[tokio::test]
async fn events_follow_successful_changes_only() {
    let (agent, _) = agent_failing_at(Fail::Nothing, false).await;
    let mut rx = agent.subscribe();
    let ep = agent.attach(request("c1", 8081)).await.unwrap();
    // The same attach again, and a refused one, announce nothing.
    agent.attach(request("c1", 8081)).await.unwrap();
    agent.attach(request("c2", 8081)).await.unwrap_err();
    let h = ep.request.handle();
    agent.detach(&h.container, &h.ifname).await.unwrap();
    agent.detach(&h.container, &h.ifname).await.unwrap();
    let net = agent.network("n").unwrap();
    agent.delete_network("n").await.unwrap();
    agent.delete_network("n").await.unwrap();
    assert_eq!(rx.try_recv().unwrap(), Event::EndpointAttached(ep.clone()));
    assert_eq!(rx.try_recv().unwrap(), Event::EndpointDetached(ep));
    assert_eq!(rx.try_recv().unwrap(), Event::NetworkDeleted(net));
    assert!(rx.try_recv().is_err(), "nothing else was announced");
}

#[tokio::test]
async fn status_is_not_ready_until_reconciled_and_check_needs_a_record() {
    let (agent, _) = agent_failing_at(Fail::Nothing, false).await;
    let st = agent.status().await;
    assert!(!st.ready);
    assert_eq!((st.networks, st.endpoints), (1, 0));
    assert!(st.reasons[0].contains("reconciliation"), "{:?}", st.reasons);
    assert_eq!(agent.node(), "node");
    let r = request("nope", 1);
    let e = agent.check(&r.container, &r.ifname).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::NotFound, "{e}");
}

#[tokio::test]
async fn a_failure_at_any_step_frees_the_fixed_address_too() {
    let bridge = [Fail::Veth, Fail::Container, Fail::Publish].map(|f| (f, false));
    let routed = [Fail::Veth, Fail::HostSide, Fail::Container, Fail::Publish].map(|f| (f, true));
    for (fail, routed) in bridge.into_iter().chain(routed) {
        let (agent, _) = agent_failing_at(fail, routed).await;
        let mut req = request("c1", 8081);
        req.fixed_addresses = vec![ip("10.5.0.9")];
        req.labels = [("app".to_owned(), "web".to_owned())].into_iter().collect();
        agent.attach(req.clone()).await.unwrap_err();
        let what = format!("{fail:?} (routed: {routed})");
        assert_eq!(agent.ipam().usage("n.v4").await.unwrap().used, 0, "{what}");
        assert!(agent.endpoints().await.unwrap().is_empty(), "{what}");
        // The address is free for someone else.
        let h = request("c2", 1).handle();
        let pool = "n.v4";
        agent
            .ipam()
            .allocate_specific(pool, &h, ip("10.5.0.9"))
            .await
            .unwrap();
    }
}
