//! What netctl prints of the BGP service's answers, as plain serialisable
//! structs: a peer's configuration flattened beside its session's state (as
//! [`crate::view::NetworkView`] flattens a spec), snake_case names as the
//! proto spells them, numbers as the API carries them (seconds of uptime;
//! tables show them for people). Field names are part of netctl's
//! interface: rename none.

use serde::Serialize;
use trellis_proto::v1;

/// The port the API means by 0.
const BGP_PORT: u32 = 179;

/// A peer and its session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerView {
    /// The peer's address (its identity).
    pub address: String,
    /// Its AS number.
    pub remote_as: u32,
    /// Its TCP port.
    pub port: u32,
    /// Whether the node waits for the peer to connect.
    pub passive: bool,
    /// The address sessions are opened from; empty: the kernel's choice.
    pub local_address: String,
    /// The next hop of IPv4 routes to the peer; empty: the node's.
    pub next_hop_v4: String,
    /// The next hop of IPv6 routes to the peer; empty: the node's.
    pub next_hop_v6: String,
    /// Communities on routes to the peer; empty: the node's.
    pub communities: Vec<String>,
    /// The hold time offered to the peer; `null`: the node's.
    pub hold_time: Option<u32>,
    /// Whether a TCP MD5 key is set (the key itself is never shown).
    pub md5: bool,
    /// `config` (trellisd's config file) or `api` (added with `bgp add`).
    pub source: String,
    /// Idle, Connect, Active, OpenSent, OpenConfirm or Established.
    pub state: String,
    /// Seconds the session has been Established; 0 when it is not.
    pub uptime_seconds: f64,
    /// How many prefixes the peer has from the node now.
    pub advertised: u32,
    /// What the current session agreed; `null` when not Established.
    pub negotiated: Option<NegotiatedView>,
    /// Message and event counters since trellisd started.
    pub counters: CountersView,
    /// Why the last session ended or the last connection failed.
    pub last_error: String,
    /// Why some routes are not sent (e.g. no IPv6 next hop).
    pub warnings: Vec<String>,
}

impl From<v1::BgpPeer> for PeerView {
    fn from(p: v1::BgpPeer) -> Self {
        let c = p.config.unwrap_or_default();
        PeerView {
            address: c.address,
            remote_as: c.remote_as,
            port: if c.port == 0 { BGP_PORT } else { c.port },
            passive: c.passive,
            local_address: c.local_address,
            next_hop_v4: c.next_hop_v4,
            next_hop_v6: c.next_hop_v6,
            communities: c.communities,
            hold_time: c.hold_time,
            md5: p.md5,
            source: p.source,
            state: p.state,
            uptime_seconds: p.uptime_seconds,
            advertised: p.advertised,
            negotiated: p.negotiated.map(Into::into),
            counters: p.counters.unwrap_or_default().into(),
            last_error: p.last_error,
            warnings: p.warnings,
        }
    }
}

impl PeerView {
    /// Whether the session is up.
    pub fn established(&self) -> bool {
        self.state == "Established"
    }
}

/// What a session agreed in its OPEN messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NegotiatedView {
    /// The AS the peer announced.
    pub peer_as: u32,
    /// The peer's BGP identifier.
    pub peer_router_id: String,
    /// The hold time in force, in seconds (the lower of both offers).
    pub hold_time: u32,
    /// The address families both sides support: `ipv4-unicast`,
    /// `ipv6-unicast`.
    pub families: Vec<String>,
    /// Whether both sides speak 4-byte AS numbers (RFC 6793).
    pub four_octet_as: bool,
    /// Whether graceful restart was agreed (RFC 4724).
    pub graceful_restart: bool,
    /// Whether the peer may ask for our routes again (RFC 2918).
    pub route_refresh: bool,
    /// The node's address on the session.
    pub local_address: String,
    /// The next hop of each family's routes, `family=address`.
    pub next_hops: Vec<String>,
}

