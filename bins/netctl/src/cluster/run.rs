//! Runs a controller command: builds the request, calls the controller,
//! renders the answer. A gRPC status goes up as it came, so [`crate::exit`]
//! maps it to an exit code as it does trellisd's.

use std::io::Write;

use anyhow::Result;
use ipnet::IpNet;
use tonic::transport::Channel;
use trellis_proto::v1::{self, ControllerClient};

use super::cli::{
    BlockCmd, BlockFilter, BlockRelease, ClusterCmd, CnetCmd, CnetCreate, ControllerCmd, IpamCmd,
    NodeCmd, PoolCmd, PoolCreate, PoolMode,
};
use super::render;
use super::view::{
    BlockView, ClusterNetworkView, ControllerStatusView, IpamCheckView, IpamReleaseView, NodeView,
    PoolView, ReleasedBlockView, RemovedNodeView,
};
use crate::cli::Format;
use crate::exit::{self, usage};
use crate::render::{names, output};

type Client = ControllerClient<Channel>;

/// Runs `cmd` against the controller `c`, writing its output in format `f`
/// to `out`; returns the exit code (0, or [`exit::PROBLEMS`] when `ipam
/// check` finds any).
pub async fn run(c: &mut Client, f: Format, cmd: ControllerCmd, out: &mut dyn Write) -> Result<u8> {
    let (text, code) = match cmd {
        ControllerCmd::Pool(cmd) => (pool(c, f, cmd).await?, 0),
        ControllerCmd::Cnet(cmd) => (cnet(c, f, cmd).await?, 0),
        ControllerCmd::Node(cmd) => (node(c, f, cmd).await?, 0),
        ControllerCmd::Block(cmd) => (block(c, f, cmd).await?, 0),
        ControllerCmd::Ipam(cmd) => ipam(c, f, cmd).await?,
        ControllerCmd::Cluster(ClusterCmd::Status) => {
            let req = v1::ControllerStatusRequest {};
            let view = ControllerStatusView::from(c.controller_status(req).await?.into_inner());
            (output(f, &view, render::status)?, 0)
        }
    };
    out.write_all(text.as_bytes()).map_err(exit::output)?;
    Ok(code)
}

async fn pool(c: &mut Client, f: Format, cmd: PoolCmd) -> Result<String> {
    match cmd {
        PoolCmd::Create(args) => {
            let p = c.create_pool(pool_request(args)?).await?.into_inner();
            output(f, &PoolView::from(p), render::pool)
        }
        PoolCmd::Get { name } => {
            let p = c.get_pool(v1::GetPoolRequest { name }).await?.into_inner();
            output(f, &PoolView::from(p), render::pool)
        }
        PoolCmd::Ls => {
            let list = c.list_pools(v1::ListPoolsRequest {}).await?.into_inner();
            let mut views: Vec<PoolView> = list.pools.into_iter().map(Into::into).collect();
            views.sort_by(|a, b| a.name.cmp(&b.name));
            output(f, views.as_slice(), render::pools)
        }
        PoolCmd::Rm { names: list } => {
            for name in &list {
                let name = name.clone();
                c.delete_pool(v1::DeletePoolRequest { name }).await?;
            }
            output(f, list.as_slice(), names)
        }
    }
}

/// The request of `pool create`. A block size outside the pool's prefix
/// (shorter than it, or longer than an address) is a usage error; the
/// controller's own bounds (at most /30 or /126) are its to enforce.
pub fn pool_request(a: PoolCreate) -> Result<v1::CreatePoolRequest> {
    let block_size = match a.block_size {
        None => 0,
        Some(len) if len < a.prefix.prefix_len() => {
            let why = format!(
                "--block-size /{len} is shorter than the pool's prefix {}",
                a.prefix
            );
            return Err(usage(why));
        }
        Some(len) if len > a.prefix.max_prefix_len() => {
            let family = match a.prefix {
                IpNet::V4(_) => "an IPv4",
                IpNet::V6(_) => "an IPv6",
            };
            let max = a.prefix.max_prefix_len();
            let why = format!("--block-size /{len} is longer than {family} address (/{max})");
            return Err(usage(why));
        }
        Some(len) => u32::from(len),
    };
    let mode = match a.mode {
        PoolMode::Routed => v1::PoolMode::Routed,
        PoolMode::Bridge => v1::PoolMode::Bridge,
    };
    Ok(v1::CreatePoolRequest {
        spec: Some(v1::PoolSpec {
            name: a.name,
            prefix: a.prefix.to_string(),
            block_size,
            mode: mode as i32,
            outgoing_nat: a.outgoing_nat,
            max_blocks_per_node: a.max_blocks_per_node.unwrap_or(0),
        }),
    })
}

