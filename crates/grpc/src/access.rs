//! Who may call which method of a node's gRPC API — `trellis.v1.Agent` and
//! `trellis.v1.Bgp`, served by trellisd — one table per service
//! ([`agent_access`], [`bgp_access`]), checked by [`Gate::admit`] before a
//! request is converted.
//!
//! The rule: **the admin may do everything; the controller may only read;
//! no node may call another node.** The controller's identity
//! (`spiffe://trellis/controller`) reads a node to show its endpoints
//! through one `netctl --controller` and to compare the node's own IPAM
//! with the block map; nothing it does through a node's API changes the
//! node. A node needs nothing of another node's API (what it needs comes
//! from the controller), so a node's certificate, which the same CA signed,
//! is refused: the certificate of one node that leaks opens no other. So:
//!
//! | who | `trellis.v1.Agent` | `trellis.v1.Bgp` |
//! |---|---|---|
//! | admin only | CreateNetwork, DeleteNetwork, Attach, Detach, GarbageCollect | AddPeer, RemovePeer |
//! | admin or the controller | GetNetwork, ListNetworks, GetEndpoint, ListEndpoints, Check, Status, ListHeldBlocks, Watch | ListPeers, ListRoutes |
//! | a node | nothing | nothing |
//!
//! Who the caller is comes from [`crate::identity`]: the unix socket is the
//! admin, and so is every TCP caller of a trellisd serving TCP without
//! `--tls-client-ca` (as before identities existed). Refusals are
//! PERMISSION_DENIED and name the method and the caller.

use crate::identity::{self, Caller, TcpClients};
use crate::methods::methods;
use tonic::{Request, Status};

/// Who may call a method of a node's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeAccess {
    /// The admin only: it changes the node.
    Admin,
    /// The admin or the controller: it only reads.
    Read,
}

methods!(
    /// A method of `trellis.v1.Agent`.
    AgentMethod of "trellis.v1.Agent":
    CreateNetwork,
    GetNetwork,
    ListNetworks,
    DeleteNetwork,
    Attach,
    Detach,
    GetEndpoint,
    ListEndpoints,
    Check,
    GarbageCollect,
    Status,
    ListHeldBlocks,
    Watch,
);

methods!(
    /// A method of `trellis.v1.Bgp`.
    BgpMethod of "trellis.v1.Bgp":
    AddPeer,
    RemovePeer,
    ListPeers,
    ListRoutes,
);

/// Who may call `method` of `trellis.v1.Agent`: the table of the module docs.
pub fn agent_access(method: AgentMethod) -> NodeAccess {
    use AgentMethod::*;
    match method {
        CreateNetwork | DeleteNetwork | Attach | Detach | GarbageCollect => NodeAccess::Admin,
        GetNetwork | ListNetworks | GetEndpoint | ListEndpoints | Check | Status
        | ListHeldBlocks | Watch => NodeAccess::Read,
    }
}

/// Who may call `method` of `trellis.v1.Bgp`: the table of the module docs.
pub fn bgp_access(method: BgpMethod) -> NodeAccess {
    use BgpMethod::*;
    match method {
        AddPeer | RemovePeer => NodeAccess::Admin,
        ListPeers | ListRoutes => NodeAccess::Read,
    }
}

/// A method of a node's API, with its rule.
pub trait NodeMethod: Copy {
    /// The service's fully qualified name.
    fn service(self) -> &'static str;
    /// The method's name as the proto spells it.
    fn method(self) -> &'static str;
    /// Who may call it.
    fn access(self) -> NodeAccess;
}

impl NodeMethod for AgentMethod {
    fn service(self) -> &'static str {
        Self::SERVICE
    }
    fn method(self) -> &'static str {
        self.name()
    }
    fn access(self) -> NodeAccess {
        agent_access(self)
    }
}

impl NodeMethod for BgpMethod {
    fn service(self) -> &'static str {
        Self::SERVICE
    }
    fn method(self) -> &'static str {
        self.name()
    }
    fn access(self) -> NodeAccess {
        bgp_access(self)
    }
}

/// Whether `caller` may call `method`: `Ok`, or PERMISSION_DENIED saying
/// why.
pub fn authorize(caller: &Caller, method: impl NodeMethod) -> Result<(), Status> {
    let name = method.method();
    let why = match (caller, method.access()) {
        (Caller::Admin, _) | (Caller::Controller, NodeAccess::Read) => return Ok(()),
        (Caller::Controller, NodeAccess::Admin) => format!(
            "the controller's certificate cannot call {name}: the controller may only read a node"
        ),
        (Caller::Node(n), _) => format!(
            "certificate of node {:?} cannot call {}/{name}: a node's API answers only the \
             admin and the controller",
            n.as_str(),
            method.service()
        ),
    };
    tracing::warn!(%caller, method = name, "refused: {why}");
    Err(Status::permission_denied(why))
}

