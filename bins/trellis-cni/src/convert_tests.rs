use super::*;
use crate::env::{CniArgs, Command};

fn conf(v: serde_json::Value) -> NetConf {
    serde_json::from_value(v).unwrap()
}

fn base() -> serde_json::Value {
    serde_json::json!({"cniVersion": "1.0.0", "name": "br", "type": "trellis-cni", "subnet": "10.88.0.0/16"})
}

fn env() -> Env {
    Env {
        command: Command::Add,
        container_id: "c1".into(),
        netns: "/run/netns/c1".into(),
        ifname: "eth0".into(),
        args: CniArgs::default(),
    }
}

#[test]
fn a_conflist_becomes_a_network_spec_masqueraded_unless_internal_or_routable() {
    let s = network_spec(&conf(base())).unwrap();
    assert_eq!(s.name, "br");
    assert_eq!(s.mode, pb::NetworkMode::Bridge as i32);
    assert_eq!(s.subnets, vec!["10.88.0.0/16"]);
    assert!(s.outgoing_nat);
    let mut v = base();
    v["internal"] = true.into();
    assert!(!network_spec(&conf(v)).unwrap().outgoing_nat);
    let mut v = base();
    v["mode"] = "routed".into();
    v["network"] = "pods".into();
    v.as_object_mut().unwrap().remove("subnet");
    v["subnets"] = serde_json::json!(["10.244.0.0/16", "fd00:244::/64"]);
    let s = network_spec(&conf(v)).unwrap();
    assert_eq!(
        (s.name.as_str(), s.mode),
        ("pods", pb::NetworkMode::Routed as i32)
    );
    assert_eq!(s.subnets.len(), 2);
}

#[test]
fn bad_conflists_name_the_field_and_value() {
    let mut v = base();
    v["mode"] = "macvlan".into();
    let e = network_spec(&conf(v)).unwrap_err();
    assert_eq!(e.code, code::UNSUPPORTED_FIELD);
    assert!(e.msg.contains("mode") && e.msg.contains("macvlan"), "{e}");
    let mut v = base();
    v["subnet"] = "10.88.0.0/33".into();
    let e = network_spec(&conf(v)).unwrap_err();
    assert_eq!(e.code, code::INVALID_CONFIG);
    assert!(e.msg.contains("10.88.0.0/33"), "{e}");
    let mut v = base();
    v.as_object_mut().unwrap().remove("subnet");
    let e = network_spec(&conf(v)).unwrap_err();
    assert!(e.msg.contains("no subnet"), "{e}");
    let mut v = base();
    v["subnets"] = serde_json::json!(["10.1.0.0/16"]);
    assert!(network_spec(&conf(v)).unwrap_err().msg.contains("not both"));
    let mut v = base();
    v["name"] = "".into();
    assert!(network_name(&conf(v)).is_err());
}

fn network(spec: pb::NetworkSpec) -> pb::Network {
    pb::Network {
        spec: Some(spec),
        ..Default::default()
    }
}

#[test]
fn a_conflist_may_leave_fields_out_but_not_contradict() {
    let existing = network(network_spec(&conf(base())).unwrap());
    // Only the name: agrees.
    agrees(
        &conf(serde_json::json!({"cniVersion": "1.0.0", "name": "br"})),
        &existing,
    )
    .unwrap();
    agrees(&conf(base()), &existing).unwrap();
    let mut v = base();
    v["subnet"] = "10.99.0.0/16".into();
    v["mtu"] = 1400.into();
    let e = agrees(&conf(v), &existing).unwrap_err();
    assert_eq!(e.code, code::CONFLICT);
    assert!(
        e.msg
            .contains("subnets [10.99.0.0/16] (the network has [10.88.0.0/16])")
            && e.msg.contains("mtu \"1400\""),
        "{e}"
    );
    let mut v = base();
    v["mode"] = "routed".into();
    let e = agrees(&conf(v), &existing).unwrap_err();
    assert!(e.msg.contains("the network is bridge"), "{e}");
}

