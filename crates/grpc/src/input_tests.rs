//! Field checks that need no agent: each refusal names its field.

use super::*;

fn bridge(name: &str, subnet: &str) -> pb::NetworkSpec {
    pb::NetworkSpec {
        name: name.into(),
        mode: pb::NetworkMode::Bridge.into(),
        subnets: vec![subnet.into()],
        bridge: "tbr0".into(),
        ..Default::default()
    }
}

fn attach() -> pb::AttachRequest {
    pb::AttachRequest {
        network: "n1".into(),
        container_id: "c1".into(),
        netns: "/run/netns/c1".into(),
        ..Default::default()
    }
}

#[test]
fn a_good_bridge_spec_converts() {
    let spec = network_spec(Some(bridge("n1", "10.1.0.0/24"))).unwrap();
    assert_eq!(spec.bridge().unwrap().as_str(), "tbr0");
    assert_eq!(spec.subnets, vec!["10.1.0.0/24".parse::<IpNet>().unwrap()]);
    assert_eq!((spec.gateway, spec.mtu), (None, None));
}

#[test]
fn routable_converts_both_ways_and_is_judged_by_the_core() {
    let pb_spec = pb::NetworkSpec {
        routable: true,
        ..bridge("n1", "10.1.0.0/24")
    };
    let spec = network_spec(Some(pb_spec.clone())).unwrap();
    assert!(spec.routable && !spec.masquerade);
    let net = trellis_agent::Network {
        spec,
        gateways: vec!["10.1.0.1".parse().unwrap()],
        warnings: Vec::new(),
    };
    let back = crate::output::network(net, 0).spec.unwrap();
    assert!(back.routable && !back.outgoing_nat, "{back:?}");
    // Its contradictions need no agent state, but are the core's to refuse
    // (one rule for every caller): the edge passes them on as given.
    let with_nat = pb::NetworkSpec {
        outgoing_nat: true,
        ..pb_spec
    };
    let spec = network_spec(Some(with_nat)).unwrap();
    assert!(spec.routable && spec.masquerade);
}

#[test]
fn bad_specs_name_their_field() {
    let cases: Vec<(&str, pb::NetworkSpec)> = vec![
        ("subnets", bridge("n1", "10.1.0.0/33")),
        ("subnets", bridge("n1", "banana")),
        (
            "mode",
            pb::NetworkSpec {
                mode: 0,
                ..bridge("n1", "10.0.0.0/24")
            },
        ),
        (
            "mode",
            pb::NetworkSpec {
                mode: 9,
                ..bridge("n1", "10.0.0.0/24")
            },
        ),
        (
            "bridge",
            pb::NetworkSpec {
                bridge: "".into(),
                ..bridge("n1", "10.0.0.0/24")
            },
        ),
        (
            "gateway",
            pb::NetworkSpec {
                gateway: "x".into(),
                ..bridge("n1", "10.0.0.0/24")
            },
        ),
        (
            "mtu",
            pb::NetworkSpec {
                mtu: 10,
                ..bridge("n1", "10.0.0.0/24")
            },
        ),
        (
            "mtu",
            pb::NetworkSpec {
                mtu: 1000,
                ..bridge("n1", "fd00::/64")
            },
        ),
        ("name", bridge(&"n".repeat(MAX_TEXT + 1), "10.0.0.0/24")),
        (
            "bridge",
            pb::NetworkSpec {
                mode: pb::NetworkMode::Routed.into(),
                ..bridge("n1", "10.0.0.0/16")
            },
        ),
        (
            "subnets",
            pb::NetworkSpec {
                subnets: vec!["10.0.0.0/24".into(); 17],
                ..bridge("n1", "")
            },
        ),
        (
            "reach",
            pb::NetworkSpec {
                reach: vec!["n2".into(); MAX_REACH + 1],
                ..bridge("n1", "10.0.0.0/24")
            },
        ),
    ];
    for (field, spec) in cases {
        let e = network_spec(Some(spec.clone())).unwrap_err();
        assert_eq!(e.field, field, "{spec:?}: {e}");
        assert!(e.to_string().contains(field), "{e}");
    }
    assert_eq!(network_spec(None).unwrap_err().field, "spec");
}

#[test]
fn oversized_values_are_shown_shortened() {
    let e = text("netns", &"/".repeat(100_000)).unwrap_err();
    assert!(e.to_string().len() < 200, "{e}");
    assert!(e.to_string().contains("100000 bytes"), "{e}");
}

