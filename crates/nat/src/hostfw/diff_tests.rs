use super::*;
use crate::hostfw::observe::{ExprView, view_of};
use trellis_types::IfName;

const NF_ACCEPT: u32 = 1;

fn web() -> Admitted {
    Admitted::Bridge {
        network: "web".into(),
        bridge: IfName::parse("bridge", "trweb0").unwrap(),
        v4: true,
        v6: false,
    }
}

fn chain(family: u8, table: &str, name: &str, hook: u32, policy: u32) -> HostChain {
    HostChain {
        chain: ChainRef {
            family,
            table: table.into(),
            name: name.into(),
        },
        hook: Some(hook),
        policy: Some(policy),
    }
}

fn iptables_forward() -> HostChain {
    chain(NFPROTO_IPV4, "filter", "FORWARD", HOOK_FORWARD, NF_DROP)
}

/// A rule as a dump would show trellis's `rule` with `handle`.
fn seen(handle: u64, rule: &HostRule) -> SeenRule {
    SeenRule {
        handle,
        comment: Some(rule.comment.clone()),
        exprs: view_of(&rule.exprs),
    }
}

fn foreign(handle: u64, exprs: Vec<ExprView>) -> SeenRule {
    SeenRule {
        handle,
        comment: None,
        exprs,
    }
}

fn counter_drop() -> Vec<ExprView> {
    vec![ExprView::Other("counter".into()), ExprView::Verdict(0)]
}

fn observed(chains: Vec<(HostChain, Vec<SeenRule>)>) -> Observed {
    Observed {
        chains,
        unreadable: vec![],
    }
}

#[test]
fn a_dropping_forward_chain_gets_the_rules_at_its_head_in_order() {
    let host = observed(vec![(iptables_forward(), vec![foreign(1, counter_drop())])]);
    let p = plan(&[web()], &host);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert_eq!(p.chains.len(), 1);
    let texts: Vec<&str> = p.chains[0].insert.iter().map(|r| r.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            r#"iifname "trweb0" accept comment "trellis:web""#,
            r#"oifname "trweb0" accept comment "trellis:web""#,
        ]
    );
    // Each insert goes to the head, so they are sent last rule first.
    let msgs = p.chains[0].messages();
    assert_eq!(msgs.len(), 2);
    assert_eq!(
        msgs[0],
        rules::insert(&p.chains[0].chain, &p.chains[0].insert[1])
    );
    assert!(p.chains[0].describe().starts_with(
        "chain FORWARD of table ip filter drops forwarded traffic by policy and lacks trellis's accept rules for trellis:web"
    ));
}

#[test]
fn rules_in_place_mean_no_change_and_stale_ones_are_deleted_by_handle() {
    let want = rules::wanted(NFPROTO_IPV4, &[web()]);
    let mut bent = want[1].clone();
    bent.exprs.pop();
    let rules = vec![
        seen(7, &want[0]),
        foreign(8, vec![ExprView::Verdict(1)]),
        seen(9, &want[1]),
    ];
    assert!(
        plan(
            &[web()],
            &observed(vec![(iptables_forward(), rules.clone())])
        )
        .chains
        .is_empty()
    );

    // The network is gone: both of its rules go, the host's own stays.
    let p = plan(&[], &observed(vec![(iptables_forward(), rules)]));
    assert_eq!(p.chains[0].delete, [7, 9]);
    assert_eq!(
        p.chains[0].describe(),
        "chain FORWARD of table ip filter holds 2 stale trellis rule(s)"
    );
    assert!(p.chains[0].insert.is_empty());

    // A tagged rule edited by hand is replaced.
    let edited = vec![seen(7, &want[0]), seen(9, &bent)];
    let p = plan(&[web()], &observed(vec![(iptables_forward(), edited)]));
    assert_eq!(p.chains[0].delete, [9]);
    assert_eq!(p.chains[0].insert, [want[1].clone()]);
    assert_eq!(p.chains[0].messages().len(), 2);
}