#[test]
fn capabilities_become_ports_addresses_and_mac() {
    let mut v = base();
    v["runtimeConfig"] = serde_json::json!({
        "portMappings": [
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 5353, "containerPort": 53, "protocol": "UDP", "hostIP": "127.0.0.1"}
        ],
        "ips": ["10.88.0.9/16"],
        "mac": "02:00:00:00:00:09"
    });
    let r = attach_request(&conf(v), &env()).unwrap();
    assert_eq!(r.ports.len(), 2);
    assert_eq!(r.ports[1].protocol, pb::Protocol::Udp as i32);
    assert_eq!(r.ports[1].host_ip, "127.0.0.1");
    assert_eq!(r.fixed_addresses, vec!["10.88.0.9"]);
    assert_eq!(r.mac, "02:00:00:00:00:09");
    assert_eq!((r.container_id.as_str(), r.ifname.as_str()), ("c1", "eth0"));
    // CNI_ARGS when the capabilities are silent.
    let mut e = env();
    e.args.ips = vec!["10.88.0.7".into()];
    e.args.mac = Some("02:00:00:00:00:07".into());
    let r = attach_request(&conf(base()), &e).unwrap();
    assert_eq!(r.fixed_addresses, vec!["10.88.0.7"]);
    assert_eq!(r.mac, "02:00:00:00:00:07");
    // args.cni.ips.
    let mut v = base();
    v["args"] = serde_json::json!({"cni": {"ips": ["10.88.0.8"]}});
    assert_eq!(
        attach_request(&conf(v), &env()).unwrap().fixed_addresses,
        vec!["10.88.0.8"]
    );
    // Bad values are named.
    let mut v = base();
    v["runtimeConfig"] = serde_json::json!({"portMappings": [{"hostPort": 1, "containerPort": 2, "protocol": "icmp"}]});
    let e = attach_request(&conf(v), &env()).unwrap_err();
    assert!(
        e.msg.contains("portMappings[0].protocol") && e.msg.contains("icmp"),
        "{e}"
    );
    let mut v = base();
    v["runtimeConfig"] = serde_json::json!({"ips": ["ten"]});
    let e = attach_request(&conf(v), &env()).unwrap_err();
    assert!(
        e.msg.contains("runtimeConfig.ips") && e.msg.contains("ten"),
        "{e}"
    );
}

#[test]
fn an_endpoint_becomes_a_result_with_gateways_and_on_link_routes() {
    let net = network(pb::NetworkSpec {
        name: "pods".into(),
        mode: pb::NetworkMode::Routed as i32,
        mtu: 1450,
        ..Default::default()
    });
    let ep = pb::Endpoint {
        network: "pods".into(),
        container_id: "c1".into(),
        ifname: "eth0".into(),
        netns: "/run/netns/c1".into(),
        addresses: vec!["10.244.0.5/32".into(), "fd00:244::5/128".into()],
        gateways: vec!["169.254.1.1".into(), "fe80::ecee:eeff:feee:eeee".into()],
        mac: "02:aa:bb:cc:dd:ee".into(),
        host_ifname: "trl1234".into(),
        routes: vec!["169.254.1.1/32".into(), "0.0.0.0/0".into(), "::/0".into()],
        ..Default::default()
    };
    let r = result(&conf(base()), &net, &ep).unwrap();
    assert_eq!(r.interfaces[0].name, "trl1234");
    assert_eq!(r.interfaces[0].mac.as_deref(), Some("ee:ee:ee:ee:ee:ee"));
    assert_eq!(r.interfaces[1].sandbox.as_deref(), Some("/run/netns/c1"));
    assert_eq!(r.interfaces[1].mtu, Some(1450));
    assert_eq!(r.ips[0].gateway, Some("169.254.1.1".parse().unwrap()));
    assert_eq!(
        r.ips[1].gateway,
        Some("fe80::ecee:eeff:feee:eeee".parse().unwrap())
    );
    assert_eq!(r.routes[0].gw, None, "the gateway's own /32 is on-link");
    assert_eq!(r.routes[1].gw, Some("169.254.1.1".parse().unwrap()));
    assert_eq!(
        r.routes[2].gw,
        Some("fe80::ecee:eeff:feee:eeee".parse().unwrap())
    );
    let prev = r.to_json("1.0.0");
    prev_result_matches(&prev, &ep).unwrap();
    let mut moved = ep.clone();
    moved.addresses[0] = "10.244.0.6/32".into();
    assert_eq!(
        prev_result_matches(&prev, &moved).unwrap_err().code,
        code::CHECK_FAILED
    );
}

#[test]
fn statuses_map_to_cni_codes() {
    for (c, want) in [
        (tonic::Code::Unavailable, code::TRY_AGAIN),
        (tonic::Code::InvalidArgument, code::REFUSED),
        (tonic::Code::ResourceExhausted, code::EXHAUSTED),
        (tonic::Code::AlreadyExists, code::CONFLICT),
        (tonic::Code::FailedPrecondition, code::PRECONDITION),
        (tonic::Code::Internal, code::INTERNAL),
    ] {
        let e = status_error("attach", &tonic::Status::new(c, "why"));
        assert_eq!(e.code, want, "{c:?}");
        assert!(e.msg.contains("attach: why"), "{e}");
    }
}
