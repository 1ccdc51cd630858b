//! The difference between two node states, as the changes that turn the
//! observed one into the desired one.
//!
//! Pure and deterministic (states are ordered maps and sets), so it is
//! golden-tested without a kernel. Each change carries the sentences that
//! say what is wrong, naming the object at fault: `check` shows them,
//! `reconcile` applies the changes and reports them.
//!
//! The changes come out in the order they must be applied: what goes away
//! first (NAT elements that lead to it, then veths, then routes), then the
//! host-wide objects ports hang off (bridges, blackholes), then ports and
//! their repairs, then peer routes and NAT.
//!
//! Repairs are as gentle as the fault allows: a container side that lacks an
//! address or a route, or is down, is brought back in place; a host route or
//! neighbour is installed again; only a veth that is gone, off its bridge
//! or with the wrong MAC at either end is made again (the container end's
//! is the record's: the one the attach asked for, or the one derived for
//! it; the `Links` trait sets a MAC only when it makes a veth).

use super::{Bridge, NodeState, Port};
use ipnet::IpNet;
use std::collections::BTreeSet;
use std::fmt;
use trellis_link::format_mac;
use trellis_nat::NatState;
use trellis_route::{PeerRoute, Route};
use trellis_types::{IfName, PortMapping};

/// One step that brings the kernel closer to the desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Remove published ports (before the containers they lead to go).
    Unpublish(Vec<PortMapping>),
    /// Delete veths (with their container ends, routes and neighbours): the
    /// executor retires them at once and the reaper deletes them in batches.
    DeletePorts(Vec<Port>),
    /// Delete trellis's routes that nothing explains.
    DeleteRoutes(Vec<Route>),
    /// Create a bridge, or bring it in line (addresses, MTU, up).
    EnsureBridge {
        /// The bridge wanted.
        bridge: Bridge,
        /// What is wrong with it.
        why: Vec<String>,
    },
    /// Install blackholes for owned blocks.
    AddBlackholes(Vec<IpNet>),
    /// Make a port.
    CreatePort {
        /// The port wanted.
        port: Port,
        /// Whether a faulty one is there, to delete first.
        replace: bool,
        /// What is wrong or missing.
        why: Vec<String>,
    },
    /// Set a host veth up.
    SetHostUp(IfName),
    /// Install a routed port's host side again (its knobs, host routes and
    /// neighbours; create-or-replace, so what is there stays).
    RoutedHost {
        /// The port wanted, with the observed ifindex of its host end.
        port: Port,
        /// What is missing.
        why: Vec<String>,
    },
    /// Bring a container side in line in place (addresses, up, routes).
    Container {
        /// The port wanted.
        port: Port,
        /// What is missing.
        why: Vec<String>,
    },
    /// Make the peer routes exactly these.
    SetPeerRoutes(Vec<PeerRoute>),
    /// Replace the NAT table's elements with these (networks, pools or
    /// reach differ, or the table is missing).
    SyncNat(NatState),
    /// Delete the NAT table: no network wants it.
    RemoveNat,
    /// Publish ports.
    Publish(Vec<PortMapping>),
}

impl Change {
    /// What is wrong, one sentence per fault (what `check` reports).
    pub fn problems(&self) -> Vec<String> {
        match self {
            Change::Unpublish(ports) => ports
                .iter()
                .map(|p| format!("published port {} is not wanted", mapping(p)))
                .collect(),
            Change::DeletePorts(ports) => ports
                .iter()
                .map(|p| format!("veth {} is not wanted", p.host.name))
                .collect(),
            Change::DeleteRoutes(routes) => routes
                .iter()
                .map(|r| format!("route {r} is not wanted"))
                .collect(),
            Change::EnsureBridge { why, .. }
            | Change::CreatePort { why, .. }
            | Change::RoutedHost { why, .. }
            | Change::Container { why, .. } => why.clone(),
            Change::AddBlackholes(blocks) => blocks
                .iter()
                .map(|b| format!("route blackhole {b} is missing"))
                .collect(),
            Change::SetHostUp(name) => vec![format!("host veth {name} is down")],
            Change::SetPeerRoutes(_) => vec!["peer routes differ".into()],
            Change::SyncNat(_) => vec!["nftables table differs from the networks".into()],
            Change::RemoveNat => vec!["nftables table is not wanted".into()],
            Change::Publish(ports) => ports
                .iter()
                .map(|p| format!("published port {} is missing from nftables", mapping(p)))
                .collect(),
        }
    }

    /// Whether the change takes something away (rather than adding or
    /// repairing): how reports sort it.
    pub fn removes(&self) -> bool {
        matches!(self, Change::DeletePorts(_) | Change::DeleteRoutes(_))
    }

