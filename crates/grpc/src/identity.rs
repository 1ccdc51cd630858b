//! Who is calling: a gRPC caller's identity, read from how it connected.
//!
//! A caller is the **admin**, a **node** or the **controller** ([`Caller`]).
//! Each edge decides with it what the caller may do: the controller's
//! ([`crate::controller::access`]) and a node's Agent API
//! ([`crate::access`]).
//!
//! Design decisions:
//!
//! * **The name is a URI subject alternative name, SPIFFE-style.** A node's
//!   client certificate carries `spiffe://trellis/node/<name>`, the admin's
//!   `spiffe://trellis/admin`, the controller's `spiffe://trellis/controller`
//!   ([`NODE_URI_PREFIX`], [`ADMIN_URI`], [`CONTROLLER_URI`]). The
//!   controller's is the identity it reads nodes' Agent APIs with; its
//!   server certificate may carry it beside its DNS and IP names, so one
//!   certificate serves both.
//!   Not the subject CN, which RFC 6125 retired as a name and which rustls
//!   does not parse; not a DNS name, which any name of a node could collide
//!   with (node names and DNS names share their alphabet), so that a server
//!   certificate for `localhost` signed by the same CA would have been node
//!   `localhost`, and no admin marker could be told from a node. Under its
//!   own URI prefix an identity is unambiguous, a certificate may carry
//!   DNS and IP names beside it (to serve TLS too), and the SPIFFE path's
//!   alphabet (`[A-Za-z0-9._-]`, not `.` or `..`) is exactly a node name's.
//!   The subject CN is for people only. A certificate must name exactly one
//!   trellis identity; none, two, or an unknown one is refused.
//! * **Read by rustls-webpki**, the parser rustls verified the chain with
//!   (already in the graph): no second X.509 parser, and a certificate seen
//!   here has already parsed once. Only the leaf certificate is read; that it
//!   chains to the client CA, is in its validity period and allows client
//!   authentication, the TLS handshake checked.
//! * **The unix socket is the admin.** Whoever can open it (mode 0600) is
//!   root or the daemon's user on the controller's machine.
//! * **TCP without client certificates is a configuration, not a caller.**
//!   When the server asks no TCP client for a certificate (no
//!   `--tls-client-ca`), every TCP caller is the admin, as before identities
//!   existed ([`TcpClients::Trusted`], the server warns at start). When it
//!   does ([`TcpClients::Certified`]), rustls refuses a handshake without
//!   one, and a TCP request that arrives without one all the same is refused
//!   here too: the edge does not fail open if the TLS settings ever change.

use std::fmt;
use tonic::transport::CertificateDer;
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Status};
use trellis_types::NodeName;

/// The URI prefix of every trellis identity.
pub const URI_PREFIX: &str = "spiffe://trellis/";
/// The admin's identity, as a URI SAN.
pub const ADMIN_URI: &str = "spiffe://trellis/admin";
/// The controller's identity (as a client of nodes' Agent APIs), as a URI SAN.
pub const CONTROLLER_URI: &str = "spiffe://trellis/controller";
/// A node's identity is this prefix followed by its name, as a URI SAN.
pub const NODE_URI_PREFIX: &str = "spiffe://trellis/node/";

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The admin: a unix-socket caller, an admin certificate, or any TCP
    /// caller of a server that asks for no client certificates.
    Admin,
    /// The node of this name, by its client certificate.
    Node(NodeName),
    /// The cluster controller, by its certificate: it reads nodes.
    Controller,
}

impl fmt::Display for Caller {
    /// `admin`, `node:<name>` or `controller`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Admin => f.write_str("admin"),
            Caller::Node(n) => write!(f, "node:{n}"),
            Caller::Controller => f.write_str("controller"),
        }
    }
}

/// What a TCP caller without a client certificate is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TcpClients {
    /// The server asks for no client certificate: every TCP caller is the
    /// admin (plaintext, or TLS without `--tls-client-ca`). The default,
    /// since it is what a server without a client CA means.
    #[default]
    Trusted,
    /// The server requires a client certificate (`--tls-client-ca`): a TCP
    /// request without one is refused.
    Certified,
}

