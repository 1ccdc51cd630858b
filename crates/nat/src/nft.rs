//! [`NftNat`]: the [`Nat`] trait over an open nf_tables netlink socket.

use crate::conn::{Conn, Failure};
use crate::elems::{self, Elem, fam_of};
use crate::layout::{Fam, INTERNAL, PASS, TABLE};
use crate::plan::{self, Op};
use crate::wire::{Attrs, Message, MsgType, NFPROTO_INET, NFTA_LIST_ELEM, nlm};
use crate::{Error, Nat, NatState, NetworkNat, RoutedPool, check, parse};
use async_trait::async_trait;
use std::sync::{Mutex, MutexGuard};
use trellis_types::{IfName, NetnsPath, PortMapping};

const ENOENT: i32 = 2;
const EEXIST: i32 = 17;

/// trellis's NAT table in one network namespace, over one netlink socket.
///
/// The socket is opened once and kept (behind a mutex, which also serialises
/// read-check-write sequences such as `unpublish`). Each call is one short
/// exchange with the kernel (tens of microseconds), done inline rather than on a
/// blocking pool: it never waits on anything but the kernel's immediate answer.
pub struct NftNat {
    conn: Mutex<Conn>,
}

impl std::fmt::Debug for NftNat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NftNat").finish_non_exhaustive()
    }
}

pub(crate) fn kernel(op: &'static str, f: Failure) -> Error {
    match f {
        Failure::Io(source) => Error::Io { op, source },
        Failure::Kernel { errno: ENOENT, .. } => Error::NoTable(TABLE),
        Failure::Kernel { errno, detail, .. } => Error::Kernel { op, errno, detail },
    }
}

fn elems_request(kind: MsgType, flags: u16, set: &str, key: Option<&[u8]>) -> Message {
    let mut a = Attrs::new();
    a.str(1, TABLE).str(2, set); // NFTA_SET_ELEM_LIST_TABLE, _SET
    if let Some(key) = key {
        a.nest(3, |l| {
            l.nest(NFTA_LIST_ELEM, |e| {
                e.data(1, key);
            });
        });
    }
    Message {
        kind,
        flags,
        family: NFPROTO_INET,
        attrs: a,
    }
}

