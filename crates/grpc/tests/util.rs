//! The harness: an agent served over a unix socket, on one of two kernels,
//! and snapshots of everything a request could change.
//!
//! - [`Harness::fake`] (unprivileged tier): the agent's backends are one
//!   [`FakeKernel`]; containers are paths registered with it. What a
//!   request could change is the fake's whole [`trellis_fake::Snapshot`]
//!   (every namespace's links, routes, neighbours and sysctls, the NAT
//!   table, the host firewall's admitted networks, the host's listeners)
//!   and the store.
//! - [`Harness::start`] (privileged tier): the agent's real backends aimed
//!   at a fresh host namespace; containers are namespaces of their own. What
//!   a request could change is the host namespace as `ip` and `nft` show it
//!   ([`RealSnapshot`]) and the store.
//!
//! The same agent and the same service run on both; tests are written
//! against [`Harness`], [`Container`] and [`State`] and so run on either.

use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::UnixListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use trellis_agent::{Agent, Backends};
use trellis_fake::FakeKernel;
use trellis_link::{LinkRef, Links, Ns};
use trellis_proto::v1 as pb;
use trellis_proto::v1::AgentClient;
use trellis_store::MemoryStore;
use trellis_testlab::Snapshot as RealSnapshot;
use trellis_testlab::{Netns, require_root};
use trellis_types::{IfName, NetnsPath};

/// The kernel under the served agent.
pub enum Kernel {
    /// A fresh network namespace as the agent's host, real backends.
    Real(Netns),
    /// The in-memory kernel; `host_path` is a path the fake takes for its
    /// host namespace (as `/proc/1/ns/net` would be on a real machine).
    Fake {
        kernel: FakeKernel,
        host_path: NetnsPath,
    },
}

