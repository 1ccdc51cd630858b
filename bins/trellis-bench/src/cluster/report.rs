//! The tables of `trellis-bench cluster`: the targets printed next
//! to the numbers, each with a pass/MISS verdict; figures without a target
//! say so.

use super::StoreRun;
use super::attach::Interleaved;
use super::failover::{self, Failover};
use super::fleet::ClaimRun;
use super::load::{Load, LoadPlan, Timed};
use super::procfs::CpuUse;
use super::routes::Propagation;
use crate::report::{grid, latency, latency_table, mb};
use crate::stats::summarise;
use std::fmt::Write;

/// Attach p50 on a cluster node at most this times the standalone's.
pub const ATTACH_RATIO: f64 = 1.10;
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
/// claim → route (judged against a p99 of `route_p99_ms`), and the ratio
/// lines under it.
pub fn latencies(attach: &Interleaved, routes: &Propagation, route_p99_ms: f64) -> String {
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
            &format!("p99 ≤ {route_p99_ms:.0}"),
            verdict(r.p99 <= route_p99_ms, &format!("p99 {:.1} ms", r.p99)),
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

/// The figures that depend on the store, one column per store's run:
/// the claim rates, the claim round trip, claim → route, the controller's
/// CPU at rest and memory.
pub fn side_by_side(runs: &[StoreRun], plan: &LoadPlan) -> String {
    let k = plan.claimers.min(plan.nodes);
    let per_run = |f: &dyn Fn(&StoreRun) -> String| runs.iter().map(f).collect::<Vec<_>>();
    let rate = |r: &ClaimRun| match r.failed {
        0 => format!("{:.0} /s", r.rate()),
        n => format!("{:.0} /s, {n} refused", r.rate()),
    };
    let p50_p99 = |v: &[std::time::Duration]| {
        if v.is_empty() {
            "none".into()
        } else {
            let s = summarise(v);
            format!("{:.2} / {:.2} ms", s.p50, s.p99)
        }
    };
    let mut rows: Vec<(String, Vec<String>, String, String)> = vec![
        (
            format!(
                "block claims, quiet: {} by {k} nodes, 1 each at a time",
                plan.claims
            ),
            per_run(&|r| rate(&r.load.quiet.0)),
            String::new(),
            String::new(),
        ),
        (
            "  their ClaimBlock p50 / p99".into(),
            per_run(&|r| p50_p99(&r.load.quiet.0.latencies)),
            String::new(),
            String::new(),
        ),
        (
            format!(
                "block claims: 1 by each of {} nodes, 64 at once",
                plan.nodes - k
            ),
            per_run(&|r| rate(&r.load.node_claims.0)),
            String::new(),
            String::new(),
        ),
    ];
    if plan.watch {
        rows.push((
            format!(
                "block claims, {} watching: {} by {k} nodes",
                plan.nodes, plan.watched_claims
            ),
            per_run(&|r| r.load.watched.as_ref().map_or("-".into(), |w| rate(&w.0))),
            String::new(),
            String::new(),
        ));
    }
    rows.push((
        "ClaimBlock, one at a time, p50 / p99 (unix socket)".into(),
        per_run(&|r| p50_p99(&r.routes.claim)),
        String::new(),
        String::new(),
    ));
    let targets: Vec<String> = runs
        .iter()
        .map(|r| format!("{} {:.0}", r.store.name(), r.store.route_p99_ms()))
        .collect();
    let verdicts: Vec<String> = runs
        .iter()
        .map(|r| {
            let p99 = summarise(&r.routes.from_answer).p99;
            let v = verdict(p99 <= r.store.route_p99_ms(), &format!("{p99:.1} ms"));
            format!("{} {v}", r.store.name())
        })
        .collect();
    rows.push((
        "block claimed for A → route on B, p99 from the answer".into(),
        per_run(&|r| format!("{:.2} ms", summarise(&r.routes.from_answer).p99)),
        format!("p99 ≤ {} ms", targets.join(" / ")),
        verdicts.join(", "),
    ));
    rows.push((
        "block claimed for A → route on B, p99 from the request".into(),
        per_run(&|r| format!("{:.2} ms", summarise(&r.routes.from_request).p99)),
        String::new(),
        String::new(),
    ));
    rows.push((
        format!("controller CPU, steady: {} nodes", plan.nodes),
        per_run(&|r| format!("{:.1} %", r.load.window.cpu.percent())),
        String::new(),
        String::new(),
    ));
    let rss_verdicts: Vec<String> = runs
        .iter()
        .map(|r| {
            let v = mb(r.load.memory.0);
            format!(
                "{} {}",
                r.store.name(),
                verdict(v <= RSS_MB, &format!("{v:.1} MB"))
            )
        })
        .collect();
    rows.push((
        "controller RSS after the window".into(),
        per_run(&|r| format!("{:.1} MB", mb(r.load.memory.0))),
        format!("≤ {RSS_MB:.0} MB"),
        rss_verdicts.join(", "),
    ));
    rows.push((
        "controller peak RSS (VmHWM)".into(),
        per_run(&|r| format!("{:.1} MB", mb(r.load.memory.1))),
        String::new(),
        String::new(),
    ));
    let mut header = vec!["figure"];
    header.extend(runs.iter().map(|r| r.store.name()));
    header.extend(["target", "verdict"]);
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|(figure, values, target, verdict)| {
            let mut row = vec![figure];
            row.extend(values);
            row.extend([target, verdict]);
            row
        })
        .collect();
    let n = runs.len();
    grid(&header, &rows, &[n + 1, n + 2])
}

