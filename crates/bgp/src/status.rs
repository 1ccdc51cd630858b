//! What a peer's session is doing, for `ListPeers`, metrics and tests.

use crate::config::PeerConfig;
use crate::wire::{Family, PeerOpen};
use ipnet::IpNet;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::time::Instant;

/// The session's state (RFC 4271 §8.2.2's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum SessionState {
    /// Not connected; waiting to retry (active) or for the peer (passive).
    Idle,
    /// Connecting.
    Connect,
    /// Passive: waiting for the peer to connect.
    Active,
    /// Our OPEN sent, waiting for the peer's.
    OpenSent,
    /// OPENs exchanged, waiting for the first KEEPALIVE.
    OpenConfirm,
    /// Up: routes flow.
    Established,
}

impl std::fmt::Display for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Message and route counters of one peer, since the speaker started.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// OPENs received.
    pub opens_in: u64,
    /// OPENs sent.
    pub opens_out: u64,
    /// UPDATEs received.
    pub updates_in: u64,
    /// UPDATEs sent (End-of-RIB included).
    pub updates_out: u64,
    /// KEEPALIVEs received.
    pub keepalives_in: u64,
    /// KEEPALIVEs sent.
    pub keepalives_out: u64,
    /// NOTIFICATIONs received.
    pub notifications_in: u64,
    /// NOTIFICATIONs sent.
    pub notifications_out: u64,
    /// ROUTE-REFRESHes received (and answered).
    pub route_refreshes_in: u64,
    /// Prefixes announced (one per prefix per announcement).
    pub prefixes_announced: u64,
    /// Prefixes withdrawn.
    pub prefixes_withdrawn: u64,
    /// Received UPDATEs treated as withdraw (RFC 7606).
    pub treat_as_withdraw: u64,
    /// Received attributes discarded (RFC 7606).
    pub attributes_discarded: u64,
    /// Times the session reached Established.
    pub established: u64,
    /// Times the session ended because the peer fell silent.
    pub hold_timer_expired: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
}

/// What was agreed with the peer for the current session.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Negotiated {
    /// The peer's OPEN.
    pub peer: PeerOpen,
    /// The hold time in use (the smaller offer).
    pub hold_time: u16,
    /// The families both offered.
    pub families: Vec<Family>,
    /// Whether AS numbers are 4 bytes on this session.
    pub four_octet_as: bool,
    /// Whether both offered graceful restart.
    pub graceful_restart: bool,
    /// Our address on this session.
    pub local_address: std::net::IpAddr,
    /// The next hop of each family's routes (a family without one is not
    /// sent: see the warnings).
    pub next_hops: Vec<(Family, std::net::IpAddr)>,
    /// The communities on every route.
    pub communities: Vec<(u16, u16)>,
}

/// One peer, as seen now.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerStatus {
    /// Its configuration.
    pub config: PeerConfig,
    /// The session's state.
    pub state: SessionState,
    /// When it last reached Established (while it still is).
    pub up_since: Option<Instant>,
    /// What the current session agreed.
    pub negotiated: Option<Negotiated>,
    /// Counters since the speaker started.
    pub counters: Counters,
    /// Why the last session ended or the last connect failed.
    pub last_error: Option<String>,
    /// Why some routes are not sent (e.g. no IPv6 next hop).
    pub warnings: Vec<String>,
    /// The prefixes the peer has from us now.
    pub advertised: BTreeSet<IpNet>,
}

impl PeerStatus {
    pub(crate) fn new(config: PeerConfig) -> Self {
        PeerStatus {
            state: if config.passive {
                SessionState::Active
            } else {
                SessionState::Idle
            },
            config,
            up_since: None,
            negotiated: None,
            counters: Counters::default(),
            last_error: None,
            warnings: Vec::new(),
            advertised: BTreeSet::new(),
        }
    }

    /// How long the session has been Established, if it is.
    pub fn uptime(&self) -> Option<Duration> {
        self.up_since.map(|t| t.elapsed())
    }
}