impl From<v1::BgpNegotiated> for NegotiatedView {
    fn from(n: v1::BgpNegotiated) -> Self {
        NegotiatedView {
            peer_as: n.peer_as,
            peer_router_id: n.peer_router_id,
            hold_time: n.hold_time,
            families: n.families,
            four_octet_as: n.four_octet_as,
            graceful_restart: n.graceful_restart,
            route_refresh: n.route_refresh,
            local_address: n.local_address,
            next_hops: n.next_hops,
        }
    }
}

/// A peer's counters since trellisd started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CountersView {
    /// OPEN messages received.
    pub opens_in: u64,
    /// OPEN messages sent.
    pub opens_out: u64,
    /// UPDATE messages received.
    pub updates_in: u64,
    /// UPDATE messages sent.
    pub updates_out: u64,
    /// KEEPALIVE messages received.
    pub keepalives_in: u64,
    /// KEEPALIVE messages sent.
    pub keepalives_out: u64,
    /// NOTIFICATION messages received.
    pub notifications_in: u64,
    /// NOTIFICATION messages sent.
    pub notifications_out: u64,
    /// ROUTE-REFRESH messages received.
    pub route_refreshes_in: u64,
    /// Prefixes announced to the peer.
    pub prefixes_announced: u64,
    /// Prefixes withdrawn from the peer.
    pub prefixes_withdrawn: u64,
    /// UPDATEs from the peer treated as withdrawals (RFC 7606).
    pub treat_as_withdraw: u64,
    /// Malformed attributes from the peer discarded (RFC 7606).
    pub attributes_discarded: u64,
    /// Times a session reached Established.
    pub established: u64,
    /// Times the hold timer expired.
    pub hold_timer_expired: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
}

impl From<v1::BgpCounters> for CountersView {
    fn from(c: v1::BgpCounters) -> Self {
        CountersView {
            opens_in: c.opens_in,
            opens_out: c.opens_out,
            updates_in: c.updates_in,
            updates_out: c.updates_out,
            keepalives_in: c.keepalives_in,
            keepalives_out: c.keepalives_out,
            notifications_in: c.notifications_in,
            notifications_out: c.notifications_out,
            route_refreshes_in: c.route_refreshes_in,
            prefixes_announced: c.prefixes_announced,
            prefixes_withdrawn: c.prefixes_withdrawn,
            treat_as_withdraw: c.treat_as_withdraw,
            attributes_discarded: c.attributes_discarded,
            established: c.established,
            hold_timer_expired: c.hold_timer_expired,
            connect_failures: c.connect_failures,
        }
    }
}

/// The answer of `bgp routes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoutesView {
    /// The prefixes the node originates now (what every peer should have).
    pub exported: Vec<String>,
    /// What each peer has from the node now.
    pub peers: Vec<PeerRoutesView>,
}

impl From<v1::ListBgpRoutesResponse> for RoutesView {
    fn from(r: v1::ListBgpRoutesResponse) -> Self {
        RoutesView {
            exported: r.exported,
            peers: r.peers.into_iter().map(Into::into).collect(),
        }
    }
}

/// The routes one peer has from the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerRoutesView {
    /// The peer's address.
    pub peer: String,
    /// Its routes.
    pub routes: Vec<RouteView>,
}

impl From<v1::BgpPeerRoutes> for PeerRoutesView {
    fn from(p: v1::BgpPeerRoutes) -> Self {
        PeerRoutesView {
            peer: p.peer,
            routes: p.routes.into_iter().map(Into::into).collect(),
        }
    }
}

/// One route sent to a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteView {
    /// Its prefix.
    pub prefix: String,
    /// Its next hop.
    pub next_hop: String,
    /// Its communities, `ASN:VALUE`.
    pub communities: Vec<String>,
}

impl From<v1::BgpRoute> for RouteView {
    fn from(r: v1::BgpRoute) -> Self {
        RouteView {
            prefix: r.prefix,
            next_hop: r.next_hop,
            communities: r.communities,
        }
    }
}
