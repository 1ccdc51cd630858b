//! Routed pools on [`NftNat`]: elements of `pools` and `natpools`, read back
//! from the kernel before each change so that a change is exactly the
//! elements that differ.

use crate::conn::Conn;
use crate::elems::prefixes_from_elems;
use crate::layout::Fam;
use crate::nft::kernel;
use crate::{Error, NftNat, RoutedPool, check, plan};

impl NftNat {
    /// The routed pools in the table, sorted.
    pub(crate) fn pools(conn: &mut Conn) -> Result<Vec<RoutedPool>, Error> {
        let mut out = Vec::new();
        for f in Fam::ALL {
            let nat = prefixes_from_elems(f, &Self::dump(conn, f.natpools())?);
            let all = prefixes_from_elems(f, &Self::dump(conn, f.pools())?);
            out.extend(all.into_iter().map(|cidr| RoutedPool {
                cidr,
                nat_outgoing: nat.contains(&cidr),
            }));
        }
        out.sort();
        Ok(out)
    }

    pub(crate) fn add_pool_on(conn: &mut Conn, pool: &RoutedPool) -> Result<(), Error> {
        check::pool(pool)?;
        let existing = Self::pools(conn)?;
        check::no_pool_overlap(pool, &existing)?;
        let ops = match existing.iter().find(|e| e.cidr == pool.cidr) {
            None => plan::add_pool(pool),
            Some(old) if old == pool => return Ok(()),
            // Only `nat_outgoing` changed: add or remove the natpools interval.
            Some(_) => {
                let on = RoutedPool {
                    nat_outgoing: true,
                    ..*pool
                };
                let off = plan::pool_elems(&RoutedPool {
                    nat_outgoing: false,
                    ..*pool
                });
                let nat: Vec<_> = plan::pool_elems(&on)
                    .into_iter()
                    .filter(|p| !off.contains(p))
                    .collect();
                if pool.nat_outgoing {
                    plan::add_elems(nat)
                } else {
                    plan::del_elems(nat)
                }
            }
        };
        Self::apply(conn, &ops).map_err(|f| kernel("add pool", f))
    }

    pub(crate) fn remove_pool_on(conn: &mut Conn, pool: &RoutedPool) -> Result<(), Error> {
        let existing = Self::pools(conn)?;
        let Some(old) = existing.iter().find(|e| e.cidr == pool.cidr) else {
            return Ok(());
        };
        let ops = plan::del_elems(plan::pool_elems(old));
        Self::apply(conn, &ops).map_err(|f| kernel("remove pool", f))
    }
}
