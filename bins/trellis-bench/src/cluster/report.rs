//! The tables of `trellis-bench cluster`: the targets printed next
//! to the numbers, each with a pass/MISS verdict; figures without a target
//! say so.

use super::attach::Interleaved;
use super::fleet::ClaimRun;
use super::load::{Load, LoadPlan, Timed};
use super::procfs::CpuUse;
use super::routes::Propagation;
use crate::report::{grid, latency, latency_table, mb};
use crate::stats::summarise;
use std::fmt::Write;

/// Attach p50 on a cluster node at most this times the standalone's.
pub const ATTACH_RATIO: f64 = 1.10;
/// Claim on A → route on B, p99, ms.
pub const ROUTE_P99_MS: f64 = 100.0;
/// Controller RSS with the load's nodes, MB.
pub const RSS_MB: f64 = 100.0;

/// `pass`, or `MISS` with what was missed.
pub fn verdict(ok: bool, missed: &str) -> String {
    if ok {
        "pass".into()
    } else {
        format!("MISS: {missed}")
    }
}

/// The latency table: attach on a cluster node beside a standalone one,
/// claim → route, and the ratio lines under it.
pub fn latencies(attach: &Interleaved, routes: &Propagation) -> String {
    let (c, s) = (
        summarise(&attach.cluster.attach),
        summarise(&attach.solo.attach),
    );
    let limit = ATTACH_RATIO * s.p50;
    let r = summarise(&routes.from_answer);
    let rows = vec![
        latency(
            "attach, cluster node (pods: routed pool, /26 blocks)",
            &attach.cluster.attach,
            &format!("p50 ≤ {ATTACH_RATIO:.2} × standalone = {limit:.2}"),
            verdict(c.p50 <= limit, &format!("{:.2}× standalone", c.p50 / s.p50)),
        ),
        latency(
            "attach, standalone node (routed /16)",
            &attach.solo.attach,
            "(the baseline)",
            String::new(),
        ),
        latency(
            "detach, cluster node",
            &attach.cluster.detach,
            "",
            String::new(),
        ),
        latency(
            "detach, standalone node",
            &attach.solo.detach,
            "",
            String::new(),
        ),
        latency(
            "block claimed for A → route on B, from the answer",
            &routes.from_answer,
            &format!("p99 ≤ {ROUTE_P99_MS:.0}"),
            verdict(r.p99 <= ROUTE_P99_MS, &format!("p99 {:.1} ms", r.p99)),
        ),
        latency(
            "block claimed for A → route on B, from the request",
            &routes.from_request,
            "",
            String::new(),
        ),
        latency(
            "ClaimBlock round trip (unix socket)",
            &routes.claim,
            "",
            String::new(),
        ),
    ];
    let mut out = latency_table(&rows);
    writeln!(
        out,
        "\ncluster / standalone attach: p50 {:.2}×, p90 {:.2}×, p99 {:.2}× (target p50 ≤ {ATTACH_RATIO:.2}×)",
        c.p50 / s.p50,
        c.p90 / s.p90,
        c.p99 / s.p99
    )
    .expect("write to a String");
    out
}

/// A row of the controller table: figure, value, the step's costs
/// (controller CPU, load generator CPU, controller RSS after), detail,
/// target, verdict.
fn step_row(figure: String, value: String, t: &Timed, detail: String) -> Vec<String> {
    let pct = |u: &CpuUse| format!("{:.0} %", u.percent());
    vec![
        figure,
        value,
        pct(&t.cpu),
        pct(&t.gen_cpu),
        format!("{:.1}", mb(t.rss)),
        detail,
        "(none set)".into(),
        String::new(),
    ]
}

/// A claims row: rate, and latencies (and refusals) in the detail.
fn claims_row(figure: String, run: &ClaimRun, t: &Timed, extra: &str) -> Vec<String> {
    let lat = if run.latencies.is_empty() {
        "none answered".into()
    } else {
        let s = summarise(&run.latencies);
        let per = t.cpu.cpu.as_secs_f64() * 1e3 / run.latencies.len() as f64;
        format!(
            "p50 {:.1} ms, p99 {:.1} ms; controller CPU {per:.1} ms a claim",
            s.p50, s.p99
        )
    };
    let refused = match &run.first_error {
        Some(e) => format!("; {} refused, first: {e}", run.failed),
        None => String::new(),
    };
    let value = format!("{:.0} /s", run.rate());
    step_row(figure, value, t, format!("{lat}{extra}{refused}"))
}

