//! `trellis-bench bgp`: BGP export against issue 12's targets, with BIRD 2
//! as the router, everything inside namespaces the bench makes.
//!
//! ```text
//!  bench ──gRPC (unix socket)──▶ trellisd          BIRD (passive, neighbor = host)
//!  ns "host"  10.99.0.1/24 up0 ──── veth ──── down0 10.99.0.2/24  ns "router"
//!             fd00:99::1/64                        fd00:99::2/64
//! ```
//!
//! 1. **Block claimed → route in BIRD's table** ([`claims`]). The release
//!    trellisd with a `[bgp]` section peering BIRD, and a routed network
//!    `10.244.0.0/16` (default /26 blocks: in standalone mode a block is
//!    claimed when the node's blocks are full, so every 64th attach claims
//!    one). A sequential burst of attaches over gRPC fills `--blocks` blocks;
//!    each newly claimed block is one sample, timed from the start of the
//!    attach that claimed it (the first attach answered with an address in
//!    it) to the moment the route to it appears in the router namespace's
//!    kernel. BIRD runs with `install_kernel` (`protocol kernel` exporting
//!    its BGP routes), and BIRD's kernel protocol writes each route to the
//!    kernel as soon as it enters BIRD's table, so an rtnetlink subscription
//!    on a thread inside the router namespace ([`crate::monitor`], the one
//!    `cluster` times its peer routes with) sees BIRD's table change within
//!    a wake-up, stamped with the same monotonic clock as the attach —
//!    precise, and with no polling of `birdc`. At the end, BIRD's own `show
//!    route all` must list every block via the host, or the run fails.
//!    Target: p99 ≤ 50 ms.
//! 2. **Bulk: 10,000 prefixes to a BIRD peer** ([`bulk`]). The speaker runs
//!    alone in a child process — this binary re-executed in the host
//!    namespace as the hidden subcommand `bgp-speaker` ([`speaker`]) — so
//!    that its RSS (VmRSS, VmHWM) is the speaker's and nothing else's. The
//!    session is Established and idle first (End-of-RIB sent with an empty
//!    table); then the child calls `set_routes` with 10,000 distinct /26s,
//!    and the bench polls BIRD's control socket directly (`show route table
//!    master4 protocol n0 count`, every [`bulk::POLL`]: a query is a unix
//!    socket round trip, about 0.3 ms, not a `birdc` process) until BIRD
//!    holds all of them; the clock runs from just before `set_routes` (both
//!    processes read `CLOCK_MONOTONIC`) to the answer of the query that saw
//!    the last one. Then all are withdrawn (`set_routes` of nothing) until
//!    BIRD has none; then the same with 10,000 IPv6 /122s (over the same
//!    IPv4 session, next hop `fd00:99::1`). The four steps run `--rounds`
//!    times on the one session (the whole thing takes milliseconds, so one
//!    sample would be mostly noise). The child also says when it had
//!    written the last UPDATE (its `advertised` set complete), and the
//!    UPDATEs it sent (its `PeerStatus` counters, as JSON). BIRD's own RSS
//!    is printed beside the speaker's for scale. This BIRD does not install
//!    into the kernel, so the time is BIRD's table alone.
//!
//! Nothing touches the machine's own network namespace: the daemons bind
//! and connect only inside the bench's namespaces, BIRD is started by
//! `trellis_testlab::routers` there, and a Ctrl-C kills trellisd and BIRD
//! before the namespaces are removed (the speaker child dies with the bench:
//! `PR_SET_PDEATHSIG`).

mod birdctl;
mod bulk;
mod claims;
mod lab;
mod report;
pub mod speaker;

use anyhow::Result;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use lab::kill_routers;

/// Default blocks claimed in benchmark 1 (64 attaches each).
pub const DEFAULT_BLOCKS: usize = 100;
/// Default prefixes per family in benchmark 2.
pub const DEFAULT_PREFIXES: usize = 10_000;
/// Default rounds of benchmark 2's steps.
pub const DEFAULT_ROUNDS: usize = 10;
/// Block claimed → route in BIRD, p99 target, ms.
pub const ROUTE_P99_MS: f64 = 50.0;

