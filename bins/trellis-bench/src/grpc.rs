//! `trellis-bench grpc`: the same attach/detach curve for every peer, driven
//! through one [`Peer`] interface so that every row of the table means the
//! same thing.
//!
//! The curve of one peer (see [`plan`]), on a fresh host namespace:
//!
//! * **Probes at a level L** (L = 1, 100 and `--max`): the host first holds
//!   L − 1 endpoints (filled one at a time, those attaches are not part of
//!   any row); then `--samples` times: attach one probe container (the host
//!   now has exactly L endpoints) and time it, then detach it and time that.
//!   So "attach @L" is the latency of the attach that brings the host to L
//!   endpoints, sampled `--samples` times, and "detach" pools the probes'
//!   detaches of every level.
//! * **Memory at max:** one last fill attach brings the host to exactly
//!   `--max` endpoints; the daemon's VmRSS is read then (peers without a
//!   daemon have none).
//! * **Concurrency:** [`CONCURRENT`] further containers are attached at once;
//!   the row is the wall time from the first request sent to the last answer
//!   received. It starts from `--max` endpoints, less what one bridge cannot
//!   take (a Linux bridge has at most 1023 ports, so at 1000 the last 77 fill
//!   endpoints are detached first, untimed: 923 → 1023).
//! * **Concurrent detaches:** right after, those same [`CONCURRENT`]
//!   containers are detached at once; again wall time from the first request
//!   sent to the last answer. A peer may answer before the kernel has
//!   finished deleting the veths (trellisd deletes them in batches shortly
//!   after answering), so the host's veth count is then watched, untimed for
//!   the row, for up to [`SETTLE_LIMIT`]: when it is back where the
//!   concurrent step started, the kernel deletions have finished; that delay
//!   is reported as a note, and a count that never drops is a failure.
//!
//! Between every step nothing else runs: the untimed checks (veth counts)
//! happen only after the fill and after the concurrent steps.

use anyhow::{Context, Result, anyhow, ensure};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use trellis_testlab::Netns;

/// How many containers the concurrency step attaches at once.
pub const CONCURRENT: usize = 100;
/// Round trips of a daemon's cheapest call timed at max.
pub const ROUND_TRIPS: usize = 100;
/// The default highest endpoint count.
pub const DEFAULT_MAX: usize = 1000;
/// The default number of probe attach/detach cycles per level.
pub const DEFAULT_SAMPLES: usize = 100;
/// The middle level of the curve (the "100 endpoints").
pub const MID_LEVEL: usize = 100;
/// Published ports: slot `i` publishes host port `PORT_BASE + i` → 80.
pub const PORT_BASE: usize = 10_000;
/// The container port every published port points at.
pub const CONTAINER_PORT: u16 = 80;
/// How long the veth count may take to drop after the concurrent detaches
/// have all been answered.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(5);

/// The endpoint counts at which attach latency is probed: 1, 100 and `max`,
/// ascending, without duplicates, none above `max`.
pub fn levels(max: usize) -> Vec<usize> {
    let mut l: Vec<usize> = [1, MID_LEVEL, max]
        .into_iter()
        .filter(|&l| l <= max)
        .collect();
    l.sort_unstable();
    l.dedup();
    l
}

/// One step of a peer's curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Attach fill container `i` (untimed as far as the table goes).
    Fill(usize),
    /// Attach the probe container (the host then has `level` endpoints),
    /// timed, then detach it, timed.
    Probe { level: usize, round: usize },
    /// The host has exactly `max` endpoints: check them, read memory.
    AtMax,
    /// Detach fill container `i` (untimed), making room on the bridge for
    /// the concurrent step.
    Unfill(usize),
    /// Attach [`CONCURRENT`] more containers at once, wall-timed.
    Concurrent,
    /// Detach those [`CONCURRENT`] containers at once, wall-timed.
    ConcurrentDetach,
}

/// The steps of a curve up to `max` endpoints with `samples` probes per level.
pub fn plan(max: usize, samples: usize) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut filled = 0;
    for level in levels(max) {
        while filled < level - 1 {
            steps.push(Step::Fill(filled));
            filled += 1;
        }
        steps.extend((0..samples).map(|round| Step::Probe { level, round }));
    }
    while filled < max {
        steps.push(Step::Fill(filled));
        filled += 1;
    }
    steps.push(Step::AtMax);
    steps.extend((concurrent_from(max)..max).rev().map(Step::Unfill));
    steps.push(Step::Concurrent);
    steps.push(Step::ConcurrentDetach);
    steps
}

