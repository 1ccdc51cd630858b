//! The controller's client of nodes' Agent APIs: how the controller reads a
//! node, at the address the node registered (`agent_address`).
//!
//! Design decisions:
//!
//! * **The controller's own certificate is its identity.** A node's Agent
//!   API over TCP with `--tls-client-ca` admits the controller's identity
//!   (`spiffe://trellis/controller`) to its read methods only
//!   ([`crate::access`]). `scripts/certs controller` puts that identity in
//!   the controller's server certificate, so by default the controller
//!   reads nodes with the certificate it serves with (trellis-controller's
//!   `--node-client-cert`/`--node-client-key` give it another), and trusts
//!   nodes' certificates by the CA it trusts their client certificates by
//!   (`--node-ca`, default `--tls-client-ca`).
//! * **One connection per read, dialled when asked.** A read is an
//!   operator's (`netctl node endpoints`, `netctl ipam check`), not a
//!   stream: nothing is kept open to a thousand nodes, and a node that
//!   moved is dialled at its new address the next time. Every read has a
//!   deadline ([`DEADLINE`]).
//! * **Endpoints pass through.** `ListNodeEndpoints` answers the node's
//!   own `ListEndpoints` reply ([`NodeClients::endpoints`]): the
//!   controller's core never sees a container. The blocks a node holds are
//!   the core's business (its IPAM check compares them with the block map),
//!   so they are converted into its types ([`NodeReader`]).
//! * **Failures name the node and the address.** Unreachable (or no answer
//!   in time) is UNAVAILABLE; the node refusing the controller, or a
//!   controller with no TLS settings for an `https://` address, is
//!   FAILED_PRECONDITION: both are for an operator to fix, not to retry.

use std::time::Duration;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};
use trellis_cluster::{HeldBlock, NodeReadError, NodeReader};
use trellis_proto::v1 as pb;
use trellis_types::{AgentAddress, NodeName, PoolName};

/// How long one read of a node may take, connection included.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// The controller's client of nodes' Agent APIs.
#[derive(Debug, Clone, Default)]
pub struct NodeClients {
    /// TLS for `https://` addresses: the CA of nodes' certificates and the
    /// controller's identity. `None`: `https://` addresses are refused.
    tls: Option<ClientTlsConfig>,
}

impl NodeClients {
    /// A client of nodes at `https://` addresses with `tls` (and of
    /// `http://` ones in plaintext); without `tls`, `https://` addresses
    /// are refused.
    pub fn new(tls: Option<ClientTlsConfig>) -> Self {
        NodeClients { tls }
    }

    /// A lazily dialled channel to `address`.
    fn channel(&self, node: &NodeName, address: &AgentAddress) -> Result<Channel, Failure> {
        let refused = |why: String| Failure {
            unreachable: false,
            message: format!("node {:?}'s Agent API at {address}: {why}", node.as_str()),
        };
        let mut endpoint = Endpoint::from_shared(address.as_str().to_owned())
            .map_err(|e| refused(e.to_string()))?
            .connect_timeout(DEADLINE)
            .timeout(DEADLINE);
        if address.is_tls() {
            let Some(tls) = &self.tls else {
                return Err(refused(
                    "this controller has no CA to verify nodes' certificates by \
                     (trellis-controller --node-ca, or --tls-client-ca)"
                        .into(),
                ));
            };
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|e| refused(e.to_string()))?;
        }
        Ok(endpoint.connect_lazy())
    }

    /// Node `node`'s endpoints matching `filter`, read from its Agent API
    /// at `address`, as the node answered them.
    pub async fn endpoints(
        &self,
        node: &NodeName,
        address: &AgentAddress,
        filter: pb::ListEndpointsRequest,
    ) -> Result<pb::ListEndpointsResponse, Status> {
        let channel = self.channel(node, address)?;
        let mut client = pb::AgentClient::new(channel);
        let call = client.list_endpoints(filter);
        Ok(answer(node, address, call).await?)
    }
}

#[tonic::async_trait]
impl NodeReader for NodeClients {
    async fn held_blocks(
        &self,
        node: &NodeName,
        address: &AgentAddress,
    ) -> Result<Vec<HeldBlock>, NodeReadError> {
        let channel = self.channel(node, address)?;
        let mut client = pb::AgentClient::new(channel);
        let call = client.list_held_blocks(pb::ListHeldBlocksRequest {});
        let reply = answer(node, address, call).await?;
        reply.blocks.into_iter().map(held_block).collect()
    }
}

/// A block as a node answered it, in the core's types.
pub fn held_block(b: pb::HeldBlock) -> Result<HeldBlock, NodeReadError> {
    let bad = |field: &str, value: &str, e: &dyn std::fmt::Display| {
        NodeReadError::BadAnswer(format!("block {field} {value:?}: {e}"))
    };
    let pool = PoolName::parse("pool", &b.pool).map_err(|e| bad("pool", &b.pool, &e))?;
    let prefix = b.prefix.parse().map_err(|e| bad("prefix", &b.prefix, &e))?;
    Ok(HeldBlock {
        pool,
        prefix,
        used: b.used,
        frozen: b.frozen,
    })
}