/// A served agent and a client of it.
pub struct Harness {
    /// What the agent's backends stand on.
    pub kernel: Kernel,
    pub agent: Arc<Agent>,
    pub client: AgentClient<Channel>,
    pub channel: Channel,
    dir: tempfile::TempDir,
    stop: oneshot::Sender<()>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Harness {
    /// Starts the service on the real kernel (privileged tier): the agent's
    /// host is a new namespace with `lo` up.
    pub async fn start() -> Self {
        require_root();
        let host = Netns::new("grpc-host");
        host.ip("link set lo up");
        let path = NetnsPath::parse("netns", &host.path_str()).unwrap();
        let be = Backends::kernel(Some(&path), Arc::new(MemoryStore::new()))
            .await
            .unwrap();
        Self::serve(be, Kernel::Real(host)).await
    }

    /// Starts the service on a fake kernel (unprivileged tier): a host
    /// holding only `lo`, as [`Harness::start`]'s, and no containers yet.
    pub async fn fake() -> Self {
        let kernel = FakeKernel::new();
        let host_path = kernel.add_host_netns_path("/run/netns/grpc-host");
        let be = Backends::on(kernel.clone(), Arc::new(MemoryStore::new()));
        Self::serve(be, Kernel::Fake { kernel, host_path }).await
    }

    async fn serve(be: Backends, kernel: Kernel) -> Self {
        let agent = Arc::new(Agent::open(be, "node1").await.unwrap());
        agent.reconcile().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("trellis.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(trellis_grpc::serve_unix(agent.clone(), listener, async {
            stopped.await.ok();
        }));
        let channel = trellis_proto::channel_unix(&socket).await.unwrap();
        Harness {
            kernel,
            agent,
            client: AgentClient::new(channel.clone()),
            channel,
            dir,
            stop,
            server,
        }
    }

    /// A path in the harness's tempdir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Stops the server and waits until it has finished.
    pub async fn stop(self) {
        self.stop.send(()).unwrap();
        self.server.await.unwrap().unwrap();
    }

    /// A path that reaches the agent's host namespace.
    pub fn host_netns(&self) -> String {
        match &self.kernel {
            Kernel::Real(host) => host.path_str(),
            Kernel::Fake { host_path, .. } => host_path.to_string(),
        }
    }

    /// Adds a device that is not trellis's to the host, with `address`
    /// (`"10.3.0.5/24"`): a veth (its peer `<name>p`) on the real kernel, a
    /// plain device on the fake.
    pub fn add_host_device(&self, name: &str, address: &str) {
        match &self.kernel {
            Kernel::Real(host) => {
                host.ip(&format!("link add {name} type veth peer name {name}p"));
                host.ip(&format!("addr add {address} dev {name}"));
            }
            Kernel::Fake { kernel, .. } => {
                kernel.add_device(&Ns::Host, name, &[address]);
            }
        }
    }

    /// A container's network namespace, `lo` up as a runtime leaves it: a
    /// new namespace on the real kernel, `/run/netns/<role>` on the fake.
    pub async fn container(&self, role: &str) -> Container {
        match &self.kernel {
            Kernel::Real(_) => Container::Real(Netns::new(&format!("grpc-{role}"))),
            Kernel::Fake { kernel, .. } => {
                let path = kernel.add_netns(&format!("/run/netns/{role}"));
                let lo = LinkRef::Name(IfName::parse("ifname", "lo").unwrap());
                let ns = Ns::Path(path.clone());
                kernel.set_up(&ns, &lo).await.unwrap();
                Container::Fake(path)
            }
        }
    }

    /// The links of `c`, one line each (as `ip -o link show` shows them on
    /// the real kernel, every field of [`trellis_fake::FakeLink`] on the fake).
    pub fn links_in(&self, c: &Container) -> Vec<String> {
        match (&self.kernel, c) {
            (_, Container::Real(ns)) => ns.ip("-o link show").lines().map(str::to_owned).collect(),
            (Kernel::Fake { kernel, .. }, Container::Fake(path)) => {
                let links = kernel.links(&Ns::Path(path.clone()));
                links.iter().map(|l| format!("{l:?}")).collect()
            }
            (Kernel::Real(_), Container::Fake(_)) => unreachable!("a fake container"),
        }
    }

    /// The MAC of interface `ifname` in `c` (`aa:bb:…`), or `None` if it
    /// has no such interface.
    pub fn mac_in(&self, c: &Container, ifname: &str) -> Option<String> {
        match (&self.kernel, c) {
            (_, Container::Real(ns)) => {
                let out = ns.exec(&["ip", "-o", "link", "show", "dev", ifname]);
                if !out.status.success() {
                    return None;
                }
                let line = String::from_utf8_lossy(&out.stdout);
                let mut words = line.split_whitespace();
                words.find(|w| *w == "link/ether")?;
                words.next().map(str::to_owned)
            }
            (Kernel::Fake { kernel, .. }, Container::Fake(path)) => {
                let link = kernel.link(&Ns::Path(path.clone()), ifname)?;
                Some(trellis_link::format_mac(&link.mac))
            }
            (Kernel::Real(_), Container::Fake(_)) => unreachable!("a fake container"),
        }
    }

    /// [`Harness::state`] once the kernel has finished what it does on its
    /// own after a change (IPv6 link-local addresses and their routes appear
    /// when a link gets carrier, DAD runs): equal twice, half a second apart.
    /// The fake does nothing on its own, so there it is `state` at once.
    pub async fn settled_state(&self) -> State {
        let Kernel::Real(host) = &self.kernel else {
            return self.state().await;
        };
        let mut last = self.state().await;
        for _ in 0..40 {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let now = self.state().await;
            let tentative = host.ip("-o addr show").contains("tentative");
            if now == last && !tentative {
                return now;
            }
            last = now;
        }
        panic!("the host namespace did not settle in 20 s:\n{last:?}");
    }

    /// The kernel (see [`KernelState`]) and the store, as comparable values.
    pub async fn state(&self) -> State {
        let listing = self.agent.store().list("").await.unwrap();
        let store = listing
            .entries
            .into_iter()
            .map(|(k, v)| (k, v.value))
            .collect();
        State {
            kernel: self.kernel_state(),
            store,
        }
    }

    /// What the kernel holds, as a comparable value.
    pub fn kernel_state(&self) -> KernelState {
        match &self.kernel {
            Kernel::Real(host) => KernelState::Real(RealSnapshot::take(host)),
            Kernel::Fake { kernel, .. } => KernelState::Fake(kernel.snapshot()),
        }
    }
}

