//! Text for people: aligned columns for lists (as `docker network ls` prints
//! them), `Key: value` blocks for single objects, and JSON/YAML for programs.
//!
//! Everything returns a `String`, so rendering is tested against golden text
//! without a terminal or a server.

use serde::Serialize;

use crate::cli::Format;
use crate::view::{CheckView, EndpointView, EventView, GcView, NetworkView, StatusView};

/// Columns separated by three spaces, each as wide as its widest cell; no
/// trailing blanks. Empty cells print as `-` so that columns stay countable.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let cell = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    let rows: Vec<Vec<String>> = std::iter::once(headers.iter().map(|h| h.to_string()).collect())
        .chain(rows.iter().map(|r| r.iter().map(|c| cell(c)).collect()))
        .collect();
    let mut widths = vec![0; headers.len()];
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, w) in row.iter().zip(&widths) {
            line.push_str(&format!("{c:<w$}   "));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Items separated by commas, as one table cell.
pub(crate) fn join(items: &[String]) -> String {
    items.join(",")
}

/// `on` or `off`.
pub(crate) fn on_off(b: bool) -> String {
    if b { "on" } else { "off" }.to_owned()
}

/// An MTU; empty (a `-` cell) for 0, the kernel's default.
pub(crate) fn mtu(m: u32) -> String {
    if m == 0 { String::new() } else { m.to_string() }
}

/// `network ls`.
pub fn networks(list: &[NetworkView]) -> String {
    let headers = [
        "NAME",
        "MODE",
        "SUBNETS",
        "GATEWAYS",
        "BRIDGE",
        "NAT",
        "ROUTABLE",
        "MTU",
        "ENDPOINTS",
    ];
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.mode.clone(),
                join(&n.subnets),
                join(&n.gateways),
                n.bridge.clone(),
                on_off(n.outgoing_nat),
                on_off(n.routable),
                mtu(n.mtu),
                n.endpoints.to_string(),
            ]
        })
        .collect();
    table(&headers, &rows)
}

/// `endpoint ls`.
pub fn endpoints(list: &[EndpointView]) -> String {
    let headers = [
        "CONTAINER",
        "IFNAME",
        "NETWORK",
        "ADDRESSES",
        "MAC",
        "HOST IFNAME",
        "PORTS",
    ];
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|e| {
            let ports: Vec<String> = e.ports.iter().map(|p| p.short()).collect();
            vec![
                e.container_id.clone(),
                e.ifname.clone(),
                e.network.clone(),
                join(&e.addresses),
                e.mac.clone(),
                e.host_ifname.clone(),
                join(&ports),
            ]
        })
        .collect();
    table(&headers, &rows)
}

/// Names, one per line: what `rm` commands print of what they removed.
pub fn names(list: &[String]) -> String {
    list.join("\n") + "\n"
}

/// A block of `Key:  value` lines, keys padded to one width; a list value
/// prints one item per line under its key, indented.
pub(crate) fn block(fields: &[(&str, Vec<String>)]) -> String {
    let width = fields.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    let mut out = String::new();
    for (key, values) in fields {
        let key = format!("{key}:");
        match values.as_slice() {
            [] => out.push_str(&format!("{key}\n")),
            [one] => out.push_str(&format!("{key:<width$}  {one}\n")),
            many => {
                out.push_str(&format!("{key}\n"));
                for v in many {
                    out.push_str(&format!("  {v}\n"));
                }
            }
        }
    }
    out
}

/// The values, or `-` for none.
pub(crate) fn or_none(v: &[String]) -> Vec<String> {
    match v {
        [] => one("-"),
        v => v.to_vec(),
    }
}

/// One value of a [`block`].
pub(crate) fn one(s: impl ToString) -> Vec<String> {
    vec![s.to_string()]
}

/// `network inspect`, `network create`.
pub fn network(n: &NetworkView) -> String {
    let mut rows = vec![
        ("Name", one(&n.name)),
        ("Mode", one(&n.mode)),
        ("Subnets", n.subnets.clone()),
        ("Gateways", n.gateways.clone()),
        ("Bridge", one(or_dash(&n.bridge))),
        ("Outgoing NAT", one(on_off(n.outgoing_nat))),
        ("MTU", one(or_dash(&mtu(n.mtu)))),
        ("Internal", one(on_off(n.internal))),
        ("Routable", one(on_off(n.routable))),
        ("Reaches", or_none(&n.reach)),
        ("Endpoints", one(n.endpoints)),
    ];
    if !n.warnings.is_empty() {
        rows.push(("Warnings", n.warnings.clone()));
    }
    block(&rows)
}

