//! Bad input at the library API: a typed error naming the field, and nothing
//! changed — not the kernel (links, addresses, routes, nftables), not IPAM,
//! not the agent's records. Each case compares a full snapshot before and after.

mod util;

use trellis_agent::{AttachRequest, Error, PortSpec};
use trellis_testlab::Snapshot;
use trellis_testlab::report::record;
use trellis_testlab::{Netns, require_root};
use trellis_types::{IfName, InvalidInput, NetnsPath, Protocol};
use util::{agent_in, attach, bridge_spec, request, store_dump};

fn field_of(e: &Error) -> &'static str {
    match e {
        Error::Invalid(InvalidInput { field, .. }) => field,
        Error::Link(trellis_link::LinkError::Invalid(InvalidInput { field, .. })) => field,
        Error::Ipam(trellis_ipam::Error::Invalid(InvalidInput { field, .. })) => field,
        other => panic!("not an invalid-input error: {other:?}"),
    }
}

#[test]
fn interface_names_are_checked_at_the_type_boundary() {
    for (bad, why) in [
        ("eth0-too-long-name", "longer than 15 bytes"),
        ("eth/0", "'/'"),
        ("eth 0", "whitespace"),
        ("", "empty"),
    ] {
        let e = IfName::parse("ifname", bad).unwrap_err();
        assert_eq!((e.field, e.value.as_str()), ("ifname", bad));
        assert!(e.to_string().contains(why), "{e}");
    }
}

#[test]
fn ports_out_of_range_are_refused_naming_the_field() {
    let e = PortSpec::new(Protocol::Tcp, 0, 80).unwrap_err();
    assert_eq!((e.field, e.value.as_str()), ("host_port", "0"));
    let e = PortSpec::new(Protocol::Udp, 8080, 70000).unwrap_err();
    assert_eq!((e.field, e.value.as_str()), ("container_port", "70000"));
    let e = PortSpec::new(Protocol::Tcp, 65536, 80).unwrap_err();
    assert_eq!(e.field, "host_port");
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_networks_and_attaches_change_nothing() {
    require_root();
    let host = Netns::new("host");
    host.ip("link add eth0 type veth peer name eth0p");
    let agent = agent_in(&host).await;
    agent
        .create_network(bridge_spec("n1", "192.168.169.0/24", "tbr1"))
        .await
        .unwrap();
    let c1 = Netns::new("c1");
    attach(&agent, "n1", "c1", &c1, &[(Protocol::Tcp, 8081, 80)]).await;

    let before = (Snapshot::take(&host), store_dump(&agent).await);
    let unchanged = |e: &Error, what: &str, after: (Snapshot, Vec<(String, Vec<u8>)>)| {
        assert!(before == after, "{what} changed something");
        record(
            "agent API: bad input",
            what,
            &format!(
                "refused: \"{e}\"; links, addresses, routes, nftables, IPAM and records unchanged"
            ),
        );
    };

    // A CIDR with host bits set.
    let e = agent
        .create_network(bridge_spec("n2", "10.7.0.5/24", "tbr2"))
        .await
        .unwrap_err();
    assert_eq!(field_of(&e), "subnet", "{e}");
    assert!(e.to_string().contains("10.7.0.0/24"), "{e}");
    unchanged(
        &e,
        "CreateNetwork with a CIDR with host bits set (10.7.0.5/24)",
        (Snapshot::take(&host), store_dump(&agent).await),
    );

    // A subnet overlapping another network's.
    let e = agent
        .create_network(bridge_spec("n2", "192.168.0.0/16", "tbr2"))
        .await
        .unwrap_err();
    assert_eq!(field_of(&e), "subnet", "{e}");
    unchanged(
        &e,
        "CreateNetwork with a subnet overlapping another network's",
        (Snapshot::take(&host), store_dump(&agent).await),
    );

    // A bridge name that is someone else's interface: refused, and not deleted.
    let e = agent
        .create_network(bridge_spec("n2", "10.7.0.0/24", "eth0"))
        .await
        .unwrap_err();
    assert_eq!(field_of(&e), "bridge", "{e}");
    unchanged(
        &e,
        "CreateNetwork naming the host's own interface eth0 as its bridge",
        (Snapshot::take(&host), store_dump(&agent).await),
    );

    // A host port already published.
    let c2 = Netns::new("c2");
    let e = agent
        .attach(request("n1", "c2", &c2, &[(Protocol::Tcp, 8081, 80)]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::PortInUse {
                host_port: 8081,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("8081"), "{e}");
    unchanged(
        &e,
        "Attach publishing a host port another container has",
        (Snapshot::take(&host), store_dump(&agent).await),
    );
    assert!(
        c2.ip("-o link show").lines().count() == 1,
        "c2 got an interface"
    );

    // The same port twice in one request.
    let ports = [(Protocol::Udp, 53, 53), (Protocol::Udp, 53, 5353)];
    let e = agent
        .attach(request("n1", "c2", &c2, &ports))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::PortInUse { host_port: 53, .. }), "{e}");
    unchanged(
        &e,
        "Attach publishing the same host port twice",
        (Snapshot::take(&host), store_dump(&agent).await),
    );

    // A netns path that is not a network namespace: a regular file, a mount
    // namespace, a path that does not exist.
    let file = tempfile_path();
    for path in [
        file.as_str(),
        "/proc/self/ns/mnt",
        "/run/netns/trellis-no-such-ns",
    ] {
        let mut req: AttachRequest = request("n1", "c2", &c2, &[(Protocol::Tcp, 9090, 80)]);
        req.netns = NetnsPath::parse("netns", path).unwrap();
        let e = agent.attach(req).await.unwrap_err();
        assert_eq!(field_of(&e), "netns", "{path}: {e}");
        unchanged(
            &e,
            &format!(
                "Attach with netns {} (not a network namespace)",
                if path == file { "a regular file" } else { path }
            ),
            (Snapshot::take(&host), store_dump(&agent).await),
        );
    }
    std::fs::remove_file(&file).ok();

    // An unknown network.
    let e = agent
        .attach(request("nope", "c2", &c2, &[]))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::NetworkNotFound(ref n) if n == "nope"),
        "{e}"
    );
    unchanged(
        &e,
        "Attach to a network that does not exist",
        (Snapshot::take(&host), store_dump(&agent).await),
    );

    // After all that, the port still works for its owner and c2 attaches fine.
    attach(&agent, "n1", "c2", &c2, &[(Protocol::Tcp, 8082, 80)]).await;
}

