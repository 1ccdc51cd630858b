//! Pools: what a caller asks for ([`PoolSpec`]), what is stored ([`Pool`]),
//! and the checks in between.

use crate::Error;
use crate::addr::{from_u128, to_u128};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use trellis_types::{InvalidInput, PoolName, check_prefix};

/// Default block size for IPv4 pools: /26, 64 addresses.
pub const DEFAULT_BLOCK_V4: u8 = 26;
/// Default block size for IPv6 pools: /122, 64 addresses.
pub const DEFAULT_BLOCK_V6: u8 = 122;
/// Largest block allowed (IPv4 /20, IPv6 /116: 4096 addresses), which bounds
/// the size of one block record.
const LARGEST_BLOCK_BITS: u8 = 12;
/// Smallest block allowed (/30, /126: 4 addresses).
const SMALLEST_BLOCK_BITS: u8 = 2;

/// Which addresses of a pool are never handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reserve {
    /// Every address is usable (routed mode, where each container gets a /32
    /// or /128 and there is no shared subnet).
    None,
    /// A bridge network: the pool is the bridge subnet. Its network address,
    /// its broadcast address (IPv4 only) and the gateway (the bridge's own
    /// address) are reserved. These are the *pool's* network and broadcast
    /// addresses, not each block's: blocks are only a unit of bookkeeping
    /// inside one L2 subnet, so `x.x.x.64` is an ordinary host address.
    Bridge {
        /// The bridge's address; must lie inside the pool.
        gateway: IpAddr,
    },
}

/// A request to create a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSpec {
    /// The pool's name: 1..=63 bytes of `[A-Za-z0-9_.-]`.
    pub name: String,
    /// The pool's prefix; host bits must be clear.
    pub cidr: IpNet,
    /// Block size as a prefix length; `None` picks /26 (IPv4) or /122 (IPv6),
    /// or the whole pool when it is smaller than that.
    pub block_prefix_len: Option<u8>,
    /// Which addresses are never handed out.
    pub reserve: Reserve,
    /// Blocks are granted from outside (a cluster controller) and adopted
    /// with [`Ipam::adopt_block`](crate::Ipam::adopt_block): an allocation
    /// never claims a block of its own nor borrows, and fails with
    /// [`Error::NoGrantedRoom`] when the granted blocks are full.
    pub granted: bool,
}

/// A validated, stored pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    /// The pool's name.
    pub name: String,
    /// The pool's prefix.
    pub cidr: IpNet,
    /// The prefix length of its blocks.
    pub block_prefix_len: u8,
    /// Which addresses are never handed out.
    pub reserve: Reserve,
    /// Blocks come only from [`Ipam::adopt_block`](crate::Ipam::adopt_block)
    /// (see [`PoolSpec::granted`]).
    #[serde(default)]
    pub granted: bool,
}

/// All pools, stored under one key so that the overlap check and the insert
/// are one compare-and-swap: two concurrent `create_pool`s cannot both add
/// overlapping pools.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct PoolSet {
    pub pools: BTreeMap<String, Pool>,
}

impl Pool {
    /// Validates `spec` against the pools that exist already.
    pub(crate) fn validate(spec: PoolSpec, existing: &PoolSet) -> Result<Pool, Error> {
        check_name("name", &spec.name)?;
        let cidr = check_prefix("cidr", spec.cidr)?;
        if existing.pools.contains_key(&spec.name) {
            return Err(Error::PoolExists { pool: spec.name });
        }
        if let Some(other) = existing.pools.values().find(|p| overlaps(p.cidr, cidr)) {
            let reason = format!("overlaps pool {:?} ({})", other.name, other.cidr);
            return Err(InvalidInput::new("cidr", cidr, reason).into());
        }
        let block_prefix_len = block_len(cidr, spec.block_prefix_len)?;
        if let Reserve::Bridge { gateway } = spec.reserve {
            check_gateway(cidr, gateway)?;
        }
        Ok(Pool {
            name: spec.name,
            cidr,
            block_prefix_len,
            reserve: spec.reserve,
            granted: spec.granted,
        })
    }

