//! What a member needs of the controller, as a trait: the controller's
//! gRPC API ([`crate::GrpcController`]) or, in one process (tests, a lab),
//! the controller's core itself ([`crate::local`]).

use async_trait::async_trait;
use futures::stream::BoxStream;
use ipnet::IpNet;
use std::time::Duration;
use trellis_agent::ErrorClass;
use trellis_cluster::{Block, BlockUsage, Event, NodeSpec, NodeState};
use trellis_types::{NodeName, PoolName};

/// The lease the controller gives at registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// A node not heard from for this long is dead.
    pub ttl: Duration,
    /// A dead node's blocks go back this long after its lease lapsed.
    pub grace: Duration,
    /// Renew this often.
    pub interval: Duration,
}

/// Why a controller call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The controller could not be reached (or did not answer in time).
    #[error("controller unreachable: {0}")]
    Unreachable(String),
    /// The controller does not know this node (it registers again).
    #[error("not registered: {0}")]
    NotRegistered(String),
    /// The controller refused.
    #[error("{message}")]
    Refused {
        /// How the agent's caller should see it.
        class: ErrorClass,
        /// The controller's message (it names the pool, node or block).
        message: String,
    },
}

impl ApiError {
    /// The class an agent's caller sees it as.
    pub fn class(&self) -> ErrorClass {
        match self {
            ApiError::Unreachable(_) | ApiError::NotRegistered(_) => ErrorClass::Unavailable,
            ApiError::Refused { class, .. } => *class,
        }
    }
}

/// The stream of a watch.
pub type Events = BoxStream<'static, Result<Event, ApiError>>;

/// The controller, as a member uses it.
#[async_trait]
pub trait ControllerApi: Send + Sync {
    /// Registers the node (or updates it) and returns its lease.
    async fn register(&self, spec: &NodeSpec) -> Result<Lease, ApiError>;
    /// Renews the lease, reporting the usage of the node's blocks.
    async fn keep_alive(
        &self,
        node: &NodeName,
        usage: &[BlockUsage],
    ) -> Result<NodeState, ApiError>;
    /// Claims a block of `pool`.
    async fn claim_block(&self, node: &NodeName, pool: &PoolName) -> Result<Block, ApiError>;
    /// Gives a block back.
    async fn release_block(
        &self,
        node: &NodeName,
        pool: &PoolName,
        prefix: IpNet,
    ) -> Result<(), ApiError>;
    /// The cluster from `from` (`0`: a snapshot first).
    async fn watch(&self, from: u64) -> Result<Events, ApiError>;
}
