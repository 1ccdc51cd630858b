//! The reachability matrix: who reached whom, and whom the server saw.
//!
//! Pure data and text, so that what counts as "as expected" and how it is
//! shown are tested without a kernel. Inside the cluster a server must see
//! the client's own address (no NAT between the cluster's subnets); a server
//! outside must see the client's host (masquerade).

use std::fmt::Write;
use std::net::IpAddr;

/// A party of the matrix: a container, or the server outside the cluster.
#[derive(Debug, Clone)]
pub struct Party {
    /// Short name: `p1`, `w2`, `ext`.
    pub name: String,
    /// The address its server listens on (and, for a container, its own).
    pub addr: IpAddr,
    /// What it is: `pods (routed)`, `web (bridge)`, `external server`.
    pub what: String,
    /// Where it runs.
    pub place: Place,
}

/// Where a party runs.
#[derive(Debug, Clone)]
pub enum Place {
    /// On a cluster node: its name and underlay address.
    Node {
        /// `h1`.
        name: String,
        /// The node's underlay address.
        addr: IpAddr,
    },
    /// Outside the cluster (beyond the router).
    Outside,
}

/// One request: `from` (a container) to `to`, and the client address the
/// server reported, or why there was no answer.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Index of the client in [`Matrix::parties`].
    pub from: usize,
    /// Index of the server in [`Matrix::parties`].
    pub to: usize,
    /// The source address the server saw, or the error.
    pub seen: Result<IpAddr, String>,
}

/// Every probe between the parties.
#[derive(Debug, Clone)]
pub struct Matrix {
    /// Containers first, then the outside parties.
    pub parties: Vec<Party>,
    /// One per ordered pair (container → any other party).
    pub probes: Vec<Probe>,
}

/// The source address a server should see from a client, and why.
fn expected(from: &Party, to: &Party) -> (IpAddr, String) {
    match (&to.place, &from.place) {
        (Place::Outside, Place::Node { name, addr }) => {
            (*addr, format!("{name}'s address (masquerade)"))
        }
        _ => (from.addr, format!("{}'s own address", from.name)),
    }
}

impl Matrix {
    /// The pairs `(from, to)` to probe: each container to every other party.
    pub fn pairs(parties: &[Party]) -> Vec<(usize, usize)> {
        let clients = parties
            .iter()
            .enumerate()
            .filter(|(_, p)| matches!(p.place, Place::Node { .. }));
        clients
            .flat_map(|(i, _)| {
                (0..parties.len())
                    .filter(move |j| *j != i)
                    .map(move |j| (i, j))
            })
            .collect()
    }

    /// The probes that did not go as expected: `("p1 → p2", why)`.
    pub fn failures(&self) -> Vec<(String, String)> {
        self.probes
            .iter()
            .filter(|p| !self.as_expected(p))
            .map(|p| {
                let (from, to) = (&self.parties[p.from], &self.parties[p.to]);
                let (want, why) = expected(from, to);
                let got = match &p.seen {
                    Ok(ip) => format!("the server saw {ip} ({})", self.whose(*ip)),
                    Err(e) => format!("no answer: {e}"),
                };
                let pair = format!("{} → {}", from.name, to.name);
                (pair, format!("expected {why} {want}, {got}"))
            })
            .collect()
    }

    fn as_expected(&self, p: &Probe) -> bool {
        let want = expected(&self.parties[p.from], &self.parties[p.to]).0;
        p.seen.as_ref().is_ok_and(|ip| *ip == want)
    }

    /// A name for an address a server saw: a party's, or a node's.
    fn whose(&self, ip: IpAddr) -> String {
        for p in &self.parties {
            if p.addr == ip {
                return p.name.clone();
            }
            if let Place::Node { name, addr } = &p.place
                && *addr == ip
            {
                return name.clone();
            }
        }
        "unknown".into()
    }

