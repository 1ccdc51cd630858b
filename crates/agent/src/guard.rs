//! The agent's side of [`crate::safety`]: reading the host facts through the
//! backends and running the pure checks on a request, before anything
//! changes.

use crate::Error;
use crate::agent::Agent;
use crate::model::{AttachRequest, Network};
use crate::safety::{self, HostFacts};
use trellis_link::{LinkError, WantedPort};
use trellis_types::IfName;

/// `EINVAL`, as the kernel answers a value it will not take.
const EINVAL: i32 = 22;

impl Agent {
    /// The host's addresses and main-table routes, less what trellis owns.
    async fn host_facts(&self) -> Result<HostFacts, Error> {
        // One after the other: they share the host socket, which runs one
        // dump at a time.
        let addresses = self.be.links.host_addresses().await?;
        let routes = self.be.routes.host_routes().await?;
        let bridges: Vec<IfName> = self
            .networks()
            .iter()
            .filter_map(|n| n.spec.bridge().cloned())
            .collect();
        let facts = HostFacts { addresses, routes };
        Ok(facts.without_trellis(&bridges))
    }

    /// Checks a new network's subnets against what the host uses; returns
    /// (and logs) the warnings about routes its routes will shadow.
    pub(crate) async fn check_network_on_host(&self, net: &Network) -> Result<Vec<String>, Error> {
        let facts = self.host_facts().await?;
        let mut warnings = Vec::new();
        for &subnet in &net.spec.subnets {
            warnings.extend(safety::check_subnet("subnet", subnet, &facts)?);
        }
        for w in &warnings {
            tracing::warn!(network = %net.spec.name, "{w}");
        }
        Ok(warnings)
    }

    /// Checks an attach against the host: its namespace is a network
    /// namespace and not one that is never a container's (the host's,
    /// trellis's own, init's), and no socket on the host owns a port it
    /// publishes.
    pub(crate) async fn check_attach_on_host(&self, req: &AttachRequest) -> Result<(), Error> {
        let id = self.be.links.check_netns(&req.netns)?;
        safety::check_netns_identity(&req.netns, id, &self.be.links.reserved_netns())?;
        if req.ports.iter().any(|p| p.host_ip.is_some()) {
            let addresses = self.be.links.host_addresses().await?;
            safety::check_host_ips(&req.ports, &addresses)?;
        }
        if !req.ports.is_empty() {
            let wanted: Vec<WantedPort> = req
                .ports
                .iter()
                .map(|p| WantedPort {
                    protocol: p.protocol,
                    host_ip: p.host_ip,
                    port: p.host_port,
                })
                .collect();
            let listeners = self.be.links.host_listeners(&wanted).await?;
            safety::check_listeners(&req.ports, &listeners)?;
        }
        Ok(())
    }
}

impl Agent {
    /// Whether `netns` can be a container's: a network namespace, and none
    /// of the reserved ones. Reconcile detaches a recorded endpoint whose
    /// namespace is not (one an older trellis plumbed into the host).
    pub(crate) fn is_container_netns(&self, netns: &trellis_types::NetnsPath) -> bool {
        let reserved = self.be.links.reserved_netns();
        match self.be.links.check_netns(netns) {
            Ok(id) => safety::check_netns_identity(netns, id, &reserved).is_ok(),
            Err(_) => false,
        }
    }
}

/// A kernel `EINVAL` for an object made of the caller's values (which passed
/// every check trellis knows) as [`Error::KernelRefused`] naming `field`;
/// anything else as it is.
pub(crate) fn refused(field: &'static str, value: &IfName) -> impl FnOnce(LinkError) -> Error {
    let value = value.to_string();
    move |e| match &e {
        LinkError::Kernel(k) if k.source.raw_os_error() == Some(EINVAL) => Error::KernelRefused {
            field,
            value,
            source: Box::new(Error::Link(e)),
        },
        _ => Error::Link(e),
    }
}
