//! The table of malformed requests: what each is, the call, the status code
//! it must get, and a word its message must hold (the field, or the name of
//! the object at fault).

use crate::bad_input::Call;
use crate::util::{Container, Harness, attach, bridge, tcp};
use tonic::Code;
use trellis_proto::v1 as pb;

/// What it is, the call, the code, the word.
pub type Case = (&'static str, Call, Code, &'static str);

/// A case refused as INVALID_ARGUMENT naming `field`.
fn bad(what: &'static str, field: &'static str, call: Call) -> Case {
    (what, call, Code::InvalidArgument, field)
}

fn spec(f: impl FnOnce(&mut pb::NetworkSpec)) -> Call {
    let mut s = bridge("n2", "10.7.0.0/24", "tbr2");
    f(&mut s);
    Call::Create(Some(s))
}

fn subnet(cidr: &str) -> Call {
    spec(|s| s.subnets = vec![cidr.into()])
}

/// CreateNetwork, GetNetwork and DeleteNetwork.
pub fn network_cases() -> Vec<Case> {
    let routed_gw = spec(|s| {
        s.mode = pb::NetworkMode::Routed.into();
        s.bridge.clear();
        s.gateway = "10.7.0.1".into();
    });
    let taken = Call::Create(Some(bridge("n1", "10.9.0.0/24", "tbr9")));
    vec![
        bad("empty name", "name", spec(|s| s.name.clear())),
        bad("name too long", "name", spec(|s| s.name = "n".repeat(61))),
        bad("name with '/'", "name", spec(|s| s.name = "a/b".into())),
        bad(
            "oversized name",
            "name",
            spec(|s| s.name = "n".repeat(5000)),
        ),
        bad("no spec", "spec", Call::Create(None)),
        bad("no subnet", "subnets", spec(|s| s.subnets.clear())),
        bad("prefix /33", "subnets", subnet("10.7.0.0/33")),
        bad("not a CIDR", "subnets", subnet("banana")),
        bad("host bits set", "subnet", subnet("10.7.0.5/24")),
        bad("overlap", "subnet", subnet("192.168.0.0/16")),
        bad("mode unspecified", "mode", spec(|s| s.mode = 0)),
        bad("unknown mode", "mode", spec(|s| s.mode = 7)),
        bad("gateway in routed mode", "gateway", routed_gw),
        bad(
            "gateway outside",
            "gateway",
            spec(|s| s.gateway = "10.8.0.1".into()),
        ),
        bad(
            "bridge too long",
            "bridge",
            spec(|s| s.bridge = "tbr-much-too-long".into()),
        ),
        bad(
            "foreign bridge",
            "bridge",
            spec(|s| s.bridge = "eth0".into()),
        ),
        bad("mtu 10", "mtu", spec(|s| s.mtu = 10)),
        bad(
            "routable with outgoing NAT",
            "turn masquerade (outgoing_nat) off",
            spec(|s| s.routable = true),
        ),
        bad(
            "routable and internal",
            "an internal network",
            spec(|s| {
                (s.routable, s.internal, s.outgoing_nat) = (true, true, false);
            }),
        ),
        bad(
            "routable routed network",
            "a routed network's blocks are always announced",
            spec(|s| {
                s.mode = pb::NetworkMode::Routed.into();
                s.bridge.clear();
                (s.routable, s.outgoing_nat) = (true, false);
            }),
        ),
        bad("loopback subnet", "loopback", subnet("127.0.0.0/24")),
        bad("multicast subnet", "multicast", subnet("224.1.0.0/24")),
        bad(
            "reserved bridge name",
            "bridge",
            spec(|s| s.bridge = "all".into()),
        ),
        (
            "subnet holding a host address",
            subnet("10.3.0.0/24"),
            Code::FailedPrecondition,
            "10.3.0.5/24 on eth0",
        ),
        ("name taken", taken, Code::AlreadyExists, "n1"),
        bad("get empty name", "name", Call::Get("")),
        ("get unknown", Call::Get("nope"), Code::NotFound, "nope"),
        (
            "delete in use",
            Call::Delete("n1"),
            Code::FailedPrecondition,
            "n1",
        ),
    ]
}

/// An attach to n1 as container c9 in `c9`, changed by `f`.
fn attach_c9(c9: &Container, f: &dyn Fn(&mut pb::AttachRequest)) -> Call {
    let mut r = attach("n1", "c9", c9);
    f(&mut r);
    Call::Attach(r)
}

/// Attach with a netns path that the kernel refuses (its check, not the
/// edge's parse): a file, a mount namespace, the host's own, a missing one.
pub fn netns_cases(h: &Harness, c9: &Container) -> Vec<Case> {
    let netns = |p: &str| attach_c9(c9, &|r| r.netns = p.into());
    let file = h.path("not-a-netns");
    std::fs::write(&file, "").unwrap();
    vec![
        bad("netns is a file", "netns", netns(&file.to_string_lossy())),
        bad("netns is a mount ns", "netns", netns("/proc/self/ns/mnt")),
        bad(
            "netns is the host's",
            "host network namespace",
            netns(&h.host_netns()),
        ),
        bad(
            "netns missing",
            "netns",
            netns("/run/netns/trellis-nonexistent"),
        ),
    ]
}

