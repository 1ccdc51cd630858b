//! Golden tests of tables, blocks and JSON/YAML output.

use std::collections::BTreeMap;

use super::*;
use crate::view::{AttachmentView, PortView};

fn net(name: &str, mode: &str, subnet: &str, gw: &str, bridge: &str) -> NetworkView {
    NetworkView {
        name: name.into(),
        mode: mode.into(),
        subnets: vec![subnet.into()],
        gateways: vec![gw.into()],
        bridge: bridge.into(),
        outgoing_nat: true,
        mtu: 0,
        internal: false,
        routable: false,
        reach: vec![],
        endpoints: 2,
        warnings: Vec::new(),
    }
}

fn web() -> EndpointView {
    EndpointView {
        network: "front".into(),
        container_id: "web1".into(),
        ifname: "eth0".into(),
        netns: "/run/netns/web1".into(),
        addresses: vec!["192.168.169.2/24".into()],
        gateways: vec!["192.168.169.1".into()],
        mac: "02:42:c0:a8:a9:02".into(),
        host_ifname: "tr3f2a9c".into(),
        routes: vec!["0.0.0.0/0".into()],
        ports: vec![PortView {
            protocol: "tcp".into(),
            host_ip: String::new(),
            host_port: 8081,
            container_port: 80,
            container_ip: "192.168.169.2".into(),
        }],
        labels: BTreeMap::from([("app".into(), "web".into())]),
    }
}

#[test]
fn network_table_is_aligned_without_trailing_blanks() {
    let mut routed = net("pods", "routed", "10.244.0.0/16", "169.254.1.1", "");
    routed.subnets.push("fd00:244::/48".into());
    routed.gateways.push("fe80::ecee:eeff:feee:eeee".into());
    routed.outgoing_nat = false;
    routed.mtu = 1450;
    let mut direct = net("direct", "bridge", "10.9.0.0/24", "10.9.0.1", "trbr1");
    direct.outgoing_nat = false;
    direct.routable = true;
    let list = [
        net(
            "front",
            "bridge",
            "192.168.169.0/24",
            "192.168.169.1",
            "trbr0",
        ),
        routed,
        direct,
    ];
    let want = "\
NAME     MODE     SUBNETS                       GATEWAYS                                BRIDGE   NAT   ROUTABLE   MTU    ENDPOINTS
front    bridge   192.168.169.0/24              192.168.169.1                           trbr0    on    off        -      2
pods     routed   10.244.0.0/16,fd00:244::/48   169.254.1.1,fe80::ecee:eeff:feee:eeee   -        off   off        1450   2
direct   bridge   10.9.0.0/24                   10.9.0.1                                trbr1    off   on         -      2
";
    assert_eq!(networks(&list), want);
}

#[test]
fn empty_lists_print_headers_only() {
    assert_eq!(
        networks(&[]),
        "NAME   MODE   SUBNETS   GATEWAYS   BRIDGE   NAT   ROUTABLE   MTU   ENDPOINTS\n"
    );
    assert!(endpoints(&[]).starts_with("CONTAINER   IFNAME   NETWORK"));
}

#[test]
fn endpoint_table() {
    let mut db = web();
    db.container_id = "db".into();
    db.ports.clear();
    let want = "\
CONTAINER   IFNAME   NETWORK   ADDRESSES          MAC                 HOST IFNAME   PORTS
web1        eth0     front     192.168.169.2/24   02:42:c0:a8:a9:02   tr3f2a9c      8081->80/tcp
db          eth0     front     192.168.169.2/24   02:42:c0:a8:a9:02   tr3f2a9c      -
";
    assert_eq!(endpoints(&[web(), db]), want);
}

#[test]
fn endpoint_block() {
    let want = "\
Container:       web1
Interface:       eth0
Network:         front
Netns:           /run/netns/web1
Addresses:       192.168.169.2/24
Gateways:        192.168.169.1
MAC:             02:42:c0:a8:a9:02
Host interface:  tr3f2a9c
Routes:          0.0.0.0/0
Ports:           8081->80/tcp (192.168.169.2)
Labels:          app=web
";
    assert_eq!(endpoint(&web()), want);
}

