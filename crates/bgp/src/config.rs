//! What the speaker and each peer are told: plain values, checked here so
//! that a bad one is refused by name before any socket opens.

use crate::Error;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// The speaker's own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeakerConfig {
    /// Our AS number (4-byte numbers welcome).
    pub local_as: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// Hold time we offer, seconds (0, or 3..=65535); the session uses the
    /// smaller of ours and the peer's, and keepalives go every third of it.
    pub hold_time: u16,
    /// Graceful restart (RFC 4724): the restart time we ask peers to keep
    /// our routes for when the daemon restarts; `None` offers no graceful
    /// restart.
    pub graceful_restart: Option<u16>,
    /// Where passive peers connect to; `None` accepts no connections.
    pub listen: Option<SocketAddr>,
    /// The next hop of IPv4 routes when a peer sets none: the node's
    /// underlay address. `None`: the session's own local address.
    pub next_hop_v4: Option<Ipv4Addr>,
    /// The next hop of IPv6 routes when a peer sets none; over an IPv4
    /// session there is no other way to know a global IPv6 next hop, and
    /// IPv6 routes are not sent to such a peer without one.
    pub next_hop_v6: Option<Ipv6Addr>,
    /// Communities on every route, unless a peer sets its own.
    pub communities: Vec<(u16, u16)>,
    /// Reconnect backoff of active peers: first wait, doubled per failure
    /// up to `connect_retry_max`, with jitter.
    pub connect_retry: Duration,
    /// The longest reconnect wait.
    pub connect_retry_max: Duration,
    /// How long to wait for a TCP connection and for the peer's OPEN.
    pub open_timeout: Duration,
}

impl SpeakerConfig {
    /// Defaults for AS `local_as` with identifier `router_id`: hold time 90,
    /// graceful restart 120 s, no listener, backoff 1 s → 60 s.
    pub fn new(local_as: u32, router_id: Ipv4Addr) -> Self {
        SpeakerConfig {
            local_as,
            router_id,
            hold_time: 90,
            graceful_restart: Some(120),
            listen: None,
            next_hop_v4: None,
            next_hop_v6: None,
            communities: Vec::new(),
            connect_retry: Duration::from_secs(1),
            connect_retry_max: Duration::from_secs(60),
            open_timeout: Duration::from_secs(30),
        }
    }

    /// Checks every field; the error names the first wrong one.
    pub fn validate(&self) -> Result<(), Error> {
        if self.local_as == 0 || self.local_as == u32::from(crate::wire::AS_TRANS) {
            return Err(Error::invalid(
                "local_as",
                self.local_as,
                "AS 0 and AS_TRANS 23456 are reserved",
            ));
        }
        if self.router_id.is_unspecified() {
            return Err(Error::invalid(
                "router_id",
                self.router_id,
                "must not be 0.0.0.0",
            ));
        }
        hold("hold_time", self.hold_time)?;
        if self.graceful_restart.is_some_and(|t| t > 4095) {
            return Err(Error::invalid(
                "graceful_restart",
                self.graceful_restart.unwrap_or(0),
                "the restart time has 12 bits: at most 4095 seconds",
            ));
        }
        if self.connect_retry.is_zero() || self.connect_retry > self.connect_retry_max {
            return Err(Error::invalid(
                "connect_retry",
                format!("{:?}", self.connect_retry),
                "must be above zero and at most connect_retry_max",
            ));
        }
        Ok(())
    }
}

/// Parses a standard community `ASN:VALUE` (each half 0..=65535); the
/// error says what is wrong, for the caller to prefix with the field and
/// value (the config file and the gRPC edge both do).
pub fn parse_community(s: &str) -> Result<(u16, u16), &'static str> {
    let (a, v) = s
        .split_once(':')
        .ok_or("a community is ASN:VALUE, e.g. 65000:100")?;
    let half = |x: &str| {
        x.parse::<u16>()
            .map_err(|_| "each half of a community is 0..=65535")
    };
    Ok((half(a)?, half(v)?))
}

