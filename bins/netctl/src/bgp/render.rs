//! Text for people of the BGP service's answers, in the shapes netctl prints
//! everything else: aligned columns for lists, `Key: value` blocks for one
//! peer (both from [`crate::render`]), with the peer's negotiated session
//! and counters as indented sections, as `kubectl describe` prints them.

use super::view::{CountersView, NegotiatedView, PeerView, RoutesView};
use crate::render::{block, join, on_off, one, or_dash, or_none, table};
use crate::time::duration;

/// The most characters of a last error in the peers table; `bgp peer`
/// and JSON/YAML show it whole.
const ERROR_WIDTH: usize = 60;

/// How long the session has been up, `3m12s`; empty (a `-` cell) when it
/// is not Established.
fn uptime(p: &PeerView) -> String {
    if !p.established() {
        return String::new();
    }
    // Saturating: a negative or NaN uptime from a confused server is 0.
    duration((p.uptime_seconds * 1000.0) as u64)
}

/// `s` on one line and at most `max` characters, ending in `…` when cut.
fn truncate(s: &str, max: usize) -> String {
    let line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= max {
        return line;
    }
    let cut: String = line.chars().take(max - 1).collect();
    format!("{}…", cut.trim_end())
}

/// The lines of `s`: a message of several prints one per line under its
/// key, indented.
fn lines(s: &str) -> Vec<String> {
    s.lines().map(str::to_owned).collect()
}

/// `yes` or `no`: what a session has, as opposed to what is set.
fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

/// `bgp peers`.
pub fn peers(list: &[PeerView]) -> String {
    let headers = [
        "PEER",
        "AS",
        "STATE",
        "UPTIME",
        "PREFIXES",
        "SOURCE",
        "LAST ERROR",
    ];
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            vec![
                p.address.clone(),
                p.remote_as.to_string(),
                p.state.clone(),
                uptime(p),
                p.advertised.to_string(),
                p.source.clone(),
                truncate(&p.last_error, ERROR_WIDTH),
            ]
        })
        .collect();
    table(&headers, &rows)
}

/// Every line of `text` indented by two spaces: a section under its title.
fn section(title: &str, text: &str) -> String {
    let mut out = format!("{title}:\n");
    for line in text.lines() {
        out.push_str(&format!("  {line}\n"));
    }
    out
}

/// `bgp peer`, `bgp add`: the peer and its session, then its configuration,
/// what the session negotiated and its counters, each as a section.
pub fn peer(p: &PeerView) -> String {
    let summary = block(&[
        ("Peer", one(&p.address)),
        ("Remote AS", one(p.remote_as)),
        ("State", one(&p.state)),
        ("Uptime", one(or_dash(&uptime(p)))),
        ("Source", one(or_dash(&p.source))),
        ("Advertised", one(format!("{} prefix(es)", p.advertised))),
        ("Warnings", or_none(&p.warnings)),
        ("Last error", or_none(&lines(&p.last_error))),
    ]);
    let negotiated = match &p.negotiated {
        Some(n) => section("Negotiated", &negotiated(n)),
        None => block(&[("Negotiated", one("-"))]),
    };
    format!(
        "{summary}{}{negotiated}{}",
        section("Config", &config(p)),
        section("Counters", &counters(&p.counters)),
    )
}

/// What is set for the peer; `-` for the node's defaults.
fn config(p: &PeerView) -> String {
    let hold = p.hold_time.map(|h| h.to_string()).unwrap_or_default();
    block(&[
        ("Port", one(p.port)),
        ("Passive", one(on_off(p.passive))),
        ("Local address", one(or_dash(&p.local_address))),
        ("Next hop IPv4", one(or_dash(&p.next_hop_v4))),
        ("Next hop IPv6", one(or_dash(&p.next_hop_v6))),
        ("Communities", or_none(&p.communities)),
        ("Hold time", one(or_dash(&hold))),
        ("MD5", one(on_off(p.md5))),
    ])
}

/// What the session agreed.
fn negotiated(n: &NegotiatedView) -> String {
    block(&[
        ("Peer AS", one(n.peer_as)),
        ("Peer router ID", one(or_dash(&n.peer_router_id))),
        ("Hold time", one(n.hold_time)),
        ("Families", or_none(&n.families)),
        ("4-byte AS", one(yes_no(n.four_octet_as))),
        ("Graceful restart", one(yes_no(n.graceful_restart))),
        ("Route refresh", one(yes_no(n.route_refresh))),
        ("Local address", one(or_dash(&n.local_address))),
        ("Next hops", or_none(&n.next_hops)),
    ])
}

/// Every counter; messages as `received in, sent out`.
fn counters(c: &CountersView) -> String {
    let both = |i: u64, o: u64| one(format!("{i} in, {o} out"));
    block(&[
        ("Opens", both(c.opens_in, c.opens_out)),
        ("Updates", both(c.updates_in, c.updates_out)),
        ("Keepalives", both(c.keepalives_in, c.keepalives_out)),
        (
            "Notifications",
            both(c.notifications_in, c.notifications_out),
        ),
        (
            "Route refreshes",
            one(format!("{} in", c.route_refreshes_in)),
        ),
        ("Prefixes announced", one(c.prefixes_announced)),
        ("Prefixes withdrawn", one(c.prefixes_withdrawn)),
        ("Treat-as-withdraw", one(c.treat_as_withdraw)),
        ("Attributes discarded", one(c.attributes_discarded)),
        ("Times established", one(c.established)),
        ("Hold timer expired", one(c.hold_timer_expired)),
        ("Connect failures", one(c.connect_failures)),
    ])
}

/// `bgp routes`: what the node exports, then a row per route each peer has
/// (a peer with none gets a row of `-`, so that it is seen to have none).
pub fn routes(r: &RoutesView) -> String {
    let exported = block(&[("Exported", or_none(&r.exported))]);
    let mut rows = Vec::new();
    for p in &r.peers {
        if p.routes.is_empty() {
            rows.push(vec![
                p.peer.clone(),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
        for route in &p.routes {
            rows.push(vec![
                p.peer.clone(),
                route.prefix.clone(),
                route.next_hop.clone(),
                join(&route.communities),
            ]);
        }
    }
    let headers = ["PEER", "PREFIX", "NEXT HOP", "COMMUNITIES"];
    format!("{exported}\n{}", table(&headers, &rows))
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
