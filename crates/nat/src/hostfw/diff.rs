//! Comparing what trellis wants in the host's forward chains with what is
//! there: the deletions and insertions per chain, and the warnings about
//! chains trellis will not amend. Pure.

use super::observe::{HostChain, NF_DROP, SeenRule, view_of};
use super::rules::{self, ChainRef, HostRule, NFPROTO_BRIDGE, NFPROTO_NETDEV};
use super::{Admitted, TAG_PREFIX};
use crate::layout::TABLE;
use crate::wire::{NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6};

/// `NF_INET_FORWARD`, also `NF_BR_FORWARD` in the bridge family.
const HOOK_FORWARD: u32 = 2;

/// The host's ruleset as far as it matters here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Observed {
    /// Base chains, with their rules (read for forward chains of family
    /// ip, ip6 and inet only; empty for the others).
    pub(crate) chains: Vec<(HostChain, Vec<SeenRule>)>,
    /// Why some chains or rules could not be read.
    pub(crate) unreadable: Vec<String>,
}

/// Whether trellis reads the rules of this chain.
pub(crate) fn is_inet_forward(c: &HostChain) -> bool {
    let ip = matches!(c.chain.family, NFPROTO_IPV4 | NFPROTO_IPV6 | NFPROTO_INET);
    let ours = c.chain.family == NFPROTO_INET && c.chain.table == TABLE;
    ip && !ours && c.hook == Some(HOOK_FORWARD)
}

/// The change to one chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainPlan {
    /// The chain.
    pub(crate) chain: ChainRef,
    /// Handles of trellis's rules that are stale (deleted first).
    pub(crate) delete: Vec<u64>,
    /// Rules to insert at the head, in the order they should read.
    pub(crate) insert: Vec<HostRule>,
}

impl ChainPlan {
    /// The messages, deletions first; insertions in reverse so that, each
    /// going to the head, they read in order.
    pub(crate) fn messages(&self) -> Vec<crate::wire::Message> {
        let dels = self.delete.iter().map(|&h| rules::delete(&self.chain, h));
        let ins = self
            .insert
            .iter()
            .rev()
            .map(|r| rules::insert(&self.chain, r));
        dels.chain(ins).collect()
    }

    /// What is out of line, for a read-only report.
    pub(crate) fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.insert.is_empty() {
            let mut tags: Vec<&str> = self.insert.iter().map(|r| r.comment.as_str()).collect();
            tags.dedup();
            parts.push(format!(
                "drops forwarded traffic by policy and lacks trellis's accept rules for {} (a host firewall reload removes them; trellis restores them at its next network change or reconcile)",
                tags.join(", ")
            ));
        }
        if !self.delete.is_empty() {
            parts.push(format!("holds {} stale trellis rule(s)", self.delete.len()));
        }
        format!("{} {}", self.chain, parts.join(" and "))
    }
}

/// Everything to change, and what trellis will not change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Changes, one entry per chain that needs any.
    pub(crate) chains: Vec<ChainPlan>,
    /// Chains trellis leaves alone although they may drop its traffic.
    pub(crate) warnings: Vec<String>,
}

/// The plan that makes trellis's rules in `observed` what `admitted` needs.
pub(crate) fn plan(admitted: &[Admitted], observed: &Observed) -> Plan {
    let mut out = Plan {
        chains: Vec::new(),
        warnings: if admitted.is_empty() {
            Vec::new()
        } else {
            observed
                .unreadable
                .iter()
                .map(|why| format!("cannot read the host's firewall: {why}; trellis cannot tell whether it drops forwarded traffic"))
                .collect()
        },
    };
    for (c, seen) in &observed.chains {
        if is_inet_forward(c) {
            let want = if c.policy == Some(NF_DROP) {
                rules::wanted(c.chain.family, admitted)
            } else {
                if !admitted.is_empty() && ends_in_drop(seen) {
                    out.warnings.push(format!(
                        "{} accepts by policy but its last rule drops everything: trellis only amends chains that drop by policy, so forwarded traffic of its networks may be dropped there (add accept rules for its bridges before that rule)",
                        c.chain
                    ));
                }
                Vec::new()
            };
            let p = chain_plan(&c.chain, &want, seen);
            if !p.delete.is_empty() || !p.insert.is_empty() {
                out.chains.push(p);
            }
        } else if let Some(w) = layer2_warning(c, admitted) {
            out.warnings.push(w);
        }
    }
    out
}

/// Whether the last rule that is not trellis's drops everything.
fn ends_in_drop(seen: &[SeenRule]) -> bool {
    seen.iter()
        .rfind(|r| !is_ours(r))
        .is_some_and(SeenRule::drops_everything)
}

fn is_ours(r: &SeenRule) -> bool {
    r.comment
        .as_deref()
        .is_some_and(|c| c.starts_with(TAG_PREFIX))
}

/// Matches trellis's rules in `seen` with `want`, one to one, by comment and
/// expressions: the unmatched seen are stale, the unmatched wanted missing.
fn chain_plan(chain: &ChainRef, want: &[HostRule], seen: &[SeenRule]) -> ChainPlan {
    let mut ours: Vec<&SeenRule> = seen.iter().filter(|r| is_ours(r)).collect();
    let mut insert = Vec::new();
    for w in want {
        let view = view_of(&w.exprs);
        let found = ours
            .iter()
            .position(|r| r.comment.as_deref() == Some(w.comment.as_str()) && r.exprs == view);
        match found {
            Some(i) => {
                ours.remove(i);
            }
            None => insert.push(w.clone()),
        }
    }
    ChainPlan {
        chain: chain.clone(),
        delete: ours.iter().map(|r| r.handle).collect(),
        insert,
    }
}

/// A warning for a bridge-family forward chain or a netdev chain that drops
/// by policy, when there is traffic of trellis's it may drop.
fn layer2_warning(c: &HostChain, admitted: &[Admitted]) -> Option<String> {
    if c.policy != Some(NF_DROP) || c.hook.is_none() {
        return None;
    }
    let bridges = admitted
        .iter()
        .any(|a| matches!(a, Admitted::Bridge { .. }));
    match c.chain.family {
        NFPROTO_BRIDGE if bridges && c.hook == Some(HOOK_FORWARD) => Some(format!(
            "{} drops bridged frames by policy: containers on one trellis bridge cannot reach each other, and trellis does not amend bridge-family chains",
            c.chain
        )),
        NFPROTO_NETDEV if !admitted.is_empty() => Some(format!(
            "{} drops by policy at the device level: traffic of trellis's networks through that device may be dropped, and trellis does not amend netdev chains",
            c.chain
        )),
        _ => None,
    }
}

#[cfg(test)]
#[path = "diff_tests.rs"]
mod tests;