/// The options of `trellis-bench bgp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Blocks to claim (samples of benchmark 1).
    pub blocks: usize,
    /// Prefixes per family of benchmark 2.
    pub prefixes: usize,
    /// Whether benchmark 2 also sends IPv6 prefixes.
    pub v6: bool,
    /// Rounds of benchmark 2's steps.
    pub rounds: usize,
    /// The trellisd binary, if named.
    pub trellisd: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            blocks: DEFAULT_BLOCKS,
            prefixes: DEFAULT_PREFIXES,
            v6: true,
            rounds: DEFAULT_ROUNDS,
            trellisd: None,
        }
    }
}

impl crate::Flags for Options {
    fn flag<'a>(&mut self, flag: &'a str, rest: &mut dyn Iterator<Item = &'a str>) -> Result<bool> {
        match flag {
            // 1000 blocks of 64 fit the /16 (1024 blocks).
            "--blocks" => self.blocks = crate::number(rest, flag, 1..=1000)?,
            // Their /26s stay inside 10.128.0.0/9.
            "--prefixes" => self.prefixes = crate::number(rest, flag, 1..=100_000)?,
            "--rounds" => self.rounds = crate::number(rest, flag, 1..=1000)?,
            "--no-v6" => self.v6 = false,
            "--trellisd" => self.trellisd = Some(crate::path(rest, flag)?),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// `CLOCK_MONOTONIC` now: the clock `Instant` reads, readable as a number
/// in two processes (the speaker child stamps with it, the bench compares).
pub fn mono() -> Duration {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always there");
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

/// Runs both benchmarks and prints their tables.
pub fn run(o: &Options) -> Result<()> {
    let title = format!(
        "trellis-bench bgp: block claimed → route in BIRD ({} blocks), {} prefixes to BIRD \
         (speaker alone, RSS)",
        o.blocks, o.prefixes
    );
    let trellisd = crate::start_trellisd_bench(&title, o.trellisd.as_deref())?;
    println!("bird: {}", birdctl::version());
    println!(
        "what: (1) trellisd with [bgp] peering BIRD over a veth between two namespaces; a \
         sequential burst of {} attaches over gRPC fills {} /26 blocks of a routed /16; each \
         block is timed from the start of the attach that claimed it to the route's arrival in \
         the router namespace's kernel, where BIRD (protocol kernel) writes every route it \
         learns at once — read by an rtnetlink subscription in that namespace, same clock. \
         (2) trellis_bgp::Speaker alone in a child process (this binary, re-executed in the \
         host namespace); from just before set_routes to BIRD's control socket counting them \
         all (polled every {} ms); RSS from /proc/<pid>/status.",
        o.blocks * claims::PER_BLOCK,
        o.blocks,
        bulk::POLL.as_millis()
    );
    let run_start = Instant::now();
    let rt = crate::runtime()?;

    eprintln!(
        "running: block claims → BIRD, {} attaches ...",
        o.blocks * claims::PER_BLOCK
    );
    let claims = claims::run(&rt, &trellisd, o.blocks)?;
    drop(rt);
    eprintln!(
        "running: {} prefixes{} to BIRD from a speaker child ...",
        o.prefixes,
        if o.v6 { " (IPv4, then IPv6)" } else { "" }
    );
    let bulk = bulk::run(o.prefixes, o.v6, o.rounds)?;

    println!();
    print!("{}", report::claims(&claims));
    println!();
    print!("{}", report::bulk(&bulk));
    println!("total run time {:.0} s", run_start.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_option() {
        let o: Options = crate::options([
            "--blocks",
            "31",
            "--prefixes",
            "500",
            "--no-v6",
            "--rounds",
            "3",
            "--trellisd",
            "/x/trellisd",
        ])
        .unwrap()
        .unwrap();
        assert_eq!((o.blocks, o.prefixes, o.v6, o.rounds), (31, 500, false, 3));
        assert_eq!(o.trellisd, Some("/x/trellisd".into()));
    }

    #[test]
    fn refuses_what_it_cannot_run() {
        for bad in [
            &["--blocks", "0"][..],
            &["--blocks", "1025"],
            &["--prefixes", "100001"],
            &["--prefixes"],
            &["--rounds", "0"],
            &["--trellisd"],
            &["--count", "3"],
        ] {
            let o = crate::options::<Options>(bad.iter().copied());
            assert!(o.is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mono_moves_with_time() {
        let a = mono();
        std::thread::sleep(Duration::from_millis(2));
        let d = mono() - a;
        assert!(
            d >= Duration::from_millis(2) && d < Duration::from_secs(5),
            "{d:?}"
        );
    }
}
