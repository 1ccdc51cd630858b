//! [`NftNat`]: the [`Nat`] trait over an open nf_tables netlink socket.

use crate::conn::{Conn, Failure};
use crate::elems::{self, Elem, fam_of};
use crate::layout::{Fam, INTERNAL, PASS, TABLE};
use crate::plan::{self, Op};
use crate::wire::{Attrs, Message, MsgType, NFPROTO_INET, NFTA_LIST_ELEM, nlm};
use crate::worker::Worker;
use crate::{Error, Nat, NatState, NetworkNat, RoutedPool, check, parse};
use async_trait::async_trait;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use trellis_types::{IfName, NetnsPath, PortMapping};

const ENOENT: i32 = 2;
const EEXIST: i32 = 17;

/// trellis's NAT table in one network namespace, over one netlink socket.
///
/// The socket is opened once and kept by a thread of the `NftNat`'s own
/// (`trellis-nft`), which does every send and receive: the `async` methods
/// hand it a job and await the answer, so no tokio worker (on any runtime,
/// current-thread included) ever waits on the kernel. Jobs run one at a
/// time, which also serialises read-check-write sequences such as
/// `unpublish`. The thread ends when the `NftNat` is dropped (the crate
/// docs say why it exists).
pub struct NftNat {
    worker: Worker,
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
    /// Opens the table's socket in the calling thread's network namespace,
    /// on the `NftNat`'s own thread (which starts there).
    pub fn current() -> Result<Self, Error> {
        let worker = Worker::start(None).map_err(|source| Error::Io {
            op: "open netlink socket",
            source,
        })?;
        Ok(Self { worker })
    }

    /// Opens the table's socket inside the network namespace at `netns`, on
    /// the `NftNat`'s own thread, which enters it for good; the calling
    /// thread does not change namespace.
    pub fn in_netns(netns: &NetnsPath) -> Result<Self, Error> {
        let failed = |source| Error::Io {
            op: "open netlink socket in netns",
            source,
        };
        let ns = std::fs::File::open(netns.as_path()).map_err(failed)?;
        let worker = Worker::start(Some(Arc::new(OwnedFd::from(ns)))).map_err(failed)?;
        Ok(Self { worker })
    }

    /// Runs `job` with the socket, on the nf_tables thread.
    pub(crate) async fn run<T, F>(&self, op: &'static str, job: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Conn) -> Result<T, Error> + Send + 'static,
    {
        self.worker.run(op, job).await
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

    fn publish_on(conn: &mut Conn, ports: &[PortMapping]) -> Result<(), Error> {
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
    pub async fn publish_unchecked(&self, ports: &[PortMapping]) -> Result<(), Error> {
        let ports = ports.to_vec();
        self.run("publish", move |conn| Self::publish_batch(conn, &ports))
            .await
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

    fn unpublish_on(conn: &mut Conn, ports: &[PortMapping]) -> Result<(), Error> {
        let mut present = Vec::new();
        for m in ports {
            let found = Self::get_mapping(conn, m)?;
            if found == Some(*m) && !present.contains(m) {
                present.push(*m);
            }
        }
        Self::apply(conn, &plan::unpublish(&present)).map_err(|f| kernel("unpublish", f))
    }

    fn add_network_on(conn: &mut Conn, net: &NetworkNat) -> Result<(), Error> {
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

    fn set_reach_on(conn: &mut Conn, pairs: &[(IfName, IfName)]) -> Result<(), Error> {
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

    fn remove_network_on(conn: &mut Conn, net: &NetworkNat) -> Result<(), Error> {
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
    // Every call does all of its work in the job, planning included: a
    // `sync` of thousands of ports is milliseconds of encoding, which would
    // stall the caller's runtime as surely as a read.

    async fn ensure_table(&self) -> Result<(), Error> {
        self.run("ensure table", |conn| {
            Self::apply(conn, &plan::skeleton()).map_err(|f| kernel("ensure table", f))
        })
        .await
    }

    async fn sync(&self, state: &NatState) -> Result<(), Error> {
        let state = state.clone();
        self.run("sync", move |conn| {
            check::state(&state)?;
            Self::apply(conn, &plan::sync(&state)).map_err(|f| kernel("sync", f))
        })
        .await
    }

    async fn add_network(&self, net: &NetworkNat) -> Result<(), Error> {
        let net = net.clone();
        self.run("add network", move |conn| Self::add_network_on(conn, &net))
            .await
    }

    async fn remove_network(&self, net: &NetworkNat) -> Result<(), Error> {
        let net = net.clone();
        self.run("remove network", move |conn| {
            Self::remove_network_on(conn, &net)
        })
        .await
    }

    async fn list_networks(&self) -> Result<Vec<NetworkNat>, Error> {
        self.run("list networks", Self::networks).await
    }

    async fn add_pool(&self, pool: &RoutedPool) -> Result<(), Error> {
        let pool = *pool;
        self.run("add pool", move |conn| Self::add_pool_on(conn, &pool))
            .await
    }

    async fn remove_pool(&self, pool: &RoutedPool) -> Result<(), Error> {
        let pool = *pool;
        self.run("remove pool", move |conn| Self::remove_pool_on(conn, &pool))
            .await
    }

    async fn list_pools(&self) -> Result<Vec<RoutedPool>, Error> {
        self.run("list pools", Self::pools).await
    }

    async fn set_reach(&self, pairs: &[(IfName, IfName)]) -> Result<(), Error> {
        let pairs = pairs.to_vec();
        self.run("set reach", move |conn| Self::set_reach_on(conn, &pairs))
            .await
    }

    async fn list_reach(&self) -> Result<Vec<(IfName, IfName)>, Error> {
        self.run("list reach", Self::reach).await
    }

    async fn publish(&self, ports: &[PortMapping]) -> Result<(), Error> {
        let ports = ports.to_vec();
        self.run("publish", move |conn| Self::publish_on(conn, &ports))
            .await
    }

    async fn unpublish(&self, ports: &[PortMapping]) -> Result<(), Error> {
        let ports = ports.to_vec();
        self.run("unpublish", move |conn| Self::unpublish_on(conn, &ports))
            .await
    }

    async fn list_published(&self) -> Result<Vec<PortMapping>, Error> {
        self.run("list published ports", |conn| {
            let mut out = Vec::new();
            for f in Fam::ALL {
                out.extend(Self::mappings(conn, f)?);
            }
            out.sort();
            Ok(out)
        })
        .await
    }

    async fn remove_all(&self) -> Result<(), Error> {
        self.run("remove all", |conn| {
            match Self::apply(conn, &[Op::DelTable]) {
                Ok(()) | Err(Failure::Kernel { errno: ENOENT, .. }) => Ok(()),
                Err(f) => Err(kernel("remove all", f)),
            }
        })
        .await
    }
}
