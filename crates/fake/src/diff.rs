//! [`Snapshot::diff`]: what differs between two snapshots, for the message of
//! a test that found them unequal (as `trellis_testlab::Snapshot::diff` is
//! for a real namespace).

use crate::kernel::{NsSnapshot, Snapshot};
use std::fmt::Debug;

impl Snapshot {
    /// What differs from `before`, one line each: `+` new, `-` gone (a
    /// changed link or route shows as its old line gone and its new one
    /// added). Empty exactly when the snapshots are equal.
    pub fn diff(&self, before: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        for path in before.namespaces.keys() {
            if !self.namespaces.contains_key(path) {
                out.push(format!("- netns {path}"));
            }
        }
        for (path, now) in &self.namespaces {
            match before.namespaces.get(path) {
                Some(was) => ns_diff(path, was, now, &mut out),
                None => {
                    out.push(format!("+ netns {path}"));
                    ns_diff(path, &NsSnapshot::empty(), now, &mut out);
                }
            }
        }
        if before.nat != self.nat {
            out.push(format!("- nat {:?}", before.nat));
            out.push(format!("+ nat {:?}", self.nat));
        }
        lines("admitted", &before.admitted, &self.admitted, &mut out);
        lines("listener", &before.listeners, &self.listeners, &mut out);
        out
    }
}

impl NsSnapshot {
    fn empty() -> Self {
        Self {
            links: Vec::new(),
            routes: Vec::new(),
            neighbours: Vec::new(),
            sysctls: Default::default(),
        }
    }
}

fn ns_diff(path: &str, was: &NsSnapshot, now: &NsSnapshot, out: &mut Vec<String>) {
    lines(&format!("{path}: link"), &was.links, &now.links, out);
    lines(&format!("{path}: route"), &was.routes, &now.routes, out);
    let (n0, n1) = (&was.neighbours, &now.neighbours);
    lines(&format!("{path}: neighbour"), n0, n1, out);
    let sysctls = |s: &NsSnapshot| s.sysctls.clone().into_iter().collect::<Vec<_>>();
    lines(
        &format!("{path}: sysctl"),
        &sysctls(was),
        &sysctls(now),
        out,
    );
}

/// `+` each of `new` not in `old`, then `-` each of `old` not in `new`.
fn lines<T: PartialEq + Debug>(what: &str, old: &[T], new: &[T], out: &mut Vec<String>) {
    let added = new.iter().filter(|x| !old.contains(x));
    out.extend(added.map(|x| format!("+ {what} {x:?}")));
    let gone = old.iter().filter(|x| !new.contains(x));
    out.extend(gone.map(|x| format!("- {what} {x:?}")));
}

#[cfg(test)]
mod tests {
    use crate::FakeKernel;
    use trellis_link::{Listener, Ns};

    #[test]
    fn equal_snapshots_have_no_diff_and_changes_are_named() {
        let k = FakeKernel::new();
        let before = k.snapshot();
        assert!(before.diff(&k.snapshot()).is_empty());

        k.add_device(&Ns::Host, "eth0", &["10.3.0.5/24"]);
        let path = k.add_netns("/run/netns/c1");
        k.add_listener(Listener {
            protocol: trellis_types::Protocol::Tcp,
            local: "0.0.0.0:8080".parse().unwrap(),
        });
        let diff = k.snapshot().diff(&before);
        let has = |start: &str, word: &str| {
            diff.iter()
                .any(|l| l.starts_with(start) && l.contains(word))
        };
        assert!(has("+ host: link", "eth0"), "{diff:#?}");
        assert!(has("+ host: route", "10.3.0.0/24"), "{diff:#?}");
        assert!(has("+ netns /run/netns/c1", ""), "{diff:#?}");
        assert!(has("+ /run/netns/c1: link", "lo"), "{diff:#?}");
        assert!(has("+ listener", "8080"), "{diff:#?}");

        let after = k.snapshot();
        k.remove_netns(&path);
        let diff = k.snapshot().diff(&after);
        assert_eq!(diff[0], "- netns /run/netns/c1", "{diff:#?}");
        assert_eq!(diff.len(), 1, "{diff:#?}");
    }
}
