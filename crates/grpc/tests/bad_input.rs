//! Bad input over gRPC (issue 4 item 8): each malformed request gets the
//! right status code, a message naming the field or object at fault, and
//! changes nothing — not the kernel and not the store (IPAM and records).
//!
//! Which tier proves what:
//! - The whole table runs on the fake kernel (unprivileged): that the edge
//!   validates, converts and maps every refusal to its code and field, and
//!   that a refused request changes nothing of the fake's whole state
//!   (every namespace, NAT, host firewall, listeners) or the store.
//! - The cases whose refusal is the kernel's answer ([`netns_cases`]: a
//!   netns path that is a file, a mount namespace, missing, or the host's
//!   own) run again on real namespaces (privileged). The fake refuses every
//!   path it does not know alike ("no such network namespace in the fake
//!   kernel") and knows the host's by a registered path, not by inode, so
//!   there these cases prove the edge's mapping only; every other case gets
//!   the same code and message on both kernels.

use crate::cases::{Case, attach_cases, endpoint_cases, netns_cases, network_cases};
use crate::util::{Container, Harness, attach, bridge, create, tcp};
use tonic::Status;
use tonic::transport::Channel;
use trellis_proto::v1 as pb;
use trellis_proto::v1::AgentClient;

/// One RPC of the table.
pub enum Call {
    Create(Option<pb::NetworkSpec>),
    Get(&'static str),
    Delete(&'static str),
    Attach(pb::AttachRequest),
    Detach(&'static str, &'static str),
    GetEndpoint(&'static str, &'static str),
    List(pb::ListEndpointsRequest),
    Check(&'static str, &'static str),
    Gc(&'static str, &'static str),
    /// A collection scoped to a network, keeping nothing.
    GcIn(&'static str),
}

async fn run(c: &mut AgentClient<Channel>, call: Call) -> Result<(), Status> {
    let h = |id: &str, ifname: &str| (id.to_owned(), ifname.to_owned());
    match call {
        Call::Create(spec) => c
            .create_network(pb::CreateNetworkRequest { spec })
            .await
            .map(drop),
        Call::Get(name) => c
            .get_network(pb::GetNetworkRequest { name: name.into() })
            .await
            .map(drop),
        Call::Delete(name) => {
            let req = pb::DeleteNetworkRequest { name: name.into() };
            c.delete_network(req).await.map(drop)
        }
        Call::Attach(req) => c.attach(req).await.map(drop),
        Call::Detach(id, ifname) => {
            let (container_id, ifname) = h(id, ifname);
            c.detach(pb::DetachRequest {
                container_id,
                ifname,
            })
            .await
            .map(drop)
        }
        Call::GetEndpoint(id, ifname) => {
            let (container_id, ifname) = h(id, ifname);
            c.get_endpoint(pb::GetEndpointRequest {
                container_id,
                ifname,
            })
            .await
            .map(drop)
        }
        Call::List(req) => c.list_endpoints(req).await.map(drop),
        Call::Check(id, ifname) => {
            let (container_id, ifname) = h(id, ifname);
            c.check(pb::CheckRequest {
                container_id,
                ifname,
            })
            .await
            .map(drop)
        }
        Call::Gc(id, ifname) => {
            let (container_id, ifname) = h(id, ifname);
            let valid = vec![pb::Attachment {
                container_id,
                ifname,
            }];
            c.garbage_collect(pb::GarbageCollectRequest {
                valid,
                network: String::new(),
            })
            .await
            .map(drop)
        }
        Call::GcIn(network) => c
            .garbage_collect(pb::GarbageCollectRequest {
                valid: Vec::new(),
                network: network.into(),
            })
            .await
            .map(drop),
    }
}

/// One valid bridge network with a published port and a fixed address, a
/// tiny /29 network filled to the last address, and a host device `eth0`
/// with 10.3.0.5/24 that is not trellis's.
async fn setup(h: &Harness, c1: &Container, tiny: &Container) {
    h.add_host_device("eth0", "10.3.0.5/24");
    let mut c = h.client.clone();
    create(&mut c, bridge("n1", "192.168.169.0/24", "tbr1")).await;
    let mut req = attach("n1", "c1", c1);
    req.ports = vec![tcp(8081, 80)];
    req.fixed_addresses = vec!["192.168.169.10".into()];
    c.attach(req).await.unwrap();
    // 10.99.0.0/29: .1 is the gateway, .2 to .6 the five hosts.
    create(&mut c, bridge("tiny", "10.99.0.0/29", "tbrtiny")).await;
    for i in 1..=5 {
        let mut req = attach("tiny", &format!("t{i}"), tiny);
        req.ifname = format!("eth{i}");
        c.attach(req).await.unwrap_or_else(|s| panic!("t{i}: {s}"));
    }
}

/// Runs `cases` one after the other against the settled state; what went
/// wrong, one line each: a case accepted, refused with another code or
/// without its word, or one that changed the kernel, the store or `c9`.
async fn refuse_all(h: &Harness, c9: &Container, cases: Vec<Case>) -> Vec<String> {
    let before = h.settled_state().await;
    let c9_links = h.links_in(c9);
    let mut client = h.client.clone();
    let mut failures = Vec::new();
    for (what, call, code, word) in cases {
        let refusal = match run(&mut client, call).await {
            Ok(()) => {
                failures.push(format!("{what}: accepted"));
                None
            }
            Err(s) if s.code() != code || !s.message().contains(word) => {
                failures.push(format!(
                    "{what}: want {code:?} naming {word:?}, got {:?}: {}",
                    s.code(),
                    s.message()
                ));
                None
            }
            Err(s) => Some(s),
        };
        let after = h.state().await;
        if let Some(s) = &refusal
            && after == before
            && h.links_in(c9) == c9_links
        {
            trellis_testlab::report::record(
                "gRPC API: bad input",
                what,
                &format!(
                    "{:?}: \"{}\"; kernel, store and the container unchanged",
                    s.code(),
                    s.message()
                ),
            );
        }
        if after != before {
            let diff = after.diff(&before);
            failures.push(format!(
                "{what}: changed the kernel or the store:\n    {diff}"
            ));
        }
        if h.links_in(c9) != c9_links {
            failures.push(format!("{what}: the container's links changed"));
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_refused_and_change_nothing() {
    let h = Harness::fake().await;
    let (c1, tiny, c9) = (
        h.container("c1").await,
        h.container("tiny").await,
        h.container("c9").await,
    );
    setup(&h, &c1, &tiny).await;
    let mut cases = network_cases();
    cases.extend(attach_cases(&h, &c9));
    cases.extend(endpoint_cases());
    assert!(cases.len() >= 25, "only {} cases", cases.len());
    let failures = refuse_all(&h, &c9, cases).await;
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    h.stop().await;
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netns_paths_the_kernel_refuses_are_invalid_and_change_nothing() {
    let h = Harness::start().await;
    let c9 = h.container("c9").await;
    create(
        &mut h.client.clone(),
        bridge("n1", "192.168.169.0/24", "tbr1"),
    )
    .await;
    let failures = refuse_all(&h, &c9, netns_cases(&h, &c9)).await;
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    h.stop().await;
}
