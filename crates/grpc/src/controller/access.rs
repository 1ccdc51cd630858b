//! Who may call which method of `trellis.v1.Controller`: one table
//! ([`access`]), checked by [`authorize`] before a request is converted.
//!
//! The rule: **the admin may do everything; a node may act, and read what
//! is its own, only as itself; cluster-wide definitions it needs to do its
//! work (pools, cluster networks, the watch) it may read.** So:
//!
//! | who | methods |
//! |---|---|
//! | admin only | CreatePool, DeletePool, CreateClusterNetwork, DeleteClusterNetwork, ListNodes, DrainNode, RemoveNode, CheckIpam, ReleaseIpam, ListNodeEndpoints |
//! | admin, or the node the request names | RegisterNode (`spec.name`), KeepAlive (`node`, with its usage report), GetNode (`name`), ClaimBlock (`node`), ReleaseBlock (`node`), ListBlocks (`node`: a node lists its own blocks only) |
//! | admin or any node (or the controller's identity) | GetPool, ListPools, GetClusterNetwork, ListClusterNetworks, Watch, ControllerStatus |
//!
//! The controller's own identity (`spiffe://trellis/controller`, which its
//! certificate carries to read nodes' Agent APIs) is no node and no admin:
//! here it may call what any node may, and nothing that acts for a node or
//! needs the admin.
//!
//! Watch is open to every node although it streams every node's blocks and
//! addresses: host-gw routing needs exactly that (each node routes each
//! other node's blocks via its address), so a node is no more trusted than
//! its routes require. A node's request naming another node is refused
//! naming both (`certificate of node "h1" cannot act for node "h2"`), a
//! node calling an admin method naming the method; both PERMISSION_DENIED.

use crate::identity::Caller;
use crate::methods::methods;
use tonic::Status;

/// Who may call a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The admin only.
    Admin,
    /// The admin, or the node whose name the request carries in the field
    /// `field` (named as the proto spells it).
    OwnNode {
        /// The request's field naming the node.
        field: &'static str,
    },
    /// The admin or any node.
    AnyNode,
}

methods!(
    /// A method of `trellis.v1.Controller`.
    Method of "trellis.v1.Controller":
    CreatePool,
    GetPool,
    ListPools,
    DeletePool,
    CreateClusterNetwork,
    GetClusterNetwork,
    ListClusterNetworks,
    DeleteClusterNetwork,
    RegisterNode,
    KeepAlive,
    GetNode,
    ListNodes,
    DrainNode,
    RemoveNode,
    ClaimBlock,
    ReleaseBlock,
    ListBlocks,
    Watch,
    CheckIpam,
    ReleaseIpam,
    ListNodeEndpoints,
    ControllerStatus,
);

/// Who may call `method`: the table of the module docs.
pub fn access(method: Method) -> Access {
    use Method::*;
    let own = |field| Access::OwnNode { field };
    match method {
        CreatePool | DeletePool | CreateClusterNetwork | DeleteClusterNetwork | ListNodes
        | DrainNode | RemoveNode | CheckIpam | ReleaseIpam | ListNodeEndpoints => Access::Admin,
        RegisterNode => own("spec.name"),
        KeepAlive | ClaimBlock | ReleaseBlock | ListBlocks => own("node"),
        GetNode => own("name"),
        GetPool | ListPools | GetClusterNetwork | ListClusterNetworks | Watch
        | ControllerStatus => Access::AnyNode,
    }
}