fn tempfile_path() -> String {
    let path = std::env::temp_dir().join(format!("trellis-not-a-netns-{}", std::process::id()));
    std::fs::write(&path, b"not a namespace").unwrap();
    path.to_string_lossy().into_owned()
}

/// Fixed addresses, labels, and the field (or `taken`) the refusal names.
type BadCase<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_fixed_addresses_and_labels_change_nothing() {
    require_root();
    let host = Netns::new("host");
    let agent = agent_in(&host).await;
    let spec = bridge_spec("n1", "192.168.169.0/24", "tbr1");
    agent.create_network(spec).await.unwrap();
    let c1 = Netns::new("c1");
    let mut req = request("n1", "c1", &c1, &[]);
    req.fixed_addresses = vec!["192.168.169.50".parse().unwrap()];
    agent.attach(req).await.unwrap();

    let before = (Snapshot::take(&host), store_dump(&agent).await);
    let c2 = Netns::new("c2");
    let bad: [BadCase; 5] = [
        (&["10.9.0.5"], &[], "fixed_addresses"),
        (&["192.168.169.5", "192.168.169.6"], &[], "fixed_addresses"),
        (&["192.168.169.50"], &[], "taken"),
        (&[], &[("bad key", "v")], "labels"),
        (&[], &[("", "v")], "labels"),
    ];
    for (fixed, labels, want) in bad {
        let mut req = request("n1", "c2", &c2, &[(Protocol::Tcp, 8088, 80)]);
        req.fixed_addresses = fixed.iter().map(|a| a.parse().unwrap()).collect();
        req.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let e = agent.attach(req).await.unwrap_err();
        if want == "taken" {
            assert_eq!(e.class(), trellis_agent::ErrorClass::AlreadyExists, "{e}");
            assert!(e.to_string().contains("192.168.169.50"), "{e}");
        } else {
            assert_eq!(field_of(&e), want, "{fixed:?} {labels:?}: {e}");
        }
        let after = (Snapshot::take(&host), store_dump(&agent).await);
        assert!(before == after, "{fixed:?} {labels:?} changed something");
        record(
            "agent API: bad input",
            &format!("Attach with fixed addresses {fixed:?} and labels {labels:?}"),
            &format!("refused: \"{e}\"; nothing changed, no interface in the container"),
        );
        assert_eq!(
            c2.ip("-o link show").lines().count(),
            1,
            "c2 got an interface"
        );
    }
}