async fn cnet(c: &mut Client, f: Format, cmd: CnetCmd) -> Result<String> {
    match cmd {
        CnetCmd::Create(args) => {
            let n = c.create_cluster_network(cnet_request(args)).await?;
            output(
                f,
                &ClusterNetworkView::from(n.into_inner()),
                render::network,
            )
        }
        CnetCmd::Get { name } => {
            let n = c.get_cluster_network(v1::GetClusterNetworkRequest { name });
            let view = ClusterNetworkView::from(n.await?.into_inner());
            output(f, &view, render::network)
        }
        CnetCmd::Ls => {
            let req = v1::ListClusterNetworksRequest {};
            let list = c.list_cluster_networks(req).await?.into_inner();
            let mut views: Vec<ClusterNetworkView> =
                list.networks.into_iter().map(Into::into).collect();
            views.sort_by(|a, b| a.name.cmp(&b.name));
            output(f, views.as_slice(), render::networks)
        }
        CnetCmd::Rm { names: list } => {
            for name in &list {
                let name = name.clone();
                c.delete_cluster_network(v1::DeleteClusterNetworkRequest { name })
                    .await?;
            }
            output(f, list.as_slice(), names)
        }
    }
}

/// The request of `cnet create`.
pub fn cnet_request(a: CnetCreate) -> v1::CreateClusterNetworkRequest {
    v1::CreateClusterNetworkRequest {
        spec: Some(v1::ClusterNetworkSpec {
            name: a.name,
            pools: a.pools,
            mtu: a.mtu.unwrap_or(0),
        }),
    }
}

async fn node(c: &mut Client, f: Format, cmd: NodeCmd) -> Result<String> {
    match cmd {
        NodeCmd::Ls => {
            let list = c.list_nodes(v1::ListNodesRequest {}).await?.into_inner();
            let mut views: Vec<NodeView> = list.nodes.into_iter().map(Into::into).collect();
            views.sort_by(|a, b| a.name.cmp(&b.name));
            output(f, views.as_slice(), render::nodes)
        }
        NodeCmd::Get { name } => {
            let n = c.get_node(v1::GetNodeRequest { name }).await?.into_inner();
            output(f, &NodeView::from(n), render::node)
        }
        NodeCmd::Endpoints { name, filter } => {
            let req = v1::ListNodeEndpointsRequest {
                node: name,
                filter: Some(crate::run::list_request(filter)?),
            };
            let list = c.list_node_endpoints(req).await?.into_inner();
            crate::run::endpoint_list(f, list)
        }
        NodeCmd::Drain { name } => {
            let n = c
                .drain_node(v1::DrainNodeRequest { name })
                .await?
                .into_inner();
            output(f, &NodeView::from(n), render::node)
        }
        NodeCmd::Rm { name, force } => {
            let req = v1::RemoveNodeRequest {
                name: name.clone(),
                force,
            };
            let released = c.remove_node(req).await?.into_inner().released;
            let view = RemovedNodeView { name, released };
            output(f, &view, render::removed_node)
        }
    }
}

async fn block(c: &mut Client, f: Format, cmd: BlockCmd) -> Result<String> {
    match cmd {
        BlockCmd::Ls(filter) => {
            let list = c.list_blocks(blocks_request(filter)).await?.into_inner();
            let mut views: Vec<BlockView> = list.blocks.into_iter().map(Into::into).collect();
            // By address, not text: 10.244.0.64/26 before 10.244.0.128/26.
            views.sort_by_cached_key(|b| {
                let net = b.prefix.parse::<IpNet>().ok();
                (b.pool.clone(), net, b.prefix.clone())
            });
            output(f, views.as_slice(), render::blocks)
        }
        BlockCmd::Claim(owner) => {
            let req = v1::ClaimBlockRequest {
                node: owner.node,
                pool: owner.pool,
            };
            let b = c.claim_block(req).await?.into_inner();
            output(f, &BlockView::from(b), render::claimed)
        }
        BlockCmd::Release(args) => {
            let req = release_request(&args);
            c.release_block(req).await?;
            let view = ReleasedBlockView {
                pool: args.owner.pool,
                prefix: args.prefix.to_string(),
                node: args.owner.node,
            };
            output(f, &view, render::released_block)
        }
    }
}

/// The request of `block ls`: an absent filter is an empty field.
pub fn blocks_request(filter: BlockFilter) -> v1::ListBlocksRequest {
    v1::ListBlocksRequest {
        pool: filter.pool.unwrap_or_default(),
        node: filter.node.unwrap_or_default(),
    }
}

/// The request of `block release`.
pub fn release_request(a: &BlockRelease) -> v1::ReleaseBlockRequest {
    v1::ReleaseBlockRequest {
        node: a.owner.node.clone(),
        pool: a.owner.pool.clone(),
        prefix: a.prefix.to_string(),
    }
}

async fn ipam(c: &mut Client, f: Format, cmd: IpamCmd) -> Result<(String, u8)> {
    match cmd {
        IpamCmd::Check => {
            let resp = c.check_ipam(v1::CheckIpamRequest {}).await?.into_inner();
            let view = IpamCheckView::from(resp);
            let code = if view.ok { 0 } else { exit::PROBLEMS };
            Ok((output(f, &view, render::ipam_check)?, code))
        }
        IpamCmd::Release { prefixes } => {
            let req = ipam_release_request(&prefixes);
            let released = c.release_ipam(req).await?.into_inner().released;
            let view = IpamReleaseView { released };
            Ok((output(f, &view, render::ipam_release)?, 0))
        }
    }
}

/// The request of `ipam release`: no prefixes asks for every releasable block.
pub fn ipam_release_request(prefixes: &[IpNet]) -> v1::ReleaseIpamRequest {
    v1::ReleaseIpamRequest {
        prefixes: prefixes.iter().map(ToString::to_string).collect(),
    }
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
