//! The rules trellis puts into a host's forward chain, as values, and the
//! messages that insert and delete them. Pure.

use super::{Admitted, TAG_PREFIX};
use crate::expr::{CmpOp, Expr, MetaKey, REG0, Verdict, encode_exprs};
use crate::layout::IFNAMSIZ;
use crate::wire::{Attrs, Message, MsgType, NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6, nlm};
use std::fmt;

/// `NFPROTO_NETDEV`.
pub(crate) const NFPROTO_NETDEV: u8 = 5;
/// `NFPROTO_BRIDGE`.
pub(crate) const NFPROTO_BRIDGE: u8 = 7;
/// `NFPROTO_ARP`.
const NFPROTO_ARP: u8 = 3;

/// The comment of the rules that admit routed ports.
pub(crate) const ROUTED_TAG: &str = "trellis:(routed)";
/// The name prefix nft(8) prints as `"tr*"`: the host ends of routed veths
/// (`trellis_link::HOST_VETH_PREFIX`).
const ROUTED_PREFIX: &str = "tr";

/// nft's userdata TLV type of a rule comment (`NFTNL_UDATA_RULE_COMMENT`).
const UDATA_COMMENT: u8 = 0;

/// A chain of the host: family, table and name, printed as nft(8) does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ChainRef {
    /// The `nfgenmsg` family (`NFPROTO_*`).
    pub(crate) family: u8,
    /// The table's name.
    pub(crate) table: String,
    /// The chain's name.
    pub(crate) name: String,
}

/// nft(8)'s name of a family.
pub(crate) fn family_name(family: u8) -> String {
    match family {
        NFPROTO_INET => "inet".into(),
        NFPROTO_IPV4 => "ip".into(),
        NFPROTO_IPV6 => "ip6".into(),
        NFPROTO_ARP => "arp".into(),
        NFPROTO_NETDEV => "netdev".into(),
        NFPROTO_BRIDGE => "bridge".into(),
        other => format!("family {other}"),
    }
}

impl fmt::Display for ChainRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fam = family_name(self.family);
        write!(f, "chain {} of table {fam} {}", self.name, self.table)
    }
}

/// Which way a rule matches the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    In,
    Out,
}

/// One accept rule for a host chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostRule {
    /// The expressions: `meta i/oifname`, `cmp`, `accept`.
    pub(crate) exprs: Vec<Expr>,
    /// The comment (the tag).
    pub(crate) comment: String,
    /// nft(8)'s rendering, for documentation and the privileged tests.
    pub(crate) text: String,
}

/// `iifname`/`oifname` `name` (or, with `prefix`, `"name*"`) `accept`.
fn accept(dir: Dir, name: &str, prefix: bool, comment: &str) -> HostRule {
    let key = match dir {
        Dir::In => MetaKey::IifName,
        Dir::Out => MetaKey::OifName,
    };
    // An exact name is compared over all 16 bytes, NUL padded (nft's
    // encoding); a wildcard compares the prefix only, as nft and iptables
    // (`-i tr+`) both encode it.
    let mut data = name.as_bytes().to_vec();
    if !prefix {
        data.resize(IFNAMSIZ, 0);
    }
    let word = if dir == Dir::In { "iifname" } else { "oifname" };
    let star = if prefix { "*" } else { "" };
    HostRule {
        exprs: vec![
            Expr::Meta { key, dreg: REG0 },
            Expr::Cmp {
                sreg: REG0,
                op: CmpOp::Eq,
                data,
            },
            Expr::Verdict(Verdict::Accept),
        ],
        comment: comment.to_owned(),
        text: format!("{word} \"{name}{star}\" accept comment \"{comment}\""),
    }
}

