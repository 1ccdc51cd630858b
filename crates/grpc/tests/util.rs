//! The harness: an agent in a fresh namespace served over a unix socket, and
//! snapshots of everything a request could change.

use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::UnixListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use trellis_agent::{Agent, Backends};
use trellis_proto::v1 as pb;
use trellis_proto::v1::AgentClient;
use trellis_store::MemoryStore;
pub use trellis_testlab::Snapshot;
use trellis_testlab::{Netns, require_root};
use trellis_types::NetnsPath;

/// A served agent and a client of it.
pub struct Harness {
    /// The agent's "host" namespace.
    pub host: Netns,
    pub agent: Arc<Agent>,
    pub client: AgentClient<Channel>,
    pub channel: Channel,
    dir: tempfile::TempDir,
    stop: oneshot::Sender<()>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Harness {
    /// Starts the service; the agent's host is a new namespace with `lo` up.
    pub async fn start() -> Self {
        require_root();
        let host = Netns::new("grpc-host");
        host.ip("link set lo up");
        let path = NetnsPath::parse("netns", &host.path_str()).unwrap();
        let be = Backends::kernel(Some(&path), Arc::new(MemoryStore::new()))
            .await
            .unwrap();
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
            host,
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

    /// [`Harness::state`] once the kernel has finished what it does on its
    /// own after a change (IPv6 link-local addresses and their routes appear
    /// when a link gets carrier, DAD runs): equal twice, half a second apart.
    pub async fn settled_state(&self) -> State {
        let mut last = self.state().await;
        for _ in 0..40 {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let now = self.state().await;
            let tentative = self.host.ip("-o addr show").contains("tentative");
            if now == last && !tentative {
                return now;
            }
            last = now;
        }
        panic!("the host namespace did not settle in 20 s:\n{last:?}");
    }

    /// The host namespace and the store, as comparable values.
    pub async fn state(&self) -> State {
        let listing = self.agent.store().list("").await.unwrap();
        let store = listing
            .entries
            .into_iter()
            .map(|(k, v)| (k, v.value))
            .collect();
        State {
            kernel: Snapshot::take(&self.host),
            store,
        }
    }
}

/// What a refused request must leave as it was.
#[derive(Debug, PartialEq, Eq)]
pub struct State {
    kernel: Snapshot,
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

/// An attach of container `id` in `ns` as eth0 (empty ifname).
pub fn attach(network: &str, id: &str, ns: &Netns) -> pb::AttachRequest {
    pb::AttachRequest {
        network: network.into(),
        container_id: id.into(),
        netns: ns.path_str(),
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