/// Whether `caller` may call `method` on a request whose node field (the
/// one [`access`] names, for an [`Access::OwnNode`] method) holds `node`:
/// `Ok`, or PERMISSION_DENIED saying why. A node-scoped method given no
/// field value is refused (a mistake in the edge must not open it).
pub fn authorize(caller: &Caller, method: Method, node: Option<&str>) -> Result<(), Status> {
    let denied = |why: String| {
        tracing::warn!(%caller, method = method.name(), "refused: {why}");
        Err(Status::permission_denied(why))
    };
    let me = match caller {
        Caller::Admin => return Ok(()),
        Caller::Controller if access(method) == Access::AnyNode => return Ok(()),
        Caller::Controller => {
            return denied(format!(
                "the controller's certificate cannot call {}: it reads nodes, and here only \
                 what any node may",
                method.name()
            ));
        }
        Caller::Node(me) => me.as_str(),
    };
    match (access(method), node) {
        (Access::AnyNode, _) => Ok(()),
        (Access::OwnNode { .. }, Some(named)) if named == me => Ok(()),
        (Access::OwnNode { field }, Some("")) => denied(format!(
            "certificate of node {me:?} cannot call {} for every node: set {field} to {me:?}",
            method.name()
        )),
        (Access::OwnNode { .. }, Some(named)) => denied(format!(
            "certificate of node {me:?} cannot act for node {named:?}"
        )),
        (Access::OwnNode { field }, None) => denied(format!(
            "certificate of node {me:?} cannot call {}: the request's {field} was not checked",
            method.name()
        )),
        (Access::Admin, _) => denied(format!(
            "certificate of node {me:?} cannot call {}: only the admin may",
            method.name()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn node(name: &str) -> Caller {
        Caller::Node(name.parse().unwrap())
    }

    /// The table, written out: a change to who may call what shows here.
    const TABLE: &[(&str, Access)] = &[
        ("CreatePool", Access::Admin),
        ("GetPool", Access::AnyNode),
        ("ListPools", Access::AnyNode),
        ("DeletePool", Access::Admin),
        ("CreateClusterNetwork", Access::Admin),
        ("GetClusterNetwork", Access::AnyNode),
        ("ListClusterNetworks", Access::AnyNode),
        ("DeleteClusterNetwork", Access::Admin),
        ("RegisterNode", Access::OwnNode { field: "spec.name" }),
        ("KeepAlive", Access::OwnNode { field: "node" }),
        ("GetNode", Access::OwnNode { field: "name" }),
        ("ListNodes", Access::Admin),
        ("DrainNode", Access::Admin),
        ("RemoveNode", Access::Admin),
        ("ClaimBlock", Access::OwnNode { field: "node" }),
        ("ReleaseBlock", Access::OwnNode { field: "node" }),
        ("ListBlocks", Access::OwnNode { field: "node" }),
        ("Watch", Access::AnyNode),
        ("CheckIpam", Access::Admin),
        ("ReleaseIpam", Access::Admin),
        ("ListNodeEndpoints", Access::Admin),
        ("ControllerStatus", Access::AnyNode),
    ];

    #[test]
    fn every_method_has_the_access_of_the_table() {
        let got: Vec<_> = Method::ALL.iter().map(|m| (m.name(), access(*m))).collect();
        assert_eq!(got, TABLE);
    }

    #[test]
    fn the_methods_are_the_protos() {
        assert_eq!(Method::SERVICE, trellis_proto::CONTROLLER_SERVICE_NAME);
        let in_table: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(
            in_table,
            crate::methods::proto_methods(Method::SERVICE),
            "a method without a rule, or a stale one"
        );
    }

    #[test]
    fn the_admin_may_call_everything_with_any_node() {
        for m in Method::ALL {
            for named in [None, Some(""), Some("h1"), Some("h2")] {
                assert!(
                    authorize(&Caller::Admin, *m, named).is_ok(),
                    "{m:?} {named:?}"
                );
            }
        }
    }

    #[test]
    fn the_controllers_identity_may_call_only_what_any_node_may() {
        for m in Method::ALL {
            let r = authorize(&Caller::Controller, *m, Some("h1"));
            match access(*m) {
                Access::AnyNode => assert!(r.is_ok(), "{m:?}"),
                _ => assert_eq!(r.unwrap_err().code(), Code::PermissionDenied, "{m:?}"),
            }
        }
        let e = authorize(&Caller::Controller, Method::ClaimBlock, Some("h1")).unwrap_err();
        assert!(
            e.message()
                .starts_with("the controller's certificate cannot call ClaimBlock"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn a_node_may_do_what_the_table_says_and_only_as_itself() {
        let h1 = node("h1");
        for m in Method::ALL {
            let (own, other, every) = (
                authorize(&h1, *m, Some("h1")),
                authorize(&h1, *m, Some("h2")),
                authorize(&h1, *m, Some("")),
            );
            match access(*m) {
                Access::AnyNode => assert!(own.is_ok() && other.is_ok() && every.is_ok()),
                Access::OwnNode { .. } => {
                    assert!(own.is_ok(), "{m:?}");
                    for e in [other.unwrap_err(), every.unwrap_err()] {
                        assert_eq!(e.code(), Code::PermissionDenied, "{m:?}");
                    }
                }
                Access::Admin => {
                    for e in [own, other, every] {
                        assert_eq!(e.unwrap_err().code(), Code::PermissionDenied, "{m:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn refusals_name_the_certificate_and_what_it_asked_for() {
        let h1 = node("h1");
        let msg = |m, n| authorize(&h1, m, n).unwrap_err().message().to_owned();
        assert_eq!(
            msg(Method::ClaimBlock, Some("h2")),
            "certificate of node \"h1\" cannot act for node \"h2\""
        );
        assert_eq!(
            msg(Method::CreatePool, None),
            "certificate of node \"h1\" cannot call CreatePool: only the admin may"
        );
        assert_eq!(
            msg(Method::ListBlocks, Some("")),
            "certificate of node \"h1\" cannot call ListBlocks for every node: set node to \"h1\""
        );
        // A node-scoped method reached without its field fails closed.
        assert!(msg(Method::KeepAlive, None).contains("node was not checked"));
    }
}