/// A row judged against the RSS target, without step costs.
fn rss_row(figure: &str, kib: u64, detail: String) -> Vec<String> {
    let v = mb(kib);
    vec![
        figure.into(),
        format!("{v:.1} MB"),
        String::new(),
        String::new(),
        String::new(),
        detail,
        format!("≤ {RSS_MB:.0} MB"),
        verdict(v <= RSS_MB, &format!("{v:.1} MB")),
    ]
}

/// The controller table: claim rates, the load's steps with what each cost
/// the controller (and the load generator), CPU at rest and memory.
pub fn controller(load: &Load, plan: &LoadPlan) -> String {
    let k = plan.claimers.min(plan.nodes);
    let others = plan.nodes - k;
    let secs = |t: &Timed| format!("{:.2} s", t.wall.as_secs_f64());
    let (q, qt) = &load.quiet;
    let n = q.latencies.len() + q.failed;
    let mut rows = vec![claims_row(
        format!("block claims, quiet: {n} by {k} nodes, 1 each at a time"),
        q,
        qt,
        "",
    )];
    let rate = others as f64 / load.join.wall.as_secs_f64().max(1e-9);
    rows.push(step_row(
        format!("registrations: {others} nodes, 64 at once"),
        format!("{rate:.0} /s"),
        &load.join,
        format!("{others} in {}", secs(&load.join)),
    ));
    let (c, ct) = &load.node_claims;
    rows.push(claims_row(
        format!("block claims: 1 by each of {others} nodes, 64 at once"),
        c,
        ct,
        "",
    ));
    rows.push(step_row(
        format!("usage reports: 1 KeepAlive by each of {} nodes", plan.nodes),
        secs(&load.usage),
        &load.usage,
        "each a write (usage changed)".into(),
    ));
    if let Some((w, (bytes, parts))) = &load.watches {
        rows.push(step_row(
            format!("watches opened: {} nodes, 32 at once", plan.nodes),
            secs(w),
            w,
            format!(
                "from revision 0: a whole snapshot each, read to its last part; up to {:.0} KB in {parts} parts",
                *bytes as f64 / 1e3
            ),
        ));
    }
    if let Some((run, t, fanout)) = &load.watched {
        let fan = match fanout {
            Ok(d) => format!(
                "; all watchers had all {:.0} ms after the last answer",
                d.as_secs_f64() * 1e3
            ),
            Err(e) => format!("; fan-out incomplete: {e}"),
        };
        let n = run.latencies.len() + run.failed;
        let figure = format!("block claims, {} watching: {n} by {k} nodes", plan.nodes);
        rows.push(claims_row(figure, run, t, &fan));
    }
    let (ok, failed) = load.keepalives;
    let w = &load.window;
    let watching = if plan.watch { ", watching" } else { "" };
    rows.push(step_row(
        format!(
            "steady: {} nodes, KeepAlive every {:.1} s{watching}",
            plan.nodes,
            load.interval.as_secs_f64()
        ),
        format!("{:.1} % CPU", w.cpu.percent()),
        w,
        format!(
            "{ok} KeepAlives in {:.1} s ({:.0} /s), {failed} failed",
            w.wall.as_secs_f64(),
            ok as f64 / w.wall.as_secs_f64().max(1e-9)
        ),
    ));
    let idle = format!("idle before any node {:.1} MB", mb(load.idle_rss));
    rows.push(rss_row(
        "controller RSS after the window",
        load.memory.0,
        idle,
    ));
    rows.push(rss_row(
        "controller peak RSS (VmHWM)",
        load.memory.1,
        String::new(),
    ));
    if let Some(kib) = load.unwatched_rss {
        let fell = mb(load.memory.0.saturating_sub(kib));
        let mut row = rss_row(
            "controller RSS, the watches closed",
            kib,
            format!(
                "fell {fell:.1} MB a second after; leases still kept (freed heap need not go back to the OS)"
            ),
        );
        row[6] = "(diagnostic)".into();
        row[7] = String::new();
        rows.push(row);
    }
    let st = &load.status;
    let all = st.nodes_ready as usize == plan.nodes && st.nodes as usize == plan.nodes;
    rows.push(vec![
        "nodes alive after the window".into(),
        format!("{}/{}", st.nodes_ready, st.nodes),
        String::new(),
        String::new(),
        String::new(),
        format!("{} blocks held, store revision {}", st.blocks, st.revision),
        format!("all {}", plan.nodes),
        verdict(all, "leases lapsed"),
    ]);
    let header = [
        "figure", "value", "ctl CPU", "gen CPU", "RSS MB", "detail", "target", "verdict",
    ];
    grid(&header, &rows, &[5, 6, 7])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_say_what_was_missed() {
        assert_eq!(verdict(true, "x"), "pass");
        assert_eq!(verdict(false, "1.20× standalone"), "MISS: 1.20× standalone");
    }
}
