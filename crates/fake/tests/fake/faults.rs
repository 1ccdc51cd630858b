//! Failures on cue and the call log.

use crate::util::{bridge, bridged, veth};
use nix::errno::Errno;
use std::sync::Arc;
use trellis_fake::FakeKernel;
use trellis_link::{LinkError, Links};
use trellis_nat::{Error, Nat};
use trellis_route::{RouteError, Routes};

#[tokio::test]
async fn an_injected_failure_changes_nothing_and_is_logged() {
    let k = FakeKernel::new();
    let c1 = k.add_netns("/run/netns/c1");
    k.fail_next("create_veth", Errno::ENOMEM);
    let before = k.snapshot();
    let err = k.create_veth(&veth("tr0000000000001", &c1, None)).await;
    let Err(LinkError::Kernel(e)) = err else {
        panic!("{err:?}")
    };
    assert_eq!(e.errno(), Some(Errno::ENOMEM));
    assert_eq!(k.snapshot(), before);
    k.create_veth(&veth("tr0000000000001", &c1, None))
        .await
        .unwrap();
    let calls: Vec<String> = k.calls().iter().map(ToString::to_string).collect();
    assert_eq!(
        calls,
        [
            "create_veth(tr0000000000001 (peer eth0 in /run/netns/c1)) failed",
            "create_veth(tr0000000000001 (peer eth0 in /run/netns/c1))",
        ]
    );
}

#[tokio::test]
async fn fail_on_counts_calls_from_now_and_each_trait_gets_its_own_error() {
    let (k, _, _) = bridged().await;
    k.take_calls();
    k.fail_on("list_routes", 2, Errno::EIO);
    k.fail_next("publish", Errno::EPERM);
    assert_eq!(k.pending_faults().len(), 2);
    assert!(k.list_routes(&trellis_link::Ns::Host).await.is_ok());
    let err = k.list_routes(&trellis_link::Ns::Host).await;
    assert!(matches!(err, Err(RouteError::Kernel(ref e)) if e.errno() == Some(Errno::EIO)));
    let err = k.publish(&[]).await;
    assert!(matches!(err, Err(Error::Kernel { errno, .. }) if errno == Errno::EPERM as i32));
    assert!(k.pending_faults().is_empty());
    assert_eq!(
        k.writes().len(),
        1,
        "list_routes only reads: {:?}",
        k.writes()
    );
}

#[test]
#[should_panic(expected = "is not a method of the fake")]
fn a_misspelt_method_is_refused() {
    FakeKernel::new().fail_next("create_vet", Errno::EIO);
}

#[tokio::test]
async fn clones_share_one_kernel_through_every_trait() {
    let k = FakeKernel::new();
    let links: Arc<dyn Links> = Arc::new(k.clone());
    let routes: Arc<dyn Routes> = Arc::new(k.clone());
    let nat: Arc<dyn Nat> = Arc::new(k.clone());
    links
        .ensure_bridge(&bridge("br0", "10.0.0.1/24"))
        .await
        .unwrap();
    nat.ensure_table().await.unwrap();
    let listed = routes.host_routes().await.unwrap();
    assert_eq!(listed.len(), 1, "the bridge's connected route: {listed:?}");
    assert!(k.nat().is_some());
    let methods: Vec<&str> = k.calls().iter().map(|c| c.method).collect();
    assert_eq!(methods, ["ensure_bridge", "ensure_table", "host_routes"]);
}
