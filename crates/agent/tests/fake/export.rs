//! What the node announces: owned routed blocks and routable bridge subnets,
//! each change followed by an event, and a routable subnet never masqueraded.

use crate::util::{agent, bridge_network, container, host, request, routed_network};
use ipnet::IpNet;
use trellis_agent::{Event, NetworkSpec};
use trellis_types::IfName;

fn nets(s: &[&str]) -> Vec<IpNet> {
    s.iter().map(|n| n.parse().unwrap()).collect()
}

fn routable() -> NetworkSpec {
    NetworkSpec {
        name: "direct".parse().unwrap(),
        mode: trellis_agent::NetworkMode::Bridge {
            bridge: IfName::parse("bridge", "trdirect0").unwrap(),
        },
        subnets: nets(&["10.9.0.0/24"]),
        masquerade: false,
        routable: true,
        ..bridge_network()
    }
}

#[tokio::test]
async fn exported_prefixes_are_owned_blocks_and_routable_subnets_sorted() {
    let k = host();
    let a = agent(&k).await;
    let mut events = a.subscribe();
    assert!(a.exported_prefixes().await.unwrap().is_empty());

    a.create_network(bridge_network()).await.unwrap();
    a.create_network(routed_network()).await.unwrap();
    let direct = a.create_network(routable()).await.unwrap();
    // A routed network owns no block before its first attach; a bridge
    // network that is not routable is never announced.
    assert_eq!(a.exported_prefixes().await.unwrap(), nets(&["10.9.0.0/24"]));
    // The routable subnet is not masqueraded; the other bridge's is.
    let nat = k.nat().unwrap();
    let masq: Vec<(String, bool)> = nat
        .networks
        .iter()
        .map(|n| (n.subnet.to_string(), n.masquerade))
        .collect();
    assert!(masq.contains(&("10.9.0.0/24".into(), false)), "{masq:?}");
    assert!(
        masq.contains(&("192.168.169.0/24".into(), true)),
        "{masq:?}"
    );

    // An attach that claims a block announces itself once the block is owned.
    let c1 = container(&k, "/run/netns/c1").await;
    a.attach(request("pods", "c1", &c1, None)).await.unwrap();
    let block = a.ipam().owned_blocks("pods.v4").await.unwrap();
    assert_eq!(block.len(), 1, "{block:?}");
    let mut want = vec![block[0], "10.9.0.0/24".parse().unwrap()];
    want.sort();
    assert_eq!(a.exported_prefixes().await.unwrap(), want);
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    // BlocksChanged (the block owned, its blackhole in place) comes before
    // the attach's own event; a second attach in that block claims nothing
    // and says nothing of blocks.
    let n = seen.len();
    assert!(n >= 2, "{seen:?}");
    assert_eq!(seen[n - 2], Event::BlocksChanged, "{seen:?}");
    assert!(
        matches!(seen[n - 1], Event::EndpointAttached(_)),
        "{seen:?}"
    );
    let c2 = container(&k, "/run/netns/c2").await;
    a.attach(request("pods", "c2", &c2, None)).await.unwrap();
    assert!(matches!(
        events.try_recv().unwrap(),
        Event::EndpointAttached(_)
    ));
    assert!(
        events.try_recv().is_err(),
        "no BlocksChanged for an attach that claims nothing"
    );

    a.delete_network("direct").await.unwrap();
    assert_eq!(events.try_recv().unwrap(), Event::NetworkDeleted(direct));
    assert_eq!(a.exported_prefixes().await.unwrap(), block);
}
