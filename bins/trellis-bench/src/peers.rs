//! The peers of the `grpc` benchmark as [`Peer`]s: one exec per operation,
//! timed from spawn to exit, from a thread inside the host namespace. Their
//! concurrent steps run one thread (one exec) per container, all at once, as
//! a runtime starting or stopping many containers would.

use crate::grpc::{CONTAINER_PORT, Peer, Slot};
use crate::{cni, netavark};
use anyhow::{Context, Result, anyhow};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use trellis_testlab::Netns;

/// The CNI network name `cni::config("bridge", …)` gives.
const CNI_NAME: &str = "bench-bridge";

/// Debian's CNI `bridge` + `host-local`, with `portmap` chained after it
/// (as a conflist runs it) for slots that publish a port. A port attach is
/// the bridge ADD plus the portmap ADD; its DEL runs portmap first, then
/// bridge, as libcni does in reverse order.
pub struct Cni<'a> {
    host: &'a Netns,
    cfg: String,
    /// The bridge's result per container: libcni's cache, the `prevResult`
    /// portmap gets on DEL.
    results: HashMap<String, serde_json::Value>,
    _dir: TempDir,
}

impl<'a> Cni<'a> {
    /// A bridge network of `subnet` on `host`, host-local's state in a tempdir.
    pub fn new(host: &'a Netns, subnet: &str) -> Result<Self> {
        let dir = tempfile::tempdir().context("tempdir for host-local")?;
        let cfg = cni::config("bridge", subnet, dir.path());
        Ok(Cni {
            host,
            cfg,
            results: HashMap::new(),
            _dir: dir,
        })
    }

    fn add(&self, slot: &Slot) -> Result<(Duration, Option<serde_json::Value>)> {
        let (bridge, out) =
            cni::run_output(self.host, "bridge", "ADD", &self.cfg, &slot.id, &slot.netns)?;
        let Some(port) = slot.port else {
            return Ok((bridge, None));
        };
        let prev: serde_json::Value =
            serde_json::from_str(&out).with_context(|| format!("bridge result {out:?}"))?;
        let cfg = cni::portmap_config(CNI_NAME, port, CONTAINER_PORT, &prev);
        let (portmap, _) =
            cni::run_output(self.host, "portmap", "ADD", &cfg, &slot.id, &slot.netns)?;
        Ok((bridge + portmap, Some(prev)))
    }

    /// DEL of `slot`: portmap first (with the bridge's cached result `prev`)
    /// if the slot publishes a port, then bridge.
    fn del(&self, slot: &Slot, prev: Option<&serde_json::Value>) -> Result<Duration> {
        let mut took = Duration::ZERO;
        if let Some(port) = slot.port {
            let prev = prev.ok_or_else(|| anyhow!("no cached result for {}", slot.id))?;
            let cfg = cni::portmap_config(CNI_NAME, port, CONTAINER_PORT, prev);
            took += cni::run(self.host, "portmap", "DEL", &cfg, &slot.id, &slot.netns)?;
        }
        took += cni::run(self.host, "bridge", "DEL", &self.cfg, &slot.id, &slot.netns)?;
        Ok(took)
    }
}

/// Runs `op` for every slot at once, one thread each; the wall time from
/// the first thread started to the last one done, and each result.
fn concurrently<T: Send>(
    slots: &[Slot],
    op: impl Fn(&Slot) -> Result<T> + Sync,
) -> (Duration, Vec<Result<T>>) {
    let op = &op;
    let start = Instant::now();
    let results = std::thread::scope(|s| {
        let handles: Vec<_> = slots.iter().map(|slot| s.spawn(move || op(slot))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("peer thread panicked"))
            .collect()
    });
    (start.elapsed(), results)
}

impl Peer for Cni<'_> {
    fn attach(&mut self, slot: &Slot) -> Result<Duration> {
        let (took, prev) = self.add(slot)?;
        if let Some(prev) = prev {
            self.results.insert(slot.id.clone(), prev);
        }
        Ok(took)
    }

    fn detach(&mut self, slot: &Slot) -> Result<Duration> {
        let prev = self.results.remove(&slot.id);
        self.del(slot, prev.as_ref())
    }

    fn attach_concurrently(&mut self, slots: &[Slot]) -> Result<Duration> {
        let (took, results) = concurrently(slots, |slot| self.add(slot));
        for (slot, r) in slots.iter().zip(results) {
            if let Some(prev) = r?.1 {
                self.results.insert(slot.id.clone(), prev);
            }
        }
        Ok(took)
    }

    fn detach_concurrently(&mut self, slots: &[Slot]) -> Result<Duration> {
        let prevs: HashMap<&str, serde_json::Value> = slots
            .iter()
            .filter_map(|s| Some((s.id.as_str(), self.results.remove(&s.id)?)))
            .collect();
        let this = &*self;
        let (took, results) =
            concurrently(slots, |slot| this.del(slot, prevs.get(slot.id.as_str())));
        results.into_iter().collect::<Result<Vec<_>>>()?;
        Ok(took)
    }
}

