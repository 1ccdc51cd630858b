//! The speaker child of benchmark 2: `trellis-bench bgp-speaker --prefixes
//! N`, run by the bench with `ip netns exec <host>` (which execs it: the
//! child is this process, so its /proc status is the speaker's alone).
//!
//! It starts a [`Speaker`] as trellisd does (a tokio runtime of 2 workers,
//! the speaker's defaults, next hop `fd00:99::1` for IPv6), gives it the
//! empty export set (so that the session, once up, sends End-of-RIB and is
//! idle), adds BIRD as its one active peer, and then obeys one command per
//! line on stdin, answering one line on stdout:
//!
//! * `established` → `ok <µs> <updates>` once the session is Established
//!   and synced (`<µs>`: since the speaker started; `<updates>`: the
//!   UPDATEs sent so far, its End-of-RIBs);
//! * `announce v4` | `announce v6` | `withdraw` → sets the export set to N
//!   /26s, N /122s, or nothing, and answers `done <t0> <t1> <counters>`
//!   once the peer has all of it (its `advertised` set equals the export
//!   set: every UPDATE written to the socket), looked at every
//!   [`SENT_POLL`]: `t0` is `CLOCK_MONOTONIC` just before `set_routes`, `t1`
//!   when it was seen sent (nanoseconds), `counters` the peer's
//!   [`trellis_bgp::Counters`] as JSON;
//! * `quit`, or end of input → Cease to the peer, exit.
//!
//! It dies with the bench (`PR_SET_PDEATHSIG`), so a killed bench leaves
//! no speaker behind.

use super::lab::{HOST, HOST6, OUR_AS, ROUTER, ROUTER_AS};
use anyhow::{Context, Result, bail, ensure};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};
use trellis_bgp::{PeerConfig, SessionState, Speaker, SpeakerConfig, Stop};

/// The hidden subcommand.
pub const SUBCOMMAND: &str = "bgp-speaker";
/// How often the child looks whether the peer has the whole export set.
pub const SENT_POLL: Duration = Duration::from_millis(1);
/// How long a command may take.
const LIMIT: Duration = Duration::from_secs(120);

/// The first IPv4 prefix: N /26s from here stay inside 10.128.0.0/9.
const V4_BASE: Ipv4Addr = Ipv4Addr::new(10, 128, 0, 0);
/// The first IPv6 prefix: N /122s from here.
const V6_BASE: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x1000, 0, 0, 0, 0, 0, 0);

/// `n` distinct IPv4 /26s.
pub fn v4_prefixes(n: usize) -> BTreeSet<IpNet> {
    let base = u32::from(V4_BASE);
    (0..n as u32)
        .map(|i| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(base + (i << 6)), 26).expect("a /26")))
        .collect()
}

/// `n` distinct IPv6 /122s.
pub fn v6_prefixes(n: usize) -> BTreeSet<IpNet> {
    let base = u128::from(V6_BASE);
    (0..n as u128)
        .map(|i| IpNet::V6(Ipv6Net::new(Ipv6Addr::from(base + (i << 6)), 122).expect("a /122")))
        .collect()
}

/// The child's main: `args` are those after the subcommand.
pub fn main(args: &[String]) -> Result<()> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .context("PR_SET_PDEATHSIG")?;
    let n = match args {
        [flag, v] if flag == "--prefixes" => v
            .parse::<usize>()
            .with_context(|| format!("--prefixes {v:?}"))?,
        _ => bail!("usage: trellis-bench {SUBCOMMAND} --prefixes N (run by trellis-bench bgp)"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = Instant::now();
    let mut cfg = SpeakerConfig::new(OUR_AS, HOST);
    cfg.next_hop_v6 = Some(HOST6);
    let speaker = rt.block_on(Speaker::start(cfg))?;
    speaker.set_routes([]);
    {
        let _in_runtime = rt.enter();
        speaker.add_peer(PeerConfig {
            local_address: Some(IpAddr::V4(HOST)),
            ..PeerConfig::new(IpAddr::V4(ROUTER), ROUTER_AS)
        })?;
    }
    let peer = IpAddr::V4(ROUTER);
    let status = || speaker.peer(peer).context("the peer is gone");
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let line = line.context("read stdin")?;
        let reply = match line.trim() {
            "established" => {
                wait(SENT_POLL, || {
                    let s = status()?;
                    // Synced: an End-of-RIB per family sent, if graceful
                    // restart was agreed.
                    let eors = s
                        .negotiated
                        .as_ref()
                        .filter(|n| n.graceful_restart)
                        .map_or(0, |n| n.families.len() as u64);
                    Ok(s.state == SessionState::Established && s.counters.updates_out >= eors)
                })?;
                let up = started.elapsed().as_micros();
                format!("ok {up} {}", status()?.counters.updates_out)
            }
            cmd @ ("announce v4" | "announce v6" | "withdraw") => {
                let want = match cmd {
                    "announce v4" => v4_prefixes(n),
                    "announce v6" => v6_prefixes(n),
                    _ => BTreeSet::new(),
                };
                let t0 = super::mono();
                speaker.set_routes(want.iter().copied());
                wait(SENT_POLL, || Ok(status()?.advertised == want))?;
                let t1 = super::mono();
                let counters = serde_json::to_string(&status()?.counters)?;
                format!("done {} {} {counters}", t0.as_nanos(), t1.as_nanos())
            }
            "quit" => break,
            other => bail!("unknown command {other:?}"),
        };
        writeln!(out, "{reply}")?;
        out.flush()?;
    }
    rt.block_on(speaker.shutdown(Stop::Shutdown));
    Ok(())
}

/// Polls `done` every `every` until it holds; fails after [`LIMIT`].
fn wait(every: Duration, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + LIMIT;
    while !done()? {
        ensure!(Instant::now() < deadline, "not done within {LIMIT:?}");
        std::thread::sleep(every);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_distinct_and_where_they_should_be() {
        let v4 = v4_prefixes(10_000);
        assert_eq!(v4.len(), 10_000);
        assert_eq!(v4.first().unwrap().to_string(), "10.128.0.0/26");
        assert_eq!(v4.last().unwrap().to_string(), "10.137.195.192/26");
        let nine: IpNet = "10.128.0.0/9".parse().unwrap();
        assert!(v4_prefixes(100_000).iter().all(|p| nine.contains(p)));
        let v6 = v6_prefixes(10_000);
        assert_eq!(v6.len(), 10_000);
        assert_eq!(v6.first().unwrap().to_string(), "fd00:1000::/122");
        assert_eq!(v6.last().unwrap().to_string(), "fd00:1000::9:c3c0/122");
    }
}