    /// The addresses never handed out, in ascending order.
    pub fn reserved(&self) -> Vec<IpAddr> {
        let Reserve::Bridge { gateway } = self.reserve else {
            return Vec::new();
        };
        let mut out = vec![self.cidr.network(), gateway];
        if let IpNet::V4(net) = self.cidr {
            out.push(IpAddr::V4(net.broadcast()));
        }
        out.sort();
        out.dedup();
        out
    }

    /// Whether `ip` is one of [`Pool::reserved`].
    pub fn is_reserved(&self, ip: IpAddr) -> bool {
        self.reserved().contains(&ip)
    }

    /// How many addresses the pool spans, reserved ones included.
    pub fn capacity(&self) -> u128 {
        1u128 << (self.cidr.max_prefix_len() - self.cidr.prefix_len())
    }

    /// How many addresses one block spans.
    pub fn block_size(&self) -> u32 {
        1u32 << (self.cidr.max_prefix_len() - self.block_prefix_len)
    }

    /// How many blocks the pool is carved into.
    pub fn block_count(&self) -> u128 {
        1u128 << (self.block_prefix_len - self.cidr.prefix_len())
    }

    /// All blocks of the pool, lowest first.
    pub fn blocks(&self) -> impl Iterator<Item = IpNet> + use<> {
        self.cidr
            .subnets(self.block_prefix_len)
            .into_iter()
            .flatten()
    }

    /// The block that holds `ip` (which must lie in the pool).
    pub fn block_of(&self, ip: IpAddr) -> IpNet {
        let bits = self.cidr.max_prefix_len() - self.block_prefix_len;
        let base = (to_u128(ip) >> bits) << bits;
        IpNet::new(from_u128(self.cidr, base), self.block_prefix_len).unwrap_or(self.cidr)
    }

    /// Checks that `ip` may be asked for by `allocate_specific`.
    pub(crate) fn check_specific(&self, ip: IpAddr) -> Result<(), Error> {
        if !self.cidr.contains(&ip) {
            let reason = format!("outside pool {:?} ({})", self.name, self.cidr);
            return Err(InvalidInput::new("ip", ip, reason).into());
        }
        if self.is_reserved(ip) {
            let reason = format!(
                "reserved in pool {:?} (network, broadcast or gateway)",
                self.name
            );
            return Err(InvalidInput::new("ip", ip, reason).into());
        }
        Ok(())
    }
}

/// Checks a pool name: it becomes one segment of a store key. The rule is
/// [`PoolName`]'s.
pub(crate) fn check_name(field: &'static str, name: &str) -> Result<(), InvalidInput> {
    PoolName::parse(field, name).map(drop)
}

fn overlaps(a: IpNet, b: IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn block_len(cidr: IpNet, asked: Option<u8>) -> Result<u8, InvalidInput> {
    let max = cidr.max_prefix_len();
    let (largest, smallest) = (max - LARGEST_BLOCK_BITS, max - SMALLEST_BLOCK_BITS);
    let default = if max == 32 {
        DEFAULT_BLOCK_V4
    } else {
        DEFAULT_BLOCK_V6
    };
    let Some(len) = asked else {
        if cidr.prefix_len() > smallest {
            let reason = format!("pool is smaller than the smallest block (/{smallest})");
            return Err(InvalidInput::new("cidr", cidr, reason));
        }
        return Ok(default.max(cidr.prefix_len()));
    };
    let bad = |reason: String| Err(InvalidInput::new("block_prefix_len", len, reason));
    if len < cidr.prefix_len() {
        return bad(format!("block /{len} is larger than the pool {cidr}"));
    }
    if len > smallest {
        return bad(format!(
            "block /{len} is smaller than the smallest block (/{smallest})"
        ));
    }
    if len < largest {
        return bad(format!(
            "block /{len} is larger than the largest block (/{largest})"
        ));
    }
    Ok(len)
}

fn check_gateway(cidr: IpNet, gateway: IpAddr) -> Result<(), InvalidInput> {
    if !cidr.contains(&gateway) {
        return Err(InvalidInput::new(
            "gateway",
            gateway,
            format!("outside the pool {cidr}"),
        ));
    }
    if gateway == cidr.network() || (cidr.max_prefix_len() == 32 && gateway == cidr.broadcast()) {
        let reason = format!("is the network or broadcast address of {cidr}");
        return Err(InvalidInput::new("gateway", gateway, reason));
    }
    Ok(())
}
