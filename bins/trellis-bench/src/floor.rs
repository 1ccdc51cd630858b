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
//! [`Floor`] condenses it to two figures, the p50 of the first and of the
//! last [`ENDS`] fills, and [`gaps`] sets trellisd's attach p50 @1 and @max
//! against them: what trellisd adds on top of the kernel, at an empty and at
//! a full bridge (the target: within [`GAP_TARGET_MS`] at 1000).

use crate::grpc::{Containers, Curve};
use crate::stats::summarise;
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
