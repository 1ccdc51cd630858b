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
//!
//! The floor fills its own bridge (in a host namespace of its own) one port
//! right after each of trellisd's no-port fill attaches, into the same
//! container: both are measured at the same port count, at the same moment
//! of a noisy machine. (Run apart, minutes later, the floor's last-100 p50
//! at 1000 moved by ±1.5 ms between runs, more than the gap it judges.)
//!
//! Then the last [`crate::grpc::CONCURRENT`] ports are retired at once with
//! `Links::retire_veth`, as trellisd's concurrent detaches do, and deleted
//! in one batch, as its reaper does: the kernel's own cost of that burst,
//! beside trellisd's wall time for it.
//!
//! [`Floor`] condenses the fill to two figures, the p50 of the first and of the
//! last [`ENDS`] fills, and [`gaps`] sets trellisd's attach p50 @1 and @max
//! against them: what trellisd adds on top of the kernel, at an empty and at
//! a full bridge (the target: within [`GAP_TARGET_MS`] at 1000).

use crate::grpc::Curve;
use crate::stats::summarise;
use anyhow::{Context, Result};
use std::time::{Duration, Instant};
use trellis_link::{
    BridgeSpec, ContainerIface, ContainerRoute, LinkRef, Links, NetlinkLinks, RetireEnd, VethSpec,
    host_veth_name,
};
use trellis_testlab::Netns;
use trellis_types::{ContainerId, IfName, NetnsPath};

/// The kernel floor, filled one port per call, interleaved with trellisd's
/// fill so that both are measured at the same port count under the same
/// conditions (the same container namespaces, each with trellisd's `eth0`
/// and the floor's [`FLOOR_IFNAME`]; the same moment of a noisy machine).
pub struct KernelFloor {
    host: Netns,
    links: NetlinkLinks,
    bridge: u32,
    /// The time of each fill, in order.
    pub fill: Vec<Duration>,
    /// The host end and container namespace of each fill.
    ends: Vec<(IfName, NetnsPath)>,
}

/// The floor's interface in each container, beside trellisd's `eth0`.
pub const FLOOR_IFNAME: &str = "eth1";
/// The floor's gateway, in a subnet of its own: the containers also hold
/// trellisd's `eth0` in `scenarios::SUBNET_BASE`.
const FLOOR_GATEWAY: &str = "10.77.0.1";
/// The floor's container route: not a default route (trellisd's `eth0`
/// holds that), but one route through the gateway all the same.
const FLOOR_ROUTE: &str = "10.78.0.0/16";

fn name(s: &str) -> Result<IfName> {
    IfName::parse("ifname", s).context("interface name")
}

fn path(ns: &Netns) -> Result<NetnsPath> {
    NetnsPath::parse("netns", &ns.path_str()).context("netns path")
}

impl KernelFloor {
    /// A fresh host namespace with the floor's bridge.
    pub async fn new() -> Result<Self> {
        let host = Netns::new("floor-host");
        let links = NetlinkLinks::in_netns(&path(&host)?).await?;
        let bridge = links
            .ensure_bridge(&BridgeSpec {
                name: name("floorbr0")?,
                gateway: vec![format!("{FLOOR_GATEWAY}/16").parse().context("gateway")?],
                mac: None,
                mtu: None,
            })
            .await?;
        Ok(KernelFloor {
            host,
            links,
            bridge,
            fill: Vec::new(),
            ends: Vec::new(),
        })
    }

    /// Adds one port into `container`, timed: the veth made with its peer in
    /// the container, enslaved and up, the container side addressed and
    /// routed.
    pub async fn fill_one(&mut self, container: &Netns) -> Result<()> {
        let i = self.fill.len();
        let id = ContainerId::parse("container_id", &format!("floor{i}"))?;
        let spec = VethSpec {
            host_name: host_veth_name(&id, &name(FLOOR_IFNAME)?),
            container_netns: path(container)?,
            container_name: name(FLOOR_IFNAME)?,
            mtu: None,
            container_mac: None,
            host_mac: None,
            master: Some(LinkRef::Index(self.bridge)),
            host_ipv6: false,
        };
        let address = format!("10.77.{}.{}/16", 1 + i / 250, 1 + i % 250);
        let route = ContainerRoute {
            dst: FLOOR_ROUTE.parse().context("route")?,
            via: Some(FLOOR_GATEWAY.parse().context("gateway")?),
        };
        let t = Instant::now();
        let veth = self.links.create_veth(&spec).await?;
        let iface = ContainerIface {
            netns: spec.container_netns.clone(),
            link: LinkRef::Index(veth.container_ifindex),
            addresses: vec![address.parse().context("address")?],
            ipv6: false,
        };
        self.links.setup_container(&iface, &[route]).await?;
        self.fill.push(t.elapsed());
        self.ends.push((spec.host_name, spec.container_netns));
        Ok(())
    }

    /// Retires the last [`crate::grpc::CONCURRENT`] ports at once, as
    /// trellisd's concurrent detaches do, and deletes them in one batch, as
    /// its reaper does; the note on both, for under the table.
    pub async fn retire_last(&mut self) -> Result<String> {
        let ports = self.ends.len();
        let retiring = self
            .ends
            .split_off(ports.saturating_sub(crate::grpc::CONCURRENT));
        let t = Instant::now();
        let retired = futures::future::try_join_all(retiring.iter().map(|(host, netns)| {
            let end = RetireEnd {
                netns: netns.clone(),
                ifname: IfName::parse("ifname", FLOOR_IFNAME).expect("a name"),
            };
            self.links.retire_veth(host, Some(end))
        }))
        .await?;
        let retire = t.elapsed();
        let names: Vec<IfName> = retired.into_iter().flatten().collect();
        let t = Instant::now();
        self.links.delete_links(&names).await?;
        let n = retiring.len();
        Ok(format!(
            "kernel floor: {n} retirements at once (trellis-link retire_veth, bridge {ports}→{} ports) \
             took {:.1} ms (wall); their batched delete {:.1} ms",
            ports - n,
            retire.as_secs_f64() * 1e3,
            t.elapsed().as_secs_f64() * 1e3,
        ))
    }