    /// Each object the change concerns, for reports (`veth tr…`, `route …`).
    pub fn objects(&self) -> Vec<String> {
        match self {
            Change::DeletePorts(ports) => ports
                .iter()
                .map(|p| format!("veth {}", p.host.name))
                .collect(),
            Change::DeleteRoutes(routes) => routes.iter().map(|r| format!("route {r}")).collect(),
            Change::AddBlackholes(blocks) => blocks
                .iter()
                .map(|b| format!("route {}", Route::blackhole(*b)))
                .collect(),
            other => vec![other.to_string()],
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whose = |p: &Port| {
            p.handle
                .as_ref()
                .map(|h| format!(" of {h}"))
                .unwrap_or_default()
        };
        match self {
            Change::Unpublish(p) => write!(f, "nftables elements: unpublish {}", mappings(p)),
            Change::DeletePorts(p) => {
                let names: Vec<&IfName> = p.iter().map(|p| &p.host.name).collect();
                write!(f, "delete veths {}", list(&names))
            }
            Change::DeleteRoutes(r) => write!(f, "delete routes {}", list(r)),
            Change::EnsureBridge { bridge, .. } => write!(f, "bridge {}", bridge.name),
            Change::AddBlackholes(b) => write!(f, "blackholes {}", list(b)),
            Change::CreatePort { port, .. } => {
                write!(f, "veth {}{}", port.host.name, whose(port))
            }
            Change::SetHostUp(n) => write!(f, "veth {n} up"),
            Change::RoutedHost { port, .. } => match &port.handle {
                Some(h) => write!(f, "host routes of {h}"),
                None => write!(f, "host routes of veth {}", port.host.name),
            },
            Change::Container { port, why } => write!(
                f,
                "veth {}{} (container side: {})",
                port.host.name,
                whose(port),
                why.join("; ")
            ),
            Change::SetPeerRoutes(r) => write!(f, "peer routes {}", list(r)),
            Change::SyncNat(_) => {
                f.write_str("nftables elements (networks, pools, published ports)")
            }
            Change::RemoveNat => f.write_str("nftables table removed"),
            Change::Publish(p) => write!(f, "nftables elements: publish {}", mappings(p)),
        }
    }
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn mappings(ports: &[PortMapping]) -> String {
    ports.iter().map(mapping).collect::<Vec<_>>().join(", ")
}

fn mapping(p: &PortMapping) -> String {
    format!(
        "{}/{} -> {}:{}",
        p.host_port, p.protocol, p.container_ip, p.container_port
    )
}

/// The changes that make `observed` into `desired`, in the order to apply
/// them. Empty when the two agree.
pub fn diff(desired: &NodeState, observed: &NodeState) -> Vec<Change> {
    let mut out = Vec::new();
    let nat = nat_changes(&desired.nat, &observed.nat);
    if let Some(gone) = nat.unpublish {
        out.push(Change::Unpublish(gone));
    }
    let orphans: Vec<Port> = observed
        .ports
        .iter()
        .filter(|(n, _)| !desired.ports.contains_key(*n))
        .map(|(_, p)| p.clone())
        .collect();
    if !orphans.is_empty() {
        out.push(Change::DeletePorts(orphans));
    }
    let stray = stray_routes(desired, observed);
    if !stray.is_empty() {
        out.push(Change::DeleteRoutes(stray));
    }
    for (name, want) in &desired.bridges {
        let why = bridge_faults(want, observed.bridges.get(name));
        if !why.is_empty() {
            let bridge = want.clone();
            out.push(Change::EnsureBridge { bridge, why });
        }
    }
    let missing: Vec<IpNet> = desired
        .blackholes
        .difference(&observed.blackholes)
        .copied()
        .collect();
    if !missing.is_empty() {
        out.push(Change::AddBlackholes(missing));
    }
    for (name, want) in &desired.ports {
        port_changes(want, observed.ports.get(name), &mut out);
    }
    if let Some(peers) = &desired.peer_routes
        && observed.peer_routes.as_ref() != Some(peers)
    {
        out.push(Change::SetPeerRoutes(peers.iter().copied().collect()));
    }
    out.extend(nat.rest);
    out
}

/// Blackholes of blocks no longer owned, and host routes on a wanted veth
/// that its addresses do not explain. (Routes on an unwanted veth go with
/// it.)
fn stray_routes(desired: &NodeState, observed: &NodeState) -> Vec<Route> {
    let mut stray: Vec<Route> = observed
        .blackholes
        .difference(&desired.blackholes)
        .map(|&b| Route::blackhole(b))
        .collect();
    for (name, have) in &observed.ports {
        let Some(want) = desired.ports.get(name) else {
            continue;
        };
        stray.extend(
            have.host_routes
                .difference(&want.host_routes)
                .map(|&dst| Route::on_link(dst, name.clone())),
        );
    }
    stray
}

fn bridge_faults(want: &Bridge, have: Option<&Bridge>) -> Vec<String> {
    let name = &want.name;
    let Some(have) = have else {
        return vec![format!("bridge {name} is missing")];
    };
    let mut why: Vec<String> = want
        .addresses
        .difference(&have.addresses)
        .map(|a| format!("bridge {name} lacks address {a}"))
        .collect();
    if let Some(mtu) = want.mtu
        && have.mtu != Some(mtu)
    {
        let have = have.mtu.map(|m| m.to_string()).unwrap_or_default();
        why.push(format!("bridge {name} has MTU {have}, not {mtu}"));
    }
    if want.up && !have.up {
        why.push(format!("bridge {name} is down"));
    }
    if have.inet.is_some_and(|c| !c.route_localnet) {
        why.push(format!("bridge {name} has route_localnet off"));
    }
    why
}

fn port_changes(want: &Port, have: Option<&Port>, out: &mut Vec<Change>) {
    let name = &want.host.name;
    let Some(have) = have else {
        let mut why = vec![format!("host veth {name} is missing")];
        if let Some(c) = &want.container {
            why.push(format!(
                "container interface {} is missing in netns {} (a veth goes as a pair)",
                c.ifname, c.netns
            ));
        }
        let port = want.clone();
        out.push(Change::CreatePort {
            port,
            replace: false,
            why,
        });
        return;
    };
    // Faults only a new veth mends.
    let mut remake = Vec::new();
    if let Some(bridge) = &want.host.master
        && have.host.master.as_ref() != Some(bridge)
    {
        remake.push(format!("host veth {name} is not a port of bridge {bridge}"));
    }
    if let Some(mac) = &want.host.mac
        && have.host.mac.as_ref() != Some(mac)
    {
        let shown = have.host.mac.as_ref().map(format_mac).unwrap_or_default();
        remake.push(format!(
            "host veth {name} has MAC {shown}, not {}",
            format_mac(mac)
        ));
    }
    if let (Some(w), Some(h)) = (&want.container, &have.container)
        && let Some(mac) = &w.mac
        && h.mac.as_ref() != Some(mac)
    {
        let shown = h.mac.as_ref().map(format_mac).unwrap_or_default();
        remake.push(format!(
            "container interface {} in netns {} has MAC {shown}, not {}",
            w.ifname,
            w.netns,
            format_mac(mac)
        ));
    }
    if let (Some(c), None) = (&want.container, &have.container) {
        remake.push(format!(
            "container interface {} is missing in netns {}",
            c.ifname, c.netns
        ));
    }
    if !remake.is_empty() {
        let port = want.clone();
        out.push(Change::CreatePort {
            port,
            replace: true,
            why: remake,
        });
        return;
    }
    if want.host.up && !have.host.up {
        out.push(Change::SetHostUp(name.clone()));
    }
    let mut routed = Vec::new();
    if want.host.routed
        && let Some(c) = have.host.inet
    {
        for (knob, on) in [("forwarding", c.forwarding), ("proxy_arp", c.proxy_arp)] {
            if !on {
                routed.push(format!("host veth {name} has {knob} off"));
            }
        }
    }
    for dst in want.host_routes.difference(&have.host_routes) {
        routed.push(format!("host route {dst} dev {name} is missing"));
    }
    for (ip, mac) in want.neighbours.difference(&have.neighbours) {
        routed.push(format!(
            "neighbour {ip} lladdr {} dev {name} is missing",
            format_mac(mac)
        ));
    }
    if !routed.is_empty() {
        let mut port = want.clone();
        port.host.index = have.host.index;
        out.push(Change::RoutedHost { port, why: routed });
    }
    if let (Some(w), Some(h)) = (&want.container, &have.container) {
        let ifname = &w.ifname;
        let mut why = Vec::new();
        if w.up && !h.up {
            why.push(format!("container interface {ifname} is down"));
        }
        for a in w.addresses.difference(&h.addresses) {
            why.push(format!("container interface {ifname} lacks address {a}"));
        }
        let routes: BTreeSet<_> = h.routes.iter().map(|r| (r.dst, r.via)).collect();
        for r in w
            .routes
            .iter()
            .filter(|r| !routes.contains(&(r.dst, r.via)))
        {
            why.push(format!("container route {r} dev {ifname} is missing"));
        }
        if !why.is_empty() {
            let port = want.clone();
            out.push(Change::Container { port, why });
        }
    }
}

/// NAT changes: the table as a whole when its networks, pools or reach
/// differ (or it must go); published ports element by element otherwise.
struct NatChanges {
    unpublish: Option<Vec<PortMapping>>,
    rest: Vec<Change>,
}

fn nat_changes(want: &NatState, have: &NatState) -> NatChanges {
    let mut c = NatChanges {
        unpublish: None,
        rest: Vec::new(),
    };
    if want == have {
        return c;
    }
    let skeleton_differs =
        want.networks != have.networks || want.pools != have.pools || want.reach != have.reach;
    if skeleton_differs {
        if *want == NatState::default() {
            c.rest.push(Change::RemoveNat);
        } else {
            c.rest.push(Change::SyncNat(want.clone()));
        }
        return c;
    }
    let gone: Vec<PortMapping> = have
        .ports
        .iter()
        .filter(|p| !want.ports.contains(p))
        .copied()
        .collect();
    let new: Vec<PortMapping> = want
        .ports
        .iter()
        .filter(|p| !have.ports.contains(p))
        .copied()
        .collect();
    if !gone.is_empty() {
        c.unpublish = Some(gone);
    }
    if !new.is_empty() {
        c.rest.push(Change::Publish(new));
    }
    c
}