#[test]
fn a_host_address_of_every_address_is_none_and_a_real_one_is_kept() {
    let with = |ip: &str| pb::AttachRequest {
        ports: vec![pb::PortMapping {
            protocol: pb::Protocol::Tcp as i32,
            host_port: 8080,
            container_port: 80,
            host_ip: ip.into(),
            ..Default::default()
        }],
        ..attach()
    };
    for any in ["", "0.0.0.0", "::"] {
        let r = attach_request(with(any)).unwrap();
        assert_eq!(r.ports[0].host_ip, None, "{any:?}");
    }
    let r = attach_request(with("127.0.0.1")).unwrap();
    assert_eq!(r.ports[0].host_ip, Some("127.0.0.1".parse().unwrap()));
}

#[test]
fn empty_ifname_is_eth0() {
    let req = attach_request(attach()).unwrap();
    assert_eq!(req.ifname.as_str(), "eth0");
    assert_eq!(handle("c1", "").unwrap().ifname.as_str(), "eth0");
}

#[test]
fn bad_attaches_name_their_field() {
    let port = |protocol: i32, host_port, container_port| pb::PortMapping {
        protocol,
        host_port,
        container_port,
        ..Default::default()
    };
    let tcp = pb::Protocol::Tcp as i32;
    let cases: Vec<(&str, pb::AttachRequest)> = vec![
        (
            "network",
            pb::AttachRequest {
                network: "".into(),
                ..attach()
            },
        ),
        (
            "container_id",
            pb::AttachRequest {
                container_id: "".into(),
                ..attach()
            },
        ),
        (
            "netns",
            pb::AttachRequest {
                netns: "run/netns/x".into(),
                ..attach()
            },
        ),
        (
            "ifname",
            pb::AttachRequest {
                ifname: "eth/0".into(),
                ..attach()
            },
        ),
        (
            "host_port",
            pb::AttachRequest {
                ports: vec![port(tcp, 0, 80)],
                ..attach()
            },
        ),
        (
            "container_port",
            pb::AttachRequest {
                ports: vec![port(tcp, 80, 70000)],
                ..attach()
            },
        ),
        (
            "host_ip",
            pb::AttachRequest {
                ports: vec![pb::PortMapping {
                    host_ip: "localhost".into(),
                    ..port(tcp, 8080, 80)
                }],
                ..attach()
            },
        ),
        (
            "protocol",
            pb::AttachRequest {
                ports: vec![port(0, 80, 80)],
                ..attach()
            },
        ),
        (
            "ports",
            pb::AttachRequest {
                ports: vec![port(tcp, 80, 80); 1025],
                ..attach()
            },
        ),
        (
            "fixed_addresses",
            pb::AttachRequest {
                fixed_addresses: vec!["10.0.0.300".into()],
                ..attach()
            },
        ),
        (
            "labels",
            pb::AttachRequest {
                labels: (0..65).map(|i| (i.to_string(), String::new())).collect(),
                ..attach()
            },
        ),
        (
            "mac",
            pb::AttachRequest {
                mac: "0a:58:0a:f4:00".into(),
                ..attach()
            },
        ),
        (
            "mac",
            pb::AttachRequest {
                mac: "0a-58-0a-f4-00-07".into(),
                ..attach()
            },
        ),
    ];
    for (field, req) in cases {
        let e = attach_request(req).unwrap_err();
        assert_eq!(e.field, field, "{e}");
        assert!(e.to_string().contains(field), "{e}");
    }
}

#[test]
fn filters_treat_empty_as_any() {
    let f = filter(pb::ListEndpointsRequest::default()).unwrap();
    assert_eq!(f, EndpointFilter::default());
    let bad = pb::ListEndpointsRequest {
        container_id: "a b".into(),
        ..Default::default()
    };
    assert_eq!(filter(bad).unwrap_err().field, "container_id");
}

#[test]
fn a_mac_converts_in_either_case_and_empty_is_the_agents_choice() {
    assert_eq!(attach_request(attach()).unwrap().mac, None);
    let r = attach_request(pb::AttachRequest {
        mac: "0A:58:0a:F4:00:07".into(),
        ..attach()
    })
    .unwrap();
    assert_eq!(r.mac.unwrap().to_string(), "0a:58:0a:f4:00:07");
    // Whether it may be an interface's is the core's to judge (one rule
    // for every caller): a group address passes the edge as given.
    let r = attach_request(pb::AttachRequest {
        mac: "01:00:5e:00:00:01".into(),
        ..attach()
    })
    .unwrap();
    assert!(r.mac.unwrap().is_multicast());
}

#[test]
fn a_collection_is_scoped_by_a_network_name_or_not_at_all() {
    assert_eq!(gc_network("").unwrap(), None);
    assert_eq!(gc_network("web").unwrap().unwrap().as_str(), "web");
    for bad in ["a/b", &"n".repeat(61)] {
        let e = gc_network(bad).unwrap_err();
        assert_eq!(e.field, "network", "{e}");
    }
}