/// Why a read failed: the message names the node and the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Not reached (or no answer in time), rather than refused.
    pub unreachable: bool,
    /// What went wrong.
    pub message: String,
}

impl From<Failure> for Status {
    /// UNAVAILABLE when unreachable, FAILED_PRECONDITION otherwise.
    fn from(f: Failure) -> Status {
        if f.unreachable {
            Status::unavailable(f.message)
        } else {
            Status::failed_precondition(f.message)
        }
    }
}

impl From<Failure> for NodeReadError {
    fn from(f: Failure) -> NodeReadError {
        if f.unreachable {
            NodeReadError::Unreachable(f.message)
        } else {
            NodeReadError::Refused(f.message)
        }
    }
}

/// The reply of a unary call to node `node` at `address`, bounded by
/// [`DEADLINE`], or why there is none.
async fn answer<T>(
    node: &NodeName,
    address: &AgentAddress,
    call: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, Failure> {
    let s = match tokio::time::timeout(DEADLINE, call).await {
        Ok(Ok(r)) => return Ok(r.into_inner()),
        Ok(Err(s)) => s,
        Err(_) => Status::deadline_exceeded(format!("no answer within {DEADLINE:?}")),
    };
    Err(failure(node, address, &s))
}

/// What a node's refusal `s` means to the controller's caller.
pub fn failure(node: &NodeName, address: &AgentAddress, s: &Status) -> Failure {
    let who = format!("node {:?}'s Agent API at {address}", node.as_str());
    let msg = s.message();
    match s.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => Failure {
            unreachable: true,
            message: format!("{who} is unreachable: {msg}"),
        },
        Code::Unauthenticated | Code::PermissionDenied => Failure {
            unreachable: false,
            message: format!("{who} refused the controller: {msg}"),
        },
        Code::Unimplemented => Failure {
            unreachable: false,
            message: format!("{who} does not serve this read (an older trellisd?): {msg}"),
        },
        code => Failure {
            unreachable: false,
            message: format!("{who} answered {code:?}: {msg}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeName {
        "h1".parse().unwrap()
    }

    #[test]
    fn refusals_and_silences_name_the_node_and_the_address() {
        let at: AgentAddress = "https://10.1.253.101:7444".parse().unwrap();
        let f = failure(&node(), &at, &Status::unavailable("tcp connect error"));
        assert_eq!(
            Status::from(f.clone()).code(),
            Code::Unavailable,
            "{}",
            f.message
        );
        assert_eq!(
            f.message,
            "node \"h1\"'s Agent API at https://10.1.253.101:7444 is unreachable: tcp connect error"
        );
        let f = failure(&node(), &at, &Status::permission_denied("no"));
        assert_eq!(Status::from(f.clone()).code(), Code::FailedPrecondition);
        assert!(
            f.message.contains("refused the controller: no"),
            "{}",
            f.message
        );
        assert!(matches!(NodeReadError::from(f), NodeReadError::Refused(_)));
        let f = failure(&node(), &at, &Status::invalid_argument("network \"x y\""));
        assert!(
            f.message
                .ends_with("answered InvalidArgument: network \"x y\""),
            "{}",
            f.message
        );
    }

    #[tokio::test]
    async fn https_needs_tls_settings_and_an_unreachable_node_is_unavailable() {
        let at: AgentAddress = "https://127.0.0.1:1".parse().unwrap();
        let e = NodeClients::new(None)
            .endpoints(&node(), &at, Default::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition);
        assert!(e.message().contains("--node-ca"), "{}", e.message());

        // Nothing listens on port 1.
        let at: AgentAddress = "http://127.0.0.1:1".parse().unwrap();
        let e = NodeClients::new(None)
            .held_blocks(&node(), &at)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, NodeReadError::Unreachable(m) if m.contains("http://127.0.0.1:1")),
            "{e:?}"
        );
    }

    #[test]
    fn a_held_block_converts_or_names_the_bad_field() {
        let b = held_block(pb::HeldBlock {
            network: "pods".into(),
            pool: "pods-v4".into(),
            prefix: "10.244.0.64/26".into(),
            used: 3,
            free: 61,
            frozen: true,
        })
        .unwrap();
        assert_eq!(
            (b.pool.as_str(), b.prefix.to_string(), b.used, b.frozen),
            ("pods-v4", "10.244.0.64/26".into(), 3, true)
        );
        let e = held_block(pb::HeldBlock {
            pool: "pods-v4".into(),
            prefix: "10.244.0.64".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            e.to_string().contains("block prefix \"10.244.0.64\""),
            "{e}"
        );
    }
}
