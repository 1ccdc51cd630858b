//! What a test compares to prove that nothing of trellis was left behind, or
//! that a refused request changed nothing: a namespace's links, addresses,
//! routes of every table and nftables ruleset.

use crate::Netns;

/// Links, addresses, routes of every table, the nftables ruleset.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Interface names.
    pub links: Vec<String>,
    /// `ip -o addr` lines.
    pub addresses: Vec<String>,
    /// `ip route show table all` lines.
    pub routes: Vec<String>,
    /// `nft list ruleset`.
    pub nft: String,
}

impl Snapshot {
    /// Reads the state of `ns`. Flags that the kernel flips on its own a
    /// moment after a change (carrier, DAD), and the local routes of IPv6
    /// link-local addresses (which come with DAD's end), are left out, so
    /// that a snapshot differs only when something was added, removed or
    /// reconfigured.
    pub fn take(ns: &Netns) -> Self {
        let lines = |s: String| {
            s.lines()
                .map(|l| {
                    l.split_whitespace()
                        .filter(|w| !matches!(*w, "tentative" | "linkdown" | "dadfailed"))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect::<Vec<_>>()
        };
        let links = ns
            .ip("-o link show")
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_owned())
            .collect();
        Snapshot {
            links,
            addresses: lines(ns.ip("-o addr show")),
            // The local-table routes of IPv6 link-local addresses follow
            // DAD and carrier, not anything trellis does; the addresses
            // themselves are compared above.
            routes: lines(ns.ip("route show table all"))
                .into_iter()
                .filter(|r| !(r.starts_with("local fe80:") && r.contains("table local")))
                .collect(),
            nft: ns.exec_ok(&["nft", "list", "ruleset"]),
        }
    }
}

impl Snapshot {
    /// [`Snapshot::take`] once the kernel has finished what it does on its
    /// own after links come up (IPv6 link-local addresses and their local
    /// routes appear with carrier; DAD runs): equal twice, 200 ms apart, with
    /// no address tentative. Panics after 20 s.
    pub fn settled(ns: &Netns) -> Self {
        let mut last = Snapshot::take(ns);
        for _ in 0..100 {
            std::thread::sleep(std::time::Duration::from_millis(200));
            let now = Snapshot::take(ns);
            if now == last && !ns.ip("-o addr show").contains("tentative") {
                return now;
            }
            last = now;
        }
        panic!("namespace {} did not settle in 20 s: {last:?}", ns.name());
    }

    /// What differs from `before`, one line each (`+` new, `-` gone); empty
    /// when nothing does.
    pub fn diff(&self, before: &Snapshot) -> String {
        let (a, b) = (before, self);
        let mut out = Vec::new();
        let pairs = [
            (&a.links, &b.links),
            (&a.addresses, &b.addresses),
            (&a.routes, &b.routes),
        ];
        for (old, new) in pairs {
            out.extend(
                new.iter()
                    .filter(|l| !old.contains(l))
                    .map(|l| format!("+ {l}")),
            );
            out.extend(
                old.iter()
                    .filter(|l| !new.contains(l))
                    .map(|l| format!("- {l}")),
            );
        }
        if a.nft != b.nft {
            out.push(format!("nft ruleset: {:?} -> {:?}", a.nft, b.nft));
        }
        out.join("\n    ")
    }
}