/// How many endpoints the host holds when the concurrent step starts: `max`,
/// unless the bridge could not then take [`CONCURRENT`] more ports.
pub fn concurrent_from(max: usize) -> usize {
    max.min(trellis_link::BRIDGE_MAX_PORTS - CONCURRENT)
}

/// One container as a peer sees it.
#[derive(Debug, Clone)]
pub struct Slot {
    /// Distinct per container; picks its static address (netavark) and port.
    pub index: usize,
    /// The container id handed to the peer.
    pub id: String,
    /// The container's network namespace.
    pub netns: PathBuf,
    /// The host port it publishes (→ [`CONTAINER_PORT`]/tcp), if any.
    pub port: Option<u16>,
}

/// What is being benchmarked: something that attaches containers to a bridge
/// on the host namespace it was built for.
pub trait Peer {
    /// Attaches `slot` and returns the time it took.
    fn attach(&mut self, slot: &Slot) -> Result<Duration>;
    /// Detaches `slot` and returns the time it took.
    fn detach(&mut self, slot: &Slot) -> Result<Duration>;
    /// Attaches all `slots` at once; the wall time until all are done.
    fn attach_concurrently(&mut self, slots: &[Slot]) -> Result<Duration>;
    /// Detaches all `slots` (attached) at once; the wall time until all
    /// are answered.
    fn detach_concurrently(&mut self, slots: &[Slot]) -> Result<Duration>;
    /// (VmRSS, VmHWM) in KiB of the peer's long-running process, if it has one.
    fn memory(&self) -> Result<Option<(u64, u64)>> {
        Ok(None)
    }
    /// `n` round trips of the cheapest call a daemon answers, if the peer
    /// is one: what any attach over its API costs before any work.
    fn round_trips(&mut self, _n: usize) -> Result<Option<Vec<Duration>>> {
        Ok(None)
    }
}

/// The container namespaces every curve uses, made once for the whole run
/// (each curve gets a fresh host namespace; deleting it takes the veths
/// with it, so these come back empty).
pub struct Containers {
    /// One per fill endpoint.
    pub fill: Vec<Netns>,
    /// The probe, attached and detached `samples` times per level.
    pub probe: Netns,
    /// The ones attached concurrently.
    pub concurrent: Vec<Netns>,
}

impl Containers {
    /// Makes `max + 1 + CONCURRENT` namespaces (untimed).
    pub fn new(max: usize) -> Self {
        let fill = (0..max).map(|i| Netns::new(&format!("c{i}"))).collect();
        let probe = Netns::new("probe");
        let concurrent = (0..CONCURRENT)
            .map(|i| Netns::new(&format!("k{i}")))
            .collect();
        Containers {
            fill,
            probe,
            concurrent,
        }
    }

    /// Slot of fill container `i`.
    pub fn fill_slot(&self, i: usize, ports: bool) -> Slot {
        slot(i, format!("bench{i}"), self.fill[i].path(), ports)
    }

    /// Slot of the probe for `round` at `level`: one namespace, one index
    /// (address and port are free again after each detach), a fresh id.
    pub fn probe_slot(&self, level: usize, round: usize, ports: bool) -> Slot {
        let index = self.fill.len() + CONCURRENT;
        slot(
            index,
            format!("probe{level}-{round}"),
            self.probe.path(),
            ports,
        )
    }

    /// Slots of the concurrently attached containers.
    pub fn concurrent_slots(&self, ports: bool) -> Vec<Slot> {
        let base = self.fill.len();
        self.concurrent
            .iter()
            .enumerate()
            .map(|(i, ns)| slot(base + i, format!("conc{i}"), ns.path(), ports))
            .collect()
    }

    /// Waits (untimed) until the namespaces a deleted host left behind have
    /// lost their veths: namespace teardown is asynchronous in the kernel,
    /// and the next curve must neither find an `eth0` nor share the CPU with
    /// that teardown.
    pub fn wait_empty(&self) -> Result<()> {
        let mut watch: Vec<&Netns> = vec![&self.probe];
        watch.extend(self.fill.first());
        watch.extend(self.fill.last());
        watch.extend(self.concurrent.last());
        wait_empty(&watch)
    }
}

