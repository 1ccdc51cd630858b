//! nf_tables expressions, as values, and their netlink encoding.
//!
//! A rule is a list of these, evaluated left to right by the kernel's small
//! register machine: loads (`meta`, `payload`, `ct`, `fib`) write registers,
//! `cmp`/`lookup` stop the rule when they do not match, and the last expression
//! acts (`nat`, `masq`, a verdict). Registers are the 32-bit ones
//! (`NFT_REG32_00` = 8 onwards) so that concatenations can be laid out word by
//! word, as nft(8) does.

use crate::wire::Attrs;

/// `NFT_REG32_00`: the first 32-bit data register.
pub(crate) const REG0: u32 = 8;
/// `NFT_REG_VERDICT`.
const REG_VERDICT: u32 = 0;

/// What a `meta` expression loads (`enum nft_meta_keys`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetaKey {
    /// `meta iifname`: 16 bytes, NUL padded.
    IifName = 6,
    /// `meta oifname`: 16 bytes, NUL padded.
    OifName = 7,
    /// `meta nfproto`: 1 byte (`NFPROTO_IPV4`, `NFPROTO_IPV6`).
    NfProto = 15,
    /// `meta l4proto`: 1 byte (IP protocol number).
    L4Proto = 16,
}

/// Where a `payload` load starts (`enum nft_payload_bases`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Base {
    /// The network header (IPv4/IPv6).
    Network = 1,
    /// The transport header (TCP/UDP...).
    Transport = 2,
}

/// A comparison operator (`enum nft_cmp_ops`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    /// `==`.
    Eq = 0,
    /// `!=`.
    Neq = 1,
}

/// A verdict (`enum nft_verdicts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// `NF_ACCEPT`.
    Accept,
    /// `NFT_RETURN`: back to the calling chain (ends the base chain: accept).
    Return,
    /// `NFT_JUMP`: into a regular chain.
    Jump(&'static str),
}

/// One expression of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expr {
    /// `meta <key>` into `dreg`.
    Meta { key: MetaKey, dreg: u32 },
    /// `len` bytes at `offset` of `base` into `dreg` (zero padded to a word).
    Payload {
        base: Base,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    /// Compare `sreg` with `data`.
    Cmp { sreg: u32, op: CmpOp, data: Vec<u8> },
    /// `dreg = (sreg & mask) ^ xor` over `mask.len()` bytes.
    Bitwise {
        sreg: u32,
        dreg: u32,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    /// `ct status` into `dreg` (4 bytes, host order).
    CtStatus { dreg: u32 },
    /// `fib daddr type` into `dreg` (4 bytes, host order, an `RTN_*` value).
    FibDaddrType { dreg: u32 },
    /// Look up `sreg` in `set`; with `dreg`, load the mapped data (a map).
    Lookup {
        set: &'static str,
        sreg: u32,
        dreg: Option<u32>,
    },
    /// Match when `sreg` is *not* in `set` (`!= @set`: a lookup with
    /// `NFT_LOOKUP_F_INV`).
    NotIn { set: &'static str, sreg: u32 },
    /// DNAT to the address in `reg_addr` and the port in `reg_proto`.
    Dnat {
        family: u8,
        reg_addr: u32,
        reg_proto: u32,
    },
    /// Masquerade behind the address of the outgoing interface.
    Masquerade,
    /// A verdict.
    Verdict(Verdict),
}

impl Expr {
    /// The kernel's name of the expression type (`NFTA_EXPR_NAME`).
    fn name(&self) -> &'static str {
        match self {
            Expr::Meta { .. } => "meta",
            Expr::Payload { .. } => "payload",
            Expr::Cmp { .. } => "cmp",
            Expr::Bitwise { .. } => "bitwise",
            Expr::CtStatus { .. } => "ct",
            Expr::FibDaddrType { .. } => "fib",
            Expr::Lookup { .. } | Expr::NotIn { .. } => "lookup",
            Expr::Dnat { .. } => "nat",
            Expr::Masquerade => "masq",
            Expr::Verdict(_) => "immediate",
        }
    }

    /// Writes the expression's `NFTA_EXPR_DATA` attributes.
    fn encode_data(&self, a: &mut Attrs) {
        match self {
            Expr::Meta { key, dreg } => {
                // NFTA_META_DREG, NFTA_META_KEY
                a.u32(1, *dreg).u32(2, *key as u32);
            }
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                // NFTA_PAYLOAD_DREG, _BASE, _OFFSET, _LEN
                a.u32(1, *dreg)
                    .u32(2, *base as u32)
                    .u32(3, *offset)
                    .u32(4, *len);
            }
            Expr::Cmp { sreg, op, data } => {
                // NFTA_CMP_SREG, _OP, _DATA
                a.u32(1, *sreg).u32(2, *op as u32).data(3, data);
            }
            Expr::Bitwise {
                sreg,
                dreg,
                mask,
                xor,
            } => {
                // NFTA_BITWISE_SREG, _DREG, _LEN, _MASK, _XOR
                a.u32(1, *sreg).u32(2, *dreg).u32(3, mask.len() as u32);
                a.data(4, mask).data(5, xor);
            }
            Expr::CtStatus { dreg } => {
                // NFTA_CT_DREG, NFTA_CT_KEY = NFT_CT_STATUS
                a.u32(1, *dreg).u32(2, 2);
            }
            Expr::FibDaddrType { dreg } => {
                // NFTA_FIB_DREG, NFTA_FIB_RESULT = NFT_FIB_RESULT_ADDRTYPE,
                // NFTA_FIB_FLAGS = NFTA_FIB_F_DADDR
                a.u32(1, *dreg).u32(2, 3).u32(3, 1 << 1);
            }
            Expr::Lookup { set, sreg, dreg } => {
                // NFTA_LOOKUP_SET, _SREG, _DREG
                a.str(1, set).u32(2, *sreg);
                if let Some(d) = dreg {
                    a.u32(3, *d);
                }
            }
            Expr::NotIn { set, sreg } => {
                // NFTA_LOOKUP_SET, _SREG, _FLAGS = NFT_LOOKUP_F_INV
                a.str(1, set).u32(2, *sreg).u32(5, 1);
            }
            Expr::Dnat {
                family,
                reg_addr,
                reg_proto,
            } => {
                // NFTA_NAT_TYPE = NFT_NAT_DNAT, _FAMILY, _REG_ADDR_MIN, _REG_PROTO_MIN.
                // The kernel derives NF_NAT_RANGE_MAP_IPS / _PROTO_SPECIFIED from
                // the presence of the register attributes.
                a.u32(1, 1).u32(2, u32::from(*family));
                a.u32(3, *reg_addr).u32(5, *reg_proto);
            }
            Expr::Masquerade => {}
            Expr::Verdict(v) => encode_verdict(v, a),
        }
    }
}