#[test]
fn only_forward_chains_that_drop_by_policy_and_are_not_trellis_are_amended() {
    let host = observed(vec![
        (
            chain(NFPROTO_INET, "filter", "forward", HOOK_FORWARD, NF_ACCEPT),
            vec![],
        ),
        (chain(NFPROTO_INET, "filter", "input", 1, NF_DROP), vec![]),
        (
            chain(NFPROTO_INET, TABLE, "forward", HOOK_FORWARD, NF_DROP),
            vec![],
        ),
        (
            chain(NFPROTO_IPV6, "filter", "FORWARD", HOOK_FORWARD, NF_DROP),
            vec![],
        ),
        (
            chain(NFPROTO_INET, "fw", "fwd", HOOK_FORWARD, NF_DROP),
            vec![],
        ),
    ]);
    let p = plan(&[web()], &host);
    let amended: Vec<String> = p.chains.iter().map(|c| c.chain.to_string()).collect();
    // ip6 gets nothing: web is IPv4 only.
    assert_eq!(amended, ["chain fwd of table inet fw"]);
    assert!(p.warnings.is_empty());
}

#[test]
fn a_chain_that_stopped_dropping_loses_trellis_rules() {
    let want = rules::wanted(NFPROTO_INET, &[web()]);
    let accepting = chain(NFPROTO_INET, "filter", "forward", HOOK_FORWARD, NF_ACCEPT);
    let p = plan(
        &[web()],
        &observed(vec![(accepting, vec![seen(3, &want[0])])]),
    );
    assert_eq!(p.chains[0].delete, [3]);
}

#[test]
fn chains_trellis_will_not_amend_are_warned_about() {
    let accepting = chain(NFPROTO_INET, "filter", "forward", HOOK_FORWARD, NF_ACCEPT);
    let conditional = vec![
        ExprView::Meta(6),
        ExprView::Cmp(0, b"eth1".to_vec()),
        ExprView::Verdict(0),
    ];
    let host = observed(vec![
        (accepting.clone(), vec![foreign(1, counter_drop())]),
        (
            accepting.clone(),
            vec![foreign(2, vec![ExprView::Other("reject".into())])],
        ),
        (accepting, vec![foreign(3, conditional)]),
        (
            chain(NFPROTO_BRIDGE, "filter", "forward", HOOK_FORWARD, NF_DROP),
            vec![],
        ),
        (chain(NFPROTO_NETDEV, "edge", "in", 0, NF_DROP), vec![]),
        (chain(NFPROTO_BRIDGE, "filter", "input", 1, NF_DROP), vec![]),
    ]);
    let p = plan(&[web()], &host);
    assert!(p.chains.is_empty());
    assert_eq!(p.warnings.len(), 4, "{:#?}", p.warnings);
    assert!(p.warnings[0].starts_with(
        "chain forward of table inet filter accepts by policy but its last rule drops everything"
    ));
    assert!(p.warnings[2].contains("table bridge filter drops bridged frames by policy"));
    assert!(p.warnings[3].contains("table netdev edge drops by policy"));
    // Without networks there is nothing to warn about.
    assert!(plan(&[], &host).warnings.is_empty());
    let routed_only = [Admitted::RoutedPorts {
        v4: true,
        v6: false,
    }];
    assert_eq!(
        plan(&routed_only, &host).warnings.len(),
        3,
        "no bridge: no bridge warning"
    );
}

#[test]
fn unreadable_chains_are_reported() {
    let host = Observed {
        chains: vec![],
        unreadable: vec!["a chain of family ip: no chain name".into()],
    };
    let p = plan(&[web()], &host);
    assert_eq!(
        p.warnings,
        [
            "cannot read the host's firewall: a chain of family ip: no chain name; trellis cannot tell whether it drops forwarded traffic"
        ]
    );
}
