//! The postrouting rules: hairpin, bridge masquerade, routed-pool masquerade.
//!
//! Per family, in this order:
//!
//! 1. `ct status dnat <ip> saddr . oifname @own masquerade` — hairpin;
//! 2. `<ip> saddr . oifname @own return` — traffic staying on its bridge;
//! 3. `<ip> saddr @masq masquerade` — bridge networks leaving the host;
//! 4. `<ip> saddr @natpools <ip> daddr != @pools masquerade` — routed pools
//!    with outgoing NAT, unless the destination is in a routed pool.
//!
//! Rule 4 is Calico's `natOutgoing`: a routed container's address is routable
//! inside the cluster (every host has routes to every other host's blocks), so
//! pod-to-pod traffic, on one host or across hosts, keeps its source; only
//! traffic to the rest of the world leaves behind the host's address. Bridge
//! subnets and routed pools are disjoint (IPAM refuses overlapping pools), so
//! rules 1–3 never see a routed source and rule 4 never sees a bridge source:
//! their order among each other does not matter.

use crate::expr::{Base, CmpOp, Expr, IPS_DST_NAT, MetaKey, REG0, Verdict, ct_bits};
use crate::layout::{Fam, Rule, nfproto_is};

const CHAIN: &str = "postrouting";

/// `<ip> saddr` (or `daddr` when `dst`) into REG0.
fn addr(f: Fam, dst: bool) -> Expr {
    let (saddr, daddr) = f.saddr_daddr();
    Expr::Payload {
        base: Base::Network,
        offset: if dst { daddr } else { saddr },
        len: f.addr_len() as u32,
        dreg: REG0,
    }
}

/// `<ip> saddr . oifname` as a key from REG0 on.
fn saddr_oifname(f: Fam) -> [Expr; 2] {
    [
        addr(f, false),
        Expr::Meta {
            key: MetaKey::OifName,
            dreg: REG0 + f.addr_len() as u32 / 4,
        },
    ]
}

fn lookup(set: &'static str) -> Expr {
    Expr::Lookup {
        set,
        sreg: REG0,
        dreg: None,
    }
}

/// Hairpin: a container reaching a published port of its own bridge must see
/// the host as the source, or the reply would go container to container and
/// skip the reverse DNAT.
fn hairpin(f: Fam) -> Rule {
    let mut exprs = nfproto_is(f).to_vec();
    exprs.extend(ct_bits(false, IPS_DST_NAT, true));
    exprs.extend(saddr_oifname(f));
    exprs.extend([lookup(f.own()), Expr::Masquerade]);
    let (ip, own) = (f.nft_name(), f.own());
    Rule {
        chain: CHAIN,
        exprs,
        text: format!("ct status dnat {ip} saddr . oifname @{own} masquerade"),
    }
}

/// Traffic of a subnet leaving through its own bridge keeps its source.
fn stay(f: Fam) -> Rule {
    let mut exprs = nfproto_is(f).to_vec();
    exprs.extend(saddr_oifname(f));
    exprs.extend([lookup(f.own()), Expr::Verdict(Verdict::Return)]);
    Rule {
        chain: CHAIN,
        exprs,
        text: format!("{} saddr . oifname @{} return", f.nft_name(), f.own()),
    }
}

/// Everything else from a masqueraded bridge subnet leaves behind the host's
/// address — except to a routed pool (or a cluster's prefix, which the node
/// adds to the same set): containers reaching pods, on this host or another
/// node of the cluster, keep their source address, as pods reaching pods do.
fn bridge_out(f: Fam) -> Rule {
    let mut exprs = nfproto_is(f).to_vec();
    exprs.extend([addr(f, false), lookup(f.masq())]);
    exprs.extend([
        addr(f, true),
        Expr::NotIn {
            set: f.pools(),
            sreg: REG0,
        },
        Expr::Masquerade,
    ]);
    let ip = f.nft_name();
    Rule {
        chain: CHAIN,
        exprs,
        text: format!(
            "{ip} saddr @{} {ip} daddr != @{} masquerade",
            f.masq(),
            f.pools()
        ),
    }
}

/// Routed pools with outgoing NAT: masquerade unless the destination is in
/// any routed pool (two set lookups whatever the number of pools).
fn pools_out(f: Fam) -> Rule {
    let mut exprs = nfproto_is(f).to_vec();
    exprs.extend([addr(f, false), lookup(f.natpools())]);
    exprs.extend([
        addr(f, true),
        Expr::NotIn {
            set: f.pools(),
            sreg: REG0,
        },
        Expr::Masquerade,
    ]);
    let ip = f.nft_name();
    let (nat, all) = (f.natpools(), f.pools());
    Rule {
        chain: CHAIN,
        exprs,
        text: format!("{ip} saddr @{nat} {ip} daddr != @{all} masquerade"),
    }
}

/// `127.0.0.0/8` as an address and a mask.
pub(crate) const LOOPBACK: ([u8; 4], [u8; 4]) = ([127, 0, 0, 0], [255, 0, 0, 0]);

/// `<ip> saddr` or `daddr` (`dst`) in `127.0.0.0/8`, into REG0.
pub(crate) fn in_loopback(dst: bool) -> [Expr; 3] {
    [
        addr(Fam::V4, dst),
        Expr::Bitwise {
            sreg: REG0,
            dreg: REG0,
            mask: LOOPBACK.1.to_vec(),
            xor: vec![0; 4],
        },
        Expr::Cmp {
            sreg: REG0,
            op: CmpOp::Eq,
            data: LOOPBACK.0.to_vec(),
        },
    ]
}

/// A host process reaching a published port on `127.0.0.1` was DNAT'ed in
/// output and now leaves through a bridge (whose `route_localnet` lets a
/// loopback source out): it leaves behind the bridge's address, so that the
/// container's reply comes back to something it can route to. IPv4 only: the
/// kernel never routes `::1` off the host.
pub(crate) fn loopback() -> Rule {
    let mut exprs = nfproto_is(Fam::V4).to_vec();
    exprs.extend(ct_bits(false, IPS_DST_NAT, true));
    exprs.extend(in_loopback(false));
    exprs.push(Expr::Masquerade);
    Rule {
        chain: CHAIN,
        exprs,
        text: "ct status dnat ip saddr 127.0.0.0/8 masquerade".into(),
    }
}

/// The postrouting rules of one family, in order.
pub(crate) fn postrouting(f: Fam) -> Vec<Rule> {
    vec![hairpin(f), stay(f), bridge_out(f), pools_out(f)]
}
