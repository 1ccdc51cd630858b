//! The controller's core as a [`ControllerApi`], in one process: for tests
//! of the member's logic and for labs that run everything together.

use crate::api::{ApiError, ControllerApi, Events, Lease};
use async_trait::async_trait;
use futures::StreamExt;
use ipnet::IpNet;
use std::sync::Arc;
use trellis_agent::ErrorClass;
use trellis_cluster::{Block, BlockUsage, Controller, NodeSpec, NodeState};
use trellis_types::{NodeName, PoolName};

/// The controller's core, in this process.
pub struct LocalController(pub Arc<Controller>);

fn refused(e: trellis_cluster::Error) -> ApiError {
    // As over gRPC (see `grpc::api_error`): a compacted revision is a
    // precondition the member handles by watching again.
    let class = match e.class() {
        ErrorClass::OutOfRange => ErrorClass::FailedPrecondition,
        c => c,
    };
    crate::grpc::classify(class, e.to_string())
}

#[async_trait]
impl ControllerApi for LocalController {
    async fn register(&self, spec: &NodeSpec) -> Result<Lease, ApiError> {
        self.0.register_node(spec.clone()).await.map_err(refused)?;
        let c = self.0.config();
        Ok(Lease {
            ttl: c.lease_ttl,
            grace: c.grace,
            interval: c.lease_ttl / 3,
        })
    }

    async fn keep_alive(
        &self,
        node: &NodeName,
        usage: &[BlockUsage],
    ) -> Result<NodeState, ApiError> {
        self.0.keep_alive(node, usage).await.map_err(refused)
    }

    async fn claim_block(&self, node: &NodeName, pool: &PoolName) -> Result<Block, ApiError> {
        self.0.claim_block(node, pool).await.map_err(refused)
    }

    async fn release_block(
        &self,
        node: &NodeName,
        pool: &PoolName,
        prefix: IpNet,
    ) -> Result<(), ApiError> {
        self.0
            .release_block(node, pool, prefix)
            .await
            .map_err(refused)
    }

    async fn watch(&self, from: u64) -> Result<Events, ApiError> {
        let s = self.0.watch(from).await.map_err(refused)?;
        Ok(s.map(|e| e.map_err(refused)).boxed())
    }
}
