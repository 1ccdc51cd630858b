//! The filter chains of trellis's table: bridge networks kept apart, and the
//! loopback door that published ports on `127.0.0.1` open kept shut.
//!
//! **Isolation, as Docker does it.** A container of one bridge network does
//! not reach the containers of another, unless the first network names the
//! second in its `reach`. The forward chain, in order:
//!
//! 1. `iifname . oifname @pass accept` — a bridge with itself (containers of
//!    one network, seen through br_netfilter), and the pairs `reach` allows;
//! 2. `ct state established,related accept` — replies of what was allowed;
//! 3. `iifname @internal drop`, 4. `oifname @internal drop` — an `internal`
//!    network reaches nothing off its bridge, and nothing reaches it;
//! 5. `ct status dnat accept` — published ports are public: anybody who can
//!    reach the host's address may use them, containers of other networks too;
//! 6. `iifname @bridges oifname @bridges drop` — bridge to bridge, otherwise.
//!
//! Traffic between a bridge network and anything that is not a bridge network
//! (the uplink, routed containers) is left alone: outgoing traffic is
//! masqueraded, and direct access from outside by routing (the seed's static
//! route) keeps working. Routed networks stay one flat routed space. The
//! chain's policy is accept, and it accepts nothing for anyone else: a host
//! firewall that drops forwarding is amended elsewhere, and a drop here wins
//! over any accept there.
//!
//! **Localhost, without CVE-2020-8558.** A port published on `127.0.0.1`
//! needs `route_localnet` on the bridges (the kernel drops loopback sources
//! leaving by other interfaces otherwise). That same switch lets a neighbour
//! on the bridge send to `127.0.0.1` and reach services bound to the host's
//! loopback. The input chain drops every packet to `127.0.0.0/8` that comes
//! from an interface other than `lo` and is neither a reply of a connection
//! the host made nor DNAT'ed — kube-proxy's fix, without its exemption for
//! loopback *sources* (which a neighbour can forge once `route_localnet` is
//! on).

use crate::expr::{
    CT_ESTABLISHED_RELATED, CmpOp, Expr, IPS_DST_NAT, MetaKey, REG0, Verdict, ct_bits,
};
use crate::layout::{BRIDGES, Fam, IFNAMSIZ, INTERNAL, PASS, Rule, nfproto_is};
use crate::masq::in_loopback;

/// The forward chain (filter hook, priority filter).
pub(crate) const FORWARD: &str = "forward";
/// The input chain (filter hook, priority filter).
pub(crate) const INPUT: &str = "input";

fn meta(key: MetaKey, dreg: u32) -> Expr {
    Expr::Meta { key, dreg }
}

fn lookup(set: &'static str) -> Expr {
    Expr::Lookup {
        set,
        sreg: REG0,
        dreg: None,
    }
}

fn rule(chain: &'static str, exprs: Vec<Expr>, text: &str) -> Rule {
    Rule {
        chain,
        exprs,
        text: text.to_owned(),
    }
}

/// The forward chain's rules, in order (see the module docs).
pub(crate) fn forward() -> Vec<Rule> {
    let words = IFNAMSIZ as u32 / 4;
    let accept = Expr::Verdict(Verdict::Accept);
    let drop = Expr::Verdict(Verdict::Drop);
    let mut established = ct_bits(true, CT_ESTABLISHED_RELATED, true).to_vec();
    established.push(accept.clone());
    let mut dnat = ct_bits(false, IPS_DST_NAT, true).to_vec();
    dnat.push(accept.clone());
    vec![
        rule(
            FORWARD,
            vec![
                meta(MetaKey::IifName, REG0),
                meta(MetaKey::OifName, REG0 + words),
                lookup(PASS),
                accept,
            ],
            "iifname . oifname @pass accept",
        ),
        rule(FORWARD, established, "ct state established,related accept"),
        rule(
            FORWARD,
            vec![meta(MetaKey::IifName, REG0), lookup(INTERNAL), drop.clone()],
            "iifname @internal drop",
        ),
        rule(
            FORWARD,
            vec![meta(MetaKey::OifName, REG0), lookup(INTERNAL), drop.clone()],
            "oifname @internal drop",
        ),
        rule(FORWARD, dnat, "ct status dnat accept"),
        rule(
            FORWARD,
            vec![
                meta(MetaKey::IifName, REG0),
                lookup(BRIDGES),
                meta(MetaKey::OifName, REG0),
                lookup(BRIDGES),
                drop,
            ],
            "iifname @bridges oifname @bridges drop",
        ),
    ]
}

/// The input chain's one rule: nothing but `lo`, replies and DNAT'ed traffic
/// reaches `127.0.0.0/8`.
pub(crate) fn input() -> Vec<Rule> {
    let mut lo = b"lo".to_vec();
    lo.resize(IFNAMSIZ, 0);
    let mut exprs = nfproto_is(Fam::V4).to_vec();
    exprs.extend([
        meta(MetaKey::IifName, REG0),
        Expr::Cmp {
            sreg: REG0,
            op: CmpOp::Neq,
            data: lo,
        },
    ]);
    exprs.extend(in_loopback(true));
    exprs.extend(ct_bits(true, CT_ESTABLISHED_RELATED, false));
    exprs.extend(ct_bits(false, IPS_DST_NAT, false));
    exprs.push(Expr::Verdict(Verdict::Drop));
    vec![rule(
        INPUT,
        exprs,
        "iifname != \"lo\" ip daddr 127.0.0.0/8 ct state ! established,related ct status ! dnat drop",
    )]
}