impl NftNat {
    /// Opens the table's socket in the calling thread's network namespace.
    pub fn current() -> Result<Self, Error> {
        let conn = Conn::open().map_err(|source| Error::Io {
            op: "open netlink socket",
            source,
        })?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// Opens the table's socket inside the network namespace at `netns`; the
    /// calling thread does not change namespace.
    pub fn in_netns(netns: &NetnsPath) -> Result<Self, Error> {
        let conn = Conn::open_in(netns.as_path()).map_err(|source| Error::Io {
            op: "open netlink socket in netns",
            source,
        })?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Conn> {
        // A panic while holding the lock leaves no half-done kernel state (every
        // change is one batch), so a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn apply(conn: &mut Conn, ops: &[Op]) -> Result<(), Failure> {
        conn.batch(&ops.iter().map(Op::message).collect::<Vec<_>>())
    }

    /// Every element of `set`.
    pub(crate) fn dump(conn: &mut Conn, set: &str) -> Result<Vec<Elem>, Error> {
        let msg = elems_request(MsgType::GetSetElem, nlm::F_DUMP, set, None);
        let replies = conn
            .request(&msg)
            .map_err(|f| kernel("list set elements", f))?;
        Ok(replies.iter().flat_map(|p| parse::set_elems(p)).collect())
    }

    /// The mapping published under `m`'s key in `m`'s map, if any: the same
    /// protocol, host port (and host address) — not necessarily `m` itself.
    fn get_mapping(conn: &mut Conn, m: &PortMapping) -> Result<Option<PortMapping>, Error> {
        let (f, on_address) = (fam_of(m.container_ip), m.host_ip.is_some());
        let msg = elems_request(
            MsgType::GetSetElem,
            0,
            elems::map_of(m),
            Some(&elems::mapping_key(m)),
        );
        match conn.request(&msg) {
            Ok(replies) => {
                let found = replies.iter().flat_map(|p| parse::set_elems(p));
                Ok(found
                    .filter_map(|e| elems::port_from_elem(f, on_address, &e))
                    .next())
            }
            // The element is missing (or the whole table: then the batch that
            // follows reports it, and an unpublish has nothing to do anyway).
            Err(Failure::Kernel { errno: ENOENT, .. }) => Ok(None),
            Err(e) => Err(kernel("look up published port", e)),
        }
    }

    /// A published mapping that `m` would clash with, if any: the same key in
    /// its own map, and across the two maps of its family — the same port on
    /// every address against one on a single address, either way.
    fn clash(
        conn: &mut Conn,
        m: &PortMapping,
        on_address: &mut Option<Vec<PortMapping>>,
    ) -> Result<Option<PortMapping>, Error> {
        if let Some(found) = Self::get_mapping(conn, m)? {
            return Ok(Some(found));
        }
        if m.host_ip.is_some() {
            return Self::get_mapping(conn, &m.on(None));
        }
        // A port on every address: any address-bound mapping of the same
        // protocol and port clashes (that map is small; read it once).
        let f = fam_of(m.container_ip);
        if on_address.is_none() {
            let found = Self::dump(conn, f.hostports())?;
            let parsed = found
                .iter()
                .filter_map(|e| elems::port_from_elem(f, true, e));
            *on_address = Some(parsed.collect());
        }
        let held = on_address.as_deref().unwrap_or_default();
        Ok(held
            .iter()
            .find(|o| fam_of(o.container_ip) == f && o.clashes_with(m))
            .copied())
    }

    /// Every mapping of family `f`, from both its maps.
    fn mappings(conn: &mut Conn, f: Fam) -> Result<Vec<PortMapping>, Error> {
        let mut out = Vec::new();
        for (map, on_address) in [(f.ports(), false), (f.hostports(), true)] {
            let found = Self::dump(conn, map)?;
            out.extend(
                found
                    .iter()
                    .filter_map(|e| elems::port_from_elem(f, on_address, e)),
            );
        }
        Ok(out)
    }

    fn networks(conn: &mut Conn) -> Result<Vec<NetworkNat>, Error> {
        let mut out = Vec::new();
        let internal = Self::dump(conn, INTERNAL)?;
        for f in Fam::ALL {
            let starts: Vec<Elem> = Self::dump(conn, f.masq())?
                .into_iter()
                .filter(|e| e.flags & elems::ELEM_INTERVAL_END == 0)
                .collect();
            for e in Self::dump(conn, f.own())? {
                let Some((subnet, bridge)) = elems::own_from_elem(f, &e) else {
                    continue;
                };
                let masquerade = starts.iter().any(|s| s.key == e.key[..f.addr_len()]);
                let internal = internal.contains(&elems::ifname_elem(&bridge));
                out.push(NetworkNat {
                    subnet,
                    bridge,
                    masquerade,
                    internal,
                });
            }
        }
        out.sort_by(|a, b| (a.subnet, &a.bridge).cmp(&(b.subnet, &b.bridge)));
        Ok(out)
    }

    fn publish_locked(conn: &mut Conn, ports: &[PortMapping]) -> Result<(), Error> {
        check::no_duplicate_ports(ports)?;
        let mut on_address = None;
        for m in ports {
            if let Some(existing) = Self::clash(conn, m, &mut on_address)? {
                return Err(Error::PortInUse {
                    protocol: m.protocol,
                    host_port: m.host_port,
                    existing: Some(existing),
                });
            }
        }
        Self::publish_batch(conn, ports)
    }

    /// Test hook: `publish` without the look-up before sending, so that the
    /// privileged tests can prove that the kernel's own refusal (EEXIST under
    /// `NLM_F_EXCL`) is mapped to [`Error::PortInUse`] and aborts the whole batch.
    #[doc(hidden)]
    pub fn publish_unchecked(&self, ports: &[PortMapping]) -> Result<(), Error> {
        let mut conn = self.lock();
        Self::publish_batch(&mut conn, ports)
    }

    fn publish_batch(conn: &mut Conn, ports: &[PortMapping]) -> Result<(), Error> {
        match Self::apply(conn, &plan::publish(ports)) {
            Ok(()) => Ok(()),
            // Published meanwhile by someone else: the batch named the message.
            Err(Failure::Kernel {
                errno: EEXIST,
                index: Some(i),
                ..
            }) if i < ports.len() => {
                let m = ports[i];
                let existing = Self::get_mapping(conn, &m)?;
                Err(Error::PortInUse {
                    protocol: m.protocol,
                    host_port: m.host_port,
                    existing,
                })
            }
            Err(f) => Err(kernel("publish", f)),
        }
    }

    fn unpublish_locked(conn: &mut Conn, ports: &[PortMapping]) -> Result<(), Error> {
        let mut present = Vec::new();
        for m in ports {
            let found = Self::get_mapping(conn, m)?;
            if found == Some(*m) && !present.contains(m) {
                present.push(*m);
            }
        }
        Self::apply(conn, &plan::unpublish(&present)).map_err(|f| kernel("unpublish", f))
    }

    fn add_network_locked(conn: &mut Conn, net: &NetworkNat) -> Result<(), Error> {
        check::network(net)?;
        let existing = Self::networks(conn)?;
        check::no_overlap(net, &existing)?;
        let want = plan::network_elems(net);
        let ops = match existing.iter().find(|e| e.subnet == net.subnet) {
            None => plan::add_elems(want),
            Some(old) if old == net => return Ok(()),
            Some(old) => {
                // `masquerade` or `internal` changed: add and remove the
                // elements that differ.
                let have = plan::network_elems(old);
                let add = want.iter().filter(|p| !have.contains(p)).cloned();
                let del = have.iter().filter(|p| !want.contains(p)).cloned();
                let mut ops = plan::del_elems(del.collect());
                ops.extend(plan::add_elems(add.collect()));
                ops
            }
        };
        Self::apply(conn, &ops).map_err(|f| kernel("add network", f))
    }

    /// The cross-network pairs of the `pass` set (a bridge with itself left out).
    fn reach(conn: &mut Conn) -> Result<Vec<(IfName, IfName)>, Error> {
        let mut out: Vec<(IfName, IfName)> = Self::dump(conn, PASS)?
            .iter()
            .filter_map(elems::pass_from_elem)
            .filter(|(a, b)| a != b)
            .collect();
        out.sort();
        Ok(out)
    }

    fn set_reach_locked(conn: &mut Conn, pairs: &[(IfName, IfName)]) -> Result<(), Error> {
        let want = plan::reach_elems(pairs);
        let have = plan::reach_elems(&Self::reach(conn)?);
        let add: Vec<_> = want.iter().filter(|p| !have.contains(p)).cloned().collect();
        let del: Vec<_> = have.iter().filter(|p| !want.contains(p)).cloned().collect();
        let mut ops = plan::del_elems(del);
        // Not exclusive: a pair asked for twice is one element.
        ops.extend(plan::add_elems(add).into_iter().map(|op| match op {
            Op::NewElems { set, elems, .. } => Op::NewElems {
                set,
                elems,
                exclusive: false,
            },
            other => other,
        }));
        if ops.is_empty() {
            return Ok(());
        }
        Self::apply(conn, &ops).map_err(|f| kernel("set reach", f))
    }

    fn remove_network_locked(conn: &mut Conn, net: &NetworkNat) -> Result<(), Error> {
        let existing = Self::networks(conn)?;
        let Some(old) = existing
            .iter()
            .find(|e| e.subnet == net.subnet && e.bridge == net.bridge)
        else {
            return Ok(());
        };
        let ops = plan::del_elems(plan::network_elems(old));
        Self::apply(conn, &ops).map_err(|f| kernel("remove network", f))
    }
}

#[async_trait]
impl Nat for NftNat {
    async fn ensure_table(&self) -> Result<(), Error> {
        let ops = plan::skeleton();
        Self::apply(&mut self.lock(), &ops).map_err(|f| kernel("ensure table", f))
    }

    async fn sync(&self, state: &NatState) -> Result<(), Error> {
        check::state(state)?;
        let ops = plan::sync(state);
        Self::apply(&mut self.lock(), &ops).map_err(|f| kernel("sync", f))
    }

    async fn add_network(&self, net: &NetworkNat) -> Result<(), Error> {
        Self::add_network_locked(&mut self.lock(), net)
    }

    async fn remove_network(&self, net: &NetworkNat) -> Result<(), Error> {
        Self::remove_network_locked(&mut self.lock(), net)
    }

    async fn list_networks(&self) -> Result<Vec<NetworkNat>, Error> {
        Self::networks(&mut self.lock())
    }

    async fn add_pool(&self, pool: &RoutedPool) -> Result<(), Error> {
        Self::add_pool_locked(&mut self.lock(), pool)
    }

    async fn remove_pool(&self, pool: &RoutedPool) -> Result<(), Error> {
        Self::remove_pool_locked(&mut self.lock(), pool)
    }

    async fn list_pools(&self) -> Result<Vec<RoutedPool>, Error> {
        Self::pools(&mut self.lock())
    }

    async fn set_reach(&self, pairs: &[(IfName, IfName)]) -> Result<(), Error> {
        Self::set_reach_locked(&mut self.lock(), pairs)
    }

    async fn list_reach(&self) -> Result<Vec<(IfName, IfName)>, Error> {
        Self::reach(&mut self.lock())
    }

    async fn publish(&self, ports: &[PortMapping]) -> Result<(), Error> {
        Self::publish_locked(&mut self.lock(), ports)
    }

    async fn unpublish(&self, ports: &[PortMapping]) -> Result<(), Error> {
        Self::unpublish_locked(&mut self.lock(), ports)
    }

    async fn list_published(&self) -> Result<Vec<PortMapping>, Error> {
        let mut conn = self.lock();
        let mut out = Vec::new();
        for f in Fam::ALL {
            out.extend(Self::mappings(&mut conn, f)?);
        }
        out.sort();
        Ok(out)
    }

    async fn remove_all(&self) -> Result<(), Error> {
        match Self::apply(&mut self.lock(), &[Op::DelTable]) {
            Ok(()) | Err(Failure::Kernel { errno: ENOENT, .. }) => Ok(()),
            Err(f) => Err(kernel("remove all", f)),
        }
    }
}