/// Waits (untimed, up to 180 s) until each of `watch` has no link but `lo`
/// (see [`Containers::wait_empty`]).
pub fn wait_empty(watch: &[&Netns]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(180);
    for ns in watch {
        while ns.ip("-o link show").lines().count() > 1 {
            ensure!(
                Instant::now() < deadline,
                "{} still has links 180 s after its host was deleted",
                ns.name()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

fn slot(index: usize, id: String, netns: PathBuf, ports: bool) -> Slot {
    let port = ports.then(|| u16::try_from(PORT_BASE + index).expect("port fits in u16"));
    Slot {
        index,
        id,
        netns,
        port,
    }
}

/// What one peer's curve measured.
#[derive(Debug, Default)]
pub struct Curve {
    /// Probe attach latencies per level, in [`levels`] order.
    pub attach: Vec<(usize, Vec<Duration>)>,
    /// Every probe detach, all levels.
    pub detach: Vec<Duration>,
    /// Every fill attach, one after another (for the notes: where time goes).
    pub fill: Vec<Duration>,
    /// (VmRSS, VmHWM) KiB at `max` endpoints, for a peer with a daemon.
    pub memory: Option<(u64, u64)>,
    /// Round trips of the daemon's cheapest call at max (see
    /// [`Peer::round_trips`]).
    pub round_trips: Option<Vec<Duration>>,
    /// Wall time of [`CONCURRENT`] attaches at once, or why it failed.
    pub concurrent: Option<Result<Duration, String>>,
    /// Endpoints on the host when the concurrent attaches started.
    pub concurrent_from: usize,
    /// Wall time of the [`CONCURRENT`] detaches at once, or why it failed.
    pub concurrent_detach: Option<Result<Duration, String>>,
    /// How long after the last detach answer the host's veth count was back
    /// to [`Curve::concurrent_from`] (the kernel deletions finished): the
    /// start of the look that found it, zero if the first look did.
    pub detach_settled: Option<Duration>,
}

/// Runs the curve of `peer` on `host`, with `containers`; `ports`: every
/// attach publishes one port. `veths(with_retired)` counts the host's veths
/// (untimed check): those of endpoints, plus, when asked, the ones trellisd
/// has detached and retired (`trx…`) but not yet deleted. `after_fill(i)`
/// runs after fill `i` (the kernel floor's own fill, interleaved).
pub fn run(
    peer: &mut dyn Peer,
    containers: &Containers,
    samples: usize,
    ports: bool,
    veths: &dyn Fn(bool) -> usize,
    after_fill: &mut dyn FnMut(usize) -> Result<()>,
) -> Result<Curve> {
    let max = containers.fill.len();
    let mut curve = Curve::default();
    for step in plan(max, samples) {
        match step {
            Step::Fill(i) => {
                let s = containers.fill_slot(i, ports);
                let took = peer
                    .attach(&s)
                    .with_context(|| format!("fill attach of {}", s.id))?;
                curve.fill.push(took);
                after_fill(i)?;
            }
            Step::Probe { level, round } => {
                let s = containers.probe_slot(level, round, ports);
                let a = peer
                    .attach(&s)
                    .with_context(|| format!("probe attach {} at {level}", s.id))?;
                let d = peer
                    .detach(&s)
                    .with_context(|| format!("probe detach {} at {level}", s.id))?;
                match curve.attach.last_mut() {
                    Some((l, v)) if *l == level => v.push(a),
                    _ => curve.attach.push((level, vec![a])),
                }
                curve.detach.push(d);
            }
            Step::AtMax => {
                let n = veths(false);
                ensure!(n == max, "host has {n} veths at max, expected {max}");
                curve.memory = peer.memory()?;
                curve.round_trips = peer.round_trips(ROUND_TRIPS)?;
            }
            Step::Unfill(i) => {
                let s = containers.fill_slot(i, ports);
                peer.detach(&s)
                    .with_context(|| format!("making room: detach of {}", s.id))?;
            }
            Step::Concurrent => {
                let slots = containers.concurrent_slots(ports);
                curve.concurrent_from = concurrent_from(max);
                let r = peer.attach_concurrently(&slots).and_then(|wall| {
                    let n = veths(false);
                    let want = concurrent_from(max) + CONCURRENT;
                    ensure!(n == want, "host has {n} veths, expected {want}");
                    Ok(wall)
                });
                curve.concurrent = Some(r.map_err(|e| format!("{e:#}")));
            }
            Step::ConcurrentDetach => {
                let r = if matches!(curve.concurrent, Some(Ok(_))) {
                    let slots = containers.concurrent_slots(ports);
                    peer.detach_concurrently(&slots).and_then(|wall| {
                        let all = || veths(true);
                        curve.detach_settled = Some(settle(&all, concurrent_from(max))?);
                        Ok(wall)
                    })
                } else {
                    Err(anyhow!("not run: the concurrent attaches failed"))
                };
                curve.concurrent_detach = Some(r.map_err(|e| format!("{e:#}")));
            }
        }
    }
    Ok(curve)
}

/// Watches the host's veth count (untimed for the table) until it is
/// `want`, for up to [`SETTLE_LIMIT`]; when the look that found it started
/// (zero: the first look did; a look is a whole link dump, ~10 ms at 1000).
fn settle(veths: &dyn Fn() -> usize, want: usize) -> Result<Duration> {
    let start = Instant::now();
    let mut look = Duration::ZERO;
    loop {
        let n = veths();
        if n == want {
            return Ok(look);
        }
        ensure!(
            n > want && start.elapsed() < SETTLE_LIMIT,
            "host has {n} veths {:.1} s after the concurrent detaches were answered, expected {want}",
            start.elapsed().as_secs_f64()
        );
        std::thread::sleep(Duration::from_millis(10));
        look = start.elapsed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_1_100_and_max_without_duplicates() {
        assert_eq!(levels(1000), vec![1, 100, 1000]);
        assert_eq!(levels(300), vec![1, 100, 300]);
        assert_eq!(levels(100), vec![1, 100]);
        assert_eq!(levels(50), vec![1, 50]);
        assert_eq!(levels(1), vec![1]);
    }

    /// Replays a plan, counting endpoints on the host.
    fn replay(max: usize, samples: usize) -> (Vec<(usize, usize)>, Vec<usize>, usize) {
        let mut endpoints = 0;
        let mut probes = Vec::new(); // (level, endpoints while the probe is attached)
        let mut fills = Vec::new();
        let mut at_max = None;
        for step in plan(max, samples) {
            match step {
                Step::Fill(i) => {
                    fills.push(i);
                    endpoints += 1;
                }
                Step::Probe { level, .. } => probes.push((level, endpoints + 1)),
                Step::AtMax => at_max = Some(endpoints),
                Step::Unfill(_) => endpoints -= 1,
                Step::Concurrent => {
                    assert!(at_max.is_some(), "concurrent after max");
                    assert_eq!(endpoints, concurrent_from(max));
                    assert!(endpoints + CONCURRENT <= trellis_link::BRIDGE_MAX_PORTS);
                    endpoints += CONCURRENT;
                }
                Step::ConcurrentDetach => {
                    endpoints -= CONCURRENT;
                    assert_eq!(endpoints, concurrent_from(max));
                }
            }
        }
        (probes, fills, at_max.expect("an AtMax step"))
    }

    #[test]
    fn every_probe_attach_brings_the_host_to_exactly_its_level() {
        for (max, samples) in [(1000, 100), (300, 7), (100, 3), (1, 2), (2, 1)] {
            let (probes, fills, at_max) = replay(max, samples);
            assert_eq!(probes.len(), levels(max).len() * samples, "{max}");
            assert!(probes.iter().all(|(level, n)| level == n), "{probes:?}");
            assert_eq!(
                fills,
                (0..max).collect::<Vec<_>>(),
                "each fill once, in order"
            );
            assert_eq!(at_max, max);
        }
    }

    #[test]
    fn settling_waits_for_the_count_to_drop_and_refuses_one_below() {
        let counts = std::cell::RefCell::new(vec![100, 103, 105]);
        let veths = || {
            let mut c = counts.borrow_mut();
            if c.len() > 1 { c.pop().unwrap() } else { c[0] }
        };
        let third_look = settle(&veths, 100).unwrap();
        assert!(third_look >= Duration::from_millis(20), "{third_look:?}");
        assert!(counts.borrow().len() == 1, "polled until 100");
        assert_eq!(settle(&|| 100, 100).unwrap(), Duration::ZERO, "first look");
        let e = settle(&|| 99, 100).unwrap_err().to_string();
        assert!(e.contains("has 99 veths"), "{e}");
    }

    #[test]
    fn slots_publish_a_port_per_index_only_when_asked() {
        let s = slot(7, "bench7".into(), "/run/netns/x".into(), true);
        assert_eq!(s.port, Some(10_007));
        assert_eq!(slot(7, "b".into(), "/x".into(), false).port, None);
    }

    #[test]
    fn plan_ends_with_memory_then_concurrent_attaches_then_detaches() {
        let p = plan(5, 1);
        assert_eq!(
            &p[p.len() - 3..],
            &[Step::AtMax, Step::Concurrent, Step::ConcurrentDetach]
        );
        let p = plan(1000, 1);
        let tail: Vec<Step> = (923..1000).rev().map(Step::Unfill).collect();
        assert_eq!(
            &p[p.len() - 80..p.len() - 2],
            &[&[Step::AtMax][..], &tail].concat()[..]
        );
        assert_eq!(
            &p[p.len() - 2..],
            &[Step::Concurrent, Step::ConcurrentDetach]
        );
        assert_eq!(p[0], Step::Probe { level: 1, round: 0 });
    }
}