    /// The parties, the grid and the details, as aligned text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_parties(&mut out);
        self.render_grid(&mut out);
        self.render_details(&mut out);
        let failures = self.failures();
        let n = self.probes.len();
        if failures.is_empty() {
            let _ = writeln!(out, "\nall {n} pairs as expected");
        } else {
            let _ = writeln!(out, "\n{} of {n} pairs NOT as expected:", failures.len());
            for (pair, why) in failures {
                let _ = writeln!(out, "  {pair}: {why}");
            }
        }
        out
    }

    fn render_parties(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "parties (a TCP server on :80 in each answers with the client address it saw)"
        );
        for p in &self.parties {
            let place = match &p.place {
                Place::Node { name, addr } => format!("on {name} ({addr})"),
                Place::Outside => "outside, beyond the router".into(),
            };
            let _ = writeln!(
                out,
                "  {:<4} {:<16} {:<17} {place}",
                p.name,
                p.addr.to_string(),
                p.what
            );
        }
    }

    /// Rows reach columns; a cell names whom the server saw.
    fn render_grid(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\nwho reached whom (row → column); each cell names whom the server saw:\n  \
             own = the client's own address, h1 = that node's address, \
             - = no answer, ! = not as expected"
        );
        let mut header = format!("  {:<7}", "");
        for p in &self.parties {
            let _ = write!(header, "{:<7}", p.name);
        }
        let _ = writeln!(out, "{}", header.trim_end());
        for (i, from) in self.parties.iter().enumerate() {
            if !matches!(from.place, Place::Node { .. }) {
                continue;
            }
            let mut row = format!("  {:<7}", from.name);
            for j in 0..self.parties.len() {
                let _ = write!(row, "{:<7}", self.cell(i, j));
            }
            let _ = writeln!(out, "{}", row.trim_end());
        }
    }

    /// The grid's cell for `from` → `to`.
    fn cell(&self, from: usize, to: usize) -> String {
        let Some(p) = self.probes.iter().find(|p| p.from == from && p.to == to) else {
            return "·".into();
        };
        let seen = match &p.seen {
            Ok(ip) if *ip == self.parties[from].addr => "own".to_owned(),
            Ok(ip) => self.whose(*ip),
            Err(_) => "-".to_owned(),
        };
        let mark = if self.as_expected(p) { "" } else { "!" };
        format!("{seen}{mark}")
    }

    fn render_details(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\n  {:<5} {:<5} {:<15} {:<15} {:<32} RESULT",
            "FROM", "TO", "TO ADDRESS", "SERVER SAW", "WHICH IS"
        );
        for p in &self.probes {
            let (from, to) = (&self.parties[p.from], &self.parties[p.to]);
            let (seen, which) = match &p.seen {
                Ok(ip) if *ip == from.addr => (ip.to_string(), format!("{}'s own", from.name)),
                Ok(ip) => {
                    let whose = self.whose(*ip);
                    let which = match &from.place {
                        Place::Node { name, .. } if *name == whose => {
                            format!("{whose}'s (masquerade)")
                        }
                        _ => format!("{whose}'s"),
                    };
                    (ip.to_string(), which)
                }
                Err(e) => ("-".to_owned(), format!("no answer: {e}")),
            };
            let result = if self.as_expected(p) {
                "ok".to_owned()
            } else {
                let (want, why) = expected(from, to);
                format!("FAILED: expected {why} {want}")
            };
            let _ = writeln!(
                out,
                "  {:<5} {:<5} {:<15} {seen:<15} {which:<32} {result}",
                from.name,
                to.name,
                to.addr.to_string()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: u8) -> Place {
        Place::Node {
            name: format!("h{n}"),
            addr: format!("10.1.253.10{n}").parse().unwrap(),
        }
    }

    fn party(name: &str, addr: &str, place: Place) -> Party {
        Party {
            name: name.into(),
            addr: addr.parse().unwrap(),
            what: "pods (routed)".into(),
            place,
        }
    }

    /// Two containers on two nodes and the outside server; `seen` by pair.
    fn matrix(seen: impl Fn(usize, usize) -> Result<&'static str, &'static str>) -> Matrix {
        let parties = vec![
            party("p1", "10.244.0.1", node(1)),
            party("p2", "10.244.0.65", node(2)),
            party("ext", "203.0.113.10", Place::Outside),
        ];
        let probes = Matrix::pairs(&parties)
            .into_iter()
            .map(|(from, to)| Probe {
                from,
                to,
                seen: seen(from, to)
                    .map(|s| s.parse().unwrap())
                    .map_err(str::to_owned),
            })
            .collect();
        Matrix { parties, probes }
    }

    #[test]
    fn pairs_are_every_container_to_every_other_party() {
        let m = matrix(|_, _| Ok("10.244.0.1"));
        let pairs: Vec<_> = m.probes.iter().map(|p| (p.from, p.to)).collect();
        assert_eq!(pairs, [(0, 1), (0, 2), (1, 0), (1, 2)]);
    }

    #[test]
    fn own_address_inside_and_the_host_outside_is_all_as_expected() {
        let m = matrix(|from, to| match (from, to) {
            (0, 2) => Ok("10.1.253.101"),
            (1, 2) => Ok("10.1.253.102"),
            (0, _) => Ok("10.244.0.1"),
            _ => Ok("10.244.0.65"),
        });
        assert!(m.failures().is_empty(), "{:?}", m.failures());
        let text = m.render();
        assert!(text.contains("all 4 pairs as expected"), "{text}");
        assert!(text.contains("  p1     ·      own    h1\n"), "{text}");
        assert!(text.contains("h1's (masquerade)"), "{text}");
    }

    #[test]
    fn nat_inside_the_cluster_and_no_answer_are_failures_naming_the_pair() {
        let m = matrix(|from, to| match (from, to) {
            (0, 1) => Ok("10.1.253.101"),
            (1, 0) => Err("connection timed out"),
            (0, 2) => Ok("10.1.253.101"),
            _ => Ok("10.1.253.102"),
        });
        let failures = m.failures();
        let failures: Vec<(&str, &str)> = failures
            .iter()
            .map(|(pair, why)| (pair.as_str(), why.as_str()))
            .collect();
        assert_eq!(
            failures,
            [
                (
                    "p1 → p2",
                    "expected p1's own address 10.244.0.1, the server saw 10.1.253.101 (h1)"
                ),
                (
                    "p2 → p1",
                    "expected p2's own address 10.244.0.65, no answer: connection timed out"
                ),
            ]
        );
        let text = m.render();
        assert!(text.contains("  p1     ·      h1!    h1\n"), "{text}");
        assert!(text.contains("  p2     -!     ·      h2\n"), "{text}");
        assert!(text.contains("2 of 4 pairs NOT as expected"), "{text}");
    }
}