/// Attach, as container c9 in `c9` unless said otherwise; the
/// [`netns_cases`] among them.
pub fn attach_cases(h: &Harness, c9: &Container) -> Vec<Case> {
    let a = |f: &dyn Fn(&mut pb::AttachRequest)| attach_c9(c9, f);
    let netns = |p: &str| a(&|r| r.netns = p.into());
    let ports = |p: Vec<pb::PortMapping>| a(&move |r| r.ports = p.clone());
    let fixed = |ip: &str| a(&|r| r.fixed_addresses = vec![ip.into()]);
    let labels = |n: usize, k: &str, v: &str| {
        a(&|r| r.labels = (0..n).map(|i| (format!("{k}{i}"), v.to_owned())).collect())
    };
    let unspecified = pb::PortMapping {
        protocol: 0,
        ..tcp(8090, 80)
    };
    let mut other = attach("n1", "c1", c9);
    other.ports = vec![tcp(8082, 80)];
    let mut cases = netns_cases(h, c9);
    cases.extend([
        (
            "unknown network",
            a(&|r| r.network = "nope".into()),
            Code::NotFound,
            "nope",
        ),
        bad("empty network", "network", a(&|r| r.network.clear())),
        bad(
            "empty container id",
            "container_id",
            a(&|r| r.container_id.clear()),
        ),
        bad(
            "container id too long",
            "container_id",
            a(&|r| r.container_id = "c".repeat(129)),
        ),
        bad(
            "oversized id",
            "container_id",
            a(&|r| r.container_id = "c".repeat(10_000)),
        ),
        bad("empty netns", "netns", netns("")),
        bad("relative netns", "netns", netns("run/netns/x")),
        bad("ifname lo", "ifname", a(&|r| r.ifname = "lo".into())),
        bad(
            "ifname with '/'",
            "ifname",
            a(&|r| r.ifname = "eth/0".into()),
        ),
        bad(
            "ifname too long",
            "ifname",
            a(&|r| r.ifname = "eth0-too-long-name".into()),
        ),
        bad("host port 0", "host_port", ports(vec![tcp(0, 80)])),
        bad(
            "container port 70000",
            "container_port",
            ports(vec![tcp(8090, 70_000)]),
        ),
        bad("protocol unspecified", "protocol", ports(vec![unspecified])),
        bad(
            "too many ports",
            "ports",
            ports((1..=1025).map(|p| tcp(p, 80)).collect()),
        ),
        (
            "duplicate host port",
            ports(vec![tcp(8081, 80)]),
            Code::AlreadyExists,
            "8081",
        ),
        (
            "port twice",
            ports(vec![tcp(8090, 80), tcp(8090, 81)]),
            Code::AlreadyExists,
            "8090",
        ),
        bad("fixed outside subnet", "fixed_addresses", fixed("10.1.1.1")),
        bad("fixed not an IP", "fixed_addresses", fixed("10.1.1")),
        bad("fixed gateway", "fixed_addresses", fixed("192.168.169.1")),
        (
            "fixed taken",
            fixed("192.168.169.10"),
            Code::AlreadyExists,
            "192.168.169.10",
        ),
        bad("too many labels", "labels", labels(65, "k", "")),
        bad("bad label key", "labels", labels(1, "a b", "v")),
        bad(
            "oversized label",
            "labels",
            labels(1, "k", &"v".repeat(5000)),
        ),
        bad(
            "mac not a MAC",
            "mac",
            a(&|r| r.mac = "0a:58:0a:f4:00".into()),
        ),
        bad(
            "multicast mac",
            "mac",
            a(&|r| r.mac = "01:00:5E:00:00:01".into()),
        ),
        bad(
            "broadcast mac",
            "mac",
            a(&|r| r.mac = "ff:ff:ff:ff:ff:ff".into()),
        ),
        bad(
            "all-zero mac",
            "mac",
            a(&|r| r.mac = "00:00:00:00:00:00".into()),
        ),
        (
            "other settings",
            Call::Attach(other),
            Code::AlreadyExists,
            "c1",
        ),
        (
            "pool exhausted",
            Call::Attach(attach("tiny", "t6", c9)),
            Code::ResourceExhausted,
            "tiny",
        ),
    ]);
    cases
}

/// Detach, GetEndpoint, ListEndpoints, Check, GarbageCollect.
pub fn endpoint_cases() -> Vec<Case> {
    let list = Call::List(pb::ListEndpointsRequest {
        container_id: "a b".into(),
        ..Default::default()
    });
    vec![
        bad("detach bad ifname", "ifname", Call::Detach("c1", "eth/0")),
        bad("detach empty id", "container_id", Call::Detach("", "")),
        (
            "get unknown endpoint",
            Call::GetEndpoint("ghost", ""),
            Code::NotFound,
            "ghost",
        ),
        (
            "check unknown",
            Call::Check("ghost", "eth0"),
            Code::NotFound,
            "ghost",
        ),
        bad("list bad container id", "container_id", list),
        bad(
            "gc bad attachment",
            "ifname",
            Call::Gc("c1", "eth0-too-long-name"),
        ),
        bad("gc bad network", "network", Call::GcIn("a/b")),
        (
            "gc unknown network",
            Call::GcIn("nope"),
            Code::NotFound,
            "nope",
        ),
    ]
}