#[test]
fn network_block_lists_many_values_one_per_line() {
    let mut n = net("pods", "routed", "10.244.0.0/16", "169.254.1.1", "");
    n.subnets.push("fd00:244::/48".into());
    let want = "\
Name:          pods
Mode:          routed
Subnets:
  10.244.0.0/16
  fd00:244::/48
Gateways:      169.254.1.1
Bridge:        -
Outgoing NAT:  on
MTU:           -
Internal:      off
Routable:      off
Reaches:       -
Endpoints:     2
";
    assert_eq!(network(&n), want);
}

#[test]
fn check_gc_status_texts() {
    let mut c = CheckView {
        container_id: "web1".into(),
        ifname: String::new(),
        ok: true,
        problems: vec![],
    };
    assert_eq!(check(&c), "web1: ok\n");
    c.ok = false;
    c.ifname = "eth1".into();
    c.problems = vec!["veth tr3f2a9c is missing".into()];
    assert_eq!(
        check(&c),
        "web1/eth1: 1 problem(s)\n  veth tr3f2a9c is missing\n"
    );

    let g = GcView {
        removed: vec![AttachmentView {
            container_id: "old".into(),
            ifname: "eth0".into(),
        }],
        errors: vec!["old/eth1: busy".into()],
    };
    assert_eq!(
        gc(&g),
        "removed 1 endpoint(s)\n  old/eth0\n1 error(s)\n  old/eth1: busy\n"
    );

    let s = StatusView {
        ready: false,
        reasons: vec!["reconciling".into()],
        node: "node1".into(),
        version: "0.1.0".into(),
        networks: 1,
        endpoints: 0,
        warnings: vec!["chain FORWARD of table ip filter: refused".into()],
    };
    let want = "Ready:      no\nReasons:    reconciling\nNode:       node1\n\
                Version:    0.1.0\nNetworks:   1\nEndpoints:  0\n\
                Warnings:   chain FORWARD of table ip filter: refused\n";
    assert_eq!(status(&s), want);
}

#[test]
fn json_keeps_snake_case_field_names() {
    let text = output(Format::Json, &[web()][..], endpoints).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let e = &v[0];
    assert_eq!(e["container_id"], "web1");
    assert_eq!(e["host_ifname"], "tr3f2a9c");
    assert_eq!(e["ports"][0]["host_port"], 8081);
    assert_eq!(e["ports"][0]["protocol"], "tcp");
    assert_eq!(e["labels"]["app"], "web");
    // serde_json sorts keys; the set of names is what scripts rely on.
    let keys: Vec<&str> = e.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "addresses",
            "container_id",
            "gateways",
            "host_ifname",
            "ifname",
            "labels",
            "mac",
            "netns",
            "network",
            "ports",
            "routes"
        ]
    );
}

#[test]
fn yaml_output_golden() {
    let n = net(
        "front",
        "bridge",
        "192.168.169.0/24",
        "192.168.169.1",
        "trbr0",
    );
    let want = "\
name: front
mode: bridge
subnets:
- 192.168.169.0/24
gateways:
- 192.168.169.1
bridge: trbr0
outgoing_nat: true
mtu: 0
internal: false
routable: false
reach: []
endpoints: 2
";
    assert_eq!(output(Format::Yaml, &n, network).unwrap(), want);
    assert_eq!(output(Format::Table, &n, |_| "t".into()).unwrap(), "t");
}

#[test]
fn watch_events_stream_one_per_line_or_document() {
    let e = EventView {
        kind: "endpoint_attached".into(),
        network: None,
        endpoint: Some(web()),
    };
    assert_eq!(
        streamed(Format::Table, &e).unwrap(),
        "endpoint_attached  endpoint web1/eth0 front 192.168.169.2/24\n"
    );
    let line = streamed(Format::Json, &e).unwrap();
    assert_eq!(line.matches('\n').count(), 1);
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["kind"], "endpoint_attached");
    assert!(
        v.get("network").is_none(),
        "absent object is omitted: {line}"
    );
    assert!(
        streamed(Format::Yaml, &e)
            .unwrap()
            .starts_with("---\nkind: endpoint_attached\n")
    );
}