/// The admission of a node's services: who a caller is (as the transport
/// says, [`identity::caller`]) and whether the table lets it call.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gate {
    /// What a TCP caller without a client certificate is.
    pub tcp_clients: TcpClients,
}

impl Gate {
    /// Admits `req` to `method`: UNAUTHENTICATED for a caller without an
    /// identity, PERMISSION_DENIED for one the table refuses.
    pub fn admit<T>(&self, req: &Request<T>, method: impl NodeMethod) -> Result<(), Status> {
        let caller = identity::caller(req, self.tcp_clients).inspect_err(|e| {
            tracing::warn!(error = %e, method = method.method(), "refused a caller without an identity");
        })?;
        authorize(&caller, method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::proto_methods;
    use tonic::Code;

    /// The tables, written out: a change to who may call what shows here.
    const AGENT: &[(&str, NodeAccess)] = &[
        ("CreateNetwork", NodeAccess::Admin),
        ("GetNetwork", NodeAccess::Read),
        ("ListNetworks", NodeAccess::Read),
        ("DeleteNetwork", NodeAccess::Admin),
        ("Attach", NodeAccess::Admin),
        ("Detach", NodeAccess::Admin),
        ("GetEndpoint", NodeAccess::Read),
        ("ListEndpoints", NodeAccess::Read),
        ("Check", NodeAccess::Read),
        ("GarbageCollect", NodeAccess::Admin),
        ("Status", NodeAccess::Read),
        ("ListHeldBlocks", NodeAccess::Read),
        ("Watch", NodeAccess::Read),
    ];
    const BGP: &[(&str, NodeAccess)] = &[
        ("AddPeer", NodeAccess::Admin),
        ("RemovePeer", NodeAccess::Admin),
        ("ListPeers", NodeAccess::Read),
        ("ListRoutes", NodeAccess::Read),
    ];

    #[test]
    fn every_method_has_the_access_of_the_table() {
        let agent: Vec<_> = AgentMethod::ALL
            .iter()
            .map(|m| (m.name(), agent_access(*m)))
            .collect();
        assert_eq!(agent, AGENT);
        let bgp: Vec<_> = BgpMethod::ALL
            .iter()
            .map(|m| (m.name(), bgp_access(*m)))
            .collect();
        assert_eq!(bgp, BGP);
    }

    #[test]
    fn the_methods_are_the_protos() {
        assert_eq!(AgentMethod::SERVICE, trellis_proto::SERVICE_NAME);
        let agent: Vec<&str> = AgentMethod::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(
            agent,
            proto_methods(AgentMethod::SERVICE),
            "trellis.v1.Agent"
        );
        let bgp: Vec<&str> = BgpMethod::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(bgp, proto_methods(BgpMethod::SERVICE), "trellis.v1.Bgp");
    }

    /// The admin may call `m`, the controller if it reads, a node never.
    fn each_caller_as_the_table_says(m: impl NodeMethod + std::fmt::Debug) {
        let h2 = Caller::Node("h2".parse().unwrap());
        assert!(authorize(&Caller::Admin, m).is_ok(), "{m:?}");
        let controller = authorize(&Caller::Controller, m);
        match m.access() {
            NodeAccess::Read => assert!(controller.is_ok(), "{m:?}"),
            NodeAccess::Admin => {
                assert_eq!(
                    controller.unwrap_err().code(),
                    Code::PermissionDenied,
                    "{m:?}"
                )
            }
        }
        let node = authorize(&h2, m).unwrap_err();
        assert_eq!(node.code(), Code::PermissionDenied, "{m:?}");
    }

    #[test]
    fn the_admin_may_call_everything_the_controller_only_reads_a_node_nothing() {
        AgentMethod::ALL
            .iter()
            .for_each(|m| each_caller_as_the_table_says(*m));
        BgpMethod::ALL
            .iter()
            .for_each(|m| each_caller_as_the_table_says(*m));
    }

    #[test]
    fn refusals_name_the_caller_and_the_method() {
        let h2 = Caller::Node("h2".parse().unwrap());
        let e = authorize(&h2, AgentMethod::ListEndpoints).unwrap_err();
        assert_eq!(
            e.message(),
            "certificate of node \"h2\" cannot call trellis.v1.Agent/ListEndpoints: a node's API \
             answers only the admin and the controller"
        );
        let e = authorize(&Caller::Controller, AgentMethod::CreateNetwork).unwrap_err();
        assert_eq!(
            e.message(),
            "the controller's certificate cannot call CreateNetwork: the controller may only read a node"
        );
        let e = authorize(&Caller::Controller, BgpMethod::AddPeer).unwrap_err();
        assert!(
            e.message().contains("cannot call AddPeer"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn the_gate_asks_the_transport_who_calls() {
        let tcp = Request::new(());
        let trusted = Gate::default();
        assert!(trusted.admit(&tcp, AgentMethod::Attach).is_ok());
        let certified = Gate {
            tcp_clients: TcpClients::Certified,
        };
        let e = certified.admit(&tcp, AgentMethod::Status).unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
    }
}
