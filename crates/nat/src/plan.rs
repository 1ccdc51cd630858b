//! Changes to the table as data: lists of [`Op`]s, each becoming one message of
//! one atomic nfnetlink batch. Pure functions, tested without a kernel.

use crate::elems::{self, Elem, fam_of};
use crate::expr::encode_exprs;
use crate::layout::{self, BRIDGES, Chain, Fam, INTERNAL, PASS, Rule, SetSpec, TABLE};
use crate::wire::{Attrs, Message, MsgType, NFPROTO_INET, NFTA_LIST_ELEM, nlm};
use crate::{NatState, NetworkNat, RoutedPool};
use trellis_types::{IfName, PortMapping};

/// One change to the table; becomes one nf_tables message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// Create the table if missing.
    NewTable,
    /// Delete the table and everything in it.
    DelTable,
    /// Create (or keep) a chain.
    NewChain(Chain),
    /// Delete every rule of a chain (`nft flush chain`).
    FlushChain(&'static str),
    /// Create (or keep) a set.
    NewSet(SetSpec),
    /// Append a rule.
    NewRule(Rule),
    /// Add elements; `exclusive` makes an existing key an error (EEXIST).
    NewElems {
        set: &'static str,
        elems: Vec<Elem>,
        exclusive: bool,
    },
    /// Delete elements (ENOENT if one is missing).
    DelElems { set: &'static str, elems: Vec<Elem> },
}

/// The skeleton, idempotently: create what is missing, then replace the rules
/// of every chain (flush + append), all in one batch. Set elements survive.
pub(crate) fn skeleton() -> Vec<Op> {
    let mut ops = vec![Op::NewTable];
    ops.extend(layout::chains().into_iter().map(Op::NewChain));
    ops.extend(Fam::ALL.into_iter().flat_map(layout::sets).map(Op::NewSet));
    ops.extend(layout::ifname_sets().into_iter().map(Op::NewSet));
    ops.extend(layout::chains().into_iter().map(|c| Op::FlushChain(c.name)));
    ops.extend(layout::rules().into_iter().map(Op::NewRule));
    ops
}

/// Replaces the whole table with exactly `state`, atomically (start-up
/// reconciliation): whatever trellis left behind before is gone.
pub(crate) fn sync(state: &NatState) -> Vec<Op> {
    let mut ops = vec![Op::NewTable, Op::DelTable];
    ops.extend(skeleton());
    for net in &state.networks {
        ops.extend(add_network(net));
    }
    for pool in &state.pools {
        ops.extend(add_pool(pool));
    }
    ops.extend(add_elems(reach_elems(&state.reach)));
    ops.extend(publish(&state.ports));
    ops
}

/// The `pass` elements of the pairs `reach` allows between networks (a
/// bridge with itself is part of its network's elements, not of these).
pub(crate) fn reach_elems(pairs: &[(IfName, IfName)]) -> Vec<(&'static str, Elem)> {
    pairs
        .iter()
        .filter(|(a, b)| a != b)
        .map(|(a, b)| (PASS, elems::pass_elem(a, b)))
        .collect()
}

/// Publishing: one message per mapping (so that a conflict, EEXIST, names its
/// mapping by sequence number), exclusive, all in one batch.
pub(crate) fn publish(ports: &[PortMapping]) -> Vec<Op> {
    ports
        .iter()
        .map(|m| Op::NewElems {
            set: elems::map_of(m),
            elems: vec![elems::port_elem(m)],
            exclusive: true,
        })
        .collect()
}

/// Unpublishing mappings known to be present: one message per map.
pub(crate) fn unpublish(ports: &[PortMapping]) -> Vec<Op> {
    del_elems(
        ports
            .iter()
            .map(|m| (elems::map_of(m), elems::port_elem(m)))
            .collect(),
    )
}

/// The `(set, element)`s that represent one network: its `own` element, its
/// bridge in `bridges` and paired with itself in `pass`, in `internal` if it
/// is, and its `masq` interval when masqueraded.
pub(crate) fn network_elems(net: &NetworkNat) -> Vec<(&'static str, Elem)> {
    let f = fam_of(net.subnet.addr());
    let mut v = vec![
        (f.own(), elems::own_elem(net)),
        (BRIDGES, elems::ifname_elem(&net.bridge)),
        (PASS, elems::pass_elem(&net.bridge, &net.bridge)),
    ];
    if net.internal {
        v.push((INTERNAL, elems::ifname_elem(&net.bridge)));
    }
    if net.masquerade {
        v.extend(
            elems::prefix_elems(net.subnet)
                .into_iter()
                .map(|e| (f.masq(), e)),
        );
    }
    v
}

/// The `(set, element)`s that represent one routed pool: its interval in
/// `pools`, and in `natpools` too when outgoing NAT is on.
pub(crate) fn pool_elems(pool: &RoutedPool) -> Vec<(&'static str, Elem)> {
    let f = fam_of(pool.cidr.addr());
    let mut sets = vec![f.pools()];
    if pool.nat_outgoing {
        sets.push(f.natpools());
    }
    sets.into_iter()
        .flat_map(|set| {
            elems::prefix_elems(pool.cidr)
                .into_iter()
                .map(move |e| (set, e))
        })
        .collect()
}

/// Adding a routed pool: elements only, one message per set.
pub(crate) fn add_pool(pool: &RoutedPool) -> Vec<Op> {
    add_elems(pool_elems(pool))
}

/// Groups `(set, element)` pairs by set, keeping first-seen set order.
fn by_set(pairs: Vec<(&'static str, Elem)>) -> Vec<(&'static str, Vec<Elem>)> {
    let mut out: Vec<(&'static str, Vec<Elem>)> = Vec::new();
    for (set, e) in pairs {
        match out.iter_mut().find(|(s, _)| *s == set) {
            Some((_, v)) => v.push(e),
            None => out.push((set, vec![e])),
        }
    }
    out
}

/// Adding a network: its `own` element and, when masqueraded, its `masq` interval.
pub(crate) fn add_network(net: &NetworkNat) -> Vec<Op> {
    add_elems(network_elems(net))
}

/// `NewElems` for the given pairs, one message per set.
pub(crate) fn add_elems(pairs: Vec<(&'static str, Elem)>) -> Vec<Op> {
    by_set(pairs)
        .into_iter()
        .map(|(set, elems)| Op::NewElems {
            set,
            elems,
            exclusive: true,
        })
        .collect()
}

/// `DelElems` for the given pairs, one message per set.
pub(crate) fn del_elems(pairs: Vec<(&'static str, Elem)>) -> Vec<Op> {
    by_set(pairs)
        .into_iter()
        .map(|(set, elems)| Op::DelElems { set, elems })
        .collect()
}

impl Op {
    /// The nf_tables message this change is sent as.
    pub(crate) fn message(&self) -> Message {
        let mut a = Attrs::new();
        let (kind, flags) = match self {
            Op::NewTable => {
                a.str(1, TABLE).u32(2, 0); // NFTA_TABLE_NAME, NFTA_TABLE_FLAGS
                (MsgType::NewTable, nlm::F_CREATE)
            }
            Op::DelTable => {
                a.str(1, TABLE);
                (MsgType::DelTable, 0)
            }
            Op::NewChain(c) => {
                encode_chain(c, &mut a);
                (MsgType::NewChain, nlm::F_CREATE)
            }
            Op::FlushChain(name) => {
                a.str(1, TABLE).str(2, name); // NFTA_RULE_TABLE, NFTA_RULE_CHAIN
                (MsgType::DelRule, 0)
            }
            Op::NewSet(s) => {
                encode_set(s, &mut a);
                (MsgType::NewSet, nlm::F_CREATE)
            }
            Op::NewRule(r) => {
                a.str(1, TABLE).str(2, r.chain);
                a.nest(4, |l| encode_exprs(&r.exprs, l)); // NFTA_RULE_EXPRESSIONS
                (MsgType::NewRule, nlm::F_CREATE | nlm::F_APPEND)
            }
            Op::NewElems {
                set,
                elems,
                exclusive,
            } => {
                encode_elems(set, elems, &mut a);
                let excl = if *exclusive { nlm::F_EXCL } else { 0 };
                (MsgType::NewSetElem, nlm::F_CREATE | excl)
            }
            Op::DelElems { set, elems } => {
                encode_elems(set, elems, &mut a);
                (MsgType::DelSetElem, 0)
            }
        };
        Message {
            kind,
            flags,
            family: NFPROTO_INET,
            attrs: a,
        }
    }
}

fn encode_chain(c: &Chain, a: &mut Attrs) {
    a.str(1, TABLE).str(3, c.name); // NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME
    if let Some((hook, prio, kind)) = c.hook {
        // NFTA_CHAIN_HOOK { NFTA_HOOK_HOOKNUM, NFTA_HOOK_PRIORITY }
        a.nest(4, |h| {
            h.u32(1, hook).u32(2, prio as u32);
        });
        a.u32(5, 1); // NFTA_CHAIN_POLICY = NF_ACCEPT
        a.str(7, kind); // NFTA_CHAIN_TYPE
    }
}

fn encode_set(s: &SetSpec, a: &mut Attrs) {
    // NFTA_SET_TABLE, _NAME, _FLAGS, _KEY_TYPE, _KEY_LEN
    a.str(1, TABLE)
        .str(2, s.name)
        .u32(3, s.flags)
        .u32(4, s.key_type)
        .u32(5, s.key_len);
    if let Some((ty, len)) = s.data {
        a.u32(6, ty).u32(7, len); // NFTA_SET_DATA_TYPE, _DATA_LEN
    }
    if !s.fields.is_empty() {
        // NFTA_SET_DESC { NFTA_SET_DESC_CONCAT { LIST_ELEM { NFTA_SET_FIELD_LEN } } }
        a.nest(9, |d| {
            d.nest(2, |c| {
                for len in &s.fields {
                    c.nest(NFTA_LIST_ELEM, |f| {
                        f.u32(1, *len);
                    });
                }
            });
        });
    }
    a.u32(10, s.id); // NFTA_SET_ID
    if s.key_type == layout::TYPE_IFNAME {
        // NFTA_SET_USERDATA { NFTNL_UDATA_SET_KEYBYTEORDER = host }: how
        // nft(8) knows to print the keys as names; the kernel ignores it.
        a.bytes(13, &[0, 4, 1, 0, 0, 0]);
    }
}

fn encode_elems(set: &str, elems: &[Elem], a: &mut Attrs) {
    // NFTA_SET_ELEM_LIST_TABLE, _SET, _ELEMENTS
    a.str(1, TABLE).str(2, set);
    a.nest(3, |l| {
        for e in elems {
            l.nest(NFTA_LIST_ELEM, |el| {
                el.data(1, &e.key); // NFTA_SET_ELEM_KEY
                if let Some(end) = &e.key_end {
                    el.data(10, end); // NFTA_SET_ELEM_KEY_END
                }
                if let Some(d) = &e.data {
                    el.data(2, d); // NFTA_SET_ELEM_DATA
                }
                if e.flags != 0 {
                    el.u32(3, e.flags); // NFTA_SET_ELEM_FLAGS
                }
            });
        }
    });
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
