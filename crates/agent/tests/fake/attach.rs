//! Attach and detach on the fake kernel: what an attach makes, that a detach
//! takes all of it away again, and that a failure half-way is undone.

use crate::util::{agent, bridge_network, container, host, request, routed_network};
use trellis_agent::Error;
use trellis_fake::Errno;
use trellis_link::Ns;

#[tokio::test]
async fn attach_then_detach_of_a_bridge_endpoint_leaves_the_kernel_as_it_was() {
    let kernel = host();
    let c1 = container(&kernel, "/run/netns/c1").await;
    let agent = agent(&kernel).await;
    agent.create_network(bridge_network()).await.unwrap();
    let before = kernel.snapshot();

    let req = request("web", "c1", &c1, Some(8081));
    let ep = agent.attach(req.clone()).await.unwrap();

    let host_end = kernel.link(&Ns::Host, ep.host_ifname.as_str()).unwrap();
    let bridge = kernel.link(&Ns::Host, "trellis0").unwrap();
    assert_eq!(
        host_end.master,
        Some(bridge.index),
        "enslaved to the bridge"
    );
    let eth0 = kernel.link(&Ns::Path(c1.clone()), "eth0").unwrap();
    assert!(eth0.up);
    assert_eq!(eth0.addresses, ep.addresses);
    let routes = kernel.routes(&Ns::Path(c1.clone()));
    assert!(
        routes.iter().any(|r| r.dst.prefix_len() == 0),
        "a default route: {routes:?}"
    );
    assert_eq!(kernel.nat().unwrap().ports, ep.ports);
    let problems = agent.check(&req.container, &req.ifname).await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");

    agent.detach(&req.container, &req.ifname).await.unwrap();
    // The retired veth goes in the reaper's next batch.
    agent.settle().await;
    assert_eq!(kernel.snapshot(), before);
}

#[tokio::test]
async fn a_failed_publish_undoes_the_whole_attach() {
    let kernel = host();
    let c1 = container(&kernel, "/run/netns/c1").await;
    let agent = agent(&kernel).await;
    agent.create_network(bridge_network()).await.unwrap();
    let before = kernel.snapshot();
    kernel.take_calls();

    kernel.fail_next("publish", Errno::ENOBUFS);
    let err = agent
        .attach(request("web", "c1", &c1, Some(8081)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Nat(_)), "{err}");
    assert_eq!(
        kernel.snapshot(),
        before,
        "the veth made before publish is gone again"
    );
    let writes: Vec<&str> = kernel.writes().iter().map(|c| c.method).collect();
    assert!(
        writes.contains(&"create_veth") && writes.contains(&"delete_links"),
        "{writes:?}"
    );
    assert!(
        agent.endpoints().await.unwrap().is_empty(),
        "no record left"
    );
    // The address and the port were released: the same attach now works.
    agent
        .attach(request("web", "c1", &c1, Some(8081)))
        .await
        .unwrap();
}

#[tokio::test]
async fn attach_then_detach_of_a_routed_endpoint_leaves_only_its_block() {
    let kernel = host();
    let c1 = container(&kernel, "/run/netns/c1").await;
    let agent = agent(&kernel).await;
    agent.create_network(routed_network()).await.unwrap();
    let req = request("pods", "c1", &c1, None);
    let ep = agent.attach(req.clone()).await.unwrap();
    let routes = kernel.routes(&Ns::Host);
    let addr = ep.addresses[0];
    assert!(
        routes
            .iter()
            .any(|r| r.dst == addr && r.dev.as_ref() == Some(&ep.host_ifname)),
        "{routes:?}"
    );
    assert_eq!(kernel.neighbours(&Ns::Host).len(), 1);
    let problems = agent.check(&req.container, &req.ifname).await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");

    agent.detach(&req.container, &req.ifname).await.unwrap();
    assert!(kernel.link(&Ns::Host, ep.host_ifname.as_str()).is_none());
    assert!(kernel.neighbours(&Ns::Host).is_empty());
    let left: Vec<_> = kernel.routes(&Ns::Host);
    assert!(
        left.iter()
            .all(|r| r.kind == trellis_route::RouteKind::Blackhole),
        "only the block's blackhole may stay: {left:?}"
    );
}