/// trellis as a CNI runtime uses it: the `trellis-cni` plugin, one exec per
/// ADD or DEL as libcni runs it, over a real trellisd (the same daemon and
/// bridge network as the `trellisd` curves; its conflist names that network
/// and agrees with it). The time is the plugin's whole life: process start,
/// reading the configuration, connecting to trellisd's socket, the Attach
/// or Detach, the result written.
pub struct TrellisCni<'a> {
    host: &'a Netns,
    binary: std::path::PathBuf,
    socket: std::path::PathBuf,
    subnet: String,
    // Dropped last: the daemon.
    daemon: crate::trellisd::Trellisd<'a>,
}

impl<'a> TrellisCni<'a> {
    /// Starts trellisd on `host` with the bench's bridge network of
    /// `subnet`; the plugin at `binary`.
    pub fn new(
        rt: &'a tokio::runtime::Runtime,
        trellisd: &std::path::Path,
        binary: std::path::PathBuf,
        host: &'a Netns,
        subnet: &str,
    ) -> Result<Self> {
        let daemon = crate::trellisd::Trellisd::start(rt, trellisd, host, subnet)?;
        Ok(TrellisCni {
            host,
            binary,
            socket: daemon.socket().to_owned(),
            subnet: subnet.to_owned(),
            daemon,
        })
    }

    /// The plugin entry libcni would hand over for `slot`.
    fn conf(&self, slot: &Slot) -> String {
        let mut c = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": crate::trellisd::NETWORK,
            "type": "trellis-cni",
            "socket": self.socket.display().to_string(),
            "subnet": self.subnet,
            "bridge": crate::trellisd::BRIDGE,
        });
        if let Some(port) = slot.port {
            c["runtimeConfig"] = serde_json::json!({"portMappings": [
                {"hostPort": port, "containerPort": CONTAINER_PORT, "protocol": "tcp"}
            ]});
        }
        c.to_string()
    }

    fn run(&self, command: &str, slot: &Slot) -> Result<Duration> {
        let env = [
            ("CNI_COMMAND", command.into()),
            ("CNI_CONTAINERID", slot.id.clone().into()),
            ("CNI_NETNS", slot.netns.clone().into_os_string()),
            ("CNI_IFNAME", "eth0".into()),
            ("CNI_PATH", "/opt/cni/bin".into()),
        ];
        let exec = crate::exec::Exec {
            program: self.binary.display().to_string(),
            args: vec![],
            env: env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            stdin: self.conf(slot),
        };
        Ok(exec.run_in(self.host)?.0)
    }
}

impl Peer for TrellisCni<'_> {
    fn attach(&mut self, slot: &Slot) -> Result<Duration> {
        self.run("ADD", slot)
    }

    fn detach(&mut self, slot: &Slot) -> Result<Duration> {
        self.run("DEL", slot)
    }

    fn attach_concurrently(&mut self, slots: &[Slot]) -> Result<Duration> {
        let (took, results) = concurrently(slots, |slot| self.run("ADD", slot));
        results.into_iter().collect::<Result<Vec<_>>>()?;
        Ok(took)
    }

    fn detach_concurrently(&mut self, slots: &[Slot]) -> Result<Duration> {
        let (took, results) = concurrently(slots, |slot| self.run("DEL", slot));
        results.into_iter().collect::<Result<Vec<_>>>()?;
        Ok(took)
    }

    fn memory(&self) -> Result<Option<(u64, u64)>> {
        self.daemon.memory()
    }
}

/// podman's netavark (NAT network, iptables), the address of slot `i` given
/// as podman would (`netavark::static_ip`).
pub struct Netavark<'a> {
    host: &'a Netns,
    binary: &'static str,
    base: Ipv4Addr,
    dir: TempDir,
}

impl<'a> Netavark<'a> {
    /// netavark's bridge network on `host` in the /16 at `base`.
    pub fn new(host: &'a Netns, base: Ipv4Addr) -> Result<Self> {
        Ok(Netavark {
            host,
            binary: netavark::binary()?,
            base,
            dir: tempfile::tempdir().context("tempdir for netavark's config")?,
        })
    }

    fn run(&self, command: &str, slot: &Slot) -> Result<Duration> {
        let options = netavark::options(self.base, slot.index, false, slot.port);
        netavark::run(
            self.host,
            self.binary,
            command,
            self.dir.path(),
            &slot.netns,
            &options,
        )
    }
}

impl Peer for Netavark<'_> {
    fn attach(&mut self, slot: &Slot) -> Result<Duration> {
        self.run("setup", slot)
    }

    fn detach(&mut self, slot: &Slot) -> Result<Duration> {
        self.run("teardown", slot)
    }

    fn attach_concurrently(&mut self, slots: &[Slot]) -> Result<Duration> {
        let (took, results) = concurrently(slots, |slot| self.run("setup", slot));
        results.into_iter().collect::<Result<Vec<_>>>()?;
        Ok(took)
    }

    fn detach_concurrently(&mut self, slots: &[Slot]) -> Result<Duration> {
        let (took, results) = concurrently(slots, |slot| self.run("teardown", slot));
        results.into_iter().collect::<Result<Vec<_>>>()?;
        Ok(took)
    }
}
