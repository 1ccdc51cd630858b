//! Golden tests of the planned changes: values and bytes, no kernel.

use super::*;
use crate::expr::{Base, CmpOp, Expr, MetaKey};
use crate::wire::encode_batch;
use trellis_types::{IfName, Protocol};

fn pm(proto: Protocol, hp: u16, ip: &str, cp: u16) -> PortMapping {
    PortMapping {
        protocol: proto,
        host_ip: None,
        host_port: hp,
        container_ip: ip.parse().unwrap(),
        container_port: cp,
    }
}

fn net(s: &str, br: &str, masquerade: bool) -> NetworkNat {
    NetworkNat {
        subnet: s.parse().unwrap(),
        bridge: IfName::parse("bridge", br).unwrap(),
        masquerade,
        internal: false,
    }
}

fn pool(cidr: &str, nat_outgoing: bool) -> RoutedPool {
    RoutedPool {
        cidr: cidr.parse().unwrap(),
        nat_outgoing,
    }
}

#[test]
fn skeleton_creates_then_replaces_the_rules_in_one_batch() {
    let names: Vec<String> = skeleton()
        .iter()
        .map(|op| match op {
            Op::NewTable => "table".into(),
            Op::NewChain(c) => format!("chain {}", c.name),
            Op::NewSet(s) => format!("set {}", s.name),
            Op::FlushChain(c) => format!("flush {c}"),
            Op::NewRule(r) => format!("{}: {}", r.chain, r.text),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    let want = [
        "table",
        "chain published",
        "chain prerouting",
        "chain output",
        "chain postrouting",
        "chain forward",
        "chain input",
        "set ports4",
        "set own4",
        "set masq4",
        "set pools4",
        "set natpools4",
        "set hostports4",
        "set ports6",
        "set own6",
        "set masq6",
        "set pools6",
        "set natpools6",
        "set hostports6",
        "set bridges",
        "set internal",
        "set pass",
        "flush published",
        "flush prerouting",
        "flush output",
        "flush postrouting",
        "flush forward",
        "flush input",
        "prerouting: fib daddr type local jump published",
        "output: fib daddr type local jump published",
        "published: dnat ip to ip daddr . meta l4proto . th dport map @hostports4",
        "published: meta nfproto ipv4 dnat ip to meta l4proto . th dport map @ports4",
        "published: dnat ip6 to ip6 daddr . meta l4proto . th dport map @hostports6",
        "published: meta nfproto ipv6 dnat ip6 to meta l4proto . th dport map @ports6",
        "postrouting: ct status dnat ip saddr 127.0.0.0/8 masquerade",
        "postrouting: ct status dnat ip saddr . oifname @own4 masquerade",
        "postrouting: ip saddr . oifname @own4 return",
        "postrouting: ip saddr @masq4 ip daddr != @pools4 masquerade",
        "postrouting: ip saddr @natpools4 ip daddr != @pools4 masquerade",
        "postrouting: ct status dnat ip6 saddr . oifname @own6 masquerade",
        "postrouting: ip6 saddr . oifname @own6 return",
        "postrouting: ip6 saddr @masq6 ip6 daddr != @pools6 masquerade",
        "postrouting: ip6 saddr @natpools6 ip6 daddr != @pools6 masquerade",
        "forward: iifname . oifname @pass accept",
        "forward: ct state established,related accept",
        "forward: iifname @internal drop",
        "forward: oifname @internal drop",
        "forward: ct status dnat accept",
        "forward: iifname @bridges oifname @bridges drop",
        "input: iifname != \"lo\" ip daddr 127.0.0.0/8 ct state ! established,related ct status ! dnat drop",
    ];
    assert_eq!(names, want);
}

#[test]
fn the_dnat_rule_is_one_map_lookup() {
    let rules = layout::rules();
    let dnat4 = rules.iter().find(|r| r.text.contains("@ports4")).unwrap();
    let want = vec![
        Expr::Meta {
            key: MetaKey::NfProto,
            dreg: 8,
        },
        Expr::Cmp {
            sreg: 8,
            op: CmpOp::Eq,
            data: vec![2],
        },
        Expr::Meta {
            key: MetaKey::L4Proto,
            dreg: 8,
        },
        Expr::Payload {
            base: Base::Transport,
            offset: 2,
            len: 2,
            dreg: 9,
        },
        Expr::Lookup {
            set: "ports4",
            sreg: 8,
            dreg: Some(8),
        },
        Expr::Dnat {
            family: 2,
            reg_addr: 8,
            reg_proto: 9,
        },
    ];
    assert_eq!(dnat4.exprs, want);
    let dnat6 = rules.iter().find(|r| r.text.contains("@ports6")).unwrap();
    assert_eq!(
        dnat6.exprs[5],
        Expr::Dnat {
            family: 10,
            reg_addr: 8,
            reg_proto: 12
        }
    );
}

#[test]
fn sets_have_the_documented_types() {
    let s = layout::sets(Fam::V4);
    // inet_proto . inet_service : ipv4_addr . inet_service
    assert_eq!(
        (s[0].key_type, s[0].key_len, s[0].data),
        ((12 << 6) | 13, 8, Some(((7 << 6) | 13, 8)))
    );
    // ipv4_addr . ifname, concatenated intervals
    assert_eq!(
        (s[1].key_type, s[1].key_len, &s[1].fields, s[1].flags),
        ((7 << 6) | 41, 20, &vec![4, 16], 0x84)
    );
    // masq4, pools4, natpools4: ipv4_addr, intervals
    for set in &s[2..5] {
        assert_eq!(
            (set.key_type, set.key_len, set.flags),
            (7, 4, 0x4),
            "{}",
            set.name
        );
    }
    // hostports4: ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service
    assert_eq!(
        (s[5].key_type, s[5].key_len, &s[5].fields, s[5].data),
        ((((7 << 6) | 12) << 6) | 13, 12, &vec![4, 1, 2], s[0].data)
    );
    let ids: Vec<u32> = [Fam::V4, Fam::V6]
        .into_iter()
        .flat_map(layout::sets)
        .chain(layout::ifname_sets())
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, (1..=15).collect::<Vec<_>>(), "unique in one batch");
    let s6 = layout::sets(Fam::V6);
    assert_eq!((s6[0].data, s6[1].key_len), (Some(((8 << 6) | 13, 20)), 32));
    assert_eq!(s6[5].key_len, 24);
    // bridges, internal: ifname; pass: ifname . ifname
    let names = layout::ifname_sets();
    assert_eq!((names[0].key_type, names[0].key_len), (41, 16));
    assert_eq!(
        (names[2].key_type, names[2].key_len, &names[2].fields),
        ((41 << 6) | 41, 32, &vec![16, 16])
    );
}

#[test]
#[cfg(target_endian = "little")]
fn publish_8081_to_container_80_golden_batch() {
    let ops = publish(&[pm(Protocol::Tcp, 8081, "192.168.169.3", 80)]);
    let msgs: Vec<_> = ops.iter().map(Op::message).collect();
    let bytes = encode_batch(&msgs, 7);
    #[rustfmt::skip]
    let want: Vec<u8> = [
        // NFNL_MSG_BATCH_BEGIN, seq 7, res_id NFNL_SUBSYS_NFTABLES
        &[20, 0, 0, 0, 0x10, 0, 1, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10][..],
        // NFT_MSG_NEWSETELEM (0x0a0c), REQUEST|ACK|EXCL|CREATE, seq 8, inet
        &[84, 0, 0, 0, 0x0c, 0x0a, 0x05, 0x06, 8, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],
        &[12, 0, 1, 0, b't', b'r', b'e', b'l', b'l', b'i', b's', 0],   // LIST_TABLE
        &[11, 0, 2, 0, b'p', b'o', b'r', b't', b's', b'4', 0, 0],       // LIST_SET
        &[40, 0, 3, 0x80,                                               // LIST_ELEMENTS
            36, 0, 1, 0x80,                                             //  LIST_ELEM
              16, 0, 1, 0x80, 12, 0, 1, 0, 6, 0, 0, 0, 0x1f, 0x91, 0, 0,     // KEY tcp . 8081
              16, 0, 2, 0x80, 12, 0, 1, 0, 192, 168, 169, 3, 0, 80, 0, 0],   // DATA ip . 80
        // NFNL_MSG_BATCH_END, seq 9
        &[20, 0, 0, 0, 0x11, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10],
    ]
    .concat();
    assert_eq!(bytes, want);
}

#[test]
fn each_published_port_is_its_own_message_so_a_conflict_names_it() {
    let ops = publish(&[
        pm(Protocol::Tcp, 80, "10.0.0.2", 80),
        pm(Protocol::Udp, 53, "fd00::2", 53),
    ]);
    let sets: Vec<_> = ops
        .iter()
        .map(|op| match op {
            Op::NewElems {
                set,
                elems,
                exclusive: true,
            } if elems.len() == 1 => *set,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(sets, ["ports4", "ports6"]);
}

#[test]
fn unpublish_is_one_delete_per_family_map() {
    let ops = unpublish(&[
        pm(Protocol::Tcp, 80, "10.0.0.2", 80),
        pm(Protocol::Tcp, 81, "10.0.0.2", 81),
        pm(Protocol::Udp, 53, "fd00::2", 53),
    ]);
    let shape: Vec<_> = ops
        .iter()
        .map(|op| match op {
            Op::DelElems { set, elems } => (*set, elems.len()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(shape, [("ports4", 2), ("ports6", 1)]);
    assert!(unpublish(&[]).is_empty());
}

#[test]
fn a_network_is_elements_only() {
    let ops = add_network(&net("192.168.169.0/24", "docker0", true));
    let shape: Vec<_> = ops
        .iter()
        .map(|op| match op {
            Op::NewElems { set, elems, .. } => (*set, elems.len()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        shape,
        [("own4", 1), ("bridges", 1), ("pass", 1), ("masq4", 2)]
    );
    let mut internal = net("fd00:1::/64", "br1", false);
    internal.internal = true;
    let shape: Vec<_> = add_network(&internal)
        .iter()
        .map(|op| match op {
            Op::NewElems { set, .. } => *set,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(shape, ["own6", "bridges", "pass", "internal"]);
}

#[test]
fn reach_is_pass_elements_without_self_pairs() {
    let br = |n: &str| IfName::parse("bridge", n).unwrap();
    let pairs = [(br("a"), br("b")), (br("a"), br("a")), (br("b"), br("c"))];
    let got = reach_elems(&pairs);
    assert_eq!(got.len(), 2, "a with itself belongs to a's network");
    assert_eq!(got[0], ("pass", elems::pass_elem(&br("a"), &br("b"))));
}

#[test]
fn a_port_on_one_address_goes_to_its_own_map() {
    let m = pm(Protocol::Tcp, 8081, "192.168.169.3", 80).on(Some("127.0.0.1".parse().unwrap()));
    let ops = publish(&[m, pm(Protocol::Tcp, 8082, "192.168.169.3", 80)]);
    let sets: Vec<_> = ops
        .iter()
        .map(|op| match op {
            Op::NewElems { set, .. } => *set,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(sets, ["hostports4", "ports4"]);
    let del = unpublish(&[m]);
    assert!(matches!(
        &del[..],
        [Op::DelElems {
            set: "hostports4",
            ..
        }]
    ));
}

#[test]
fn sync_replaces_the_table_atomically() {
    let state = NatState {
        networks: vec![net("192.168.169.0/24", "docker0", true)],
        pools: vec![pool("10.244.0.0/16", true)],
        ports: vec![pm(Protocol::Tcp, 8081, "192.168.169.3", 80)],
        reach: vec![(
            IfName::parse("bridge", "docker0").unwrap(),
            IfName::parse("bridge", "br1").unwrap(),
        )],
    };
    let ops = sync(&state);
    assert_eq!(ops[..2], [Op::NewTable, Op::DelTable]);
    assert_eq!(ops[2..2 + skeleton().len()], skeleton()[..]);
    // own4 + bridges + pass + masq4, pools4 + natpools4, one reach pair, one port.
    assert_eq!(ops.len(), 2 + skeleton().len() + 4 + 2 + 1 + 1);
}

#[test]
#[cfg(target_endian = "little")]
fn base_chain_golden_bytes() {
    let m = Op::NewChain(layout::chains()[3].clone()).message();
    assert_eq!((m.kind, m.flags), (MsgType::NewChain, nlm::F_CREATE));
    #[rustfmt::skip]
    let want: Vec<u8> = [
        &[12, 0, 1, 0, b't', b'r', b'e', b'l', b'l', b'i', b's', 0][..],      // CHAIN_TABLE
        &[16, 0, 3, 0, b'p', b'o', b's', b't', b'r', b'o', b'u', b't', b'i', b'n', b'g', 0], // CHAIN_NAME
        &[20, 0, 4, 0x80, 8, 0, 1, 0, 0, 0, 0, 4, 8, 0, 2, 0, 0, 0, 0, 100],  // HOOK postrouting, 100
        &[8, 0, 5, 0, 0, 0, 0, 1],                                            // POLICY accept
        &[8, 0, 7, 0, b'n', b'a', b't', 0],                                   // TYPE nat
    ]
    .concat();
    assert_eq!(m.attrs.0, want);
}

#[test]
fn the_routed_pool_rule_is_two_lookups_the_second_inverted() {
    let rules = layout::rules();
    let find = |set: &str| {
        rules
            .iter()
            .find(|r| r.text.contains(set))
            .unwrap()
            .exprs
            .clone()
    };
    let payload = |offset, len| Expr::Payload {
        base: Base::Network,
        offset,
        len,
        dreg: 8,
    };
    let v4 = find("@natpools4");
    assert_eq!(
        v4[2..],
        [
            payload(12, 4),
            Expr::Lookup {
                set: "natpools4",
                sreg: 8,
                dreg: None
            },
            payload(16, 4),
            Expr::NotIn {
                set: "pools4",
                sreg: 8
            },
            Expr::Masquerade,
        ]
    );
    let v6 = find("@natpools6");
    assert_eq!((&v6[2], &v6[4]), (&payload(8, 16), &payload(24, 16)));
    assert_eq!(
        v6[5],
        Expr::NotIn {
            set: "pools6",
            sreg: 8
        }
    );
}

#[test]
fn a_routed_pool_is_elements_only_and_nat_outgoing_adds_one_interval() {
    let shape = |ops: Vec<Op>| -> Vec<(&'static str, usize)> {
        ops.iter()
            .map(|op| match op {
                Op::NewElems {
                    set,
                    elems,
                    exclusive: true,
                } => (*set, elems.len()),
                other => panic!("{other:?}"),
            })
            .collect()
    };
    assert_eq!(
        shape(add_pool(&pool("10.244.0.0/16", true))),
        [("pools4", 2), ("natpools4", 2)]
    );
    assert_eq!(
        shape(add_pool(&pool("fd00:244::/48", false))),
        [("pools6", 2)]
    );
    let elems = pool_elems(&pool("10.244.0.0/16", false));
    assert_eq!(elems[0].1.key, [10, 244, 0, 0]);
    assert_eq!(
        (elems[1].1.key.as_slice(), elems[1].1.flags),
        (&[10, 245, 0, 0][..], crate::elems::ELEM_INTERVAL_END)
    );
}

#[test]
#[cfg(target_endian = "little")]
fn inverted_lookup_golden_bytes() {
    let m = Op::NewRule(
        layout::rules()
            .into_iter()
            .find(|r| r.text.contains("@natpools4"))
            .unwrap(),
    )
    .message();
    let needle: &[u8] = &[
        11, 0, 1, 0, b'p', b'o', b'o', b'l', b's', b'4', 0, 0, // NFTA_LOOKUP_SET
        8, 0, 2, 0, 0, 0, 0, 8, // NFTA_LOOKUP_SREG
        8, 0, 5, 0, 0, 0, 0, 1, // NFTA_LOOKUP_FLAGS = NFT_LOOKUP_F_INV
    ];
    assert!(m.attrs.0.windows(needle.len()).any(|w| w == needle));
}
