//! The `trellis.v1.Bgp` service: the node's BGP peers, over whatever holds
//! them ([`BgpCore`]: trellisd's speaker with its config-file peers and the
//! peers kept in its store).
//!
//! As everywhere in this crate, nothing is decided here but who may call
//! ([`crate::access`]: the admin changes peers, the controller may list
//! them, a node nothing): fields are converted (each refusal names its
//! field), one core method is called, its error classified onto a status
//! code. A node without BGP configured answers
//! FAILED_PRECONDITION saying how to turn it on.

use crate::access::{BgpMethod, Gate};
use crate::errors::answer;
use crate::identity::TcpClients;
use ipnet::IpNet;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use tonic::service::Routes;
use tonic::{Code, Request, Response, Status};
use trellis_bgp::{Error, PeerConfig, PeerStatus};
use trellis_proto::v1 as pb;

/// One peer as the API shows it.
#[derive(Debug, Clone)]
pub struct PeerView {
    /// The speaker's view of it.
    pub status: PeerStatus,
    /// Whether it comes from trellisd's config file (and is changed there).
    pub from_config: bool,
}

/// What the BGP service answers from.
#[tonic::async_trait]
pub trait BgpCore: Send + Sync + 'static {
    /// Adds (and keeps) a peer.
    async fn add_peer(&self, peer: PeerConfig) -> Result<PeerView, Error>;
    /// Removes a peer.
    async fn remove_peer(&self, address: IpAddr) -> Result<(), Error>;
    /// Every peer.
    fn peers(&self) -> Vec<PeerView>;
    /// The prefixes the node originates now (`None` before it is known).
    fn exported(&self) -> Option<BTreeSet<IpNet>>;
}

/// The gRPC service; `None` when BGP is not configured.
#[derive(Clone)]
pub struct BgpService {
    core: Option<Arc<dyn BgpCore>>,
    gate: Gate,
}

impl BgpService {
    /// The service over `core` (`None`: BGP not configured on this node),
    /// to which a TCP caller without a client certificate is the admin.
    pub fn new(core: Option<Arc<dyn BgpCore>>) -> Self {
        BgpService {
            core,
            gate: Gate::default(),
        }
    }

    /// The service, with TCP callers without a client certificate treated
    /// as `tcp` says (as [`crate::AgentService::tcp_clients`]).
    pub fn tcp_clients(mut self, tcp: TcpClients) -> Self {
        self.gate.tcp_clients = tcp;
        self
    }

    /// `routes` with this service added.
    pub fn route(self, routes: Routes) -> Routes {
        routes.add_service(pb::BgpServer::new(self))
    }

    fn core(&self) -> Result<&Arc<dyn BgpCore>, Status> {
        self.core.as_ref().ok_or_else(|| {
            Status::failed_precondition(
                "BGP is not configured on this node: set [bgp] asn (and router_id) in trellisd's config file",
            )
        })
    }
}

/// The status of a speaker error.
pub fn bgp_status(e: Error) -> Status {
    let code = match &e {
        Error::Invalid { .. } => Code::InvalidArgument,
        Error::Exists(_) => Code::AlreadyExists,
        Error::NotFound(_) => Code::NotFound,
        Error::Refused(_) => Code::FailedPrecondition,
        Error::Io { .. } => Code::Unavailable,
    };
    answer(code, &e)
}

fn bad(field: &str, value: &str, why: &str) -> Status {
    Status::invalid_argument(format!("{field} {value:?}: {why}"))
}

fn ip(field: &str, s: &str) -> Result<IpAddr, Status> {
    s.parse::<IpAddr>()
        .map_err(|_| bad(field, s, "not an IP address"))
}

fn opt<T: std::str::FromStr>(field: &str, s: &str, what: &str) -> Result<Option<T>, Status> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse::<T>()
        .map(Some)
        .map_err(|_| bad(field, s, &format!("not an {what} address")))
}

/// Parses `asn:value` (each 0..=65535).
pub fn community(field: &str, s: &str) -> Result<(u16, u16), Status> {
    trellis_bgp::config::parse_community(s).map_err(|why| bad(field, s, why))
}