/// The failover table: kill → leader, kill → a node's claim, restart →
/// following, against the 5 s target; each round under it.
pub fn failover(f: &Failover) -> String {
    let target = failover::TARGET.as_secs_f64() * 1e3;
    let judged = |v: &[std::time::Duration]| {
        let max = summarise(v).max;
        verdict(max <= target, &format!("max {:.2} s", max / 1e3))
    };
    let (elected, claimed, rejoined) = (f.elected(), f.claimed(), f.rejoined());
    let mut out = if f.rounds.is_empty() {
        "no rounds\n".to_owned()
    } else {
        latency_table(&[
            latency(
                "leader SIGKILLed → another replica answers ControllerStatus OK",
                &elected,
                &format!("max ≤ {target:.0}"),
                judged(&elected),
            ),
            latency(
                "leader SIGKILLed → a node's ClaimBlock answered OK (GrpcController, 3 addresses)",
                &claimed,
                &format!("max ≤ {target:.0}"),
                judged(&claimed),
            ),
            latency(
                "killed replica started again → follows the new leader",
                &rejoined,
                "",
                String::new(),
            ),
        ])
    };
    writeln!(
        out,
        "\nthe replicas started → the first leader: {:.2} s",
        f.first_election.as_secs_f64()
    )
    .expect("write to a String");
    for (i, r) in f.rounds.iter().enumerate() {
        let refusal = r
            .first_refusal
            .as_deref()
            .map(|e| format!("; the first: {e}"))
            .unwrap_or_default();
        writeln!(
            out,
            "round {}: ctl-{} killed; ctl-{} led after {:.2} s; the node's claim OK after {:.2} s, \
             {} tries refused or unanswered before it{refusal}; ctl-{} followed {:.2} s after its restart",
            i + 1,
            r.killed,
            r.successor,
            r.elected.as_secs_f64(),
            r.claimed.as_secs_f64(),
            r.refused,
            r.killed,
            r.rejoined.as_secs_f64()
        )
        .expect("write to a String");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_say_what_was_missed() {
        assert_eq!(verdict(true, "x"), "pass");
        assert_eq!(verdict(false, "1.20× standalone"), "MISS: 1.20× standalone");
    }

    #[test]
    fn failover_is_judged_by_its_slowest_round() {
        use super::failover::{Failover, Round};
        use std::time::Duration;
        let round = |elected_ms, claimed_ms| Round {
            killed: 0,
            successor: 1,
            elected: Duration::from_millis(elected_ms),
            claimed: Duration::from_millis(claimed_ms),
            refused: 3,
            first_refusal: Some("controller unreachable: x".into()),
            rejoined: Duration::from_millis(40),
        };
        let f = Failover {
            first_election: Duration::from_millis(70),
            rounds: vec![round(1900, 1950), round(2000, 5100)],
        };
        let t = failover(&f);
        let line = |start: &str| {
            t.lines()
                .find(|l| l.starts_with(start))
                .unwrap_or_else(|| panic!("no {start:?} in\n{t}"))
                .to_owned()
        };
        assert!(
            line("leader SIGKILLed → another").ends_with("max ≤ 5000  pass"),
            "{t}"
        );
        assert!(
            line("leader SIGKILLed → a node's").ends_with("MISS: max 5.10 s"),
            "{t}"
        );
        assert!(
            line("round 2:").contains("claim OK after 5.10 s, 3 tries"),
            "{t}"
        );
    }
}
