//! Privileged tests of trellis-nat. Each builds its own network namespaces
//! (trellis-testlab), never touches the machine's own, and fails (never skips)
//! without root.

mod util;
mod worker;

use std::time::{Duration, Instant};
use trellis_nat::{Error, Nat, NatState};
use trellis_types::Protocol;
use util::{NftTable, elems, ifname, lab, net, pool, rule_lines, tcp, udp};

/// The rules as `nft list table inet trellis` prints them, chain by chain.
const SKELETON: &[&str] = &[
    "chain published {",
    "dnat ip to ip daddr . meta l4proto . th dport map @hostports4",
    "meta nfproto ipv4 dnat ip to meta l4proto . th dport map @ports4",
    "dnat ip6 to ip6 daddr . meta l4proto . th dport map @hostports6",
    "meta nfproto ipv6 dnat ip6 to meta l4proto . th dport map @ports6",
    "chain prerouting {",
    "type nat hook prerouting priority dstnat; policy accept;",
    "fib daddr type local jump published",
    "chain output {",
    "type nat hook output priority -100; policy accept;",
    "fib daddr type local jump published",
    "chain postrouting {",
    "type nat hook postrouting priority srcnat; policy accept;",
    "ct status dnat ip saddr 127.0.0.0/8 masquerade",
    "ct status dnat ip saddr . oifname @own4 masquerade",
    "ip saddr . oifname @own4 return",
    "ip saddr @masq4 ip daddr != @pools4 masquerade",
    "ip saddr @natpools4 ip daddr != @pools4 masquerade",
    "ct status dnat ip6 saddr . oifname @own6 masquerade",
    "ip6 saddr . oifname @own6 return",
    "ip6 saddr @masq6 ip6 daddr != @pools6 masquerade",
    "ip6 saddr @natpools6 ip6 daddr != @pools6 masquerade",
    "chain forward {",
    "type filter hook forward priority filter; policy accept;",
    "iifname . oifname @pass accept",
    "ct state established,related accept",
    "iifname @internal drop",
    "oifname @internal drop",
    "ct status dnat accept",
    "iifname @bridges oifname @bridges drop",
    "chain input {",
    "type filter hook input priority filter; policy accept;",
    "iifname != \"lo\" ip daddr 127.0.0.0/8 ct state ! established,related ct status ! dnat drop",
];

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn ensure_table_is_idempotent_keeps_elements_and_matches_the_documented_layout() {
    let (ns, nat) = lab("ensure");
    nat.ensure_table().await.unwrap();
    assert_eq!(rule_lines(&ns), SKELETON);
    nat.publish(&[tcp(8081, "192.168.169.3", 80)])
        .await
        .unwrap();
    nat.ensure_table().await.unwrap();
    nat.ensure_table().await.unwrap();
    assert_eq!(rule_lines(&ns), SKELETON, "rules are not duplicated");
    assert_eq!(
        nat.list_published().await.unwrap(),
        [tcp(8081, "192.168.169.3", 80)]
    );
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn publish_and_unpublish_are_reflected_in_the_ruleset() {
    let (ns, nat) = lab("publish");
    nat.ensure_table().await.unwrap();
    let (web, dns, web6) = (
        tcp(8081, "192.168.169.3", 80),
        udp(53, "192.168.169.4", 5353),
        tcp(8081, "fd00::3", 80),
    );
    nat.publish(&[web, dns, web6]).await.unwrap();
    assert_eq!(
        elems(&ns, "ports4"),
        [
            r#"[{"concat":["tcp",8081]},{"concat":["192.168.169.3",80]}]"#,
            r#"[{"concat":["udp",53]},{"concat":["192.168.169.4",5353]}]"#,
        ],
        "sorted as text"
    );
    assert_eq!(
        elems(&ns, "ports6"),
        [r#"[{"concat":["tcp",8081]},{"concat":["fd00::3",80]}]"#]
    );
    let mut all = vec![web, dns, web6];
    all.sort();
    assert_eq!(nat.list_published().await.unwrap(), all);

    nat.unpublish(&[web, web6]).await.unwrap();
    assert_eq!(
        elems(&ns, "ports4"),
        [r#"[{"concat":["udp",53]},{"concat":["192.168.169.4",5353]}]"#]
    );
    assert!(elems(&ns, "ports6").is_empty());
    // Idempotent, and only exact matches go: udp/53 to another container stays.
    nat.unpublish(&[web, udp(53, "192.168.169.9", 5353)])
        .await
        .unwrap();
    assert_eq!(nat.list_published().await.unwrap(), [dns]);
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn a_published_host_port_is_refused_and_nothing_changes() {
    let (ns, nat) = lab("dup");
    nat.ensure_table().await.unwrap();
    let web = tcp(8081, "192.168.169.3", 80);
    nat.publish(&[web]).await.unwrap();
    let before = ns.exec_ok(&["nft", "-j", "list", "ruleset"]);
    let batch = [
        tcp(9000, "192.168.169.5", 80),
        tcp(8081, "192.168.169.5", 81),
    ];
    for (how, res) in [
        ("checked before sending", nat.publish(&batch).await),
        ("refused by the kernel", nat.publish_unchecked(&batch).await),
        ("same mapping again", nat.publish(&[web]).await),
    ] {
        match res {
            Err(Error::PortInUse {
                protocol: Protocol::Tcp,
                host_port: 8081,
                existing,
            }) => {
                assert_eq!(existing, Some(web), "{how}")
            }
            other => panic!("{how}: {other:?}"),
        }
        assert_eq!(
            ns.exec_ok(&["nft", "-j", "list", "ruleset"]),
            before,
            "{how}: tcp/9000 must not be left"
        );
    }
    let twice = [
        tcp(7000, "192.168.169.5", 80),
        tcp(7000, "192.168.169.6", 80),
    ];
    assert!(matches!(
        nat.publish(&twice).await,
        Err(Error::PortInUse {
            host_port: 7000,
            ..
        })
    ));
    assert_eq!(nat.list_published().await.unwrap(), [web]);
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn networks_are_elements_and_overlaps_are_refused() {
    let (ns, nat) = lab("nets");
    nat.ensure_table().await.unwrap();
    let docker = net("192.168.169.0/24", "br0", true);
    nat.add_network(&docker).await.unwrap();
    nat.add_network(&docker).await.unwrap();
    nat.add_network(&net("fd00:1::/64", "br6", false))
        .await
        .unwrap();
    assert_eq!(
        elems(&ns, "own4"),
        [r#"{"concat":[{"prefix":{"addr":"192.168.169.0","len":24}},"br0"]}"#]
    );
    assert_eq!(
        elems(&ns, "masq4"),
        [r#"{"prefix":{"addr":"192.168.169.0","len":24}}"#]
    );
    assert!(elems(&ns, "masq6").is_empty(), "masquerade: false");
    assert_eq!(
        nat.list_networks().await.unwrap(),
        [docker.clone(), net("fd00:1::/64", "br6", false)]
    );

    let before = ns.exec_ok(&["nft", "-j", "list", "ruleset"]);
    match nat.add_network(&net("192.168.0.0/16", "br1", true)).await {
        Err(Error::Invalid(e)) => assert_eq!(e.field, "subnet", "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        nat.add_network(&net("10.0.0.1/24", "br1", true)).await,
        Err(Error::Invalid(_))
    ));
    assert_eq!(ns.exec_ok(&["nft", "-j", "list", "ruleset"]), before);

    let routed = net("192.168.169.0/24", "br0", false);
    nat.add_network(&routed).await.unwrap();
    assert!(elems(&ns, "masq4").is_empty(), "masquerade switched off");
    nat.remove_network(&routed).await.unwrap();
    nat.remove_network(&routed).await.unwrap();
    assert!(elems(&ns, "own4").is_empty());
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn sync_replaces_everything_and_remove_all_leaves_no_table() {
    let (ns, nat) = lab("sync");
    nat.remove_all().await.unwrap();
    assert!(matches!(
        nat.publish(&[tcp(80, "10.0.0.2", 80)]).await,
        Err(Error::NoTable(_))
    ));
    nat.ensure_table().await.unwrap();
    nat.publish(&[tcp(80, "10.0.0.2", 80)]).await.unwrap();
    let mut internal = net("10.0.1.0/24", "br1", false);
    internal.internal = true;
    let lo = tcp(82, "10.0.0.3", 80).on(Some("127.0.0.1".parse().unwrap()));
    let state = NatState {
        networks: vec![net("10.0.0.0/24", "br0", true), internal],
        pools: vec![pool("10.244.0.0/16", true), pool("fd00:244::/48", false)],
        ports: vec![tcp(81, "10.0.0.3", 80), lo],
        reach: vec![(ifname("br0"), ifname("br1"))],
    };
    nat.sync(&state).await.unwrap();
    assert_eq!(nat.list_published().await.unwrap(), state.ports);
    assert_eq!(nat.list_networks().await.unwrap(), state.networks);
    assert_eq!(nat.list_pools().await.unwrap(), state.pools);
    assert_eq!(nat.list_reach().await.unwrap(), state.reach);
    assert_eq!(rule_lines(&ns), SKELETON);

    nat.remove_all().await.unwrap();
    nat.remove_all().await.unwrap();
    assert!(ns.nft_table().is_none());
    assert!(!ns.exec_ok(&["nft", "list", "ruleset"]).contains("trellis"));
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn publish_and_unpublish_one_port_beside_five_thousand_others() {
    let (_ns, nat) = lab("perf");
    nat.ensure_table().await.unwrap();
    // Five thousand other ports published (in one batch): the cost must not depend on them.
    let others: Vec<_> = (10_000..15_000).map(|p| tcp(p, "10.0.0.2", 80)).collect();
    nat.publish(&others).await.unwrap();
    assert_eq!(
        nat.list_published().await.unwrap().len(),
        5000,
        "one batch, one dump"
    );
    let (n, m) = (200u32, tcp(8081, "10.0.0.3", 80));
    let (mut publish, mut unpublish) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..n {
        let t = Instant::now();
        nat.publish(&[m]).await.unwrap();
        publish += t.elapsed();
        let t = Instant::now();
        nat.unpublish(&[m]).await.unwrap();
        unpublish += t.elapsed();
    }
    let (p, u) = (publish / n, unpublish / n);
    // Printed for the curious; speed is the benchmarks' business, not a test's.
    eprintln!("publish one port: {p:?} mean; unpublish: {u:?} mean (5000 others published)");
    let left = nat.list_published().await.unwrap();
    assert_eq!(left.len(), 5000, "the others are untouched");
    assert!(!left.contains(&m), "the last unpublish took effect");
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn published_ports_hairpin_and_masquerade_carry_traffic() {
    util::traffic().await;
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn routed_pools_masquerade_only_to_the_world_with_nat_outgoing() {
    util::routed().await;
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn routed_pools_are_elements_only_and_overlaps_are_refused() {
    let (ns, nat) = lab("pools");
    nat.ensure_table().await.unwrap();
    // `-a` prints each rule's handle: a rule replaced would show a new one.
    let chain = || {
        ns.exec_ok(&[
            "nft",
            "-a",
            "list",
            "chain",
            "inet",
            "trellis",
            "postrouting",
        ])
    };
    let rules_before = chain();
    let (a, b, c) = (
        pool("10.244.0.0/16", true),
        pool("10.245.0.0/16", false), // adjacent: a's end key is b's start key
        pool("fd00:244::/48", true),
    );
    for p in [a, b, c, a] {
        nat.add_pool(&p).await.unwrap();
    }
    let prefix = |addr: &str, len: u8| format!(r#"{{"prefix":{{"addr":"{addr}","len":{len}}}}}"#);
    assert_eq!(
        elems(&ns, "pools4"),
        [prefix("10.244.0.0", 16), prefix("10.245.0.0", 16)]
    );
    assert_eq!(elems(&ns, "natpools4"), [prefix("10.244.0.0", 16)]);
    assert_eq!(elems(&ns, "natpools6"), [prefix("fd00:244::", 48)]);
    assert_eq!(nat.list_pools().await.unwrap(), [a, b, c]);

    let before = ns.exec_ok(&["nft", "-j", "list", "ruleset"]);
    match nat.add_pool(&pool("10.244.7.0/24", true)).await {
        Err(Error::Invalid(e)) => {
            assert_eq!(e.field, "cidr", "{e}");
            assert!(e.reason.contains("10.244.0.0/16"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        nat.add_pool(&pool("10.246.0.1/16", true)).await,
        Err(Error::Invalid(_))
    ));
    assert_eq!(ns.exec_ok(&["nft", "-j", "list", "ruleset"]), before);

    // nat_outgoing switched: only the natpools interval moves.
    nat.add_pool(&pool("10.244.0.0/16", false)).await.unwrap();
    nat.add_pool(&pool("10.245.0.0/16", true)).await.unwrap();
    assert_eq!(elems(&ns, "natpools4"), [prefix("10.245.0.0", 16)]);
    nat.remove_pool(&a).await.unwrap();
    nat.remove_pool(&a).await.unwrap();
    assert_eq!(elems(&ns, "pools4"), [prefix("10.245.0.0", 16)]);
    assert_eq!(
        nat.list_pools().await.unwrap(),
        [pool("10.245.0.0/16", true), c]
    );
    assert_eq!(chain(), rules_before, "pools are elements, never rules");
}
