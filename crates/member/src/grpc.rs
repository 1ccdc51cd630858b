//! The controller's gRPC API as a [`ControllerApi`]: requests out, answers
//! turned back into the controller's own types, statuses into
//! [`ApiError`]s. The channel dials lazily and again after every lost
//! connection, so a node starts and keeps serving while its controller is
//! down; every call has a deadline.

use crate::api::{ApiError, ControllerApi, Events, Lease};
use async_trait::async_trait;
use futures::StreamExt;
use ipnet::IpNet;
use std::path::PathBuf;
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};
use trellis_agent::ErrorClass;
use trellis_cluster::{
    Block, BlockRecord, BlockUsage, ClusterNetwork, ClusterNetworkSpec, Event, Node, NodeRecord,
    NodeSpec, NodeState, Pool, PoolMode, PoolSpec, Snapshot, watch::Change,
};
use trellis_proto::v1 as pb;
use trellis_proto::v1::ControllerClient;
use trellis_types::{NodeName, PoolName};

/// How long one call may take.
const DEADLINE: Duration = Duration::from_secs(5);

/// TLS material for a controller at an `https://` address.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA that signed the controller's certificate.
    pub ca: PathBuf,
    /// This node's certificate and key, for mutual TLS.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// The controller at one or more gRPC addresses (the replicas of an HA
/// controller).
///
/// Calls go to one replica; a call that finds it unreachable, or refused
/// with UNAVAILABLE by a replica that is not the leader, moves the client
/// on — to the leader when the refusal names one of its addresses
/// (`… the leader is <url> …`), else to the next address — and the caller's
/// own retry (the member retries every loop) reaches the new one.
#[derive(Clone)]
pub struct GrpcController {
    replicas: std::sync::Arc<[(String, ControllerClient<Channel>)]>,
    current: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl GrpcController {
    /// A client of the controller at `urls`: one address or several,
    /// comma-separated, each `unix:/path/to/socket`, `https://host:port`
    /// (with `tls`) or `http://host:port` (labs). Nothing is dialled until
    /// the first call.
    pub fn new(urls: &str, tls: Option<&TlsFiles>) -> Result<Self, String> {
        let mut replicas = Vec::new();
        for url in urls.split(',').map(str::trim) {
            if url.is_empty() {
                return Err(format!("controller addresses {urls:?}: an empty address"));
            }
            replicas.push((url.to_owned(), client_of(url, tls)?));
        }
        Ok(GrpcController {
            replicas: replicas.into(),
            current: Default::default(),
        })
    }

    /// The address calls go to now.
    pub fn current(&self) -> &str {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed);
        &self.replicas[i % self.replicas.len()].0
    }