impl Admitted {
    /// Whether this belongs in a chain of `family` (`ip`, `ip6`, `inet`).
    fn fits(&self, family: u8) -> bool {
        let (v4, v6) = match self {
            Admitted::Bridge { v4, v6, .. } | Admitted::RoutedPorts { v4, v6 } => (*v4, *v6),
        };
        match family {
            NFPROTO_IPV4 => v4,
            NFPROTO_IPV6 => v6,
            _ => v4 || v6,
        }
    }

    /// The two rules, in and out.
    fn rules(&self) -> [HostRule; 2] {
        match self {
            Admitted::Bridge {
                network, bridge, ..
            } => {
                let tag = format!("{TAG_PREFIX}{network}");
                [Dir::In, Dir::Out].map(|d| accept(d, bridge.as_str(), false, &tag))
            }
            Admitted::RoutedPorts { .. } => {
                [Dir::In, Dir::Out].map(|d| accept(d, ROUTED_PREFIX, true, ROUTED_TAG))
            }
        }
    }
}

/// The rules trellis wants in a dropping forward chain of `family`, in the
/// order they should read from the chain's head.
pub(crate) fn wanted(family: u8, admitted: &[Admitted]) -> Vec<HostRule> {
    let mut sorted: Vec<&Admitted> = admitted.iter().filter(|a| a.fits(family)).collect();
    sorted.sort();
    sorted.dedup();
    sorted.into_iter().flat_map(Admitted::rules).collect()
}

/// nft's rule userdata holding one comment: a TLV of type 0, NUL-terminated.
pub(crate) fn comment_udata(comment: &str) -> Vec<u8> {
    let mut v = vec![UDATA_COMMENT, (comment.len() + 1) as u8];
    v.extend_from_slice(comment.as_bytes());
    v.push(0);
    v
}

/// The comment in a rule's userdata, if any.
pub(crate) fn comment_of(udata: &[u8]) -> Option<String> {
    let mut rest = udata;
    while let [kind, len, tail @ ..] = rest {
        let value = tail.get(..usize::from(*len))?;
        if *kind == UDATA_COMMENT {
            let text = value.strip_suffix(&[0]).unwrap_or(value);
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        rest = &tail[usize::from(*len)..];
    }
    None
}

/// Inserts `rule` at the head of `chain` (`NEWRULE` without `NLM_F_APPEND`
/// or a position).
pub(crate) fn insert(chain: &ChainRef, rule: &HostRule) -> Message {
    let mut a = Attrs::new();
    // NFTA_RULE_TABLE, _CHAIN, _EXPRESSIONS, _USERDATA
    a.str(1, &chain.table).str(2, &chain.name);
    a.nest(4, |l| encode_exprs(&rule.exprs, l));
    a.bytes(7, &comment_udata(&rule.comment));
    Message {
        kind: MsgType::NewRule,
        flags: nlm::F_CREATE,
        family: chain.family,
        attrs: a,
    }
}

/// Deletes the rule with `handle` from `chain`.
pub(crate) fn delete(chain: &ChainRef, handle: u64) -> Message {
    let mut a = Attrs::new();
    // NFTA_RULE_TABLE, _CHAIN, _HANDLE (u64, big endian)
    a.str(1, &chain.table).str(2, &chain.name);
    a.bytes(3, &handle.to_be_bytes());
    Message {
        kind: MsgType::DelRule,
        flags: 0,
        family: chain.family,
        attrs: a,
    }
}

/// A dump of the rules of `chain` (the kernel filters by table and chain).
pub(crate) fn dump_rules(chain: &ChainRef) -> Message {
    let mut a = Attrs::new();
    a.str(1, &chain.table).str(2, &chain.name);
    Message {
        kind: MsgType::GetRule,
        flags: nlm::F_DUMP,
        family: chain.family,
        attrs: a,
    }
}

/// A dump of every chain of every family.
pub(crate) fn dump_chains() -> Message {
    Message {
        kind: MsgType::GetChain,
        flags: nlm::F_DUMP,
        family: crate::wire::NFPROTO_UNSPEC,
        attrs: Attrs::new(),
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
