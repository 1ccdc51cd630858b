//! Golden tests of the BGP tables, the peer block and JSON/YAML output.

use super::*;
use crate::bgp::view::{PeerRoutesView, RouteView};
use crate::cli::Format;
use crate::render::output;

/// An Established peer from trellisd's config file, with an MD5 key.
fn up() -> PeerView {
    PeerView {
        address: "192.0.2.1".into(),
        remote_as: 65001,
        port: 179,
        passive: false,
        local_address: String::new(),
        next_hop_v4: String::new(),
        next_hop_v6: String::new(),
        communities: vec![],
        hold_time: None,
        md5: true,
        source: "config".into(),
        state: "Established".into(),
        uptime_seconds: 192.4,
        advertised: 2,
        negotiated: Some(NegotiatedView {
            peer_as: 65001,
            peer_router_id: "192.0.2.1".into(),
            hold_time: 90,
            families: vec!["ipv4-unicast".into(), "ipv6-unicast".into()],
            four_octet_as: true,
            graceful_restart: false,
            route_refresh: true,
            local_address: "192.0.2.11".into(),
            next_hops: vec!["ipv4-unicast=192.0.2.11".into()],
        }),
        counters: CountersView {
            opens_in: 1,
            opens_out: 1,
            updates_in: 1,
            updates_out: 3,
            keepalives_in: 7,
            keepalives_out: 6,
            prefixes_announced: 2,
            established: 1,
            ..Default::default()
        },
        last_error: String::new(),
        warnings: vec!["no IPv6 next hop: 1 prefix not sent".into()],
    }
}

/// An Idle peer added over the API, whose connections fail.
fn idle() -> PeerView {
    PeerView {
        address: "2001:db8::2".into(),
        remote_as: 4_200_000_002,
        port: 1179,
        local_address: "2001:db8::11".into(),
        next_hop_v6: "2001:db8::11".into(),
        communities: vec!["65000:100".into(), "65000:200".into()],
        hold_time: Some(9),
        md5: false,
        source: "api".into(),
        state: "Idle".into(),
        uptime_seconds: 0.0,
        advertised: 0,
        negotiated: None,
        counters: CountersView {
            connect_failures: 4,
            ..Default::default()
        },
        last_error: "connect to [2001:db8::2]:1179: Connection refused (os error 111)\n\
                     after 4 attempts"
            .into(),
        warnings: vec![],
        ..up()
    }
}

