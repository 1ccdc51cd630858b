//! The table of `trellis-bench podman`: p50/p90/max per setup, what each
//! adds to the `--network none` floor (paired by round), the ratios of
//! trellis-cni to its peers, and what the rows include.

use crate::podman::{Outcome, Setup};
use crate::report::{Row, grid, ratio};
use std::time::Duration;

/// The table, the ratios and the notes.
pub fn print(outcomes: &[Outcome]) {
    let ran = |s: Setup| {
        outcomes
            .iter()
            .find(|o| o.setup == s && o.skipped().is_none())
    };
    let floor = ran(Setup::None).map(|o| &o.samples[..]);
    let over_none = |o: &Outcome| {
        floor
            .filter(|_| o.setup != Setup::None)
            .and_then(|f| paired_median(&o.samples, f))
    };
    let row = |o: &Outcome| Row::new(o.setup.label(), &o.samples);
    let ms = |v: f64| format!("{v:.1}");
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    for o in outcomes {
        match o.skipped() {
            Some(why) => skipped.push(format!("{}: skipped: {why}", o.setup.label())),
            None => {
                let s = row(o).summary();
                rows.push(vec![
                    o.setup.label().to_owned(),
                    o.samples.len().to_string(),
                    ms(s.p50),
                    ms(s.p90),
                    ms(s.max),
                    over_none(o).map_or_else(String::new, ms),
                ]);
            }
        }
    }
    println!();
    let header = ["setup", "n", "p50 ms", "p90 ms", "max ms", "over none ms"];
    print!("{}", grid(&header, &rows, &[]));
    for s in &skipped {
        println!("{s}");
    }
    println!();
    if let Some(t) = ran(Setup::TrellisCni) {
        for peer in [Setup::CniBridge, Setup::Netavark]
            .into_iter()
            .filter_map(ran)
        {
            println!("{}", ratio(&row(t), &row(peer)));
            if let (Some(tp), Some(pp)) = (over_none(t), over_none(peer)) {
                println!("  {}", above_floor((t.setup, tp), (peer.setup, pp)));
            }
        }
    }
    println!();
    println!(
        "notes: the floor is podman + runc + conmon with no network at all. over none: the \
         median, over the rounds, of the setup's run minus the none run of the same round — what \
         the network stack adds to a podman run, with noise that lasts a round cancelled. \
         trellis-cni: libcni execs the plugin (ADD, then DEL), which calls trellisd over its unix \
         socket; trellisd keeps the bridge between containers and deletes a veth just after \
         answering the DEL. cni bridge: the bridge plugin execs host-local (leases in files) and \
         deletes the veth before it exits; the bridge stays. netavark: podman does the IPAM (its \
         boltdb), netavark makes the bridge and its NAT chains (iptables execs) with the \
         network's first container and deletes them with its last — here, every run."
    );
}

/// The median (nearest rank, as [`crate::stats`]) over the rounds both ran
/// of `runs[i] - floor[i]`, in ms; `None` without a common round. Sample
/// `i` of every setup is from counted round `i` (a failure ends a setup).
fn paired_median(runs: &[Duration], floor: &[Duration]) -> Option<f64> {
    let mut d: Vec<f64> = runs
        .iter()
        .zip(floor)
        .map(|(r, f)| (r.as_secs_f64() - f.as_secs_f64()) * 1e3)
        .collect();
    d.sort_by(f64::total_cmp);
    let n = d.len();
    (n > 0).then(|| d[n.div_ceil(2) - 1])
}

/// `"above the floor: (t - none) / (p - none) = …"`: what trellis-cni and
/// a peer add to the floor (paired medians, ms), and their ratio when both
/// add something (a difference within the noise can be negative).
fn above_floor((t, tp): (Setup, f64), (p, pp): (Setup, f64)) -> String {
    let ratio = if tp > 0.0 && pp > 0.0 {
        format!("{:.2}x", tp / pp)
    } else {
        "no ratio (one is at or below zero: within the noise)".into()
    };
    format!(
        "above the floor: ({} - none) / ({} - none) = {tp:.1} / {pp:.1} ms = {ratio}",
        t.label(),
        p.label()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_none_is_the_median_of_same_round_differences() {
        let ms = |v: &[u64]| {
            v.iter()
                .copied()
                .map(Duration::from_millis)
                .collect::<Vec<_>>()
        };
        // Round 2 was slow for both: paired, it cancels.
        let floor = ms(&[100, 300, 110, 105]);
        let runs = ms(&[110, 312, 118, 140]);
        let near = |got: Option<f64>, want: f64| got.is_some_and(|g| (g - want).abs() < 1e-9);
        assert!(near(paired_median(&runs, &floor), 10.0));
        // A setup that failed after two rounds pairs with those two.
        assert!(near(paired_median(&ms(&[95, 330]), &floor), -5.0));
        assert_eq!(paired_median(&[], &floor), None);
        assert_eq!(
            above_floor((Setup::TrellisCni, 20.0), (Setup::CniBridge, 60.0)),
            "above the floor: (trellis-cni (bridge, via trellisd) - none) / \
             (cni bridge+host-local - none) = 20.0 / 60.0 ms = 0.33x"
        );
        assert!(
            above_floor((Setup::TrellisCni, -0.5), (Setup::Netavark, 60.0))
                .ends_with("within the noise)")
        );
    }
}
