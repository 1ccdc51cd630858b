//! What trellis does to the host beyond its own objects, and the switch to
//! stop it: forwarding, and accept rules in the host's own firewall.
//!
//! A bridge network on a fresh host (`net.ipv4.ip_forward=0`) reaches
//! nothing off the host, and one behind a firewall that drops forwarding by
//! policy reaches nothing either. Docker fixes both for its users; so does
//! trellis, by default, and an operator who manages the host's forwarding or
//! firewall elsewhere turns either off ([`HostPolicy`]).
//!
//! * **Forwarding** goes on when a network is created and at reconcile, for
//!   the families the network uses (IPv6 only for networks with an IPv6
//!   subnet); see `trellis_link::forwarding` for the `accept_ra=2` rule. It
//!   stays on when networks go, as with Docker.
//! * **The host firewall** is brought in line after every network change
//!   and at reconcile, under one lock (two creates must not each write the
//!   rules of their own view of the networks). Its warnings never fail a
//!   request: they are kept for [`crate::Status`].

use crate::Error;
use crate::agent::Agent;
use crate::model::{Network, NetworkMode};
use ipnet::IpNet;
use trellis_link::Families;
use trellis_nat::Admitted;
use trellis_types::IfName;

/// Which host-wide settings trellis manages. Both on by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPolicy {
    /// Turn `ip_forward` (and IPv6 forwarding, for IPv6 networks) on.
    pub forwarding: bool,
    /// Insert accept rules for trellis's networks into the host's forward
    /// chains that drop by policy.
    pub firewall: bool,
}

impl Default for HostPolicy {
    fn default() -> Self {
        HostPolicy {
            forwarding: true,
            firewall: true,
        }
    }
}

/// What the host's dropping forward chains must let through for `nets`:
/// each bridge network, and the routed ports once for all routed networks.
pub(crate) fn admitted(nets: &[Network]) -> Vec<Admitted> {
    let mut out = Vec::new();
    let mut routed = Families::default();
    for net in nets {
        let fam = Families::of(net.spec.subnets.iter().map(IpNet::addr));
        match &net.spec.mode {
            NetworkMode::Bridge { bridge } => out.push(Admitted::Bridge {
                network: net.spec.name.to_string(),
                bridge: bridge.clone(),
                v4: fam.v4,
                v6: fam.v6,
            }),
            NetworkMode::Routed => {
                routed.v4 |= fam.v4;
                routed.v6 |= fam.v6;
            }
        }
    }
    if routed.v4 || routed.v6 {
        out.push(Admitted::RoutedPorts {
            v4: routed.v4,
            v6: routed.v6,
        });
    }
    out
}

impl Agent {
    /// The host-wide policy in force.
    pub fn host_policy(&self) -> HostPolicy {
        self.host
    }

    /// The same agent with `policy` instead of the default (manage both).
    pub fn with_host_policy(mut self, policy: HostPolicy) -> Self {
        self.host = policy;
        self
    }

    /// Turns forwarding on for the families `net` uses, unless the policy
    /// leaves forwarding alone.
    pub(crate) async fn enable_forwarding(&self, net: &Network) -> Result<(), Error> {
        if !self.host.forwarding {
            return Ok(());
        }
        let families = Families::of(net.spec.subnets.iter().map(IpNet::addr));
        let bridges: Vec<IfName> = self
            .networks()
            .iter()
            .chain([net])
            .filter_map(|n| n.spec.bridge().cloned())
            .collect();
        Ok(self
            .be
            .links
            .enable_host_forwarding(families, &bridges)
            .await?)
    }

    /// Brings trellis's rules in the host's forward chains in line with the
    /// networks now defined, and keeps what it could not do for `Status`.
    pub(crate) async fn sync_host_firewall(&self) {
        if !self.host.firewall {
            return;
        }
        let mut last = self.hostfw_warnings.lock().await;
        let want = admitted(&self.networks());
        *last = match self.be.hostfw.admit(&want).await {
            Ok(warnings) => warnings,
            Err(e) => vec![format!("cannot amend the host's firewall: {e}")],
        };
        for w in last.iter() {
            tracing::warn!("{w}");
        }
    }

    /// Warnings about the host's firewall for `Status`: those of the last
    /// change, and what differs now (a reload since), without writing.
    pub(crate) async fn host_firewall_warnings(&self) -> Vec<String> {
        if !self.host.firewall {
            return Vec::new();
        }
        let mut out = self.hostfw_warnings.lock().await.clone();
        let want = admitted(&self.networks());
        let now = match self.be.hostfw.check_admitted(&want).await {
            Ok(w) => w,
            Err(e) => vec![format!("cannot read the host's firewall: {e}")],
        };
        for w in now {
            if !out.contains(&w) {
                out.push(w);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NetworkSpec;

    fn net(name: &str, subnets: &[&str], bridge: Option<&str>) -> Network {
        let mode = match bridge {
            Some(b) => NetworkMode::Bridge {
                bridge: IfName::parse("bridge", b).unwrap(),
            },
            None => NetworkMode::Routed,
        };
        Network {
            spec: NetworkSpec {
                subnet_pool: None,
                cluster_pools: Vec::new(),
                name: name.parse().unwrap(),
                subnets: subnets.iter().map(|s| s.parse().unwrap()).collect(),
                gateway: None,
                mode,
                masquerade: true,
                mtu: None,
                internal: false,
                routable: false,
                reach: Vec::new(),
            },
            gateways: vec![],
            warnings: vec![],
        }
    }

    #[test]
    fn bridges_one_by_one_routed_networks_once() {
        let nets = [
            net("web", &["192.168.169.0/24"], Some("trweb0")),
            net("pods", &["10.244.0.0/16"], None),
            net("pods6", &["fd00:10:244::/56"], None),
        ];
        assert_eq!(
            admitted(&nets),
            [
                Admitted::Bridge {
                    network: "web".into(),
                    bridge: IfName::parse("bridge", "trweb0").unwrap(),
                    v4: true,
                    v6: false
                },
                Admitted::RoutedPorts { v4: true, v6: true },
            ]
        );
        assert!(admitted(&[]).is_empty());
    }
}
