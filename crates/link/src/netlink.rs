//! [`NetlinkLinks`]: the real [`Links`], over rtnetlink.

use crate::error::LinkError;
use crate::host::{HostAddress, Listener, NetnsId, ReservedNetns, WantedPort};
use crate::host::{netns_identity, reserved_netns};
use crate::spec::{BridgeSpec, ContainerIface, LinkDetail, RetireEnd, VethInfo, VethSpec};
use crate::{Links, host_read, msg, naming};
use async_trait::async_trait;
use ipnet::IpNet;
use netlink_packet_route::RouteNetlinkMessage;
use nix::errno::Errno;
use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use trellis_netlink::msg::{address_add, address_del};
use trellis_netlink::netns::{check_netns, open_netns};
use trellis_netlink::{
    ContainerRoute, Families, KernelError, LinkRef, LinkSummary, NetnsError, Ns, Sockets,
    SysctlKey, lookup, nl,
};
use trellis_types::{IfName, NetnsPath};

/// The real [`Links`]: one long-lived netlink socket in the host namespace,
/// and a fresh socket per call for a container's.
#[derive(Clone, Debug)]
pub struct NetlinkLinks {
    sockets: Sockets,
    /// Namespaces never to be taken for a container's (read once, here).
    reserved: Arc<Vec<ReservedNetns>>,
    /// The index of each bridge a veth was put on, by name: known after the
    /// first lookup, so an attach does not look its bridge up again. A
    /// bridge deleted and made again (by anyone) gets a new index — the
    /// kernel hands indexes out cyclically and never reuses one soon —, so
    /// a stale entry fails the create, which is then retried once with a
    /// fresh lookup.
    masters: Arc<Mutex<HashMap<IfName, u32>>>,
}

impl NetlinkLinks {
    /// Uses the namespace the process is in as the host (the daemon).
    pub async fn current() -> Result<Self, LinkError> {
        Ok(Self::new(Sockets::current().await?))
    }

    /// Uses the namespace at `path` as the host (tests, labs).
    pub async fn in_netns(path: &NetnsPath) -> Result<Self, LinkError> {
        Ok(Self::new(Sockets::in_netns(path).await?))
    }

    /// Builds on existing sockets (to share them with trellis-route).
    pub fn new(sockets: Sockets) -> Self {
        let reserved = Arc::new(reserved_netns(sockets.host_netns()));
        Self {
            sockets,
            reserved,
            masters: Arc::default(),
        }
    }

    /// The sockets, to hand to trellis-route.
    pub fn sockets(&self) -> &Sockets {
        &self.sockets
    }
}

/// Gets one link; `None` if it does not exist.
async fn get(handle: &rtnetlink::Handle, link: &LinkRef) -> Result<Option<LinkSummary>, LinkError> {
    Ok(lookup::find_link(handle, link).await?)
}

async fn must_get(handle: &rtnetlink::Handle, link: &LinkRef) -> Result<LinkSummary, LinkError> {
    get(handle, link).await?.ok_or_else(|| LinkError::NotFound {
        name: link.to_string(),
    })
}

async fn index_of(handle: &rtnetlink::Handle, link: &LinkRef) -> Result<u32, LinkError> {
    match link {
        LinkRef::Index(i) => Ok(*i),
        LinkRef::Name(_) => Ok(must_get(handle, link).await?.index),
    }
}

fn missing_as_not_found(e: KernelError, link: &LinkRef) -> LinkError {
    if e.is(Errno::ENODEV) {
        LinkError::NotFound {
            name: link.to_string(),
        }
    } else {
        e.into()
    }
}

/// Device groups used for batched deletes: high, odd-looking numbers, unique
/// per process and call, so that no one else's group is ever deleted.
fn fresh_group() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) & 0xfff;
    0x7400_0000 | ((std::process::id() & 0x3fff) << 12) | n
}

