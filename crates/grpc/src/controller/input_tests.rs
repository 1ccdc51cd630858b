use super::*;
use std::collections::HashMap;

fn pool(f: impl FnOnce(&mut pb::PoolSpec)) -> Result<PoolSpec> {
    let mut spec = pb::PoolSpec {
        name: "pods".into(),
        prefix: "10.244.0.0/16".into(),
        mode: pb::PoolMode::Routed.into(),
        ..Default::default()
    };
    f(&mut spec);
    pool_spec(Some(spec))
}

fn node(f: impl FnOnce(&mut pb::NodeSpec)) -> Result<NodeSpec> {
    let mut spec = pb::NodeSpec {
        name: "node-1".into(),
        address_v4: "192.0.2.1".into(),
        ..Default::default()
    };
    f(&mut spec);
    node_spec(Some(spec))
}

/// The error names `field` first, as the proto spells it.
fn refused<T: std::fmt::Debug>(r: Result<T>, field: &str) {
    let e = r.expect_err("refused");
    assert_eq!(e.field, field, "{e}");
    assert!(e.to_string().starts_with(field), "{e}");
}

#[test]
fn a_pool_spec_converts_with_the_cores_defaults() {
    let p = pool(|_| {}).unwrap();
    assert_eq!(p.name.as_str(), "pods");
    assert_eq!(p.prefix, "10.244.0.0/16".parse::<IpNet>().unwrap());
    assert_eq!((p.mode, p.block_len), (PoolMode::Routed, 26));
    let b = pool(|s| s.mode = pb::PoolMode::Bridge.into()).unwrap();
    assert_eq!(
        (b.mode, b.block_len, b.max_blocks_per_node),
        (PoolMode::Bridge, 24, 1)
    );
}

#[test]
fn pool_spec_errors_name_the_field() {
    refused(pool_spec(None), "spec");
    refused(pool(|s| s.mode = 0), "spec.mode");
    refused(pool(|s| s.mode = 7), "spec.mode");
    refused(pool(|s| s.name = String::new()), "spec.name");
    refused(pool(|s| s.name = "a/b".into()), "spec.name");
    refused(pool(|s| s.prefix = String::new()), "spec.prefix");
    refused(pool(|s| s.prefix = "10.244.0.0".into()), "spec.prefix");
    refused(pool(|s| s.prefix = "10.244.0.1/16".into()), "spec.prefix");
    refused(pool(|s| s.block_size = 300), "spec.block_size");
    refused(pool(|s| s.block_size = 8), "spec.block_size");
    refused(
        pool(|s| {
            s.mode = pb::PoolMode::Bridge.into();
            s.max_blocks_per_node = 2;
        }),
        "spec.max_blocks_per_node",
    );
    refused(pool(|s| s.name = "x".repeat(5000)), "spec.name");
}

#[test]
fn node_specs_need_an_address_of_the_right_family() {
    let n = node(|s| s.address_v6 = "2001:db8::1".into()).unwrap();
    assert_eq!(n.address_v4, Some(Ipv4Addr::new(192, 0, 2, 1)));
    assert_eq!(n.address_v6, Some("2001:db8::1".parse().unwrap()));
    let v6_only = node(|s| {
        s.address_v4 = String::new();
        s.address_v6 = "2001:db8::1".into();
    });
    assert_eq!(v6_only.unwrap().address_v4, None);

    refused(node_spec(None), "spec");
    refused(node(|s| s.name = String::new()), "spec.name");
    refused(node(|s| s.name = "n".repeat(64)), "spec.name");
    refused(
        node(|s| s.address_v4 = "2001:db8::1".into()),
        "spec.address_v4",
    );
    refused(
        node(|s| s.address_v4 = "192.0.2.300".into()),
        "spec.address_v4",
    );
    refused(node(|s| s.address_v4 = "0.0.0.0".into()), "spec.address_v4");
    refused(
        node(|s| s.address_v6 = "192.0.2.1".into()),
        "spec.address_v6",
    );
    refused(node(|s| s.address_v6 = "ff02::1".into()), "spec.address_v6");
    refused(node(|s| s.address_v4 = String::new()), "spec.address_v4");
}

#[test]
fn a_node_may_register_where_its_agent_api_is_read() {
    assert_eq!(node(|_| {}).unwrap().agent_address, None);
    let n = node(|s| s.agent_address = "https://192.0.2.1:7444".into()).unwrap();
    assert_eq!(
        n.agent_address.map(String::from).as_deref(),
        Some("https://192.0.2.1:7444")
    );
    for bad in [
        "192.0.2.1:7444",
        "https://192.0.2.1",
        "ftp://h:1",
        "https://h:1/x",
    ] {
        refused(node(|s| s.agent_address = bad.into()), "spec.agent_address");
    }
}

#[test]
fn node_labels_are_bounded_like_the_agents() {
    let many: HashMap<_, _> = (0..65).map(|i| (format!("k{i}"), String::new())).collect();
    refused(node(|s| s.labels = many), "spec.labels");
    let long = HashMap::from([("k".to_owned(), "v".repeat(5000))]);
    refused(node(|s| s.labels = long), "spec.labels");
    let ok = HashMap::from([("zone".to_owned(), "a".to_owned())]);
    let n = node(|s| s.labels = ok).unwrap();
    assert_eq!(n.labels.get("zone").map(String::as_str), Some("a"));
}

#[test]
fn network_spec_errors_name_the_field() {
    let spec = |f: fn(&mut pb::ClusterNetworkSpec)| {
        let mut s = pb::ClusterNetworkSpec {
            name: "pods".into(),
            pools: vec!["pods.v4".into()],
            mtu: 0,
        };
        f(&mut s);
        network_spec(Some(s))
    };
    let ok = spec(|_| {}).unwrap();
    assert_eq!((ok.name.as_str(), ok.mtu), ("pods", None));
    assert_eq!(spec(|s| s.mtu = 1450).unwrap().mtu, Some(1450));
    refused(network_spec(None), "spec");
    refused(spec(|s| s.name = "n".repeat(61)), "spec.name");
    refused(spec(|s| s.pools = vec![String::new()]), "spec.pools");
    refused(spec(|s| s.pools = vec!["p".into(); 9]), "spec.pools");
    refused(spec(|s| s.mtu = 67), "spec.mtu");
    refused(spec(|s| s.mtu = 65536), "spec.mtu");
}

#[test]
fn names_filters_usage_and_prefixes() {
    refused(node_name("node", ""), "node");
    refused(pool_name("pool", "a b"), "pool");
    refused(network_name("name", ""), "name");
    refused(prefix("prefix", "10.0.0.0/33"), "prefix");
    refused(prefix("prefix", "10.0.0.1/24"), "prefix");

    let all = block_filter(&pb::ListBlocksRequest::default()).unwrap();
    assert_eq!(all, (None, None));
    let bad = pb::ListBlocksRequest {
        node: "a/b".into(),
        ..Default::default()
    };
    refused(block_filter(&bad), "node");

    let report = |pool: &str, prefix: &str| {
        usage(&[pb::BlockUsage {
            pool: pool.into(),
            prefix: prefix.into(),
            used: 3,
        }])
    };
    let u = report("", "10.244.0.64/26").unwrap();
    assert_eq!(
        (u[0].prefix.to_string(), u[0].used),
        ("10.244.0.64/26".into(), 3)
    );
    refused(report("", "10.244.0.65/26"), "usage.prefix");
    refused(report("a b", "10.244.0.64/26"), "usage.pool");

    assert!(prefixes(&[]).unwrap().is_empty());
    refused(prefixes(&["nonsense".into()]), "prefixes");
}
