//! The whole in-memory machine: its namespaces, NAT table, host firewall
//! and listening sockets, and the operations on links that cross namespaces.

use crate::state::{FakeLink, LinkKind, NsState, key};
use std::collections::{BTreeMap, BTreeSet};
use trellis_link::{Listener, Mac, NetnsId, Ns};
use trellis_nat::{Admitted, NatState};
use trellis_types::{InvalidInput, NetnsPath};

/// `st_dev` of the fake's namespace files.
const NSFS_DEV: u64 = 4;
/// `st_ino` of the host namespace; containers count up from it.
const HOST_INO: u64 = 4_026_531_840;

/// The host's own firewall as far as trellis sees it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Firewall {
    /// Whether the host has a forward chain that drops by policy.
    pub drops: bool,
    /// What trellis's rules in it admit now.
    pub admitted: Vec<Admitted>,
}

#[derive(Debug, Clone)]
pub(crate) struct Machine {
    /// By [`key`]: `""` is the host.
    pub namespaces: BTreeMap<String, NsState>,
    /// Paths that reach the host namespace (`/proc/1/ns/net`).
    pub host_paths: BTreeSet<String>,
    /// `None`: trellis's table does not exist.
    pub nat: Option<NatState>,
    pub firewall: Firewall,
    pub listeners: Vec<Listener>,
    next_index: u32,
    next_ino: u64,
    next_mac: u32,
}

impl Machine {
    pub fn new() -> Self {
        let mut m = Self {
            namespaces: BTreeMap::new(),
            host_paths: BTreeSet::new(),
            nat: None,
            firewall: Firewall::default(),
            listeners: Vec::new(),
            next_index: 1,
            next_ino: HOST_INO,
            next_mac: 0,
        };
        let host = m.fresh_ns();
        m.namespaces.insert(String::new(), host);
        let lo = m.host_mut().by_name_mut("lo").expect("lo");
        lo.set_up();
        m
    }

    fn fresh_ns(&mut self) -> NsState {
        let id = NetnsId {
            dev: NSFS_DEV,
            ino: self.next_ino,
        };
        self.next_ino += 1;
        let lo = self.fresh_index();
        NsState::new(id, lo)
    }

    pub fn fresh_index(&mut self) -> u32 {
        let i = self.next_index;
        self.next_index += 1;
        i
    }

    /// A locally administered MAC the kernel might have picked at random.
    pub fn fresh_mac(&mut self) -> Mac {
        self.next_mac += 1;
        let [a, b, c, d] = self.next_mac.to_be_bytes();
        [0x02, 0xfa, a, b, c, d]
    }

    pub fn add_netns(&mut self, path: &NetnsPath) {
        let k = path.to_string();
        assert!(
            !self.namespaces.contains_key(&k) && !self.host_paths.contains(&k),
            "netns {path} is already in the fake kernel"
        );
        let ns = self.fresh_ns();
        self.namespaces.insert(k, ns);
    }

    /// Removes a namespace and, like the kernel, every veth with an end in
    /// it (the other end goes too).
    pub fn remove_netns(&mut self, path: &NetnsPath) -> bool {
        let Some(gone) = self.namespaces.remove(&path.to_string()) else {
            return false;
        };
        for link in gone.links.values() {
            if let LinkKind::Veth {
                peer_ns,
                peer_index,
            } = &link.kind
            {
                self.remove_one(&key(peer_ns), *peer_index);
            }
        }
        true
    }

    /// The key of the namespace `ns` reaches, or why there is none.
    pub fn resolve(&self, ns: &Ns) -> Result<String, InvalidInput> {
        match ns {
            Ns::Host => Ok(String::new()),
            Ns::Path(p) => {
                let k = p.to_string();
                if self.host_paths.contains(&k) {
                    Ok(String::new())
                } else if self.namespaces.contains_key(&k) {
                    Ok(k)
                } else {
                    Err(no_such_netns(p))
                }
            }
        }
    }

    /// The canonical `Ns` of a key.
    pub fn ns_at(&self, k: &str) -> Ns {
        if k.is_empty() {
            Ns::Host
        } else {
            Ns::Path(NetnsPath::parse("netns", k).expect("registered paths are valid"))
        }
    }

    pub fn id_of(&self, path: &NetnsPath) -> Result<NetnsId, InvalidInput> {
        let k = self.resolve(&Ns::Path(path.clone()))?;
        Ok(self.namespaces[&k].id)
    }

    pub fn ns(&self, k: &str) -> &NsState {
        &self.namespaces[k]
    }

    pub fn ns_mut(&mut self, k: &str) -> &mut NsState {
        self.namespaces.get_mut(k).expect("resolved namespace")
    }

    pub fn host(&self) -> &NsState {
        self.ns("")
    }

    pub fn host_mut(&mut self) -> &mut NsState {
        self.ns_mut("")
    }

    pub fn insert_link(&mut self, k: &str, link: FakeLink) {
        self.ns_mut(k).links.insert(link.index, link);
    }

    /// Deletes a link as the kernel does: its routes, neighbours and
    /// per-interface sysctls go, a bridge's ports are freed, and a veth takes
    /// its peer (and everything hanging off the peer) with it.
    pub fn delete_link(&mut self, k: &str, index: u32) {
        if let Some(LinkKind::Veth {
            peer_ns,
            peer_index,
        }) = self.ns(k).links.get(&index).map(|l| l.kind.clone())
        {
            let peer_key = key(&peer_ns);
            if self.namespaces.contains_key(&peer_key) {
                self.remove_one(&peer_key, peer_index);
            }
        }
        self.remove_one(k, index);
    }

    /// Takes a link out of service as `ip link set down nomaster` then a
    /// rename does: its routes and neighbours go (IPv4 and IPv6 alike drop
    /// the routes of a device that goes down), it leaves its bridge and
    /// takes the name `to`; `flush` also removes its addresses.
    pub fn retire_link(&mut self, k: &str, index: u32, to: &trellis_types::IfName, flush: bool) {
        let ns = self.ns_mut(k);
        let Some(link) = ns.links.get_mut(&index) else {
            return;
        };
        let old = std::mem::replace(&mut link.name, to.clone());
        link.up = false;
        link.master = None;
        link.hairpin = false;
        if flush {
            link.addresses.clear();
        }
        ns.routes.retain(|i| i.route.dev.as_ref() != Some(&old));
        ns.neighbours.retain(|n| n.neighbour.dev != old);
        // Per-interface sysctls follow the device to its new name.
        let moved: Vec<(String, String)> = ns
            .sysctls
            .iter()
            .filter(|(k, _)| crate::state::sysctl_interface(k) == Some(old.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in moved {
            ns.sysctls.remove(&k);
            let renamed = k.replacen(&format!("/{old}/"), &format!("/{to}/"), 1);
            ns.sysctls.insert(renamed, v);
        }
    }

    fn remove_one(&mut self, k: &str, index: u32) {
        let ns = self.ns_mut(k);
        if let Some(link) = ns.links.remove(&index) {
            ns.forget_link(index, &link.name);
        }
    }
}

pub(crate) fn no_such_netns(path: &NetnsPath) -> InvalidInput {
    InvalidInput::new(
        "netns",
        path,
        "cannot open: no such network namespace in the fake kernel (add_netns registers one)",
    )
}