#[test]
fn peers_table_shows_uptime_only_when_up_and_cuts_long_errors() {
    let want = "\
PEER          AS           STATE         UPTIME   PREFIXES   SOURCE   LAST ERROR
192.0.2.1     65001        Established   3m12s    2          config   -
2001:db8::2   4200000002   Idle          -        0          api      connect to [2001:db8::2]:1179: Connection refused (os error…
";
    assert_eq!(peers(&[up(), idle()]), want);
    let cell = want.lines().nth(2).unwrap().split("   ").last().unwrap();
    assert_eq!(cell.chars().count(), ERROR_WIDTH);
}

#[test]
fn short_errors_are_kept_whole_on_one_line() {
    assert_eq!(truncate("", 10), "");
    assert_eq!(truncate("hold timer expired", 60), "hold timer expired");
    assert_eq!(truncate("two\nlines  here", 60), "two lines here");
    assert_eq!(truncate("abcdefghij", 10), "abcdefghij");
    assert_eq!(truncate("abcde fghijk", 10), "abcde fgh…");
    assert_eq!(truncate("abcd  efghijk", 6), "abcd…", "no blank before …");
    assert_eq!(truncate("ééééééé", 5), "éééé…", "characters, not bytes");
}

#[test]
fn peer_block_of_an_established_session() {
    let want = "\
Peer:        192.0.2.1
Remote AS:   65001
State:       Established
Uptime:      3m12s
Source:      config
Advertised:  2 prefix(es)
Warnings:    no IPv6 next hop: 1 prefix not sent
Last error:  -
Config:
  Port:           179
  Passive:        off
  Local address:  -
  Next hop IPv4:  -
  Next hop IPv6:  -
  Communities:    -
  Hold time:      -
  MD5:            on
Negotiated:
  Peer AS:           65001
  Peer router ID:    192.0.2.1
  Hold time:         90
  Families:
    ipv4-unicast
    ipv6-unicast
  4-byte AS:         yes
  Graceful restart:  no
  Route refresh:     yes
  Local address:     192.0.2.11
  Next hops:         ipv4-unicast=192.0.2.11
Counters:
  Opens:                 1 in, 1 out
  Updates:               1 in, 3 out
  Keepalives:            7 in, 6 out
  Notifications:         0 in, 0 out
  Route refreshes:       0 in
  Prefixes announced:    2
  Prefixes withdrawn:    0
  Treat-as-withdraw:     0
  Attributes discarded:  0
  Times established:     1
  Hold timer expired:    0
  Connect failures:      0
";
    assert_eq!(peer(&up()), want);
}

#[test]
fn peer_block_of_an_idle_session_shows_its_whole_last_error() {
    let want = "\
Peer:        2001:db8::2
Remote AS:   4200000002
State:       Idle
Uptime:      -
Source:      api
Advertised:  0 prefix(es)
Warnings:    -
Last error:
  connect to [2001:db8::2]:1179: Connection refused (os error 111)
  after 4 attempts
Config:
  Port:           1179
  Passive:        off
  Local address:  2001:db8::11
  Next hop IPv4:  -
  Next hop IPv6:  2001:db8::11
  Communities:
    65000:100
    65000:200
  Hold time:      9
  MD5:            off
Negotiated:  -
Counters:
  Opens:                 0 in, 0 out
";
    let text = peer(&idle());
    assert!(text.starts_with(want), "{text}");
    assert!(text.ends_with("  Connect failures:      4\n"), "{text}");
}

fn routes_view() -> RoutesView {
    let route = |prefix: &str, next_hop: &str| RouteView {
        prefix: prefix.into(),
        next_hop: next_hop.into(),
        communities: vec!["65000:100".into()],
    };
    RoutesView {
        exported: vec!["10.244.0.64/26".into(), "fd00:10:244::40/122".into()],
        peers: vec![
            PeerRoutesView {
                peer: "192.0.2.1".into(),
                routes: vec![
                    route("10.244.0.64/26", "192.0.2.11"),
                    RouteView {
                        communities: vec![],
                        ..route("fd00:10:244::40/122", "2001:db8::11")
                    },
                ],
            },
            PeerRoutesView {
                peer: "2001:db8::2".into(),
                routes: vec![],
            },
        ],
    }
}

#[test]
fn routes_show_the_exports_then_a_row_per_route_and_idle_peer() {
    let want = "\
Exported:
  10.244.0.64/26
  fd00:10:244::40/122

PEER          PREFIX                NEXT HOP       COMMUNITIES
192.0.2.1     10.244.0.64/26        192.0.2.11     65000:100
192.0.2.1     fd00:10:244::40/122   2001:db8::11   -
2001:db8::2   -                     -              -
";
    assert_eq!(routes(&routes_view()), want);
    let nothing = RoutesView {
        exported: vec![],
        peers: vec![],
    };
    let want = "Exported:  -\n\nPEER   PREFIX   NEXT HOP   COMMUNITIES\n";
    assert_eq!(routes(&nothing), want);
}

#[test]
fn empty_peer_list_prints_headers_only() {
    assert_eq!(
        peers(&[]),
        "PEER   AS   STATE   UPTIME   PREFIXES   SOURCE   LAST ERROR\n"
    );
}

/// The sorted key names of a JSON object.
fn keys(v: &serde_json::Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(|k| k.as_str()).collect()
}

#[test]
fn json_has_the_whole_peer_with_snake_case_names() {
    let text = output(Format::Json, &[up(), idle()][..], peers).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let want = [
        "address",
        "advertised",
        "communities",
        "counters",
        "hold_time",
        "last_error",
        "local_address",
        "md5",
        "negotiated",
        "next_hop_v4",
        "next_hop_v6",
        "passive",
        "port",
        "remote_as",
        "source",
        "state",
        "uptime_seconds",
        "warnings",
    ];
    assert_eq!(keys(&v[0]), want);
    let want = [
        "families",
        "four_octet_as",
        "graceful_restart",
        "hold_time",
        "local_address",
        "next_hops",
        "peer_as",
        "peer_router_id",
        "route_refresh",
    ];
    assert_eq!(keys(&v[0]["negotiated"]), want);
    assert_eq!(keys(&v[0]["counters"]).len(), 16, "every counter");
    assert_eq!(v[0]["counters"]["updates_out"], 3);
    assert_eq!(v[0]["uptime_seconds"], 192.4);
    assert_eq!(v[0]["hold_time"], serde_json::Value::Null, "the node's");
    assert_eq!(v[1]["hold_time"], 9);
    assert_eq!(v[1]["negotiated"], serde_json::Value::Null);
    assert!(v[1]["last_error"].as_str().unwrap().ends_with("4 attempts"));
}

#[test]
fn yaml_output_golden() {
    let mut r = routes_view();
    r.peers.truncate(1);
    r.peers[0].routes.truncate(1);
    let want = "\
exported:
- 10.244.0.64/26
- fd00:10:244::40/122
peers:
- peer: 192.0.2.1
  routes:
  - prefix: 10.244.0.64/26
    next_hop: 192.0.2.11
    communities:
    - 65000:100
";
    assert_eq!(output(Format::Yaml, &r, routes).unwrap(), want);
}
