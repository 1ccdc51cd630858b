//! The fixed skeleton of trellis's table, as data: chains, sets, rules.
//!
//! Everything per network and per published port is a set element (see
//! `elems`); what is here is created once by `ensure_table` and never changes
//! with the number of networks or ports. Each rule also carries the text nft(8)
//! prints for it, which the privileged tests compare with `nft list`.

use crate::expr::{Base, CmpOp, Expr, MetaKey, REG0, Verdict};
use crate::masq;
use crate::wire::{NFPROTO_IPV4, NFPROTO_IPV6};

/// The name of the one table trellis owns (family `inet`).
pub const TABLE: &str = "trellis";

/// nft(8)'s datatype ids (`enum datatypes`), as stored in `NFTA_SET_KEY_TYPE`.
const TYPE_IPADDR: u32 = 7;
const TYPE_IP6ADDR: u32 = 8;
const TYPE_INET_PROTOCOL: u32 = 12;
const TYPE_INET_SERVICE: u32 = 13;
const TYPE_IFNAME: u32 = 41;
/// nft(8) packs the datatypes of a concatenation 6 bits each (`TYPE_BITS`).
const fn concat(a: u32, b: u32) -> u32 {
    (a << 6) | b
}

/// `NFT_SET_INTERVAL`, `NFT_SET_MAP`, `NFT_SET_CONCAT`.
pub(crate) const SET_INTERVAL: u32 = 0x4;
pub(crate) const SET_MAP: u32 = 0x8;
pub(crate) const SET_CONCAT: u32 = 0x80;

/// `IFNAMSIZ`: `meta oifname` loads this many bytes.
pub(crate) const IFNAMSIZ: usize = 16;
/// `RTN_LOCAL`: what `fib daddr type local` compares with.
const RTN_LOCAL: u32 = 2;

/// An address family the table handles; each has its own sets and rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Fam {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Fam {
    /// Both families, in table order.
    pub(crate) const ALL: [Fam; 2] = [Fam::V4, Fam::V6];

    /// `NFPROTO_IPV4` / `NFPROTO_IPV6`.
    pub(crate) fn nfproto(self) -> u8 {
        match self {
            Fam::V4 => NFPROTO_IPV4,
            Fam::V6 => NFPROTO_IPV6,
        }
    }

    /// Address length in bytes.
    pub(crate) fn addr_len(self) -> usize {
        match self {
            Fam::V4 => 4,
            Fam::V6 => 16,
        }
    }

    pub(crate) fn nft_name(self) -> &'static str {
        match self {
            Fam::V4 => "ip",
            Fam::V6 => "ip6",
        }
    }

    fn name_nfproto(self) -> &'static str {
        match self {
            Fam::V4 => "ipv4",
            Fam::V6 => "ipv6",
        }
    }

    fn addr_type(self) -> u32 {
        match self {
            Fam::V4 => TYPE_IPADDR,
            Fam::V6 => TYPE_IP6ADDR,
        }
    }

    /// The map of published ports: `meta l4proto . th dport : addr . port`.
    pub(crate) fn ports(self) -> &'static str {
        ["ports4", "ports6"][self as usize]
    }

    /// The set of `(subnet . own bridge)`: traffic that stays on its bridge.
    pub(crate) fn own(self) -> &'static str {
        ["own4", "own6"][self as usize]
    }

    /// The set of subnets whose outgoing traffic is masqueraded.
    pub(crate) fn masq(self) -> &'static str {
        ["masq4", "masq6"][self as usize]
    }

    /// The set of every routed pool: destinations never masqueraded to.
    pub(crate) fn pools(self) -> &'static str {
        ["pools4", "pools6"][self as usize]
    }

    /// The set of routed pools with outgoing NAT on.
    pub(crate) fn natpools(self) -> &'static str {
        ["natpools4", "natpools6"][self as usize]
    }

    /// Offsets of the source and destination addresses in the network header.
    pub(crate) fn saddr_daddr(self) -> (u32, u32) {
        match self {
            Fam::V4 => (12, 16),
            Fam::V6 => (8, 24),
        }
    }
}

/// A set (or map) of the skeleton.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SetSpec {
    /// Its name in the table.
    pub(crate) name: &'static str,
    /// `NFT_SET_*` flags.
    pub(crate) flags: u32,
    /// nft(8) datatype of the key (informational for the kernel).
    pub(crate) key_type: u32,
    /// Key length in bytes (each concatenated field padded to 4).
    pub(crate) key_len: u32,
    /// Field lengths of a concatenated key (`NFTA_SET_DESC_CONCAT`), in bytes.
    pub(crate) fields: Vec<u32>,
    /// A map's data: datatype and length.
    pub(crate) data: Option<(u32, u32)>,
    /// Transaction-unique id (`NFTA_SET_ID`).
    pub(crate) id: u32,
}