fn hold(field: &str, t: u16) -> Result<(), Error> {
    if t == 1 || t == 2 {
        return Err(Error::invalid(
            field,
            t,
            "must be 0 or at least 3 seconds (RFC 4271)",
        ));
    }
    Ok(())
}

/// One peer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PeerConfig {
    /// The peer's address (its identity: one session per address).
    pub address: IpAddr,
    /// Its TCP port (179).
    pub port: u16,
    /// Its AS number.
    pub remote_as: u32,
    /// Wait for the peer to connect instead of connecting to it. Passive
    /// peers are accepted on the speaker's listener only; an active peer's
    /// incoming connections are refused (no collision to resolve).
    pub passive: bool,
    /// The address to connect from (the underlay address on the peer's
    /// subnet); `None` lets the kernel choose.
    pub local_address: Option<IpAddr>,
    /// The next hop of IPv4 routes to this peer, instead of the speaker's.
    pub next_hop_v4: Option<Ipv4Addr>,
    /// The next hop of IPv6 routes to this peer, instead of the speaker's.
    pub next_hop_v6: Option<Ipv6Addr>,
    /// Communities on routes to this peer, instead of the speaker's.
    pub communities: Option<Vec<(u16, u16)>>,
    /// Hold time offered to this peer, instead of the speaker's.
    pub hold_time: Option<u16>,
    /// TCP MD5 signature key (RFC 2385), at most 80 bytes. Never
    /// serialized: whoever keeps a peer keeps its key apart, on purpose.
    #[serde(skip_serializing, default)]
    pub md5_password: Option<String>,
}

impl PeerConfig {
    /// An active peer at `address` (port 179) in AS `remote_as`.
    pub fn new(address: IpAddr, remote_as: u32) -> Self {
        PeerConfig {
            address,
            port: 179,
            remote_as,
            passive: false,
            local_address: None,
            next_hop_v4: None,
            next_hop_v6: None,
            communities: None,
            hold_time: None,
            md5_password: None,
        }
    }

    /// Checks every field; the error names the first wrong one.
    pub fn validate(&self) -> Result<(), Error> {
        let a = self.address;
        if a.is_unspecified() || a.is_multicast() || matches!(a, IpAddr::V4(v) if v.is_broadcast())
        {
            return Err(Error::invalid(
                "address",
                a,
                "a peer needs a unicast address",
            ));
        }
        if self.port == 0 {
            return Err(Error::invalid("port", self.port, "must not be 0"));
        }
        if self.remote_as == 0 || self.remote_as == u32::from(crate::wire::AS_TRANS) {
            return Err(Error::invalid(
                "remote_as",
                self.remote_as,
                "AS 0 and AS_TRANS 23456 are reserved",
            ));
        }
        if let Some(l) = self.local_address
            && (l.is_ipv4() != a.is_ipv4() || l.is_unspecified() || l.is_multicast())
        {
            return Err(Error::invalid(
                "local_address",
                l,
                "must be a unicast address of the peer address's family",
            ));
        }
        if let Some(t) = self.hold_time {
            hold("hold_time", t)?;
        }
        if let Some(nh) = self.next_hop_v4
            && (nh.is_unspecified() || nh.is_multicast() || nh.is_broadcast())
        {
            return Err(Error::invalid(
                "next_hop_v4",
                nh,
                "must be a unicast address",
            ));
        }
        if let Some(nh) = self.next_hop_v6
            && (nh.is_unspecified() || nh.is_multicast() || nh.is_loopback())
        {
            return Err(Error::invalid(
                "next_hop_v6",
                nh,
                "must be a unicast address",
            ));
        }
        if let Some(p) = &self.md5_password
            && (p.is_empty() || p.len() > crate::md5::MAX_KEY)
        {
            return Err(Error::invalid(
                "md5_password",
                format!("{} bytes", p.len()),
                "must be 1 to 80 bytes",
            ));
        }
        Ok(())
    }
}