/// A peer's configuration from the API (every field checked by name).
pub fn peer_config(p: Option<pb::BgpPeerConfig>) -> Result<PeerConfig, Status> {
    let p = p.ok_or_else(|| Status::invalid_argument("peer: missing"))?;
    let port = match p.port {
        0 => 179,
        n => u16::try_from(n)
            .map_err(|_| bad("peer.port", &n.to_string(), "a TCP port is 1..=65535"))?,
    };
    let hold_time = p
        .hold_time
        .map(|h| {
            u16::try_from(h).map_err(|_| bad("peer.hold_time", &h.to_string(), "at most 65535"))
        })
        .transpose()?;
    let communities = if p.communities.is_empty() {
        None
    } else {
        Some(
            p.communities
                .iter()
                .map(|c| community("peer.communities", c))
                .collect::<Result<Vec<_>, _>>()?,
        )
    };
    let cfg = PeerConfig {
        address: ip("peer.address", &p.address)?,
        port,
        remote_as: p.remote_as,
        passive: p.passive,
        local_address: opt::<IpAddr>("peer.local_address", &p.local_address, "IP")?,
        next_hop_v4: opt::<Ipv4Addr>("peer.next_hop_v4", &p.next_hop_v4, "IPv4")?,
        next_hop_v6: opt::<Ipv6Addr>("peer.next_hop_v6", &p.next_hop_v6, "IPv6")?,
        communities,
        hold_time,
        md5_password: (!p.md5_password.is_empty()).then_some(p.md5_password),
    };
    cfg.validate()
        .map_err(|e| Status::invalid_argument(format!("peer.{e}")))?;
    Ok(cfg)
}

fn text<T: ToString>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

fn config_out(c: &PeerConfig) -> pb::BgpPeerConfig {
    pb::BgpPeerConfig {
        address: c.address.to_string(),
        remote_as: c.remote_as,
        port: u32::from(c.port),
        passive: c.passive,
        local_address: text(c.local_address),
        next_hop_v4: text(c.next_hop_v4),
        next_hop_v6: text(c.next_hop_v6),
        communities: c
            .communities
            .iter()
            .flatten()
            .map(|(a, v)| format!("{a}:{v}"))
            .collect(),
        hold_time: c.hold_time.map(u32::from),
        md5_password: String::new(),
    }
}

/// A peer as the API shows it.
pub fn peer_out(v: &PeerView) -> pb::BgpPeer {
    let s = &v.status;
    let c = &s.counters;
    pb::BgpPeer {
        config: Some(config_out(&s.config)),
        md5: s.config.md5_password.is_some(),
        source: if v.from_config { "config" } else { "api" }.into(),
        state: s.state.to_string(),
        uptime_seconds: s.uptime().map_or(0.0, |d| d.as_secs_f64()),
        negotiated: s.negotiated.as_ref().map(|n| pb::BgpNegotiated {
            peer_as: n.peer.asn,
            peer_router_id: n.peer.router_id.to_string(),
            hold_time: u32::from(n.hold_time),
            families: n.families.iter().map(ToString::to_string).collect(),
            four_octet_as: n.four_octet_as,
            graceful_restart: n.graceful_restart,
            route_refresh: n.peer.route_refresh,
            local_address: n.local_address.to_string(),
            next_hops: n
                .next_hops
                .iter()
                .map(|(f, a)| format!("{f}={a}"))
                .collect(),
        }),
        counters: Some(pb::BgpCounters {
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
        }),
        last_error: s.last_error.clone().unwrap_or_default(),
        warnings: s.warnings.clone(),
        advertised: s.advertised.len() as u32,
    }
}