/// Why a caller has no identity (answered UNAUTHENTICATED).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The leaf certificate does not parse.
    #[error("client certificate does not parse: {0}")]
    Unparsable(String),
    /// No URI SAN under [`URI_PREFIX`].
    #[error(
        "client certificate names no trellis identity: it needs the URI SAN \
         {NODE_URI_PREFIX}<node>, {ADMIN_URI} or {CONTROLLER_URI}"
    )]
    Missing,
    /// More than one URI SAN under [`URI_PREFIX`].
    #[error("client certificate names {} trellis identities ({}): it may name one", .0.len(), .0.join(", "))]
    Several(Vec<String>),
    /// A URI SAN under [`URI_PREFIX`] that is not the admin, a node or the
    /// controller.
    #[error(
        "client certificate's identity {0:?} is none of {NODE_URI_PREFIX}<node>, {ADMIN_URI} \
         and {CONTROLLER_URI}"
    )]
    Unknown(String),
    /// A node identity whose name is not a node name.
    #[error("client certificate's identity {uri:?}: {reason}")]
    BadNodeName {
        /// The URI SAN.
        uri: String,
        /// Why the name is refused.
        reason: String,
    },
    /// A TCP request without a client certificate to a server that asks
    /// for one.
    #[error("no client certificate: this server identifies every TCP client by its certificate")]
    NoCertificate,
}

impl From<IdentityError> for Status {
    fn from(e: IdentityError) -> Status {
        Status::unauthenticated(e.to_string())
    }
}

/// Who sent `req`: the identity in its TLS client certificate if it has
/// one; else the admin if it came over the unix socket; else (TCP without
/// a certificate) as `tcp` says.
pub fn caller<T>(req: &Request<T>, tcp: TcpClients) -> Result<Caller, IdentityError> {
    if let Some(leaf) = req.peer_certs().as_deref().and_then(|c| c.first()) {
        return from_certificate(leaf);
    }
    if req.extensions().get::<UdsConnectInfo>().is_some() {
        return Ok(Caller::Admin);
    }
    match tcp {
        TcpClients::Trusted => Ok(Caller::Admin),
        TcpClients::Certified => Err(IdentityError::NoCertificate),
    }
}

/// The identity a (verified) leaf certificate names: see the module docs.
pub fn from_certificate(der: &CertificateDer<'_>) -> Result<Caller, IdentityError> {
    let cert = webpki::EndEntityCert::try_from(der)
        .map_err(|e| IdentityError::Unparsable(e.to_string()))?;
    from_uris(cert.valid_uri_names())
}

/// The identity the first certificate of PEM text `pem` names: what a
/// daemon checks about its own certificate before it presents it.
pub fn from_pem(pem: &[u8]) -> Result<Caller, IdentityError> {
    use rustls_pki_types::pem::PemObject;
    let der = CertificateDer::pem_slice_iter(pem)
        .next()
        .ok_or_else(|| IdentityError::Unparsable("no PEM certificate".into()))?
        .map_err(|e| IdentityError::Unparsable(e.to_string()))?;
    from_certificate(&der)
}