impl NetlinkLinks {
    /// The index of `master` (`None` for none), and whether it came from
    /// [`NetlinkLinks::masters`] rather than a lookup just now.
    async fn master_index(
        &self,
        master: Option<&LinkRef>,
    ) -> Result<(Option<u32>, bool), LinkError> {
        let name = match master {
            None => return Ok((None, false)),
            Some(LinkRef::Index(i)) => return Ok((Some(*i), false)),
            Some(LinkRef::Name(name)) => name,
        };
        if let Some(&i) = self.masters().get(name) {
            return Ok((Some(i), true));
        }
        let index = must_get(self.sockets.host(), &LinkRef::Name(name.clone()))
            .await?
            .index;
        self.masters().insert(name.clone(), index);
        Ok((Some(index), false))
    }

    fn forget_master(&self, master: Option<&LinkRef>) {
        if let Some(LinkRef::Name(name)) = master {
            self.masters().remove(name);
        }
    }

    fn masters(&self) -> std::sync::MutexGuard<'_, HashMap<IfName, u32>> {
        self.masters.lock().expect("masters lock")
    }

    async fn reconcile_bridge(
        &self,
        existing: LinkSummary,
        spec: &BridgeSpec,
    ) -> Result<u32, LinkError> {
        if existing.kind.as_deref() != Some("bridge") {
            let kind = existing
                .kind
                .map_or("a device without a kind".into(), |k| format!("a {k}"));
            return Err(LinkError::NotABridge {
                name: spec.name.to_string(),
                kind,
            });
        }
        if let Some(req) = msg::bridge_update(&existing, spec) {
            nl::apply(self.sockets.host(), vec![req]).await?;
        }
        Ok(existing.index)
    }

    async fn veth_exists_error(&self, spec: &VethSpec) -> LinkError {
        let host = LinkRef::Name(spec.host_name.clone());
        match get(self.sockets.host(), &host).await {
            Ok(Some(_)) => LinkError::AlreadyExists {
                name: spec.host_name.to_string(),
            },
            _ => LinkError::AlreadyExists {
                name: format!("{} in {}", spec.container_name, spec.container_netns),
            },
        }
    }

    /// Renames the down link `index` in the namespace of `handle` to a fresh
    /// retired name, trying another on the rare clash; the name it took.
    async fn rename_retired(
        handle: &rtnetlink::Handle,
        index: u32,
        subject: &str,
        mut first: Vec<nl::Request>,
    ) -> Result<IfName, LinkError> {
        for _ in 0..3 {
            let name = naming::retired_name();
            first.push(msg::rename(index, subject, name.as_str()));
            match nl::apply(handle, std::mem::take(&mut first)).await {
                Err(e) if e.is(Errno::EEXIST) => continue,
                other => return other.map(|()| name).map_err(Into::into),
            }
        }
        Err(LinkError::AlreadyExists {
            name: format!("a retired name for {subject}"),
        })
    }

    /// The container end of a veth being retired: down, without addresses,
    /// renamed, if it is there and is the peer of host link `host_index`;
    /// whether it was.
    async fn retire_container_end(
        &self,
        end: &RetireEnd,
        peer: u32,
        host_index: u32,
    ) -> Result<bool, LinkError> {
        let ns = Ns::Path(end.netns.clone());
        let handle = match self.sockets.handle(&ns).await {
            Ok(h) => h,
            // The namespace is gone (or is no namespace): its end went, or
            // goes, with the host end.
            Err(NetnsError::Invalid(_)) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let Some(link) = get(&handle, &LinkRef::Index(peer)).await? else {
            return Ok(false);
        };
        if link.name != end.ifname.as_str() || link.link != Some(host_index) {
            return Ok(false);
        }
        let subject = format!("{} in {}", end.ifname, end.netns);
        let answers = nl::fetch(&handle, msg::dump_addresses(&subject)).await?;
        let mut reqs = vec![msg::down(peer, &subject)];
        reqs.extend(answers.iter().filter_map(|m| match m {
            RouteNetlinkMessage::NewAddress(a) if a.header.index == peer => {
                msg::local_address(a).map(|ip| address_del(peer, &subject, ip))
            }
            _ => None,
        }));
        match Self::rename_retired(&handle, peer, &subject, reqs).await {
            // Gone meanwhile, with its namespace or its pair.
            Err(LinkError::Kernel(e)) if e.is(Errno::ENODEV) => Ok(false),
            other => other.map(|_| true),
        }
    }

    /// The host end of a new veth: IPv6 off before it comes up (unless the
    /// spec keeps it), then hairpin mode on its bridge port and up, in one
    /// batch.
    async fn finish_host_end(&self, spec: &VethSpec, port: bool) -> Result<(), LinkError> {
        let name = spec.host_name.as_str();
        let mut reqs = Vec::new();
        if port {
            reqs.push(msg::port_hairpin(name));
        }
        if !spec.host_ipv6 {
            let key = SysctlKey::ipv6_conf(&spec.host_name, "disable_ipv6")?;
            match self
                .sockets
                .write_sysctls(&Ns::Host, vec![(key, "1".into())])
                .await
            {
                // No IPv6 in this kernel at all: nothing to switch off.
                Err(NetnsError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
                other => other?,
            }
            reqs.push(msg::set_up(&LinkRef::Name(spec.host_name.clone())));
        }
        if !reqs.is_empty() {
            nl::apply(self.sockets.host(), reqs).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Links for NetlinkLinks {
    async fn ensure_bridge(&self, spec: &BridgeSpec) -> Result<u32, LinkError> {
        let host = self.sockets.host();
        let name = LinkRef::Name(spec.name.clone());
        let index = match get(host, &name).await? {
            Some(existing) => self.reconcile_bridge(existing, spec).await?,
            None => match nl::apply(host, vec![msg::bridge_create(spec)]).await {
                Ok(()) => must_get(host, &name).await?.index,
                // Lost a race with another creator: check what it made.
                Err(e) if e.is(Errno::EEXIST) => {
                    let existing = must_get(host, &name).await?;
                    self.reconcile_bridge(existing, spec).await?
                }
                Err(e) => return Err(e.into()),
            },
        };
        let mut reqs = vec![msg::bridge_conf(index, spec.name.as_str())];
        reqs.extend(
            spec.gateway
                .iter()
                .map(|a| address_add(index, spec.name.as_str(), *a)),
        );
        nl::apply(host, reqs).await?;
        Ok(index)
    }

    fn check_netns(&self, netns: &NetnsPath) -> Result<NetnsId, LinkError> {
        netns_identity(netns)
    }

    fn reserved_netns(&self) -> Vec<ReservedNetns> {
        self.reserved.to_vec()
    }

    async fn host_addresses(&self) -> Result<Vec<HostAddress>, LinkError> {
        host_read::addresses(&self.sockets).await
    }

    async fn host_listeners(&self, wanted: &[WantedPort]) -> Result<Vec<Listener>, LinkError> {
        host_read::listeners(&self.sockets, wanted).await
    }

    async fn create_veth(&self, spec: &VethSpec) -> Result<VethInfo, LinkError> {
        // Validate the namespace before anything is sent.
        let netns = open_netns(&spec.container_netns)?;
        let host = self.sockets.host();
        let (mut master, mut cached) = self.master_index(spec.master.as_ref()).await?;
        let mac = spec
            .container_mac
            .unwrap_or_else(|| naming::container_mac(&spec.host_name));
        let made = loop {
            let req = msg::veth_create(spec, netns.as_raw_fd(), master, mac);
            match nl::echo(host, req).await {
                Ok(echoed) => break echoed,
                Err(_) if cached => {
                    // The bridge may have been made again since it was
                    // looked up: look again, and try once more.
                    self.forget_master(spec.master.as_ref());
                    (master, cached) = self.master_index(spec.master.as_ref()).await?;
                }
                Err(e) if e.is(Errno::EEXIST) => return Err(self.veth_exists_error(spec).await),
                Err(e) if e.is(Errno::EXFULL) && master.is_some() => {
                    let bridge = spec.master.as_ref().map(ToString::to_string);
                    return Err(LinkError::BridgeFull {
                        bridge: bridge.unwrap_or_default(),
                    });
                }
                // The kernel refuses IFLA_NET_NS_FD of a non-network namespace
                // with EINVAL before creating anything; say which input was bad.
                Err(e) if e.is(Errno::EINVAL) => {
                    check_netns(&spec.container_netns).await?;
                    return Err(e.into());
                }
                Err(e) => return Err(e.into()),
            }
        };
        drop(netns);
        // Sent only once the create succeeded, so they never touch a link
        // that was there before; on failure the new veth goes again.
        if let Err(e) = self.finish_host_end(spec, master.is_some()).await {
            nl::apply(host, vec![msg::delete(spec.host_name.as_str())])
                .await
                .ok();
            return Err(e);
        }
        // The kernel echoes the new link (its index, and its peer's as
        // IFLA_LINK); a kernel that does not is asked.
        let echoed = made.iter().find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(lookup::summarise(l)),
            _ => None,
        });
        let made = match echoed {
            Some(l) if l.name == spec.host_name.as_str() => l,
            _ => must_get(host, &LinkRef::Name(spec.host_name.clone())).await?,
        };
        Ok(VethInfo {
            host_ifindex: made.index,
            // IFLA_LINK of a veth is its peer's index, in the peer's namespace.
            container_ifindex: made.link.unwrap_or_default(),
            container_mac: mac,
        })
    }

    async fn setup_container_iface(&self, iface: &ContainerIface) -> Result<(), LinkError> {
        self.setup_container(iface, &[]).await
    }

    async fn setup_container(
        &self,
        iface: &ContainerIface,
        routes: &[ContainerRoute],
    ) -> Result<(), LinkError> {
        let handle = self.sockets.handle(&Ns::Path(iface.netns.clone())).await?;
        let index = index_of(&handle, &iface.link).await?;
        let lo = IfName::parse("ifname", "lo").expect("lo is a valid name");
        let mut reqs = vec![msg::set_up(&LinkRef::Name(lo))];
        let subject = iface.link.to_string();
        if !iface.ipv6 {
            reqs.push(msg::no_link_local(index, &subject));
        }
        reqs.extend(
            iface
                .addresses
                .iter()
                .map(|a| address_add(index, &subject, *a)),
        );
        reqs.push(msg::set_up(&LinkRef::Index(index)));
        reqs.extend(routes.iter().map(|r| msg::container_route_add(r, index)));
        nl::apply(&handle, reqs)
            .await
            .map_err(|e| missing_as_not_found(e, &iface.link))
    }

    async fn enable_host_forwarding(
        &self,
        families: Families,
        own_bridges: &[IfName],
    ) -> Result<(), LinkError> {
        let own = own_bridges.to_vec();
        let enable = move || crate::forwarding::enable(families, &own);
        Ok(self
            .sockets
            .run_here_or_in(&Ns::Host, "turn forwarding on", enable)
            .await?)
    }

    async fn add_address(&self, ns: &Ns, link: &LinkRef, addr: IpNet) -> Result<(), LinkError> {
        let handle = self.sockets.handle(ns).await?;
        let index = index_of(&handle, link).await?;
        let req = address_add(index, &link.to_string(), addr);
        nl::apply(&handle, vec![req])
            .await
            .map_err(|e| missing_as_not_found(e, link))
    }

    async fn set_up(&self, ns: &Ns, link: &LinkRef) -> Result<(), LinkError> {
        let handle = self.sockets.handle(ns).await?;
        nl::apply(&handle, vec![msg::set_up(link)])
            .await
            .map_err(|e| missing_as_not_found(e, link))
    }

    async fn retire_veth(
        &self,
        host: &IfName,
        container: Option<RetireEnd>,
    ) -> Result<Option<IfName>, LinkError> {
        let socket = self.sockets.host();
        let Some(link) = get(socket, &LinkRef::Name(host.clone())).await? else {
            return Ok(None);
        };
        let mut peer_down = false;
        if let (Some(end), Some(peer)) = (container, link.link) {
            peer_down = self.retire_container_end(&end, peer, link.index).await?;
        }
        let (off, down) = (
            msg::off_bridge(link.index, host.as_str()),
            msg::down(link.index, host.as_str()),
        );
        // With its peer down the port is disabled and harmless: off the
        // bridge first, so the bridge walks its ports once (see
        // `msg::off_bridge`). Otherwise down first, so the port never
        // carries traffic outside its bridge.
        let first = if peer_down {
            vec![off, down]
        } else {
            vec![down, off]
        };
        match Self::rename_retired(socket, link.index, host.as_str(), first).await {
            // Gone while being retired (its namespace's teardown took the
            // pair): nothing is left to retire.
            Err(LinkError::Kernel(e)) if e.is(Errno::ENODEV) => Ok(None),
            other => other.map(Some),
        }
    }

    async fn delete_link(&self, name: &IfName) -> Result<(), LinkError> {
        self.masters().remove(name);
        Ok(nl::apply(self.sockets.host(), vec![msg::delete(name.as_str())]).await?)
    }

    async fn delete_links(&self, names: &[IfName]) -> Result<(), LinkError> {
        for name in names {
            self.masters().remove(name);
        }
        let host = self.sockets.host();
        let group = fresh_group();
        let marks = names
            .iter()
            .map(|n| msg::set_group(n.as_str(), group))
            .collect();
        let marked = nl::apply_each(host, marks).await;
        let deleted = nl::apply(host, vec![msg::delete_group(group)]).await;
        if let Err(e) = &deleted
            && e.is(Errno::EOPNOTSUPP)
        {
            // Some link in the batch cannot be deleted by group (no dellink
            // op): fall back to one request per link.
            let each = names.iter().map(|n| msg::delete(n.as_str())).collect();
            return Ok(nl::apply(host, each).await?);
        }
        // Report the first failure, marking or deleting.
        marked
            .into_iter()
            .chain([deleted])
            .collect::<Result<(), _>>()?;
        Ok(())
    }

    async fn link_exists(&self, ns: &Ns, name: &IfName) -> Result<bool, LinkError> {
        let handle = self.sockets.handle(ns).await?;
        Ok(get(&handle, &LinkRef::Name(name.clone())).await?.is_some())
    }

    async fn list_links_with_prefix(
        &self,
        ns: &Ns,
        prefix: &str,
    ) -> Result<Vec<LinkSummary>, LinkError> {
        let handle = self.sockets.handle(ns).await?;
        let mut links = lookup::list_links(&handle).await?;
        links.retain(|s| s.name.starts_with(prefix));
        Ok(links)
    }

    async fn link_detail(&self, ns: &Ns, name: &IfName) -> Result<Option<LinkDetail>, LinkError> {
        let handle = self.sockets.handle(ns).await?;
        let Some(link) = get(&handle, &LinkRef::Name(name.clone())).await? else {
            return Ok(None);
        };
        let answers = nl::fetch(&handle, msg::dump_addresses(name.as_str())).await?;
        let addresses = answers
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == link.index => {
                    msg::local_address(a)
                }
                _ => None,
            })
            .collect();
        Ok(Some(LinkDetail { link, addresses }))
    }

    async fn set_sysctl(&self, ns: &Ns, key: &SysctlKey, value: &str) -> Result<(), LinkError> {
        let writes = vec![(key.clone(), value.to_owned())];
        Ok(self.sockets.write_sysctls(ns, writes).await?)
    }
}
