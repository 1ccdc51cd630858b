//! Granted blocks: in a cluster, a controller decides which node holds a
//! block and the node keeps the addresses inside it. The node adopts each
//! block it is granted ([`Ipam::adopt_block`]), allocates in them as in any
//! other block, reports their usage ([`Ipam::block_usage`]) and gives back
//! an empty one ([`Ipam::retire_block`]) only through a compare-and-swap
//! that fails if an address was taken meanwhile.

use crate::block::Block;
use crate::ipam::{Ipam, block_key};
use crate::{Error, Pool};
use ipnet::IpNet;
use trellis_store::Expect;
use trellis_types::InvalidInput;

/// One of this host's blocks and how full it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockUse {
    /// The block.
    pub cidr: IpNet,
    /// Addresses handed out in it.
    pub used: u32,
    /// Addresses still free (reserved ones are neither; a frozen block has
    /// none).
    pub free: u32,
    /// No new address is handed out of it.
    pub frozen: bool,
}

impl Ipam {
    /// Records `cidr`, a block of pool `pool` granted to this host, as this
    /// host's. Whether it was new (adopting a block twice is a no-op).
    /// Refused for a prefix that is not one of the pool's blocks, and for a
    /// block another host holds in this store.
    pub async fn adopt_block(&self, pool: &str, cidr: IpNet) -> Result<bool, Error> {
        let spec = self.pool(pool).await?;
        check_block(&spec, cidr)?;
        let key = block_key(pool, cidr);
        let adopted = self
            .retrying(pool, || async {
                match self.read_block(&key).await? {
                    // Granted (again): a frozen block thaws.
                    Some((mut b, rev)) if b.host == self.host => {
                        if b.frozen {
                            b.frozen = false;
                            self.store
                                .put_if(&key, b.encode(), Expect::Revision(rev))
                                .await?;
                        }
                        Ok(Some(false))
                    }
                    Some((b, _)) => Err(InvalidInput::new(
                        "block",
                        cidr,
                        format!("held by host {:?} in this store", b.host),
                    )
                    .into()),
                    None => {
                        let block = Block::new(&spec, cidr, &self.host);
                        self.store
                            .put_if(&key, block.encode(), Expect::Absent)
                            .await?;
                        Ok(Some(true))
                    }
                }
            })
            .await?;
        if adopted {
            self.add_owned(pool, cidr);
            tracing::info!(pool, block = %cidr, host = %self.host, "adopted granted block");
        }
        Ok(adopted)
    }

    /// Forgets block `cidr` of `pool` if no address in it is in use (so it
    /// can be given back); whether it did. An allocation that commits first
    /// keeps the block.
    pub async fn retire_block(&self, pool: &str, cidr: IpNet) -> Result<bool, Error> {
        let key = block_key(pool, cidr);
        let retired = self
            .retrying(pool, || async {
                let Some((b, rev)) = self.read_block(&key).await? else {
                    return Ok(Some(false));
                };
                if b.host != self.host || b.used.count() > 0 || !b.borrowers.is_empty() {
                    return Ok(Some(false));
                }
                self.store.delete_if(&key, Expect::Revision(rev)).await?;
                Ok(Some(true))
            })
            .await?;
        if retired {
            self.forget_cached(pool);
            tracing::info!(pool, block = %cidr, host = %self.host, "retired empty block");
        }
        Ok(retired)
    }

    /// Hands no new address out of block `cidr` of `pool` (the controller
    /// no longer counts it as this host's); the addresses in use stay until
    /// released. Whether it was frozen now. [`Ipam::adopt_block`] thaws it.
    pub async fn freeze_block(&self, pool: &str, cidr: IpNet) -> Result<bool, Error> {
        let key = block_key(pool, cidr);
        let frozen = self
            .retrying(pool, || async {
                let Some((mut b, rev)) = self.read_block(&key).await? else {
                    return Ok(Some(false));
                };
                if b.frozen || b.host != self.host {
                    return Ok(Some(false));
                }
                b.frozen = true;
                self.store
                    .put_if(&key, b.encode(), Expect::Revision(rev))
                    .await?;
                Ok(Some(true))
            })
            .await?;
        if frozen {
            tracing::warn!(pool, block = %cidr, host = %self.host, "froze a block: no new addresses from it");
        }
        Ok(frozen)
    }

    /// This host's blocks of `pool`, with their usage, lowest first.
    pub async fn block_usage(&self, pool: &str) -> Result<Vec<BlockUse>, Error> {
        let mut out: Vec<BlockUse> = self
            .list_blocks(pool)
            .await?
            .into_iter()
            .filter(|(_, b, _)| b.host == self.host)
            .map(|(_, b, _)| BlockUse {
                cidr: b.cidr,
                used: b.used.count(),
                free: b.free(),
                frozen: b.frozen,
            })
            .collect();
        out.sort_by_key(|u| u.cidr);
        Ok(out)
    }
}

fn check_block(pool: &Pool, cidr: IpNet) -> Result<(), InvalidInput> {
    if cidr.prefix_len() != pool.block_prefix_len
        || !pool.cidr.contains(&cidr)
        || cidr.trunc() != cidr
    {
        return Err(InvalidInput::new(
            "block",
            cidr,
            format!(
                "not a block of pool {:?} ({} in /{} blocks)",
                pool.name, pool.cidr, pool.block_prefix_len
            ),
        ));
    }
    Ok(())
}
