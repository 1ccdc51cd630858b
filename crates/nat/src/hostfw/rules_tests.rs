use super::*;
use crate::hostfw::observe::{self, ExprView};
use crate::wire::NFPROTO_IPV4;
use trellis_types::IfName;

fn bridge(network: &str, bridge: &str, v4: bool, v6: bool) -> Admitted {
    Admitted::Bridge {
        network: network.into(),
        bridge: IfName::parse("bridge", bridge).unwrap(),
        v4,
        v6,
    }
}

fn texts(rules: &[HostRule]) -> Vec<&str> {
    rules.iter().map(|r| r.text.as_str()).collect()
}

#[test]
fn each_family_gets_the_rules_of_its_networks_sorted() {
    let admitted = [
        bridge("web", "trweb0", true, false),
        bridge("db", "trdb0", false, true),
        Admitted::RoutedPorts { v4: true, v6: true },
        bridge("web", "trweb0", true, false),
    ];
    assert_eq!(
        texts(&wanted(NFPROTO_IPV4, &admitted)),
        [
            r#"iifname "trweb0" accept comment "trellis:web""#,
            r#"oifname "trweb0" accept comment "trellis:web""#,
            r#"iifname "tr*" accept comment "trellis:(routed)""#,
            r#"oifname "tr*" accept comment "trellis:(routed)""#,
        ]
    );
    assert_eq!(
        texts(&wanted(NFPROTO_IPV6, &admitted)),
        [
            r#"iifname "trdb0" accept comment "trellis:db""#,
            r#"oifname "trdb0" accept comment "trellis:db""#,
            r#"iifname "tr*" accept comment "trellis:(routed)""#,
            r#"oifname "tr*" accept comment "trellis:(routed)""#,
        ]
    );
    assert_eq!(wanted(NFPROTO_INET, &admitted).len(), 6);
    assert!(wanted(NFPROTO_INET, &[]).is_empty());
}

#[test]
fn an_exact_name_is_compared_over_16_bytes_a_wildcard_over_its_prefix() {
    let exact = &wanted(NFPROTO_IPV4, &[bridge("web", "br0", true, false)])[0];
    assert_eq!(
        exact.exprs[0],
        Expr::Meta {
            key: MetaKey::IifName,
            dreg: REG0
        }
    );
    let mut name = b"br0".to_vec();
    name.resize(16, 0);
    assert_eq!(
        exact.exprs[1],
        Expr::Cmp {
            sreg: REG0,
            op: CmpOp::Eq,
            data: name
        }
    );
    let routed = &wanted(
        NFPROTO_IPV4,
        &[Admitted::RoutedPorts {
            v4: true,
            v6: false,
        }],
    )[1];
    assert_eq!(
        routed.exprs[1],
        Expr::Cmp {
            sreg: REG0,
            op: CmpOp::Eq,
            data: b"tr".to_vec()
        }
    );
    assert_eq!(
        observe::view_of(&routed.exprs),
        [
            ExprView::Meta(7),
            ExprView::Cmp(0, b"tr".to_vec()),
            ExprView::Verdict(1)
        ]
    );
}

#[test]
fn the_comment_is_nfts_userdata_tlv() {
    assert_eq!(
        comment_udata("trellis:x"),
        [
            0, 10, b't', b'r', b'e', b'l', b'l', b'i', b's', b':', b'x', 0
        ]
    );
    assert_eq!(
        comment_of(&comment_udata("trellis:x")).unwrap(),
        "trellis:x"
    );
    // Another TLV first (type 1), then the comment.
    let mut two = vec![1, 2, 7, 7];
    two.extend(comment_udata("c"));
    assert_eq!(comment_of(&two).unwrap(), "c");
    assert_eq!(comment_of(&[0, 9, b'x']), None, "truncated");
    assert_eq!(comment_of(&[]), None);
}

#[test]
#[cfg(target_endian = "little")]
fn insert_goes_to_the_head_and_reads_back_as_the_same_rule() {
    let chain = ChainRef {
        family: NFPROTO_IPV4,
        table: "filter".into(),
        name: "FORWARD".into(),
    };
    let rule = &wanted(NFPROTO_IPV4, &[bridge("web", "br0", true, false)])[1];
    let msg = insert(&chain, rule);
    assert_eq!(msg.kind, MsgType::NewRule);
    assert_eq!(msg.flags & nlm::F_APPEND, 0, "no append: the head");
    assert_eq!(msg.family, NFPROTO_IPV4);
    // What a dump answers is the same attributes plus a handle.
    let mut dumped = msg.attrs.clone();
    dumped.bytes(3, &42u64.to_be_bytes());
    let seen = observe::rule(&dumped.0).unwrap();
    assert_eq!(seen.handle, 42);
    assert_eq!(seen.comment.as_deref(), Some("trellis:web"));
    assert_eq!(seen.exprs, observe::view_of(&rule.exprs));
    #[rustfmt::skip]
    let head = [
        11, 0, 1, 0, b'f', b'i', b'l', b't', b'e', b'r', 0, 0, // NFTA_RULE_TABLE
        12, 0, 2, 0, b'F', b'O', b'R', b'W', b'A', b'R', b'D', 0, // NFTA_RULE_CHAIN
    ];
    assert_eq!(&msg.attrs.0[..24], &head);
    #[rustfmt::skip]
    let tail = [
        18, 0, 7, 0,                                 // NFTA_RULE_USERDATA
          0, 12, b't', b'r', b'e', b'l', b'l', b'i', b's', b':', b'w', b'e', b'b', 0,
          0, 0,                                      // padding
    ];
    assert_eq!(&msg.attrs.0[msg.attrs.0.len() - 20..], &tail);
}

#[test]
fn delete_names_the_handle() {
    let chain = ChainRef {
        family: NFPROTO_INET,
        table: "filter".into(),
        name: "forward".into(),
    };
    let msg = delete(&chain, 0x0102);
    assert_eq!(msg.kind, MsgType::DelRule);
    assert_eq!(
        &msg.attrs.0[msg.attrs.0.len() - 12..],
        &[12, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 2]
    );
    assert_eq!(chain.to_string(), "chain forward of table inet filter");
}
