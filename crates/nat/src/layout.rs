//! The fixed skeleton of trellis's table, as data: chains, sets, rules.
//!
//! Everything per network and per published port is a set element (see
//! `elems`); what is here is created once by `ensure_table` and never changes
//! with the number of networks or ports. Each rule also carries the text nft(8)
//! prints for it, which the privileged tests compare with `nft list`.

use crate::expr::{Base, CmpOp, Expr, MetaKey, REG0, Verdict};
use crate::wire::{NFPROTO_IPV4, NFPROTO_IPV6};
use crate::{filter, masq};

/// The name of the one table trellis owns (family `inet`).
pub const TABLE: &str = "trellis";

/// nft(8)'s datatype ids (`enum datatypes`), as stored in `NFTA_SET_KEY_TYPE`.
const TYPE_IPADDR: u32 = 7;
const TYPE_IP6ADDR: u32 = 8;
const TYPE_INET_PROTOCOL: u32 = 12;
const TYPE_INET_SERVICE: u32 = 13;
pub(crate) const TYPE_IFNAME: u32 = 41;
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

    /// The map of ports published on one host address:
    /// `daddr . meta l4proto . th dport : addr . port`.
    pub(crate) fn hostports(self) -> &'static str {
        ["hostports4", "hostports6"][self as usize]
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

/// The set of every bridge of a bridge network (`ifname`).
pub(crate) const BRIDGES: &str = "bridges";
/// The set of the bridges of `internal` networks (`ifname`).
pub(crate) const INTERNAL: &str = "internal";
/// The set of `(in bridge . out bridge)` pairs forwarded between bridge
/// networks: every bridge with itself, and the pairs networks' `reach` allow.
pub(crate) const PASS: &str = "pass";

/// The sets of one family.
pub(crate) fn sets(f: Fam) -> Vec<SetSpec> {
    let a = f.addr_len() as u32;
    let id = 1 + 6 * f as u32;
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
        SetSpec {
            name: f.hostports(),
            flags: SET_MAP | SET_CONCAT,
            key_type: concat(concat(f.addr_type(), TYPE_INET_PROTOCOL), TYPE_INET_SERVICE),
            key_len: a + 8,
            fields: vec![a, 1, 2],
            data: Some((concat(f.addr_type(), TYPE_INET_SERVICE), a + 4)),
            id: id + 5,
        },
    ]
}

/// The sets of interface names, for the filter chains (both families).
pub(crate) fn ifname_sets() -> Vec<SetSpec> {
    let n = IFNAMSIZ as u32;
    let plain = |name, id| SetSpec {
        name,
        flags: 0,
        key_type: TYPE_IFNAME,
        key_len: n,
        fields: vec![],
        data: None,
        id,
    };
    vec![
        plain(BRIDGES, 13),
        plain(INTERNAL, 14),
        SetSpec {
            name: PASS,
            flags: SET_CONCAT,
            key_type: concat(TYPE_IFNAME, TYPE_IFNAME),
            key_len: 2 * n,
            fields: vec![n, n],
            data: None,
            id: 15,
        },
    ]
}

/// A chain of the skeleton; base chains have a hook, a priority and a type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chain {
    /// Its name.
    pub(crate) name: &'static str,
    /// `(NF_INET_* hook, priority, type)` for a base chain (`nat` or `filter`).
    pub(crate) hook: Option<(u32, i32, &'static str)>,
}

/// The regular chain holding the DNAT rules, jumped to for local destinations.
pub(crate) const PUBLISHED: &str = "published";

/// The chains: prerouting and output (priority dstnat = -100) jump to
/// `published` for packets addressed to the host; postrouting (srcnat = 100)
/// masquerades; forward (filter = 0) keeps bridge networks apart; input
/// (filter) drops what `route_localnet` would otherwise let in.
pub(crate) fn chains() -> Vec<Chain> {
    vec![
        Chain {
            name: PUBLISHED,
            hook: None,
        },
        Chain {
            name: "prerouting",
            hook: Some((0, -100, "nat")),
        },
        Chain {
            name: "output",
            hook: Some((3, -100, "nat")),
        },
        Chain {
            name: "postrouting",
            hook: Some((4, 100, "nat")),
        },
        Chain {
            name: filter::FORWARD,
            hook: Some((2, 0, "filter")),
        },
        Chain {
            name: filter::INPUT,
            hook: Some((1, 0, "filter")),
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

/// `meta l4proto . th dport` as a key in `reg` and `reg + 1`.
fn l4proto_dport(reg: u32) -> [Expr; 2] {
    [
        Expr::Meta {
            key: MetaKey::L4Proto,
            dreg: reg,
        },
        Expr::Payload {
            base: Base::Transport,
            offset: 2,
            len: 2,
            dreg: reg + 1,
        },
    ]
}

/// The DNAT rule of ports published on one host address, tried before
/// [`dnat`]: `daddr . l4proto . dport` is one more map lookup.
fn dnat_on_address(f: Fam) -> Rule {
    let (_, daddr) = f.saddr_daddr();
    let words = f.addr_len() as u32 / 4;
    let mut exprs = nfproto_is(f).to_vec();
    exprs.push(Expr::Payload {
        base: Base::Network,
        offset: daddr,
        len: f.addr_len() as u32,
        dreg: REG0,
    });
    exprs.extend(l4proto_dport(REG0 + words));
    exprs.push(Expr::Lookup {
        set: f.hostports(),
        sreg: REG0,
        dreg: Some(REG0),
    });
    exprs.push(Expr::Dnat {
        family: f.nfproto(),
        reg_addr: REG0,
        reg_proto: REG0 + words,
    });
    let ip = f.nft_name();
    let text = format!(
        "dnat {ip} to {ip} daddr . meta l4proto . th dport map @{}",
        f.hostports()
    );
    Rule {
        chain: PUBLISHED,
        exprs,
        text,
    }
}

/// The DNAT rule: one map lookup whatever the number of published ports.
fn dnat(f: Fam) -> Rule {
    let mut exprs = nfproto_is(f).to_vec();
    exprs.extend(l4proto_dport(REG0));
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
    for f in Fam::ALL {
        r.extend([dnat_on_address(f), dnat(f)]);
    }
    r.push(masq::loopback());
    for f in Fam::ALL {
        r.extend(masq::postrouting(f));
    }
    r.extend(filter::forward());
    r.extend(filter::input());
    r
}