/// `s`, or `-` when it is empty.
pub(crate) fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// `endpoint inspect`, `endpoint attach`.
pub fn endpoint(e: &EndpointView) -> String {
    let ports = e
        .ports
        .iter()
        .map(|p| match p.container_ip.as_str() {
            "" => p.short(),
            ip => format!("{} ({ip})", p.short()),
        })
        .collect();
    let labels = e.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    block(&[
        ("Container", one(&e.container_id)),
        ("Interface", one(&e.ifname)),
        ("Network", one(&e.network)),
        ("Netns", one(&e.netns)),
        ("Addresses", e.addresses.clone()),
        ("Gateways", e.gateways.clone()),
        ("MAC", one(or_dash(&e.mac))),
        ("Host interface", one(or_dash(&e.host_ifname))),
        ("Routes", e.routes.clone()),
        ("Ports", ports),
        ("Labels", labels),
    ])
}

/// `check`: `ok`, or one problem per line.
pub fn check(c: &CheckView) -> String {
    let name = match c.ifname.as_str() {
        "" => c.container_id.clone(),
        i => format!("{}/{i}", c.container_id),
    };
    if c.ok {
        return format!("{name}: ok\n");
    }
    let mut out = format!("{name}: {} problem(s)\n", c.problems.len());
    for p in &c.problems {
        out.push_str(&format!("  {p}\n"));
    }
    out
}

/// `gc`: what was removed, then what could not be.
pub fn gc(g: &GcView) -> String {
    let mut out = format!("removed {} endpoint(s)\n", g.removed.len());
    for a in &g.removed {
        out.push_str(&format!("  {}/{}\n", a.container_id, a.ifname));
    }
    if !g.errors.is_empty() {
        out.push_str(&format!("{} error(s)\n", g.errors.len()));
        for e in &g.errors {
            out.push_str(&format!("  {e}\n"));
        }
    }
    out
}

/// `status`.
pub fn status(s: &StatusView) -> String {
    let ready = if s.ready { "yes" } else { "no" };
    block(&[
        ("Ready", one(ready)),
        ("Reasons", or_none(&s.reasons)),
        ("Node", one(or_dash(&s.node))),
        ("Version", one(or_dash(&s.version))),
        ("Networks", one(s.networks)),
        ("Endpoints", one(s.endpoints)),
        ("Warnings", or_none(&s.warnings)),
    ])
}

/// One line per `watch` event: kind and the object's identity and addresses.
pub fn event(e: &EventView) -> String {
    let what = match (&e.network, &e.endpoint) {
        (Some(n), _) => format!("network {} {} {}", n.name, n.mode, join(&n.subnets)),
        (None, Some(ep)) => format!(
            "endpoint {}/{} {} {}",
            ep.container_id,
            ep.ifname,
            ep.network,
            join(&ep.addresses)
        ),
        (None, None) => String::new(),
    };
    format!("{:<18} {}\n", e.kind, what.trim_end())
}

/// Prints `value` as JSON (pretty), YAML, or the table/text that `text`
/// renders.
pub fn output<T: Serialize + ?Sized>(
    format: Format,
    value: &T,
    text: impl FnOnce(&T) -> String,
) -> anyhow::Result<String> {
    Ok(match format {
        Format::Table => text(value),
        Format::Json => serde_json::to_string_pretty(value)? + "\n",
        Format::Yaml => serde_yaml::to_string(value)?,
    })
}

/// One `watch` event: JSON Lines, YAML documents, or a table line.
pub fn streamed(format: Format, e: &EventView) -> anyhow::Result<String> {
    Ok(match format {
        Format::Table => event(e),
        Format::Json => serde_json::to_string(e)? + "\n",
        Format::Yaml => format!("---\n{}", serde_yaml::to_string(e)?),
    })
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