    fn client(&self) -> ControllerClient<Channel> {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed);
        self.replicas[i % self.replicas.len()].1.clone()
    }

    /// [`call`], moving on to another replica when this one is unreachable
    /// or not the leader.
    async fn call<T>(
        &self,
        fut: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, ApiError> {
        let r = call(fut).await;
        if let Err(ApiError::Unreachable(why)) = &r {
            self.fail_over(why);
        }
        r
    }

    /// Picks the replica named as the leader in `why`, else the next one.
    fn fail_over(&self, why: &str) {
        let n = self.replicas.len();
        if n < 2 {
            return;
        }
        let named = why
            .split_once("the leader is ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .map(|u| u.trim_end_matches([',', ';', ')']));
        let now = self.current.load(std::sync::atomic::Ordering::Relaxed) % n;
        let next = named
            .and_then(|u| self.replicas.iter().position(|(url, _)| url == u))
            .unwrap_or((now + 1) % n);
        if next != now {
            tracing::info!(from = %self.replicas[now].0, to = %self.replicas[next].0, %why, "controller: trying another replica");
        }
        self.current
            .store(next, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A lazily dialled client of the controller at one `url`.
fn client_of(url: &str, tls: Option<&TlsFiles>) -> Result<ControllerClient<Channel>, String> {
    {
        let channel = if let Some(path) = url.strip_prefix("unix:") {
            trellis_proto::channel_unix_lazy(path)
        } else {
            let mut endpoint = Endpoint::from_shared(url.to_owned())
                .map_err(|e| format!("controller address {url:?}: {e}"))?
                .connect_timeout(DEADLINE)
                .timeout(DEADLINE);
            match (endpoint.uri().scheme_str(), tls) {
                (Some("https"), Some(tls)) => {
                    endpoint = endpoint
                        .tls_config(tls_config(tls)?)
                        .map_err(|e| e.to_string())?
                }
                (Some("https"), None) => {
                    return Err(format!(
                        "controller address {url:?}: https needs a CA (--controller-ca)"
                    ));
                }
                (Some("http"), None) => {}
                (Some("http"), Some(_)) => {
                    return Err(format!(
                        "controller address {url:?}: TLS files need an https:// address"
                    ));
                }
                _ => {
                    return Err(format!(
                        "controller address {url:?}: expected unix:/PATH, https://HOST:PORT or http://HOST:PORT"
                    ));
                }
            }
            endpoint.connect_lazy()
        };
        Ok(ControllerClient::new(channel))
    }
}

fn tls_config(tls: &TlsFiles) -> Result<ClientTlsConfig, String> {
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut cfg = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(&tls.ca)?));
    if let Some((cert, key)) = &tls.identity {
        cfg = cfg.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(cfg)
}

/// An answer of class `class` with message `message`, as an [`ApiError`]
/// (a refusal saying the node is not registered is [`ApiError::NotRegistered`]).
pub(crate) fn classify(class: ErrorClass, message: String) -> ApiError {
    if class == ErrorClass::FailedPrecondition && message.contains("is not registered") {
        return ApiError::NotRegistered(message);
    }
    ApiError::Refused { class, message }
}

/// A unary call, bounded by [`DEADLINE`] whatever the transport.
async fn call<T>(
    fut: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout(DEADLINE, fut).await {
        Ok(r) => r.map(tonic::Response::into_inner).map_err(api_error),
        Err(_) => Err(ApiError::Unreachable(format!(
            "no answer within {} s",
            DEADLINE.as_secs()
        ))),
    }
}

fn api_error(s: Status) -> ApiError {
    let class = match s.code() {
        Code::InvalidArgument => ErrorClass::InvalidArgument,
        Code::NotFound => ErrorClass::NotFound,
        Code::AlreadyExists => ErrorClass::AlreadyExists,
        Code::ResourceExhausted => ErrorClass::ResourceExhausted,
        Code::FailedPrecondition | Code::OutOfRange => ErrorClass::FailedPrecondition,
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            return ApiError::Unreachable(s.message().to_owned());
        }
        _ => ErrorClass::Internal,
    };
    classify(class, s.message().to_owned())
}

/// A field of an answer that does not parse: the controller sent nonsense.
fn bad(field: &str, value: &str) -> ApiError {
    ApiError::Refused {
        class: ErrorClass::Internal,
        message: format!("controller answered {field} {value:?}, which does not parse"),
    }
}

/// The watch stream broke the protocol's order (a node resumes by watching
/// again from its last revision).
fn broken(what: String) -> ApiError {
    ApiError::Refused {
        class: ErrorClass::Internal,
        message: format!("controller's watch stream is out of order: {what}"),
    }
}

fn parse<T: std::str::FromStr>(field: &str, value: &str) -> Result<T, ApiError> {
    value.parse().map_err(|_| bad(field, value))
}

fn opt<T: std::str::FromStr>(field: &str, value: &str) -> Result<Option<T>, ApiError> {
    if value.is_empty() {
        return Ok(None);
    }
    parse(field, value).map(Some)
}

fn node_spec_pb(spec: &NodeSpec) -> pb::NodeSpec {
    pb::NodeSpec {
        name: spec.name.to_string(),
        address_v4: spec.address_v4.map(|a| a.to_string()).unwrap_or_default(),
        address_v6: spec.address_v6.map(|a| a.to_string()).unwrap_or_default(),
        labels: spec.labels.clone().into_iter().collect(),
        agent_address: spec
            .agent_address
            .clone()
            .map(String::from)
            .unwrap_or_default(),
    }
}

fn node_state(s: i32) -> NodeState {
    match pb::NodeState::try_from(s) {
        Ok(pb::NodeState::Draining) => NodeState::Draining,
        Ok(pb::NodeState::Dead) => NodeState::Dead,
        _ => NodeState::Ready,
    }
}

fn block(b: pb::Block) -> Result<Block, ApiError> {
    Ok(Block {
        pool: parse("block.pool", &b.pool)?,
        prefix: parse("block.prefix", &b.prefix)?,
        record: BlockRecord {
            node: parse("block.node", &b.node)?,
            claimed_unix_ms: b.claimed_unix_ms,
        },
        used: b.reported.then_some(b.used),
        address_v4: opt("block.node_address_v4", &b.node_address_v4)?,
        address_v6: opt("block.node_address_v6", &b.node_address_v6)?,
    })
}

fn node(n: pb::Node) -> Result<Node, ApiError> {
    let spec = n.spec.unwrap_or_default();
    let state = node_state(n.state);
    Ok(Node {
        record: NodeRecord {
            spec: NodeSpec {
                name: parse("node.spec.name", &spec.name)?,
                address_v4: opt("node.spec.address_v4", &spec.address_v4)?,
                address_v6: opt("node.spec.address_v6", &spec.address_v6)?,
                labels: spec.labels.into_iter().collect(),
                agent_address: opt("node.spec.agent_address", &spec.agent_address)?,
            },
            registered_unix_ms: n.registered_unix_ms,
            draining: state == NodeState::Draining,
            dead: state == NodeState::Dead,
            held: Default::default(),
            usage: Default::default(),
        },
        lease_age: Duration::from_millis(n.lease_age_ms),
    })
}

fn pool(p: pb::Pool) -> Result<Pool, ApiError> {
    let s = p.spec.unwrap_or_default();
    let mode = match pb::PoolMode::try_from(s.mode) {
        Ok(pb::PoolMode::Bridge) => PoolMode::Bridge,
        _ => PoolMode::Routed,
    };
    Ok(Pool {
        spec: PoolSpec {
            name: parse("pool.spec.name", &s.name)?,
            prefix: parse("pool.spec.prefix", &s.prefix)?,
            block_len: u8::try_from(s.block_size)
                .map_err(|_| bad("pool.spec.block_size", &s.block_size.to_string()))?,
            mode,
            outgoing_nat: s.outgoing_nat,
            max_blocks_per_node: s.max_blocks_per_node,
        },
        held: p.blocks_held,
    })
}

fn network(n: pb::ClusterNetwork) -> Result<ClusterNetwork, ApiError> {
    let s = n.spec.unwrap_or_default();
    Ok(ClusterNetwork {
        spec: ClusterNetworkSpec {
            name: parse("network.spec.name", &s.name)?,
            pools: s
                .pools
                .iter()
                .map(|p| parse("network.spec.pools", p))
                .collect::<Result<_, _>>()?,
            mtu: (s.mtu != 0).then_some(s.mtu),
        },
        revision: n.revision,
    })
}

fn snapshot(s: pb::ControllerSnapshot) -> Result<Event, ApiError> {
    Ok(Event::Snapshot(std::sync::Arc::new(Snapshot {
        revision: s.revision,
        reset: s.reset,
        pools: s.pools.into_iter().map(pool).collect::<Result<_, _>>()?,
        networks: s
            .networks
            .into_iter()
            .map(network)
            .collect::<Result<_, _>>()?,
        nodes: s.nodes.into_iter().map(node).collect::<Result<_, _>>()?,
        blocks: s.blocks.into_iter().map(block).collect::<Result<_, _>>()?,
    })))
}

/// Adds a snapshot's next part to the parts before it.
fn merge(
    mut whole: pb::ControllerSnapshot,
    part: pb::ControllerSnapshot,
) -> Result<pb::ControllerSnapshot, ApiError> {
    if part.revision != whole.revision || part.reset != whole.reset {
        return Err(broken(format!(
            "a part of the snapshot at revision {} (reset {}) came with revision {} (reset {})",
            whole.revision, whole.reset, part.revision, part.reset
        )));
    }
    whole.pools.extend(part.pools);
    whole.networks.extend(part.networks);
    whole.nodes.extend(part.nodes);
    whole.blocks.extend(part.blocks);
    whole.more = part.more;
    Ok(whole)
}

/// The controller's events from the messages on the wire: a snapshot's
/// parts are gathered into one snapshot, yielded once its last part is in.
fn events(
    wire: impl futures::Stream<Item = Result<pb::ControllerEvent, Status>> + Send + 'static,
) -> Events {
    use pb::controller_event::Event as E;
    let state = (wire.boxed(), None::<pb::ControllerSnapshot>);
    futures::stream::unfold(state, |(mut wire, mut partial)| async move {
        loop {
            let e = match wire.next().await? {
                Ok(e) => e,
                Err(s) => return Some((Err(api_error(s)), (wire, partial))),
            };
            let item = match (e.event, partial.take()) {
                (Some(E::Snapshot(part)), None) if part.more => {
                    partial = Some(part);
                    continue;
                }
                (Some(E::Snapshot(part)), Some(whole)) => match merge(whole, part) {
                    Ok(whole) if whole.more => {
                        partial = Some(whole);
                        continue;
                    }
                    Ok(whole) => snapshot(whole),
                    Err(e) => Err(e),
                },
                (Some(E::Change(c)), Some(whole)) => Err(broken(format!(
                    "a change at revision {} between the parts of the snapshot at revision {}",
                    c.revision, whole.revision
                ))),
                (event, None) => match event_of(event) {
                    Ok(None) => continue,
                    Ok(Some(e)) => Ok(e),
                    Err(e) => Err(e),
                },
                (None, Some(whole)) => {
                    partial = Some(whole);
                    continue;
                }
            };
            return Some((item, (wire, partial)));
        }
    })
    .boxed()
}

/// One message's event (a whole snapshot, or a change); `None` for an
/// event this client does not know.
fn event_of(e: Option<pb::controller_event::Event>) -> Result<Option<Event>, ApiError> {
    use pb::controller_change::Object;
    use pb::controller_event::Event as E;
    match e {
        Some(E::Snapshot(s)) => snapshot(s).map(Some),
        Some(E::Change(c)) => {
            let change = match (c.object, c.deleted) {
                (Some(Object::Block(b)), true) => Change::BlockDeleted(
                    parse("block.pool", &b.pool)?,
                    parse("block.prefix", &b.prefix)?,
                ),
                (Some(Object::Block(b)), false) => Change::Block(block(b)?),
                (Some(Object::Node(n)), true) => {
                    Change::NodeDeleted(parse("node.spec.name", &n.spec.unwrap_or_default().name)?)
                }
                (Some(Object::Node(n)), false) => Change::Node(node(n)?),
                (Some(Object::Network(n)), true) => Change::NetworkDeleted(parse(
                    "network.spec.name",
                    &n.spec.unwrap_or_default().name,
                )?),
                (Some(Object::Network(n)), false) => Change::Network(network(n)?),
                (Some(Object::Pool(p)), true) => {
                    Change::PoolDeleted(parse("pool.spec.name", &p.spec.unwrap_or_default().name)?)
                }
                (Some(Object::Pool(p)), false) => Change::Pool(pool(p)?),
                (None, _) => return Ok(None),
            };
            Ok(Some(Event::Change(c.revision, change)))
        }
        None => Ok(None),
    }
}

#[async_trait]
impl ControllerApi for GrpcController {
    async fn register(&self, spec: &NodeSpec) -> Result<Lease, ApiError> {
        let req = pb::RegisterNodeRequest {
            spec: Some(node_spec_pb(spec)),
        };
        let r = self.call(self.client().register_node(req)).await?;
        Ok(Lease {
            ttl: Duration::from_millis(r.lease_ttl_ms),
            grace: Duration::from_millis(r.grace_ms),
            interval: Duration::from_millis(r.keepalive_interval_ms.max(100)),
        })
    }

    async fn keep_alive(
        &self,
        node: &NodeName,
        usage: &[BlockUsage],
    ) -> Result<NodeState, ApiError> {
        let req = pb::KeepAliveRequest {
            node: node.to_string(),
            usage: usage
                .iter()
                .map(|u| pb::BlockUsage {
                    pool: String::new(),
                    prefix: u.prefix.to_string(),
                    used: u.used,
                })
                .collect(),
        };
        let r = self.call(self.client().keep_alive(req)).await?;
        Ok(node_state(r.state))
    }

    async fn claim_block(&self, node: &NodeName, pool: &PoolName) -> Result<Block, ApiError> {
        let req = pb::ClaimBlockRequest {
            node: node.to_string(),
            pool: pool.to_string(),
        };
        block(self.call(self.client().claim_block(req)).await?)
    }

    async fn release_block(
        &self,
        node: &NodeName,
        pool: &PoolName,
        prefix: IpNet,
    ) -> Result<(), ApiError> {
        let req = pb::ReleaseBlockRequest {
            node: node.to_string(),
            pool: pool.to_string(),
            prefix: prefix.to_string(),
        };
        self.call(self.client().release_block(req)).await?;
        Ok(())
    }

    async fn watch(&self, from: u64) -> Result<Events, ApiError> {
        let req = pb::ControllerWatchRequest {
            from_revision: from,
        };
        // No deadline on the stream itself: it lives as long as the node.
        let mut client = self.client();
        let stream = self.call(client.watch(req)).await?;
        Ok(events(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::controller_event::Event as E;

    #[tokio::test]
    async fn a_refusal_naming_the_leader_moves_there_and_others_move_on() {
        let c = GrpcController::new(
            "http://10.0.0.1:7443, http://10.0.0.2:7443,http://10.0.0.3:7443",
            None,
        )
        .unwrap();
        assert_eq!(c.current(), "http://10.0.0.1:7443");
        c.fail_over("not the leader: the leader is http://10.0.0.3:7443 (ctl-c)");
        assert_eq!(c.current(), "http://10.0.0.3:7443");
        c.fail_over("tcp connect error");
        assert_eq!(c.current(), "http://10.0.0.1:7443", "wraps around");
        c.fail_over("not the leader: the leader is https://elsewhere:1 (ctl-x)");
        assert_eq!(
            c.current(),
            "http://10.0.0.2:7443",
            "an unknown leader: the next"
        );
        let one = GrpcController::new("http://10.0.0.1:7443", None).unwrap();
        one.fail_over("down");
        assert_eq!(one.current(), "http://10.0.0.1:7443");
        let e = GrpcController::new("http://10.0.0.1:7443,,http://x:1", None)
            .err()
            .unwrap();
        assert!(e.contains("an empty address"), "{e}");
        let e = GrpcController::new("http://10.0.0.1:7443,ftp://x:1", None)
            .err()
            .unwrap();
        assert!(e.contains("ftp://x:1"), "{e}");
    }

    fn node_pb(name: &str) -> pb::Node {
        pb::Node {
            spec: Some(pb::NodeSpec {
                name: name.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn part(revision: u64, names: &[&str], more: bool) -> Result<pb::ControllerEvent, Status> {
        Ok(pb::ControllerEvent {
            event: Some(E::Snapshot(pb::ControllerSnapshot {
                revision,
                nodes: names.iter().map(|n| node_pb(n)).collect(),
                more,
                ..Default::default()
            })),
        })
    }

    fn change(revision: u64, name: &str) -> Result<pb::ControllerEvent, Status> {
        Ok(pb::ControllerEvent {
            event: Some(E::Change(pb::ControllerChange {
                revision,
                object: Some(pb::controller_change::Object::Node(node_pb(name))),
                deleted: false,
            })),
        })
    }

    async fn collect(
        wire: Vec<Result<pb::ControllerEvent, Status>>,
    ) -> Vec<Result<Event, ApiError>> {
        events(futures::stream::iter(wire)).collect().await
    }

    fn names(e: &Result<Event, ApiError>) -> Vec<String> {
        match e {
            Ok(Event::Snapshot(s)) => s
                .nodes
                .iter()
                .map(|n| n.record.spec.name.to_string())
                .collect(),
            other => panic!("a snapshot, not {other:?}"),
        }
    }

    #[tokio::test]
    async fn parts_are_gathered_into_one_snapshot_before_the_changes() {
        let got = collect(vec![
            part(5, &["a", "b"], true),
            part(5, &["c"], true),
            part(5, &["d"], false),
            change(6, "e"),
        ])
        .await;
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(names(&got[0]), ["a", "b", "c", "d"]);
        assert!(
            matches!(&got[1], Ok(Event::Change(6, Change::Node(n))) if n.record.spec.name == "e")
        );
    }

    #[tokio::test]
    async fn a_one_part_snapshot_is_yielded_at_once() {
        let got = collect(vec![part(5, &["a"], false)]).await;
        assert_eq!(names(&got[0]), ["a"]);
    }

    #[tokio::test]
    async fn parts_that_disagree_or_a_change_among_them_are_errors() {
        let got = collect(vec![part(5, &["a"], true), part(6, &["b"], false)]).await;
        assert!(
            matches!(&got[..], [Err(ApiError::Refused { message, .. })] if message.contains("came with revision 6")),
            "{got:?}"
        );
        let got = collect(vec![part(5, &["a"], true), change(6, "b")]).await;
        assert!(
            matches!(&got[..], [Err(ApiError::Refused { message, .. })] if message.contains("change at revision 6 between the parts")),
            "{got:?}"
        );
        // A stream that ends inside a snapshot yields nothing half-made.
        let got = collect(vec![part(5, &["a"], true)]).await;
        assert!(got.is_empty(), "{got:?}");
    }
}