/// `immediate`: NFTA_IMMEDIATE_DREG = verdict register, NFTA_IMMEDIATE_DATA {
/// NFTA_DATA_VERDICT { NFTA_VERDICT_CODE, NFTA_VERDICT_CHAIN } }.
fn encode_verdict(v: &Verdict, a: &mut Attrs) {
    a.u32(1, REG_VERDICT);
    a.nest(2, |d| {
        d.nest(2, |code| match v {
            Verdict::Accept => {
                code.u32(1, 1); // NF_ACCEPT
            }
            Verdict::Return => {
                code.u32(1, -5i32 as u32); // NFT_RETURN
            }
            Verdict::Jump(chain) => {
                code.u32(1, -3i32 as u32).str(2, chain); // NFT_JUMP
            }
        });
    });
}

/// Encodes a rule's expressions as the content of `NFTA_RULE_EXPRESSIONS`.
pub(crate) fn encode_exprs(exprs: &[Expr], a: &mut Attrs) {
    for e in exprs {
        a.nest(crate::wire::NFTA_LIST_ELEM, |el| {
            el.str(1, e.name()); // NFTA_EXPR_NAME
            el.nest(2, |d| e.encode_data(d)); // NFTA_EXPR_DATA
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_endian = "little")]
    fn meta_l4proto_encodes_like_the_kernel_expects() {
        let mut a = Attrs::new();
        encode_exprs(
            &[Expr::Meta {
                key: MetaKey::L4Proto,
                dreg: REG0,
            }],
            &mut a,
        );
        #[rustfmt::skip]
        let want = [
            36, 0, 1, 0x80,                      // NFTA_LIST_ELEM (nested)
              9, 0, 1, 0, b'm', b'e', b't', b'a', 0, 0, 0, 0, // NFTA_EXPR_NAME "meta"
              20, 0, 2, 0x80,                    // NFTA_EXPR_DATA (nested)
                8, 0, 1, 0, 0, 0, 0, 8,          // NFTA_META_DREG = 8
                8, 0, 2, 0, 0, 0, 0, 16,         // NFTA_META_KEY = L4PROTO
        ];
        assert_eq!(a.0, want);
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn return_verdict_is_minus_five() {
        let mut a = Attrs::new();
        Expr::Verdict(Verdict::Return).encode_data(&mut a);
        #[rustfmt::skip]
        let want = [
            8, 0, 1, 0, 0, 0, 0, 0,              // NFTA_IMMEDIATE_DREG = verdict
            16, 0, 2, 0x80,                      // NFTA_IMMEDIATE_DATA
              12, 0, 2, 0x80,                    // NFTA_DATA_VERDICT
                8, 0, 1, 0, 0xff, 0xff, 0xff, 0xfb, // NFTA_VERDICT_CODE = -5
        ];
        assert_eq!(a.0, want);
    }
}
