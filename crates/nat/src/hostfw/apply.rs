//! [`HostFirewall`] over [`NftNat`]'s socket: read the host's chains, plan,
//! send one batch.

use super::diff::{self, ChainPlan, Observed, Plan, is_inet_forward};
use super::observe;
use super::rules::{self, family_name};
use super::{Admitted, HostFirewall};
use crate::conn::{Conn, Failure};
use crate::{Error, NftNat};
use async_trait::async_trait;

const ENOENT: i32 = 2;

fn error(op: &'static str, f: Failure) -> Error {
    match f {
        Failure::Io(source) => Error::Io { op, source },
        Failure::Kernel { errno, detail, .. } => Error::Kernel { op, errno, detail },
    }
}

/// Reads every base chain, and the rules of the forward chains of family
/// ip, ip6 and inet. Only the chain dump failing is an error.
fn observe_host(conn: &mut Conn) -> Result<Observed, Error> {
    let chains = conn
        .request_full(&rules::dump_chains())
        .map_err(|f| error("list the host's chains", f))?;
    let mut out = Observed::default();
    for (family, payload) in chains {
        let c = match observe::chain(family, &payload) {
            Ok(c) if c.hook.is_none() => continue,
            Ok(c) => c,
            Err(why) => {
                let fam = family_name(family);
                out.unreadable
                    .push(format!("a chain of family {fam}: {why}"));
                continue;
            }
        };
        if !is_inet_forward(&c) {
            out.chains.push((c, Vec::new()));
            continue;
        }
        match conn.request_full(&rules::dump_rules(&c.chain)) {
            Ok(replies) => {
                let seen = replies.iter().filter_map(|(_, p)| observe::rule(p));
                out.chains.push((c, seen.collect()));
            }
            // Deleted since the chain dump: nothing to amend.
            Err(Failure::Kernel { errno: ENOENT, .. }) => {}
            Err(f) => {
                let e = error("list rules", f);
                out.unreadable
                    .push(format!("the rules of {}: {e}", c.chain));
            }
        }
    }
    Ok(out)
}

/// Which chain of `chains` message `index` of their batch belongs to.
fn chain_of(chains: &[ChainPlan], index: usize) -> Option<usize> {
    let mut end = 0;
    chains.iter().position(|c| {
        end += c.delete.len() + c.insert.len();
        index < end
    })
}

/// Sends the plan's changes as one batch. A chain whose change the kernel
/// refuses is dropped with a warning and the rest is sent again; a stale
/// handle (the host's firewall reloaded meanwhile) asks for a fresh plan.
fn send(conn: &mut Conn, plan: Plan) -> Result<(Vec<String>, bool), Error> {
    let (mut pending, mut warnings) = (plan.chains, plan.warnings);
    while !pending.is_empty() {
        let msgs: Vec<_> = pending.iter().flat_map(ChainPlan::messages).collect();
        let (index, errno, detail) = match conn.batch(&msgs) {
            Ok(()) => break,
            Err(Failure::Kernel {
                index: Some(i),
                errno,
                detail,
            }) => (i, errno, detail),
            Err(f) => return Err(error("amend the host's forward chains", f)),
        };
        if errno == ENOENT {
            return Ok((warnings, true));
        }
        let Some(k) = chain_of(&pending, index) else {
            let e = Error::Kernel {
                op: "amend the host's forward chains",
                errno,
                detail,
            };
            return Err(e);
        };
        let c = pending.remove(k);
        let e = Error::Kernel {
            op: "an accept rule",
            errno,
            detail,
        };
        warnings.push(format!(
            "cannot amend {}, which drops forwarded traffic by policy: {e}",
            c.chain
        ));
    }
    Ok((warnings, false))
}

impl NftNat {
    fn admit_on(conn: &mut Conn, admitted: &[Admitted]) -> Result<Vec<String>, Error> {
        // Twice at most: a second plan only after the host's ruleset changed
        // under the first one.
        let mut last = Vec::new();
        for _ in 0..2 {
            let plan = diff::plan(admitted, &observe_host(conn)?);
            let (warnings, retry) = send(conn, plan)?;
            if !retry {
                return Ok(warnings);
            }
            last = warnings;
        }
        last.push(
            "the host's firewall changed while trellis amended it; the next reconcile tries again"
                .into(),
        );
        Ok(last)
    }
}

#[async_trait]
impl HostFirewall for NftNat {
    async fn admit(&self, admitted: &[Admitted]) -> Result<Vec<String>, Error> {
        let admitted = admitted.to_vec();
        self.run("amend the host's forward chains", move |conn| {
            Self::admit_on(conn, &admitted)
        })
        .await
    }

    async fn check_admitted(&self, admitted: &[Admitted]) -> Result<Vec<String>, Error> {
        let observed = self.run("list the host's chains", observe_host).await?;
        let plan = diff::plan(admitted, &observed);
        let mut out = plan.warnings;
        out.extend(plan.chains.iter().map(ChainPlan::describe));
        Ok(out)
    }
}
