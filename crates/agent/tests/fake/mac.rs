//! A MAC asked for by the attach (the CNI `mac` capability): the container
//! end of the veth is made with it, the endpoint and its record carry it, a
//! veth made again keeps it; one that cannot be an interface's is refused,
//! naming the field, before anything is made.

use crate::util::{agent, bridge_network, container, host, request, routed_network};
use trellis_agent::{Error, ErrorClass};
use trellis_link::{Links, Ns};
use trellis_types::MacAddr;

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn a_requested_mac_is_the_container_interfaces_and_is_returned() {
    for (spec, net) in [(bridge_network(), "web"), (routed_network(), "pods")] {
        let kernel = host();
        let c1 = container(&kernel, "/run/netns/c1").await;
        let agent = agent(&kernel).await;
        agent.create_network(spec).await.unwrap();
        let mut req = request(net, "c1", &c1, None);
        // Upper case in, lower case out (as the kernel shows it).
        req.mac = Some(mac("0A:58:0A:F4:00:07"));
        let ep = agent.attach(req.clone()).await.unwrap();
        let want = [0x0a, 0x58, 0x0a, 0xf4, 0x00, 0x07];
        assert_eq!(ep.mac, "0a:58:0a:f4:00:07", "{net}");
        let eth0 = kernel.link(&Ns::Path(c1.clone()), "eth0").unwrap();
        assert_eq!(eth0.mac, want, "{net}: the container end's MAC");
        if net == "pods" {
            // The host's permanent neighbour of a routed container names it.
            let neighbours = kernel.neighbours(&Ns::Host);
            assert!(
                !neighbours.is_empty() && neighbours.iter().all(|n| n.mac == want),
                "{neighbours:?}"
            );
        }
        let recorded = agent.endpoint(&req.container, &req.ifname).await.unwrap();
        assert_eq!(recorded.as_ref(), Some(&ep), "{net}: the record");
        let problems = agent.check(&req.container, &req.ifname).await.unwrap();
        assert!(problems.is_empty(), "{net}: {problems:?}");

        // The same request again is the same endpoint, and makes nothing.
        kernel.take_calls();
        assert_eq!(agent.attach(req.clone()).await.unwrap(), ep, "{net}");
        let writes = kernel.writes();
        assert!(writes.is_empty(), "{net}: {writes:?}");
        // Another MAC, or none, for the same interface is another endpoint.
        for other in [Some(mac("0a:58:0a:f4:00:08")), None] {
            let mut r = req.clone();
            r.mac = other;
            let e = agent.attach(r).await.unwrap_err();
            assert!(matches!(e, Error::EndpointExists(_)), "{net}: {e}");
        }

        // A veth made again (its host end deleted behind trellis's back)
        // is made with the MAC asked for.
        kernel.delete_link(&ep.host_ifname).await.unwrap();
        assert!(kernel.link(&Ns::Path(c1.clone()), "eth0").is_none());
        let report = agent.reconcile().await.unwrap();
        assert!(report.errors.is_empty(), "{net}: {report:?}");
        let eth0 = kernel.link(&Ns::Path(c1.clone()), "eth0").unwrap();
        assert_eq!(eth0.mac, want, "{net}: the MAC of the veth made again");
        let problems = agent.check(&req.container, &req.ifname).await.unwrap();
        assert!(problems.is_empty(), "{net}: {problems:?}");
    }
}

#[tokio::test]
async fn without_a_mac_the_agent_picks_a_stable_local_one() {
    let kernel = host();
    let c1 = container(&kernel, "/run/netns/c1").await;
    let agent = agent(&kernel).await;
    agent.create_network(bridge_network()).await.unwrap();
    let req = request("web", "c1", &c1, None);
    let ep = agent.attach(req.clone()).await.unwrap();
    let picked = mac(&ep.mac);
    // Locally administered unicast, derived from the host veth's name.
    assert_eq!(picked.octets()[0] & 0x03, 0x02, "{picked}");
    assert_eq!(
        picked.octets(),
        trellis_link::container_mac(&ep.host_ifname)
    );
    let eth0 = kernel.link(&Ns::Path(c1), "eth0").unwrap();
    assert_eq!(eth0.mac, picked.octets());
}

#[tokio::test]
async fn macs_that_no_interface_may_have_are_refused_naming_the_field() {
    let kernel = host();
    let c1 = container(&kernel, "/run/netns/c1").await;
    let agent = agent(&kernel).await;
    agent.create_network(bridge_network()).await.unwrap();
    let state = || async {
        let dump = agent.store().list("").await.unwrap().entries;
        let dump: Vec<(String, Vec<u8>)> = dump.into_iter().map(|(k, v)| (k, v.value)).collect();
        (kernel.snapshot(), dump)
    };
    let before = state().await;
    for bad in [
        "01:00:5e:00:00:01", // IPv4 multicast
        "33:33:00:00:00:01", // IPv6 multicast
        "03:aa:bb:cc:dd:ee", // group bit, locally administered
        "ff:ff:ff:ff:ff:ff",
        "00:00:00:00:00:00",
    ] {
        let mut req = request("web", "c1", &c1, Some(8081));
        req.mac = Some(mac(bad));
        let e = agent.attach(req).await.unwrap_err();
        assert_eq!(e.class(), ErrorClass::InvalidArgument, "{bad}: {e}");
        let Error::Invalid(invalid) = &e else {
            panic!("{bad}: not invalid input: {e:?}");
        };
        assert_eq!((invalid.field, invalid.value.as_str()), ("mac", bad));
        assert!(e.to_string().starts_with(&format!("mac {bad:?}")), "{e}");
        assert!(
            before == state().await,
            "{bad}: a refused attach changed something"
        );
    }
    assert!(agent.endpoints().await.unwrap().is_empty());
    // The host port was not kept either: the same attach with a good MAC
    // goes through.
    let mut req = request("web", "c1", &c1, Some(8081));
    req.mac = Some(mac("00:16:3e:00:00:01"));
    agent.attach(req).await.unwrap();
}