/// A plain set of addresses with interval elements (prefixes).
fn prefix_set(f: Fam, name: &'static str, id: u32) -> SetSpec {
    SetSpec {
        name,
        flags: SET_INTERVAL,
        key_type: f.addr_type(),
        key_len: f.addr_len() as u32,
        fields: vec![],
        data: None,
        id,
    }
}

/// The sets of one family.
pub(crate) fn sets(f: Fam) -> Vec<SetSpec> {
    let a = f.addr_len() as u32;
    let id = 1 + 5 * f as u32;
    vec![
        SetSpec {
            name: f.ports(),
            flags: SET_MAP | SET_CONCAT,
            key_type: concat(TYPE_INET_PROTOCOL, TYPE_INET_SERVICE),
            key_len: 8,
            fields: vec![1, 2],
            data: Some((concat(f.addr_type(), TYPE_INET_SERVICE), a + 4)),
            id,
        },
        SetSpec {
            name: f.own(),
            flags: SET_INTERVAL | SET_CONCAT,
            key_type: concat(f.addr_type(), TYPE_IFNAME),
            key_len: a + IFNAMSIZ as u32,
            fields: vec![a, IFNAMSIZ as u32],
            data: None,
            id: id + 1,
        },
        prefix_set(f, f.masq(), id + 2),
        prefix_set(f, f.pools(), id + 3),
        prefix_set(f, f.natpools(), id + 4),
    ]
}

/// A chain of the skeleton; base chains have a hook and a priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chain {
    /// Its name.
    pub(crate) name: &'static str,
    /// `(NF_INET_* hook, priority)` for a base chain of type `nat`.
    pub(crate) hook: Option<(u32, i32)>,
}

/// The regular chain holding the DNAT rules, jumped to for local destinations.
pub(crate) const PUBLISHED: &str = "published";

/// The chains: prerouting and output (priority dstnat = -100) jump to
/// `published` for packets addressed to the host; postrouting (srcnat = 100)
/// masquerades.
pub(crate) fn chains() -> Vec<Chain> {
    vec![
        Chain {
            name: PUBLISHED,
            hook: None,
        },
        Chain {
            name: "prerouting",
            hook: Some((0, -100)),
        },
        Chain {
            name: "output",
            hook: Some((3, -100)),
        },
        Chain {
            name: "postrouting",
            hook: Some((4, 100)),
        },
    ]
}

/// A rule: its chain, its expressions, and how nft(8) prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    /// The chain it is appended to.
    pub(crate) chain: &'static str,
    /// The expressions, in order.
    pub(crate) exprs: Vec<Expr>,
    /// nft(8)'s rendering, for documentation and the privileged tests.
    pub(crate) text: String,
}

pub(crate) fn nfproto_is(f: Fam) -> [Expr; 2] {
    [
        Expr::Meta {
            key: MetaKey::NfProto,
            dreg: REG0,
        },
        Expr::Cmp {
            sreg: REG0,
            op: CmpOp::Eq,
            data: vec![f.nfproto()],
        },
    ]
}

/// `fib daddr type local jump published`.
fn to_published(chain: &'static str) -> Rule {
    Rule {
        chain,
        exprs: vec![
            Expr::FibDaddrType { dreg: REG0 },
            Expr::Cmp {
                sreg: REG0,
                op: CmpOp::Eq,
                data: RTN_LOCAL.to_ne_bytes().to_vec(),
            },
            Expr::Verdict(Verdict::Jump(PUBLISHED)),
        ],
        text: format!("fib daddr type local jump {PUBLISHED}"),
    }
}

/// `meta l4proto . th dport` as a key in REG0 and REG0+1.
fn l4proto_dport() -> [Expr; 2] {
    [
        Expr::Meta {
            key: MetaKey::L4Proto,
            dreg: REG0,
        },
        Expr::Payload {
            base: Base::Transport,
            offset: 2,
            len: 2,
            dreg: REG0 + 1,
        },
    ]
}

/// The DNAT rule: one map lookup whatever the number of published ports.
fn dnat(f: Fam) -> Rule {
    let mut exprs = nfproto_is(f).to_vec();
    exprs.extend(l4proto_dport());
    exprs.push(Expr::Lookup {
        set: f.ports(),
        sreg: REG0,
        dreg: Some(REG0),
    });
    let reg_proto = REG0 + f.addr_len() as u32 / 4;
    exprs.push(Expr::Dnat {
        family: f.nfproto(),
        reg_addr: REG0,
        reg_proto,
    });
    let ip = f.nft_name();
    let text = format!(
        "meta nfproto {} dnat {ip} to meta l4proto . th dport map @{}",
        f.name_nfproto(),
        f.ports()
    );
    Rule {
        chain: PUBLISHED,
        exprs,
        text,
    }
}

/// Every rule of the skeleton, chain by chain, in order.
pub(crate) fn rules() -> Vec<Rule> {
    let mut r = vec![to_published("prerouting"), to_published("output")];
    r.extend(Fam::ALL.map(dnat));
    for f in Fam::ALL {
        r.extend(masq::postrouting(f));
    }
    r
}
