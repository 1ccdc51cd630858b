//! Pool creation and deletion; every bad input is refused by field and
//! changes nothing.

use crate::util::{bridge, handle, ip, ipam, revision, spec};
use trellis_ipam::{Error, Reserve};
use trellis_store::KvStore as _;

/// Asserts `err` is bad input on `field`, and its message says `needle`.
fn assert_invalid(err: Error, field: &str, needle: &str) {
    match &err {
        Error::Invalid(e) => assert_eq!(e.field, field, "{err}"),
        other => panic!("expected bad input on {field}, got {other}"),
    }
    assert!(err.to_string().contains(needle), "{err:?} lacks {needle:?}");
}

#[tokio::test]
async fn bad_pools_are_refused_by_field_and_change_nothing() {
    let (store, ipam) = ipam();
    ipam.create_pool(bridge("br", "192.168.169.0/24", None, "192.168.169.1"))
        .await
        .unwrap();
    let before = revision(&store).await;
    let cases = [
        (
            bridge("x", "10.0.0.1/24", None, "10.0.0.2"),
            "cidr",
            "host bits",
        ),
        (
            bridge("x", "192.168.0.0/16", None, "192.168.0.1"),
            "cidr",
            "overlaps pool \"br\"",
        ),
        (
            bridge("x", "192.168.169.128/25", None, "192.168.169.129"),
            "cidr",
            "overlaps",
        ),
        (
            bridge("x", "10.0.0.0/24", Some(23), "10.0.0.1"),
            "block_prefix_len",
            "larger than the pool",
        ),
        (
            bridge("x", "10.0.0.0/24", Some(31), "10.0.0.1"),
            "block_prefix_len",
            "smallest block",
        ),
        (
            bridge("x", "10.0.0.0/8", Some(19), "10.0.0.1"),
            "block_prefix_len",
            "largest block",
        ),
        (
            bridge("x", "10.0.0.0/31", None, "10.0.0.1"),
            "cidr",
            "smallest block",
        ),
        (
            bridge("x", "10.0.0.0/24", None, "10.0.1.1"),
            "gateway",
            "outside the pool",
        ),
        (
            bridge("x", "10.0.0.0/24", None, "10.0.0.0"),
            "gateway",
            "network or broadcast",
        ),
        (
            bridge("x", "10.0.0.0/24", None, "10.0.0.255"),
            "gateway",
            "network or broadcast",
        ),
        (
            bridge("x", "fd00::/64", None, "10.0.0.1"),
            "gateway",
            "outside the pool",
        ),
        (
            bridge("a/b", "10.0.0.0/24", None, "10.0.0.1"),
            "name",
            "[A-Za-z0-9_.-]",
        ),
        (
            bridge("", "10.0.0.0/24", None, "10.0.0.1"),
            "name",
            "1 to 63",
        ),
    ];
    for (spec, field, needle) in cases {
        let err = ipam.create_pool(spec.clone()).await.unwrap_err();
        assert_invalid(err, field, needle);
    }
    let dup = bridge("br", "10.9.0.0/24", None, "10.9.0.1");
    assert!(matches!(
        ipam.create_pool(dup).await,
        Err(Error::PoolExists { .. })
    ));
    assert_eq!(
        revision(&store).await,
        before,
        "a refused pool changed the store"
    );
    assert_eq!(ipam.list_pools().await.unwrap().len(), 1);
}

#[tokio::test]
async fn block_size_defaults_and_clamps_to_small_pools() {
    let (_, ipam) = ipam();
    let v4 = ipam
        .create_pool(spec("v4", "10.0.0.0/16", None, Reserve::None))
        .await
        .unwrap();
    assert_eq!(v4.block_prefix_len, 26);
    let v6 = ipam
        .create_pool(spec("v6", "fd00::/64", None, Reserve::None))
        .await
        .unwrap();
    assert_eq!(v6.block_prefix_len, 122);
    let small = ipam
        .create_pool(spec("s", "10.1.0.0/28", None, Reserve::None))
        .await
        .unwrap();
    assert_eq!(small.block_prefix_len, 28);
    let custom = ipam
        .create_pool(spec("c", "10.2.0.0/16", Some(24), Reserve::None))
        .await
        .unwrap();
    assert_eq!(custom.block_prefix_len, 24);
    let names: Vec<_> = ipam
        .list_pools()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["c", "s", "v4", "v6"]);
}

#[tokio::test]
async fn bad_fixed_addresses_are_refused_and_change_nothing() {
    let (store, ipam) = ipam();
    ipam.create_pool(bridge("br", "10.0.0.0/24", None, "10.0.0.1"))
        .await
        .unwrap();
    ipam.allocate_specific("br", &handle("a"), ip("10.0.0.10"))
        .await
        .unwrap();
    let before = revision(&store).await;
    for (addr, needle) in [
        ("10.0.1.5", "outside pool"),
        ("fd00::5", "outside pool"),
        ("10.0.0.0", "reserved"),
        ("10.0.0.1", "reserved"),
        ("10.0.0.255", "reserved"),
    ] {
        let err = ipam
            .allocate_specific("br", &handle("b"), ip(addr))
            .await
            .unwrap_err();
        assert_invalid(err, "ip", needle);
    }
    let err = ipam
        .allocate_specific("br", &handle("b"), ip("10.0.0.10"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::AddressTaken { holder, .. } if *holder == handle("a")),
        "{err}"
    );
    assert!(err.to_string().contains("10.0.0.10"), "{err}");
    let err = ipam
        .allocate_specific("nope", &handle("b"), ip("10.0.0.11"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PoolNotFound { .. }), "{err}");
    assert_eq!(revision(&store).await, before);
    // The same handle asking again is fine.
    ipam.allocate_specific("br", &handle("a"), ip("10.0.0.10"))
        .await
        .unwrap();
}

#[tokio::test]
async fn delete_pool_refuses_while_in_use_then_removes_blocks() {
    let (store, ipam) = ipam();
    ipam.create_pool(bridge("br", "10.0.0.0/24", None, "10.0.0.1"))
        .await
        .unwrap();
    ipam.allocate("br", &handle("a")).await.unwrap();
    let err = ipam.delete_pool("br").await.unwrap_err();
    assert!(matches!(err, Error::PoolInUse { used: 1, .. }), "{err}");
    ipam.release(&handle("a")).await.unwrap();
    ipam.delete_pool("br").await.unwrap();
    assert!(matches!(
        ipam.delete_pool("br").await,
        Err(Error::PoolNotFound { .. })
    ));
    assert!(store.list("ipam/blocks").await.unwrap().entries.is_empty());
    // The same name and prefix can be created again, and allocates afresh.
    ipam.create_pool(bridge("br", "10.0.0.0/24", None, "10.0.0.1"))
        .await
        .unwrap();
    assert_eq!(
        ipam.allocate("br", &handle("b")).await.unwrap(),
        ip("10.0.0.2")
    );
}
