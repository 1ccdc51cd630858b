//! The kernel's own cost of one more bridge port as a host fills up, with
//! nothing of trellis around it but `trellis-link`: the veth created with its
//! peer in the container, enslaved and up, the container side addressed and
//! routed — no daemon, no gRPC, no IPAM, no store.
//!
//! A Linux bridge does work proportional to its port count for every port
//! added (its upper/lower device lists, port-state and root selection, GSO
//! and MTU recomputation), and a veth into another namespace looks up that
//! namespace's id among all of the host's. That growth is paid by every
//! bridge-based runtime alike; printed beside the curves, it shows how much
//! of "attach @1000 − attach @1" is the kernel's.

use crate::grpc::Containers;
use anyhow::{Context, Result};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use trellis_link::{
    BridgeSpec, ContainerIface, ContainerRoute, LinkRef, Links, NetlinkLinks, VethSpec,
    host_veth_name,
};
use trellis_testlab::Netns;
use trellis_types::{ContainerId, IfName, NetnsPath};

/// Fills a fresh host namespace's bridge with one port per fill container,
/// one after another; the time of each.
pub fn kernel_fill(rt: &Runtime, containers: &Containers) -> Result<Vec<Duration>> {
    let host = Netns::new("floor-host");
    let result = rt.block_on(fill(&host, containers));
    drop(host);
    containers.wait_empty()?;
    result
}

async fn fill(host: &Netns, containers: &Containers) -> Result<Vec<Duration>> {
    let path = |ns: &Netns| NetnsPath::parse("netns", &ns.path_str()).context("netns path");
    let links = NetlinkLinks::in_netns(&path(host)?).await?;
    let name = |s: &str| IfName::parse("ifname", s).context("interface name");
    let gateway = "10.88.0.1".parse().context("gateway")?;
    let bridge = links
        .ensure_bridge(&BridgeSpec {
            name: name("floorbr0")?,
            gateway: vec!["10.88.0.1/16".parse().context("gateway")?],
            mac: None,
            mtu: None,
        })
        .await?;
    let mut times = Vec::with_capacity(containers.fill.len());
    for (i, c) in containers.fill.iter().enumerate() {
        let id = ContainerId::parse("container_id", &format!("floor{i}"))?;
        let spec = VethSpec {
            host_name: host_veth_name(&id, &name("eth0")?),
            container_netns: path(c)?,
            container_name: name("eth0")?,
            mtu: None,
            container_mac: None,
            host_mac: None,
            master: Some(LinkRef::Index(bridge)),
            host_ipv6: false,
        };
        let address = format!("10.88.{}.{}/16", 1 + i / 250, 1 + i % 250);
        let t = Instant::now();
        let veth = links.create_veth(&spec).await?;
        let iface = ContainerIface {
            netns: spec.container_netns.clone(),
            link: LinkRef::Index(veth.container_ifindex),
            addresses: vec![address.parse().context("address")?],
            ipv6: false,
        };
        links
            .setup_container(&iface, &[ContainerRoute::default_via(gateway)])
            .await?;
        times.push(t.elapsed());
    }
    Ok(times)
}