fn routes_out(s: &PeerStatus) -> pb::BgpPeerRoutes {
    let (hops, communities): (Vec<_>, Vec<String>) = match &s.negotiated {
        Some(n) => (
            n.next_hops.clone(),
            n.communities
                .iter()
                .map(|(a, v)| format!("{a}:{v}"))
                .collect(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    pb::BgpPeerRoutes {
        peer: s.config.address.to_string(),
        routes: s
            .advertised
            .iter()
            .map(|p| pb::BgpRoute {
                prefix: p.to_string(),
                next_hop: hops
                    .iter()
                    .find(|(f, _)| *f == trellis_bgp::Family::of(p))
                    .map(|(_, a)| a.to_string())
                    .unwrap_or_default(),
                communities: communities.clone(),
            })
            .collect(),
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl pb::Bgp for BgpService {
    async fn add_peer(&self, req: Request<pb::AddBgpPeerRequest>) -> Reply<pb::BgpPeer> {
        self.gate.admit(&req, BgpMethod::AddPeer)?;
        let core = self.core()?;
        let cfg = peer_config(req.into_inner().peer)?;
        let view = core.add_peer(cfg).await.map_err(bgp_status)?;
        Ok(Response::new(peer_out(&view)))
    }

    async fn remove_peer(
        &self,
        req: Request<pb::RemoveBgpPeerRequest>,
    ) -> Reply<pb::RemoveBgpPeerResponse> {
        self.gate.admit(&req, BgpMethod::RemovePeer)?;
        let core = self.core()?;
        let address = ip("address", &req.into_inner().address)?;
        core.remove_peer(address).await.map_err(bgp_status)?;
        Ok(Response::new(pb::RemoveBgpPeerResponse {}))
    }

    async fn list_peers(
        &self,
        req: Request<pb::ListBgpPeersRequest>,
    ) -> Reply<pb::ListBgpPeersResponse> {
        self.gate.admit(&req, BgpMethod::ListPeers)?;
        let core = self.core()?;
        Ok(Response::new(pb::ListBgpPeersResponse {
            peers: core.peers().iter().map(peer_out).collect(),
        }))
    }

    async fn list_routes(
        &self,
        req: Request<pb::ListBgpRoutesRequest>,
    ) -> Reply<pb::ListBgpRoutesResponse> {
        self.gate.admit(&req, BgpMethod::ListRoutes)?;
        let core = self.core()?;
        let want = req.into_inner().peer;
        let only = if want.is_empty() {
            None
        } else {
            Some(ip("peer", &want)?)
        };
        let peers = core.peers();
        if let Some(a) = only
            && !peers.iter().any(|p| p.status.config.address == a)
        {
            return Err(bgp_status(Error::NotFound(a)));
        }
        Ok(Response::new(pb::ListBgpRoutesResponse {
            exported: core
                .exported()
                .iter()
                .flatten()
                .map(ToString::to_string)
                .collect(),
            peers: peers
                .iter()
                .filter(|p| only.is_none_or(|a| p.status.config.address == a))
                .map(|p| routes_out(&p.status))
                .collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(f: impl FnOnce(&mut pb::BgpPeerConfig)) -> Result<PeerConfig, Status> {
        let mut p = pb::BgpPeerConfig {
            address: "10.99.0.2".into(),
            remote_as: 65000,
            ..Default::default()
        };
        f(&mut p);
        peer_config(Some(p))
    }

    #[test]
    fn a_peer_config_converts_with_defaults() {
        let c = cfg(|_| {}).unwrap();
        assert_eq!(c.port, 179);
        assert_eq!(c.communities, None);
        assert_eq!(c.hold_time, None);
        let c = cfg(|p| {
            p.communities = vec!["65000:100".into()];
            p.hold_time = Some(9);
            p.next_hop_v6 = "fd00::1".into();
        })
        .unwrap();
        assert_eq!(c.communities, Some(vec![(65000, 100)]));
        assert_eq!(c.hold_time, Some(9));
    }

    #[test]
    fn each_bad_field_is_named() {
        type Edit = Box<dyn FnOnce(&mut pb::BgpPeerConfig)>;
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|p| p.address = "nope".into()),
                "peer.address \"nope\"",
            ),
            (Box::new(|p| p.port = 70000), "peer.port \"70000\""),
            (Box::new(|p| p.hold_time = Some(2)), "peer.hold_time 2"),
            (
                Box::new(|p| p.communities = vec!["65000".into()]),
                "peer.communities \"65000\"",
            ),
            (
                Box::new(|p| p.communities = vec!["65000:70000".into()]),
                "peer.communities",
            ),
            (
                Box::new(|p| p.next_hop_v4 = "fd00::1".into()),
                "peer.next_hop_v4 \"fd00::1\"",
            ),
            (Box::new(|p| p.remote_as = 0), "peer.remote_as 0"),
            (
                Box::new(|p| p.address = "0.0.0.0".into()),
                "peer.address 0.0.0.0",
            ),
            (
                Box::new(|p| p.local_address = "fd00::1".into()),
                "peer.local_address fd00::1",
            ),
        ];
        for (f, want) in cases {
            let e = cfg(f).unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument);
            assert!(
                e.message().starts_with(want),
                "{} does not start with {want}",
                e.message()
            );
        }
        let e = peer_config(None).unwrap_err();
        assert_eq!(e.message(), "peer: missing");
    }

    #[test]
    fn errors_map_to_codes() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(bgp_status(Error::Exists(a)).code(), Code::AlreadyExists);
        assert_eq!(bgp_status(Error::NotFound(a)).code(), Code::NotFound);
        assert_eq!(
            bgp_status(Error::Refused("x".into())).code(),
            Code::FailedPrecondition
        );
    }
}