#[tokio::test]
async fn check_names_a_lost_container_route_and_reconcile_puts_it_back() {
    use trellis_route::Routes;
    let kernel = host();
    let c1 = container(&kernel, "/run/netns/c1").await;
    let agent = agent(&kernel).await;
    agent.create_network(bridge_network()).await.unwrap();
    let req = request("web", "c1", &c1, Some(8081));
    agent.attach(req.clone()).await.unwrap();

    let inside = Ns::Path(c1.clone());
    let lost = kernel.routes(&inside);
    kernel.delete_routes(&inside, &lost).await.unwrap();
    let problems = agent.check(&req.container, &req.ifname).await.unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("container route 0.0.0.0/0"),
        "{problems:?}"
    );

    kernel.take_calls();
    let report = agent.reconcile().await.unwrap();
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(kernel.routes(&inside), lost);
    assert!(
        agent
            .check(&req.container, &req.ifname)
            .await
            .unwrap()
            .is_empty()
    );
    // The repair is made in place: the container side is set up again
    // (addresses refreshed, routes create-or-replace); the veth pair, and
    // the container's connections through it, stay.
    let writes: Vec<&str> = kernel.writes().iter().map(|c| c.method).collect();
    assert!(writes.contains(&"setup_container"), "{writes:?}");
    assert!(
        !writes.contains(&"create_veth") && !writes.contains(&"delete_link"),
        "{writes:?}"
    );
}

/// Garbage collection racing attaches and detaches judges none of them:
/// every endpoint attached is whole afterwards (veth, addresses, published
/// port), nothing valid is removed, and what was detached is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collection_racing_attaches_and_detaches_takes_nothing_it_should_not() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let kernel = host();
    let agent = Arc::new(agent(&kernel).await);
    agent.create_network(bridge_network()).await.unwrap();
    let mut requests = Vec::new();
    for i in 0..24 {
        let netns = container(&kernel, &format!("/run/netns/r{i}")).await;
        requests.push(request("web", &format!("r{i}"), &netns, Some(9000 + i)));
    }
    let valid: Vec<_> = requests.iter().map(|r| r.handle()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let collector = tokio::spawn({
        let (agent, stop, valid) = (agent.clone(), stop.clone(), valid.clone());
        async move {
            let mut rounds = 0;
            while !stop.load(Ordering::SeqCst) {
                let gc = agent.garbage_collect(None, &valid).await.unwrap();
                assert!(gc.removed.is_empty(), "collected a valid endpoint: {gc:?}");
                assert!(gc.errors.is_empty(), "{gc:?}");
                rounds += 1;
                tokio::task::yield_now().await;
            }
            rounds
        }
    });
    let tasks: Vec<_> = requests
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, req)| {
            let agent = agent.clone();
            tokio::spawn(async move {
                agent.attach(req.clone()).await.unwrap();
                if i % 3 == 0 {
                    agent.detach(&req.container, &req.ifname).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let rounds = collector.await.unwrap();
    assert!(rounds > 0);
    for (i, req) in requests.iter().enumerate() {
        let ep = agent.endpoint(&req.container, &req.ifname).await.unwrap();
        if i % 3 == 0 {
            assert_eq!(ep, None, "{}", req.container);
            continue;
        }
        let ep = ep.unwrap_or_else(|| panic!("{} lost its record", req.container));
        let problems = agent.check(&req.container, &req.ifname).await.unwrap();
        assert!(problems.is_empty(), "{}: {problems:?}", req.container);
        let held = agent.ipam().addresses_of(&req.handle()).await.unwrap();
        assert_eq!(held.len(), ep.addresses.len(), "{}", req.container);
    }
    // One last collection with everything settled changes nothing. Settled
    // means the reaper's queue too: the detaches above left retired veths
    // that it deletes in its own time (and a collection waits for it), so a
    // snapshot taken before it has run would still hold them.
    agent.settle().await;
    let before = kernel.snapshot();
    let gc = agent.garbage_collect(None, &valid).await.unwrap();
    assert!(gc.removed.is_empty() && gc.errors.is_empty(), "{gc:?}");
    assert_eq!(kernel.snapshot(), before);
}

#[tokio::test]
async fn an_attach_replaces_the_stale_record_of_a_container_that_is_gone() {
    // After a restart, reconcile runs in the background: until it reaches a
    // record whose namespace is gone, an attach of the same handle (the
    // runtime made the container again) must not be refused for it.
    let kernel = host();
    let old = container(&kernel, "/run/netns/old").await;
    let agent = agent(&kernel).await;
    agent.create_network(bridge_network()).await.unwrap();
    let first = agent
        .attach(request("web", "c1", &old, Some(8081)))
        .await
        .unwrap();
    assert!(kernel.remove_netns(&old), "the container died");

    let new = container(&kernel, "/run/netns/new").await;
    let ep = agent
        .attach(request("web", "c1", &new, Some(8081)))
        .await
        .expect("the stale record gives way");
    assert_eq!(ep.request.netns, new);
    assert_eq!(agent.endpoints().await.unwrap(), vec![ep.clone()]);
    let usage = agent.ipam().usage("web.v4").await.unwrap();
    assert_eq!(usage.used, 1, "the old address was released");
    assert_ne!(first, ep);

    // A live container's record still refuses another request for its handle.
    let other = container(&kernel, "/run/netns/other").await;
    let err = agent
        .attach(request("web", "c1", &other, Some(8081)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::EndpointExists(_)), "{err}");
}