/// A container's network namespace, on the harness's kernel.
pub enum Container {
    /// A namespace of its own, deleted on drop.
    Real(Netns),
    /// A path registered with the fake kernel.
    Fake(NetnsPath),
}

impl Container {
    /// Its path, as an attach names it.
    pub fn path_str(&self) -> String {
        match self {
            Container::Real(ns) => ns.path_str(),
            Container::Fake(path) => path.to_string(),
        }
    }
}

/// What a kernel holds: the real host namespace (links, addresses, routes
/// of every table, nftables), or the whole fake machine.
#[derive(Debug, PartialEq, Eq)]
pub enum KernelState {
    Real(RealSnapshot),
    Fake(trellis_fake::Snapshot),
}

impl KernelState {
    /// The host-wide forwarding switches that trellis turns on and leaves on
    /// by design (the host may forward for others), as sysctl keys.
    const HOST_FORWARDING: [&str; 2] = ["ipv4/ip_forward", "ipv6/conf/all/forwarding"];

    /// The state without [`KernelState::HOST_FORWARDING`]: what a round trip
    /// must give back. (The real snapshot reads no sysctls at all.)
    pub fn without_host_forwarding(mut self) -> Self {
        if let KernelState::Fake(s) = &mut self {
            let host = s.namespaces.get_mut("host").expect("the fake's host");
            for key in Self::HOST_FORWARDING {
                host.sysctls.remove(key);
            }
        }
        self
    }

    /// What differs from `before`, one line each (`+` new, `-` gone).
    pub fn diff(&self, before: &KernelState) -> String {
        match (before, self) {
            (KernelState::Real(a), KernelState::Real(b)) => b.diff(a),
            (KernelState::Fake(a), KernelState::Fake(b)) => b.diff(a).join("\n    "),
            _ => unreachable!("states of two kinds of kernel"),
        }
    }
}

/// What a refused request must leave as it was.
#[derive(Debug, PartialEq, Eq)]
pub struct State {
    kernel: KernelState,
    store: Vec<(String, Vec<u8>)>,
}

impl State {
    /// What differs from `before`, one line each (`+` new, `-` gone).
    pub fn diff(&self, before: &State) -> String {
        let mut out = vec![self.kernel.diff(&before.kernel)];
        if before.store != self.store {
            let keys = |s: &State| s.store.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
            out.push(format!("store: {:?} -> {:?}", keys(before), keys(self)));
        }
        out.retain(|l| !l.is_empty());
        out.join("\n    ")
    }
}

/// A bridge network spec.
pub fn bridge(name: &str, subnet: &str, bridge: &str) -> pb::NetworkSpec {
    pb::NetworkSpec {
        name: name.into(),
        mode: pb::NetworkMode::Bridge.into(),
        subnets: vec![subnet.into()],
        bridge: bridge.into(),
        outgoing_nat: true,
        ..Default::default()
    }
}

/// A TCP port mapping.
pub fn tcp(host_port: u32, container_port: u32) -> pb::PortMapping {
    pb::PortMapping {
        protocol: pb::Protocol::Tcp.into(),
        host_port,
        container_port,
        ..Default::default()
    }
}

/// An attach of container `id` in `c` as eth0 (empty ifname).
pub fn attach(network: &str, id: &str, c: &Container) -> pb::AttachRequest {
    pb::AttachRequest {
        network: network.into(),
        container_id: id.into(),
        netns: c.path_str(),
        ..Default::default()
    }
}

/// Creates a network over gRPC, panicking with the status on failure.
pub async fn create(client: &mut AgentClient<Channel>, spec: pb::NetworkSpec) -> pb::Network {
    let name = spec.name.clone();
    client
        .create_network(pb::CreateNetworkRequest { spec: Some(spec) })
        .await
        .unwrap_or_else(|s| panic!("create {name}: {s}"))
        .into_inner()
}
