//! The tables of `trellis-bench bgp`: the target beside the
//! latency it applies to, with a PASS/MISS verdict; the bulk figures, which
//! have no target, with what they cost.

use super::ROUTE_P99_MS;
use super::bulk::{Bulk, POLL};
use super::claims::{Claims, PER_BLOCK};
use super::lab::HOST;
use super::speaker::SENT_POLL;
use crate::report::{self, grid, latency};
use crate::stats::summarise;
use std::fmt::Write;
use std::time::Duration;

/// KiB as MB (10⁶ bytes), one decimal.
fn mb(kib: u64) -> String {
    format!("{:.1}", report::mb(kib))
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

/// The median of `samples` in ms, two decimals ("-" for none).
fn p50_of(samples: &[Duration]) -> String {
    if samples.is_empty() {
        "-".into()
    } else {
        format!("{:.2}", summarise(samples).p50)
    }
}

/// Benchmark 1's table and the notes under it.
pub fn claims(c: &Claims) -> String {
    let p99 = summarise(&c.from_start).p99;
    let verdict = if p99 <= ROUTE_P99_MS {
        "PASS".to_owned()
    } else {
        format!("MISS (p99 {p99:.1} ms)")
    };
    let rows = vec![
        latency(
            "block claimed → route in BIRD, from the attach's start",
            &c.from_start,
            &format!("p99 ≤ {ROUTE_P99_MS:.0}"),
            verdict,
        ),
        latency(
            "block claimed → route in BIRD, from the attach's answer",
            &c.from_answer,
            "",
            String::new(),
        ),
        latency(
            "attach that claimed a block (gRPC round trip)",
            &c.claim_attach,
            "",
            String::new(),
        ),
        latency(
            "the other attaches of the burst",
            &c.other_attach,
            "",
            String::new(),
        ),
    ];
    let mut out = report::latency_table(&rows);
    let attaches = c.claim_attach.len() + c.other_attach.len();
    let blocks = c.from_start.len();
    let secs = c.burst.as_secs_f64();
    let tenth = blocks.div_ceil(10);
    let other_tenth = c.other_attach.len().div_ceil(10);
    let lines = [
        format!(
            "burst: {attaches} attaches ({PER_BLOCK} per block) one after another in {secs:.1} s \
             ({:.0} /s); trellisd sent BIRD {} UPDATEs announcing {} prefixes meanwhile",
            attaches as f64 / secs.max(1e-9),
            c.updates,
            c.announced
        ),
        format!(
            "check: BIRD's `show route all` lists all {blocks} blocks via {HOST} ({} routes from \
             trellisd in all); {} of {blocks} routes were in BIRD's table before the claiming \
             attach's answer reached the bench",
            c.bird_routes, c.route_first
        ),
        format!(
            "trend over the burst, p50 of the first → last {tenth} blocks: from the attach's \
             start {} → {} ms, the claiming attach {} → {} ms, from its answer {} → {} ms; the \
             other attaches, first → last tenth: {} → {} ms",
            p50_of(&c.from_start[..tenth]),
            p50_of(&c.from_start[blocks - tenth..]),
            p50_of(&c.claim_attach[..tenth]),
            p50_of(&c.claim_attach[blocks - tenth..]),
            p50_of(&c.from_answer[..tenth]),
            p50_of(&c.from_answer[blocks - tenth..]),
            p50_of(&c.other_attach[..other_tenth]),
            p50_of(&c.other_attach[c.other_attach.len() - other_tenth..]),
        ),
        format!(
            "trellisd after the burst: VmRSS {} MB, VmHWM {} MB; session with BIRD Established {} ms \
             after trellisd was spawned; the host namespace deleted → the kernel done destroying \
             its {} veths: {:.1} s (untimed for the table)",
            mb(c.trellisd_memory.0),
            mb(c.trellisd_memory.1),
            ms(c.session_up),
            attaches + 1,
            c.host_removed.as_secs_f64()
        ),
    ];
    out.push('\n');
    for l in lines {
        writeln!(out, "{l}").expect("write to a String");
    }
    out
}

/// "n", or "min–max" when the rounds differ.
fn spread(v: &[u64]) -> String {
    match (v.iter().min(), v.iter().max()) {
        (Some(a), Some(b)) if a == b => a.to_string(),
        (Some(a), Some(b)) => format!("{a}–{b}"),
        _ => String::new(),
    }
}

/// Benchmark 2's tables (times, memory) and the notes under them.
pub fn bulk(b: &Bulk) -> String {
    let f = |v: f64| format!("{v:.1}");
    let mut rows = Vec::new();
    for s in &b.steps {
        let (sent, bird) = (summarise(&s.sent), summarise(&s.bird));
        let first = s.bird.first().copied().unwrap_or_default();
        let updates = s.updates.first().copied().unwrap_or(1).max(1);
        rows.push(vec![
            s.label.clone(),
            s.bird.len().to_string(),
            f(sent.p50),
            f(bird.p50),
            f(bird.max),
            ms(first),
            format!("{:.0}", s.prefixes as f64 / (bird.p50 / 1e3).max(1e-9)),
            spread(&s.updates),
            format!("{:.0}", s.prefixes as f64 / updates as f64),
        ]);
    }
    let header = [
        "step (speaker alone → BIRD)",
        "rounds",
        "sent p50 ms",
        "in BIRD p50 ms",
        "in BIRD max ms",
        "round 1 ms",
        "prefixes/s (p50)",
        "UPDATEs",
        "prefixes/UPDATE",
    ];
    let mut out = grid(&header, &rows, &[]);
    out.push('\n');
    let mut mem = vec![vec![
        "session up, no routes".to_owned(),
        mb(b.speaker_idle.0),
        mb(b.speaker_idle.1),
        mb(b.bird_idle.0),
    ]];
    for s in &b.steps {
        mem.push(vec![
            format!("after round 1: {}", s.label),
            mb(s.speaker.0),
            mb(s.speaker.1),
            mb(s.bird_memory.0),
        ]);
    }
    mem.push(vec![
        format!("after {} rounds (no routes)", b.rounds),
        mb(b.speaker_end.0),
        mb(b.speaker_end.1),
        String::new(),
    ]);
    out.push_str(&grid(
        &[
            "memory",
            "speaker VmRSS MB",
            "speaker VmHWM MB",
            "BIRD VmRSS MB",
        ],
        &mem,
        &[],
    ));
    let q: Vec<Duration> = b.steps.iter().flat_map(|s| s.queries.clone()).collect();
    let queries = if q.is_empty() {
        "no count queries".to_owned()
    } else {
        let s = summarise(&q);
        format!(
            "BIRD answered the {} count queries in p50 {:.2} ms, max {:.2} ms",
            q.len(),
            s.p50,
            s.max
        )
    };
    let notes = [
        format!(
            "sent: set_routes → the peer's advertised set complete (every UPDATE written to the \
             socket; looked at every {} ms); in BIRD: set_routes → BIRD's control socket counts \
             all {} (or none) from the peer (polled every {} ms; {queries}); each from an \
             Established, idle session (up {} ms after the speaker started), {} rounds on it",
            SENT_POLL.as_millis(),
            b.prefixes,
            POLL.as_millis(),
            ms(b.session_up),
            b.rounds
        ),
        "memory: VmRSS / VmHWM of the speaker child (this binary re-executed: a 2-worker tokio \
         runtime, the speaker, one peer); BIRD's VmRSS for scale (no kernel install)"
            .to_owned(),
    ];
    out.push('\n');
    for l in notes {
        writeln!(out, "{l}").expect("write to a String");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_counts_show_their_spread() {
        assert_eq!(spread(&[15, 15, 15]), "15");
        assert_eq!(spread(&[13, 15]), "13–15");
        assert_eq!(spread(&[]), "");
    }

    #[test]
    fn the_claims_table_judges_p99_against_50_ms() {
        let d = |v: &[u64]| {
            v.iter()
                .map(|&m| Duration::from_millis(m))
                .collect::<Vec<_>>()
        };
        let mut c = Claims {
            from_start: d(&[10; 40]),
            from_answer: d(&[5; 40]),
            claim_attach: d(&[4; 40]),
            other_attach: d(&[3; 100]),
            burst: Duration::from_secs(2),
            ..Claims::default()
        };
        assert!(
            claims(&c)
                .lines()
                .nth(1)
                .unwrap()
                .ends_with("p99 ≤ 50  PASS")
        );
        c.from_start = d(&[60; 40]);
        let t = claims(&c);
        assert!(
            t.lines().nth(1).unwrap().ends_with("MISS (p99 60.0 ms)"),
            "{t}"
        );
    }
}