    /// Deletes the floor's host namespace (and every port with it).
    pub fn remove(self) {
        drop(self.host);
    }
}

/// How many fills at each end of the floor are summarised.
pub const ENDS: usize = 100;
/// The bound on "attach p50 @max − floor last-[`ENDS`] p50", ms,
/// when max is [`TARGET_LEVEL`].
pub const GAP_TARGET_MS: f64 = 0.5;
/// The endpoint count the gap target is for.
pub const TARGET_LEVEL: usize = 1000;

/// The floor's p50 over its first and over its last [`ENDS`] fills, ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Floor {
    /// p50 of the first `n` fills (bridge ports 1..=n).
    pub first: f64,
    /// p50 of the last `n` fills (the bridge then reaches `ports` ports).
    pub last: f64,
    /// Fills per end: [`ENDS`], or all of them if there are fewer.
    pub n: usize,
    /// Fills in all.
    pub ports: usize,
}

impl Floor {
    /// The two figures of `fill` (one time per fill, in order); `None` if empty.
    pub fn of(fill: &[Duration]) -> Option<Floor> {
        let n = fill.len().min(ENDS);
        (n > 0).then(|| Floor {
            first: summarise(&fill[..n]).p50,
            last: summarise(&fill[fill.len() - n..]).p50,
            n,
            ports: fill.len(),
        })
    }

    /// The note for under the table.
    pub fn note(&self) -> String {
        let (n, ports) = (self.n, self.ports);
        format!(
            "kernel floor p50: first {n} fills {:.2} ms (bridge ports 1–{n}), last {n} fills {:.2} ms \
             (ports {}–{ports})",
            self.first,
            self.last,
            ports - n + 1
        )
    }
}

/// The note setting curve `name`'s attach p50 @1 and @max against `floor`:
/// the first gap against the first fills, the top one against the last,
/// judged against [`GAP_TARGET_MS`]. `None` without probes.
pub fn gaps(name: &str, curve: &Curve, floor: &Floor) -> Option<String> {
    let (low, low_samples) = curve.attach.first()?;
    let (high, high_samples) = curve.attach.last()?;
    let (p_low, p_high) = (summarise(low_samples).p50, summarise(high_samples).p50);
    let (g_low, g_high) = (p_low - floor.first, p_high - floor.last);
    let verdict = match *high {
        TARGET_LEVEL if g_high <= GAP_TARGET_MS => "pass",
        TARGET_LEVEL => "MISS",
        _ => "not judged below 1000",
    };
    let n = floor.n;
    Some(format!(
        "{name}: attach p50 @{low} − floor first-{n} p50 = {p_low:.2} − {:.2} = {g_low:.2} ms; \
         attach p50 @{high} − floor last-{n} p50 = {p_high:.2} − {:.2} = {g_high:.2} ms \
         (target ≤{GAP_TARGET_MS} ms at 1000: {verdict})",
        floor.first, floor.last
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: impl IntoIterator<Item = u64>) -> Vec<Duration> {
        v.into_iter().map(Duration::from_micros).collect()
    }

    #[test]
    fn the_floor_is_the_p50_of_each_end() {
        // 300 fills: 100 at 1 ms, 100 at 2 ms, 100 at 3 ms.
        let fill = ms((0..300).map(|i| 1000 * (1 + i / 100)));
        let f = Floor::of(&fill).unwrap();
        assert_eq!((f.first, f.last, f.n, f.ports), (1.0, 3.0, 100, 300));
        assert_eq!(
            f.note(),
            "kernel floor p50: first 100 fills 1.00 ms (bridge ports 1–100), last 100 fills 3.00 ms \
             (ports 201–300)"
        );
        let few = Floor::of(&ms([1000, 2000, 3000])).unwrap();
        assert_eq!(
            (few.first, few.last, few.n),
            (2.0, 2.0, 3),
            "all of them at both ends"
        );
        assert!(Floor::of(&[]).is_none());
    }

    #[test]
    fn gaps_set_the_ends_of_the_curve_against_the_ends_of_the_floor() {
        let floor = Floor {
            first: 0.5,
            last: 1.5,
            n: 100,
            ports: 1000,
        };
        let curve = Curve {
            attach: vec![(1, ms([2000])), (100, ms([2500])), (1000, ms([1800]))],
            ..Curve::default()
        };
        assert_eq!(
            gaps("trellisd", &curve, &floor).unwrap(),
            "trellisd: attach p50 @1 − floor first-100 p50 = 2.00 − 0.50 = 1.50 ms; \
             attach p50 @1000 − floor last-100 p50 = 1.80 − 1.50 = 0.30 ms (target ≤0.5 ms at 1000: pass)"
        );
        let slow = Curve {
            attach: vec![(1, ms([2000])), (1000, ms([2100]))],
            ..Curve::default()
        };
        assert!(
            gaps("t", &slow, &floor)
                .unwrap()
                .ends_with("0.60 ms (target ≤0.5 ms at 1000: MISS)")
        );
        let small = Curve {
            attach: vec![(1, ms([2000])), (100, ms([2100]))],
            ..Curve::default()
        };
        assert!(
            gaps("t", &small, &floor)
                .unwrap()
                .ends_with("(target ≤0.5 ms at 1000: not judged below 1000)")
        );
        assert!(gaps("t", &Curve::default(), &floor).is_none());
    }
}
