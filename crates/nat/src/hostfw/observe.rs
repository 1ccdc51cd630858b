//! Reading the host's chains and rules from nf_tables dumps. Pure: payloads
//! in, values out.

use super::rules::ChainRef;
use crate::expr::{Expr, encode_exprs};
use crate::parse::attrs;
use crate::wire::{Attrs, NFTA_LIST_ELEM};

/// A chain as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostChain {
    /// Where it is.
    pub(crate) chain: ChainRef,
    /// The hook number of a base chain (`None`: a regular chain).
    pub(crate) hook: Option<u32>,
    /// The policy of a base chain (`NF_DROP` = 0, `NF_ACCEPT` = 1).
    pub(crate) policy: Option<u32>,
}

/// What an expression of a rule does, as far as trellis needs to know:
/// enough to recognise its own rules and unconditional drops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExprView {
    /// `meta` loading this key.
    Meta(u32),
    /// `cmp` with this operator and data.
    Cmp(u32, Vec<u8>),
    /// `immediate` setting this verdict code.
    Verdict(i32),
    /// Any other expression, by name.
    Other(String),
}

/// A rule of a host chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SeenRule {
    /// Its handle (what a delete names).
    pub(crate) handle: u64,
    /// Its nft comment, if any.
    pub(crate) comment: Option<String>,
    /// Its expressions.
    pub(crate) exprs: Vec<ExprView>,
}

/// `NF_DROP`, as a policy or a verdict code.
pub(crate) const NF_DROP: u32 = 0;

fn find(buf: &[u8], kind: u16) -> Option<&[u8]> {
    attrs(buf).find(|(k, _)| *k == kind).map(|(_, v)| v)
}

fn be_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

fn string(b: &[u8]) -> String {
    String::from_utf8_lossy(b.strip_suffix(&[0]).unwrap_or(b)).into_owned()
}

/// Decodes one `NEWCHAIN` payload of a chain dump (after `nfgenmsg`). A
/// chain without a table or name is refused with what is missing.
pub(crate) fn chain(family: u8, payload: &[u8]) -> Result<HostChain, String> {
    // NFTA_CHAIN_TABLE, _NAME, _HOOK { NFTA_HOOK_HOOKNUM }, _POLICY
    let table = find(payload, 1).map(string).ok_or("no table name")?;
    let name = find(payload, 3).map(string).ok_or("no chain name")?;
    let hook = find(payload, 4).and_then(|h| find(h, 1)).and_then(be_u32);
    let policy = find(payload, 5).and_then(be_u32);
    Ok(HostChain {
        chain: ChainRef {
            family,
            table,
            name,
        },
        hook,
        policy,
    })
}

/// Decodes one `NEWRULE` payload of a rule dump (after `nfgenmsg`).
pub(crate) fn rule(payload: &[u8]) -> Option<SeenRule> {
    // NFTA_RULE_HANDLE, _EXPRESSIONS, _USERDATA
    let handle = u64::from_be_bytes(find(payload, 3)?.get(..8)?.try_into().ok()?);
    let exprs = find(payload, 4).map(exprs_of).unwrap_or_default();
    let comment = find(payload, 7).and_then(super::rules::comment_of);
    Some(SeenRule {
        handle,
        comment,
        exprs,
    })
}

/// Decodes the content of an `NFTA_RULE_EXPRESSIONS` list.
fn exprs_of(list: &[u8]) -> Vec<ExprView> {
    attrs(list)
        .filter(|(k, _)| *k == NFTA_LIST_ELEM)
        .map(|(_, el)| {
            let name = find(el, 1).map(string).unwrap_or_default();
            let data = find(el, 2).unwrap_or(&[]);
            view(&name, data).unwrap_or(ExprView::Other(name))
        })
        .collect()
}

fn view(name: &str, data: &[u8]) -> Option<ExprView> {
    match name {
        // NFTA_META_KEY
        "meta" => Some(ExprView::Meta(be_u32(find(data, 2)?)?)),
        // NFTA_CMP_OP, NFTA_CMP_DATA { NFTA_DATA_VALUE }
        "cmp" => {
            let op = be_u32(find(data, 2)?)?;
            Some(ExprView::Cmp(op, find(find(data, 3)?, 1)?.to_vec()))
        }
        // NFTA_IMMEDIATE_DATA { NFTA_DATA_VERDICT { NFTA_VERDICT_CODE } }
        "immediate" => {
            let code = find(find(find(data, 2)?, 2)?, 1)?;
            Some(ExprView::Verdict(be_u32(code)? as i32))
        }
        _ => None,
    }
}

/// How trellis's own expressions read back: encoded, then decoded, so that
/// the comparison with a dumped rule goes through the same decoder.
pub(crate) fn view_of(exprs: &[Expr]) -> Vec<ExprView> {
    let mut a = Attrs::new();
    encode_exprs(exprs, &mut a);
    exprs_of(&a.0)
}

impl SeenRule {
    /// Whether the rule drops or rejects every packet that reaches it: no
    /// expression but counters, logs and the verdict.
    pub(crate) fn drops_everything(&self) -> bool {
        let ends = match self.exprs.last() {
            Some(ExprView::Verdict(v)) => *v == NF_DROP as i32,
            Some(ExprView::Other(n)) => n == "reject",
            _ => false,
        };
        let rest = &self.exprs[..self.exprs.len().saturating_sub(1)];
        ends && rest
            .iter()
            .all(|e| matches!(e, ExprView::Other(n) if n == "counter" || n == "log"))
    }
}