/// The identity named by a certificate's URI SANs `uris`: exactly one of
/// them must start with [`URI_PREFIX`]; others are ignored.
pub fn from_uris<'a>(uris: impl IntoIterator<Item = &'a str>) -> Result<Caller, IdentityError> {
    let ours: Vec<&str> = uris
        .into_iter()
        .filter(|u| u.starts_with(URI_PREFIX))
        .collect();
    let uri = match ours.as_slice() {
        [] => return Err(IdentityError::Missing),
        [one] => *one,
        several => {
            let all = several.iter().map(|u| (*u).to_owned()).collect();
            return Err(IdentityError::Several(all));
        }
    };
    if uri == ADMIN_URI {
        return Ok(Caller::Admin);
    }
    if uri == CONTROLLER_URI {
        return Ok(Caller::Controller);
    }
    let Some(name) = uri.strip_prefix(NODE_URI_PREFIX) else {
        return Err(IdentityError::Unknown(uri.to_owned()));
    };
    NodeName::parse("node", name)
        .map(Caller::Node)
        .map_err(|e| IdentityError::BadNodeName {
            uri: uri.to_owned(),
            reason: e.reason,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;

    fn cert(pem: &[u8]) -> Result<Caller, IdentityError> {
        from_certificate(&CertificateDer::from_pem_slice(pem).expect("a PEM certificate"))
    }

    fn node(name: &str) -> Caller {
        Caller::Node(name.parse().unwrap())
    }

    #[test]
    fn certificates_made_by_scripts_certs_name_their_holder() {
        assert_eq!(
            cert(include_bytes!("../testdata/node-h1.pem")),
            Ok(node("h1"))
        );
        assert_eq!(
            cert(include_bytes!("../testdata/admin.pem")),
            Ok(Caller::Admin)
        );
        // The controller's server certificate names it too.
        assert_eq!(
            cert(include_bytes!("../testdata/controller.pem")),
            Ok(Caller::Controller)
        );
        // A server certificate with DNS and IP names only is nobody.
        assert_eq!(
            cert(include_bytes!("../testdata/server.pem")),
            Err(IdentityError::Missing)
        );
    }

    #[test]
    fn bytes_that_are_not_a_certificate_are_refused() {
        let e = from_certificate(&CertificateDer::from(&b"\x30\x03\x02\x01\x00"[..]));
        assert!(matches!(e, Err(IdentityError::Unparsable(_))), "{e:?}");
    }

    #[test]
    fn exactly_one_trellis_uri_names_the_caller() {
        let ok = [
            (vec!["spiffe://trellis/admin"], Caller::Admin),
            (vec!["spiffe://trellis/controller"], Caller::Controller),
            (vec!["spiffe://trellis/node/h1"], node("h1")),
            (vec!["spiffe://trellis/node/H_1.x-y"], node("H_1.x-y")),
            // Other URIs are someone else's business.
            (
                vec!["https://example.org/", "spiffe://trellis/node/h2"],
                node("h2"),
            ),
            (
                vec!["spiffe://other/admin", "spiffe://trellis/node/h3"],
                node("h3"),
            ),
        ];
        for (uris, want) in ok {
            assert_eq!(from_uris(uris.iter().copied()), Ok(want), "{uris:?}");
        }
    }

    #[test]
    fn no_ambiguous_or_malformed_identity_is_accepted() {
        let missing = [vec![], vec!["spiffe://other/node/h1", "urn:trellis:admin"]];
        for uris in missing {
            assert_eq!(from_uris(uris), Err(IdentityError::Missing));
        }
        let two = ["spiffe://trellis/node/h1", "spiffe://trellis/admin"];
        assert_eq!(
            from_uris(two),
            Err(IdentityError::Several(two.map(String::from).to_vec()))
        );
        for unknown in [
            "spiffe://trellis/",
            "spiffe://trellis/admin/",
            "spiffe://trellis/administrator",
            "spiffe://trellis/controller/",
            "spiffe://trellis/controllers",
            "spiffe://trellis/nodes/h1",
        ] {
            let e = from_uris([unknown]);
            assert_eq!(e, Err(IdentityError::Unknown(unknown.into())), "{unknown}");
        }
        for bad in [
            "spiffe://trellis/node/",
            "spiffe://trellis/node/a/b",
            "spiffe://trellis/node/..",
            "spiffe://trellis/node/a%2Fb",
            "spiffe://trellis/node/h1?x",
        ] {
            let e = from_uris([bad]).unwrap_err();
            assert!(
                matches!(&e, IdentityError::BadNodeName { uri, .. } if uri == bad),
                "{e:?}"
            );
        }
        let long = format!("{NODE_URI_PREFIX}{}", "a".repeat(64));
        assert!(from_uris([long.as_str()]).is_err());
    }

    #[test]
    fn refusals_are_unauthenticated_and_say_what_is_expected() {
        let s = Status::from(IdentityError::Missing);
        assert_eq!(s.code(), tonic::Code::Unauthenticated);
        assert!(
            s.message().contains("spiffe://trellis/node/<node>"),
            "{}",
            s.message()
        );
        let e = from_uris(["spiffe://trellis/node/a/b"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "client certificate's identity \"spiffe://trellis/node/a/b\": \
             node name may only hold [A-Za-z0-9_.-], found '/'"
        );
    }

    #[test]
    fn the_transport_decides_for_callers_without_a_certificate() {
        let mut unix = Request::new(());
        unix.extensions_mut().insert(UdsConnectInfo {
            peer_addr: None,
            peer_cred: None,
        });
        let tcp = Request::new(());
        for policy in [TcpClients::Trusted, TcpClients::Certified] {
            assert_eq!(caller(&unix, policy), Ok(Caller::Admin), "{policy:?}");
        }
        assert_eq!(caller(&tcp, TcpClients::Trusted), Ok(Caller::Admin));
        assert_eq!(
            caller(&tcp, TcpClients::Certified),
            Err(IdentityError::NoCertificate)
        );
    }

    #[test]
    fn callers_print_as_admin_or_node_colon_name() {
        assert_eq!(Caller::Admin.to_string(), "admin");
        assert_eq!(node("h1").to_string(), "node:h1");
        assert_eq!(Caller::Controller.to_string(), "controller");
    }
}
