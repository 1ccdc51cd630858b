//! BGP export: a native, export-only BGP-4 speaker (RFC 4271).
//!
//! The physical network learns where containers live by BGP (Calico's model):
//! each node announces its address blocks, and the subnets of its routable
//! bridge networks, to the routers it peers with. Calico gets there by
//! rewriting BIRD's configuration and reloading it on every change; this
//! crate speaks BGP itself and sends only differences.
//!
//! ```text
//!  owner ──set_routes(whole set)──▶ Speaker ──watch──▶ one task per peer
//!                                     │                  └─ session: OPEN, then
//!                                     └─ listener ──▶       diff → UPDATEs
//! ```
//!
//! Design decisions:
//!
//! * **Values in, values out.** The owner says "this is the whole set of
//!   prefixes I originate now" ([`RouteExporter::set_routes`]); each session
//!   sends its peer the difference from what that peer has. The speaker never
//!   reaches into the agent; the daemon wires the two together.
//! * **Export only.** Nothing received is kept or installed: received
//!   UPDATEs are checked (RFC 7606, [`wire::check_update`]) so that a broken
//!   one gets the right NOTIFICATION or is counted and ignored.
//! * **The codec is netgauze-bgp-pkt, pinned exactly**, with its sharp edges
//!   guarded in [`wire`]: framing, the extended-length flag, the 4096-byte cap.
//! * **Capabilities**: 4-byte AS (RFC 6793), multiprotocol IPv4 and IPv6
//!   unicast (RFC 4760, the IPv6 next hop set explicitly), graceful restart
//!   with End-of-RIB (RFC 4724), route refresh answered (RFC 2918); optional
//!   TCP MD5 (RFC 2385, [`md5`], the crate's one `unsafe`).
//! * **Every timer is `tokio::time`**, and a session runs over any stream, so
//!   tests drive sessions against a scripted peer with paused time.
//! * **A daemon restart keeps traffic flowing**: [`Stop::Restart`] closes
//!   sessions without a NOTIFICATION so that routers keep our routes as stale
//!   (the kernel's routes outlive the daemon, so the forwarding state bit is
//!   set), and a new session sends nothing until the owner has given the
//!   export set, then the table and End-of-RIB.

pub mod config;
pub mod md5;
mod peer;
pub mod session;
mod speaker;
pub mod status;
pub mod wire;

pub use config::{PeerConfig, SpeakerConfig};
pub use session::Stop;
pub use speaker::Speaker;
pub use status::{Counters, Negotiated, PeerStatus, SessionState};
pub use wire::Family;

use ipnet::IpNet;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// The seam between the node and BGP: the node says what it originates and
/// reads how its peers are; mocked in the daemon's unit tests.
#[mockall::automock]
pub trait RouteExporter: Send + Sync {
    /// The whole set of prefixes originated now.
    fn set_routes(&self, prefixes: BTreeSet<IpNet>);
    /// Every peer's status.
    fn peers(&self) -> Vec<PeerStatus>;
}

/// What the speaker refuses, or what failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is wrong.
    #[error("{field} {value}: {why}")]
    Invalid {
        /// The field, as the configuration names it.
        field: String,
        /// The value given.
        value: String,
        /// What is wrong with it.
        why: String,
    },
    /// A peer with this address exists already.
    #[error("peer {0} exists already")]
    Exists(IpAddr),
    /// No peer has this address.
    #[error("no peer {0}")]
    NotFound(IpAddr),
    /// The request cannot be done in the speaker's present configuration.
    #[error("{0}")]
    Refused(String),
    /// A socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn invalid(field: &str, value: impl std::fmt::Display, why: &str) -> Self {
        Error::Invalid {
            field: field.into(),
            value: value.to_string(),
            why: why.into(),
        }
    }

    pub(crate) fn io(what: String, source: std::io::Error) -> Self {
        Error::Io { what, source }
    }
}
