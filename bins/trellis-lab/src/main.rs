//! `trellis-lab`: trellis's topologies built in network namespaces, shown
//! working with real traffic, and removed.
//!
//! - `bridge` (the default): the seed's Docker section on one host, trellis
//!   in-process — NAT out, published ports, hairpin, direct routing.
//! - `cluster`: the real daemons — trellis-controller and three trellisd
//!   joined to it — with routed and bridge containers on every host, and a
//!   reachability matrix saying whom each server saw: the client's own
//!   address inside the cluster, its host's (masquerade) outside. It stays up
//!   until Ctrl-C, or with `--check` exits at once, non-zero if any pair
//!   failed.
//! - `bgp`: the seed's closing step — two hosts of a cluster announce their
//!   container blocks by BGP to BIRD on the router, and the PC reaches the
//!   containers directly, each side seeing the other's true address.
//! - `report`: no lab — renders `docs/robustness.md` from the faults the
//!   tests recorded (see `trellis_testlab::report`); scripts/test runs it.
//!
//! Nothing touches the machine's own network namespace: hosts, containers,
//! router and PC are namespaces this program makes and deletes, also when a
//! step fails or a signal arrives.

mod bgp;
mod bridge;
mod cluster;
mod daemon;
mod matrix;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "trellis-lab",
    about = "Builds trellis's topologies in network namespaces, shows them working, removes them (needs root)"
)]
struct Args {
    /// The lab to run [default: bridge].
    #[command(subcommand)]
    lab: Option<Lab>,
}

/// The labs.
#[derive(Debug, Subcommand)]
enum Lab {
    /// The seed's Docker lab on one host (trellis in-process).
    Bridge,
    /// trellis-controller and trellisd on three hosts; prints who reaches
    /// whom, then waits for Ctrl-C and removes everything.
    Cluster {
        /// Exit right after the matrix: 0 if every pair behaved as expected.
        #[arg(long)]
        check: bool,
    },
    /// The seed's closing step: two hosts announce their container blocks by
    /// BGP to BIRD on the router, and the PC reaches the containers directly,
    /// seeing their true addresses; waits for Ctrl-C and removes everything.
    Bgp {
        /// Exit right after the probes: 0 if every one behaved as expected.
        #[arg(long)]
        check: bool,
    },
    /// Renders the robustness report from the lines the tests recorded
    /// (scripts/test points TRELLIS_REPORT_DIR at `--from`). Needs no root.
    Report {
        /// The directory of recorded lines.
        #[arg(long, default_value = "target/robustness")]
        from: std::path::PathBuf,
        /// The Markdown file to write.
        #[arg(long, default_value = "docs/robustness.md")]
        to: std::path::PathBuf,
        /// Text under the title (how and where the tests ran).
        #[arg(long, default_value = "")]
        preamble: String,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    match Args::parse().lab.unwrap_or(Lab::Bridge) {
        Lab::Bridge => bridge::run().await,
        Lab::Cluster { check } => cluster::run(check).await,
        Lab::Bgp { check } => bgp::run(check).await,
        Lab::Report { from, to, preamble } => report(&from, &to, &preamble),
    }
}

/// `trellis-lab report`: the recorded rows into Markdown; no rows is an error
/// (the tests did not record, or recorded elsewhere).
fn report(from: &std::path::Path, to: &std::path::Path, preamble: &str) -> Result<()> {
    use anyhow::Context;
    use trellis_testlab::report;
    let rows = report::read(from).with_context(|| format!("reading {}", from.display()))?;
    anyhow::ensure!(!rows.is_empty(), "no report rows under {}", from.display());
    std::fs::write(to, report::render(&rows, preamble))
        .with_context(|| format!("writing {}", to.display()))?;
    println!("{}: {} rows", to.display(), rows.len());
    Ok(())
}
