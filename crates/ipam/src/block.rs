//! Blocks: the unit a host claims, and the record of who holds which address.

use crate::Error;
use crate::addr::{from_u128, to_u128};
use crate::pool::Pool;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use trellis_types::Handle;

/// One bit per address of a block, ordinal 0 = the block's first address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Bitmap(Vec<u64>);

impl Bitmap {
    fn new(bits: u32) -> Self {
        Self(vec![0; bits.div_ceil(64) as usize])
    }

    pub(crate) fn get(&self, i: u32) -> bool {
        self.0
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn set(&mut self, i: u32, on: bool) {
        if let Some(w) = self.0.get_mut((i / 64) as usize) {
            if on {
                *w |= 1 << (i % 64);
            } else {
                *w &= !(1 << (i % 64));
            }
        }
    }

    pub(crate) fn count(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }
}

/// The stored record of one block (JSON under `ipam/blocks/<pool>/<a>-<len>`).
///
/// `used` and `reserved` are disjoint; `handles` has an entry exactly for the
/// ordinals set in `used`; `borrowers` has an entry for the used ordinals
/// held by a host other than `host` (a subset of `handles`' keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Block {
    /// The block's prefix.
    pub cidr: IpNet,
    /// The host the block is affine to: its allocator hands out from it.
    pub host: String,
    /// Next-fit cursor: the ordinal the next search starts from.
    pub cursor: u32,
    /// Allocated ordinals.
    pub used: Bitmap,
    /// Ordinals never handed out (the pool's reserved addresses in this block).
    pub reserved: Bitmap,
    /// Who holds each allocated ordinal.
    pub handles: BTreeMap<u32, Handle>,
    /// The host that borrowed each ordinal held by another host than the
    /// block's own (routed mode without strict affinity: that host routes
    /// and announces the /32 or /128). Absent from records written before
    /// borrowing existed, hence the default.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub borrowers: BTreeMap<u32, String>,
    /// No new address is handed out of it (a granted block the controller
    /// no longer counts as this host's; see
    /// [`Ipam::freeze_block`](crate::Ipam::freeze_block)); those in use stay.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub frozen: bool,
}

impl Block {
    /// A fresh block `cidr` of `pool`, affine to `host`.
    pub(crate) fn new(pool: &Pool, cidr: IpNet, host: &str) -> Self {
        let size = pool.block_size();
        let mut reserved = Bitmap::new(size);
        for ip in pool.reserved() {
            if cidr.contains(&ip) {
                reserved.set(ordinal_in(cidr, ip), true);
            }
        }
        Self {
            cidr,
            host: host.to_owned(),
            cursor: 0,
            used: Bitmap::new(size),
            reserved,
            handles: BTreeMap::new(),
            borrowers: BTreeMap::new(),
            frozen: false,
        }
    }

