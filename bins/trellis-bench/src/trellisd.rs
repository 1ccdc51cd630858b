//! trellis as a runtime uses it: the real `trellisd` binary, started inside
//! the benchmark's host namespace with a temporary state directory and
//! socket, driven over gRPC on that unix socket.
//!
//! The clock of an attach starts before the request is encoded and stops when
//! the answer is decoded: client, HTTP/2 over the socket, the daemon's
//! validation, IPAM, kernel work, the fsync'd redb commits, the reply.
//!
//! The daemon itself is a [`Daemon`] (killed or stopped and started again
//! by `trellis-bench restart`).

use crate::daemon::Daemon;
use crate::grpc::{CONTAINER_PORT, Peer, Slot};
use anyhow::{Context, Result, bail, ensure};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tonic::transport::Channel;
use trellis_proto::v1::{
    AgentClient, AttachRequest, CreateNetworkRequest, DetachRequest, GetEndpointRequest,
    NetworkMode, NetworkSpec, PortMapping, Protocol, StatusRequest,
};
use trellis_testlab::Netns;

/// The network every curve attaches to.
pub const NETWORK: &str = "bench";
/// Its bridge in the host namespace.
pub const BRIDGE: &str = "tbench0";

/// The request attaching `slot` to [`NETWORK`].
pub fn attach_request(slot: &Slot) -> AttachRequest {
    AttachRequest {
        network: NETWORK.into(),
        container_id: slot.id.clone(),
        netns: slot.netns.to_string_lossy().into_owned(),
        ifname: "eth0".into(),
        ports: slot
            .port
            .map(|p| PortMapping {
                protocol: Protocol::Tcp as i32,
                host_port: p.into(),
                container_port: CONTAINER_PORT.into(),
                ..Default::default()
            })
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

/// The request detaching `slot`.
pub fn detach_request(slot: &Slot) -> DetachRequest {
    DetachRequest {
        container_id: slot.id.clone(),
        ifname: "eth0".into(),
    }
}

/// trellisd with one bridge network, as a [`Peer`].
pub struct Trellisd<'a> {
    rt: &'a Runtime,
    client: AgentClient<Channel>,
    // Dropped after the client.
    daemon: Daemon,
}

impl<'a> Trellisd<'a> {
    /// Starts the daemon in `host` and creates the bridge network `subnet`
    /// (no outgoing NAT, as the CNI peer's `ipMasq: false`).
    pub fn start(rt: &'a Runtime, binary: &Path, host: &Netns, subnet: &str) -> Result<Self> {
        let daemon = Daemon::start(binary, host)?;
        let client = rt.block_on(async {
            let mut client = trellis_proto::connect_unix(daemon.socket()).await?;
            // A trellisd that serves while it reconciles answers Status with
            // ready = false meanwhile; the network is created once it is ready.
            let deadline = Instant::now() + Duration::from_secs(30);
            while !client
                .status(StatusRequest {})
                .await
                .context("Status")?
                .into_inner()
                .ready
            {
                ensure!(
                    Instant::now() < deadline,
                    "trellisd not ready 30 s after it began serving:\n{}",
                    daemon.log()
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let spec = NetworkSpec {
                name: NETWORK.into(),
                mode: NetworkMode::Bridge as i32,
                subnets: vec![subnet.into()],
                bridge: BRIDGE.into(),
                ..Default::default()
            };
            client
                .create_network(CreateNetworkRequest { spec: Some(spec) })
                .await
                .context("CreateNetwork")?;
            anyhow::Ok(client)
        })?;
        Ok(Trellisd { rt, client, daemon })
    }

    /// The daemon's unix socket.
    pub fn socket(&self) -> &Path {
        self.daemon.socket()
    }

    /// The daemon, to stop and start it again.
    pub fn daemon_mut(&mut self) -> &mut Daemon {
        &mut self.daemon
    }

    /// Sends every request of `reqs` at once through `call`, one task each;
    /// the wall time from the first sent to the last answered.
    fn concurrently<R, F, Fut>(&self, what: &str, reqs: Vec<R>, call: F) -> Result<Duration>
    where
        R: Send + 'static,
        F: Fn(AgentClient<Channel>, R) -> Fut,
        Fut: Future<Output = Result<(), tonic::Status>> + Send + 'static,
    {
        let client = &self.client;
        let (took, results) = self.rt.block_on(async {
            let start = Instant::now();
            let tasks: Vec<_> = reqs
                .into_iter()
                .map(|req| tokio::spawn(call(client.clone(), req)))
                .collect();
            let mut results = Vec::with_capacity(tasks.len());
            for t in tasks {
                results.push(t.await);
            }
            (start.elapsed(), results)
        });
        for r in results {
            r.with_context(|| format!("{what} task"))?
                .map_err(|e| self.failed(what, e))?;
        }
        Ok(took)
    }

    fn failed(&self, what: &str, e: tonic::Status) -> anyhow::Error {
        anyhow::anyhow!(
            "{what}: {} {}\ntrellisd log (tail):\n{}",
            e.code(),
            e.message(),
            self.daemon.log()
        )
    }
}

impl Peer for Trellisd<'_> {
    fn attach(&mut self, slot: &Slot) -> Result<Duration> {
        let req = attach_request(slot);
        let start = Instant::now();
        let r = self.rt.block_on(self.client.attach(req));
        let took = start.elapsed();
        r.map_err(|e| self.failed("Attach", e))?;
        Ok(took)
    }

    fn detach(&mut self, slot: &Slot) -> Result<Duration> {
        let req = detach_request(slot);
        let start = Instant::now();
        let r = self.rt.block_on(self.client.detach(req));
        let took = start.elapsed();
        r.map_err(|e| self.failed("Detach", e))?;
        Ok(took)
    }

    fn attach_concurrently(&mut self, slots: &[Slot]) -> Result<Duration> {
        let reqs = slots.iter().map(attach_request).collect();
        self.concurrently("concurrent Attach", reqs, |mut c, req| async move {
            c.attach(req).await.map(drop)
        })
    }

    fn detach_concurrently(&mut self, slots: &[Slot]) -> Result<Duration> {
        let reqs = slots.iter().map(detach_request).collect();
        self.concurrently("concurrent Detach", reqs, |mut c, req| async move {
            c.detach(req).await.map(drop)
        })
    }

    fn memory(&self) -> Result<Option<(u64, u64)>> {
        self.daemon.memory().map(Some)
    }

    /// GetEndpoint of an endpoint that does not exist: the gRPC round trip,
    /// the input check and one store read; NOT_FOUND is the answer.
    fn round_trips(&mut self, n: usize) -> Result<Option<Vec<Duration>>> {
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let req = GetEndpointRequest {
                container_id: "no-such-container".into(),
                ifname: "eth0".into(),
            };
            let start = Instant::now();
            let r = self.rt.block_on(self.client.get_endpoint(req));
            times.push(start.elapsed());
            match r {
                Err(e) if e.code() == tonic::Code::NotFound => {}
                Err(e) => return Err(self.failed("GetEndpoint", e)),
                Ok(_) => bail!("GetEndpoint found an endpoint that was never attached"),
            }
        }
        Ok(Some(times))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_request_publishes_the_slot_port_only() {
        let mut slot = Slot {
            index: 3,
            id: "bench3".into(),
            netns: "/run/netns/c3".into(),
            port: Some(10_003),
        };
        let r = attach_request(&slot);
        assert_eq!(
            (
                r.network.as_str(),
                r.container_id.as_str(),
                r.netns.as_str()
            ),
            (NETWORK, "bench3", "/run/netns/c3")
        );
        assert_eq!(r.ports.len(), 1);
        assert_eq!(
            (r.ports[0].host_port, r.ports[0].container_port),
            (10_003, 80)
        );
        assert_eq!(r.ports[0].protocol, Protocol::Tcp as i32);
        slot.port = None;
        assert!(attach_request(&slot).ports.is_empty());
    }
}