    /// Decodes the record stored under `key`.
    pub(crate) fn decode(key: &str, bytes: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
            key: key.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Encodes the record for the store.
    pub(crate) fn encode(&self) -> Vec<u8> {
        // A struct of plain fields and string-keyed maps always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// How many addresses the block spans.
    pub(crate) fn size(&self) -> u32 {
        1 << (self.cidr.max_prefix_len() - self.cidr.prefix_len())
    }

    /// The address at `ordinal`.
    pub(crate) fn ip(&self, ordinal: u32) -> IpAddr {
        from_u128(
            self.cidr,
            to_u128(self.cidr.network()) + u128::from(ordinal),
        )
    }

    /// The ordinal of `ip`, which must lie in the block.
    pub(crate) fn ordinal(&self, ip: IpAddr) -> u32 {
        ordinal_in(self.cidr, ip)
    }

    /// Addresses neither used nor reserved (none in a frozen block).
    pub(crate) fn free(&self) -> u32 {
        if self.frozen {
            return 0;
        }
        self.size() - self.used.count() - self.reserved.count()
    }

    /// The ordinal `handle` holds here, if any.
    pub(crate) fn find(&self, handle: &Handle) -> Option<u32> {
        self.handles
            .iter()
            .find_map(|(ord, h)| (h == handle).then_some(*ord))
    }

    /// The ordinal `handle` holds here on behalf of host `by` (the block's
    /// own host, or the host that borrowed it).
    pub(crate) fn find_for(&self, handle: &Handle, by: &str) -> Option<u32> {
        self.find(handle).filter(|ord| self.host_of(*ord) == by)
    }

    /// Who holds `ordinal`.
    pub(crate) fn holder(&self, ordinal: u32) -> Option<&Handle> {
        self.handles.get(&ordinal)
    }

    /// The host that holds `ordinal`: its borrower, or the block's host.
    pub(crate) fn host_of(&self, ordinal: u32) -> &str {
        self.borrowers.get(&ordinal).unwrap_or(&self.host)
    }

    /// Whether host `by` (not the block's host) borrowed an address here.
    pub(crate) fn lends_to(&self, by: &str) -> bool {
        self.borrowers.values().any(|h| h == by)
    }

    /// Allocates the next free address at or after the cursor, wrapping
    /// around (next-fit), for host `by`, and moves the cursor past it.
    pub(crate) fn allocate_next(&mut self, handle: &Handle, by: &str) -> Option<IpAddr> {
        if self.frozen {
            return None;
        }
        let size = self.size();
        let ordinal = (0..size)
            .map(|i| (self.cursor + i) % size)
            .find(|&o| !self.used.get(o) && !self.reserved.get(o))?;
        self.assign(ordinal, handle, by);
        self.cursor = (ordinal + 1) % size;
        Some(self.ip(ordinal))
    }

    /// Marks `ordinal` as held by `handle` for host `by`, recording `by` as
    /// its borrower when it is not the block's host; the caller checked the
    /// ordinal is free. The cursor does not move: fixed addresses do not
    /// steer next-fit.
    pub(crate) fn assign(&mut self, ordinal: u32, handle: &Handle, by: &str) {
        self.used.set(ordinal, true);
        self.handles.insert(ordinal, handle.clone());
        if by != self.host {
            self.borrowers.insert(ordinal, by.to_owned());
        }
    }

    /// Frees every address `handle` holds here; returns them.
    pub(crate) fn release(&mut self, handle: &Handle) -> Vec<IpAddr> {
        let ordinals: Vec<u32> = self
            .handles
            .iter()
            .filter_map(|(ord, h)| (h == handle).then_some(*ord))
            .collect();
        for ord in &ordinals {
            self.unassign(*ord);
        }
        ordinals.into_iter().map(|o| self.ip(o)).collect()
    }

    /// Frees `ordinal` whoever holds it (the mirror of [`Block::assign`]);
    /// the caller checked the holder. The cursor does not move.
    pub(crate) fn unassign(&mut self, ordinal: u32) {
        self.handles.remove(&ordinal);
        self.borrowers.remove(&ordinal);
        self.used.set(ordinal, false);
    }
}

fn ordinal_in(cidr: IpNet, ip: IpAddr) -> u32 {
    (to_u128(ip) - to_u128(cidr.network())) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::Reserve;
    use trellis_types::{ContainerId, IfName};

    fn handle(c: &str) -> Handle {
        Handle::new(
            ContainerId::parse("c", c).unwrap(),
            IfName::parse("i", "eth0").unwrap(),
        )
    }

    fn bridge_pool() -> Pool {
        Pool {
            name: "p".into(),
            cidr: "10.0.0.0/24".parse().unwrap(),
            block_prefix_len: 26,
            reserve: Reserve::Bridge {
                gateway: "10.0.0.1".parse().unwrap(),
            },
            granted: false,
        }
    }

    #[test]
    fn first_block_skips_network_and_gateway_last_skips_broadcast() {
        let pool = bridge_pool();
        let mut first = Block::new(&pool, "10.0.0.0/26".parse().unwrap(), "h");
        assert_eq!(first.free(), 62);
        assert_eq!(
            first.allocate_next(&handle("a"), "h"),
            Some("10.0.0.2".parse().unwrap())
        );
        let mut last = Block::new(&pool, "10.0.0.192/26".parse().unwrap(), "h");
        assert_eq!(last.free(), 63);
        let ips: Vec<_> = (0..63)
            .map(|i| last.allocate_next(&handle(&format!("c{i}")), "h").unwrap())
            .collect();
        assert!(!ips.contains(&"10.0.0.255".parse().unwrap()));
        assert_eq!(last.allocate_next(&handle("x"), "h"), None);
    }

    #[test]
    fn next_fit_does_not_reuse_a_released_address_first() {
        let pool = bridge_pool();
        let mut b = Block::new(&pool, "10.0.0.64/26".parse().unwrap(), "h");
        let a = b.allocate_next(&handle("a"), "h").unwrap();
        let _ = b.allocate_next(&handle("b"), "h").unwrap();
        assert_eq!(b.release(&handle("a")), vec![a]);
        assert_ne!(b.allocate_next(&handle("c"), "h").unwrap(), a);
    }

    #[test]
    fn a_borrowed_address_records_its_host_until_released() {
        let mut b = Block::new(&bridge_pool(), "10.0.0.64/26".parse().unwrap(), "h");
        let own = b.allocate_next(&handle("a"), "h").unwrap();
        let lent = b.allocate_next(&handle("b"), "h2").unwrap();
        let (o, l) = (b.ordinal(own), b.ordinal(lent));
        assert_eq!((b.host_of(o), b.host_of(l)), ("h", "h2"));
        assert!(b.lends_to("h2") && !b.lends_to("h"));
        assert_eq!(b.find_for(&handle("b"), "h2"), Some(l));
        assert_eq!(b.find_for(&handle("b"), "h"), None);
        assert_eq!(b.release(&handle("b")), vec![lent]);
        assert!(b.borrowers.is_empty() && !b.lends_to("h2"));
    }

    #[test]
    fn record_round_trips_through_json() {
        let mut b = Block::new(&bridge_pool(), "10.0.0.0/26".parse().unwrap(), "h");
        b.allocate_next(&handle("a"), "h");
        let back = Block::decode("k", &b.encode()).unwrap();
        assert_eq!(back, b);
        assert!(matches!(
            Block::decode("k", b"{"),
            Err(Error::Corrupt { .. })
        ));
    }
}
