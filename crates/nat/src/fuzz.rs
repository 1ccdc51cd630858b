//! The decoders of the kernel's nf_tables replies, for the cargo-fuzz
//! targets in `fuzz/` to run on arbitrary bytes: no socket, no kernel, no
//! root. Not an API (hidden from the docs); nothing else calls it.

use crate::conn;
use crate::elems;
use crate::hostfw::{Admitted, diff, observe};
use crate::layout::Fam;
use crate::parse;
use crate::wire::{self, nlm};

/// Reads `datagram` as one receive of trellis's nf_tables socket through
/// every decoder the crate runs on what the kernel answers: the netlink
/// framing and `NLMSG_ERROR` with its extended ack (`conn`); each data
/// message's payload as set elements, and those as published ports (of
/// every address or of one), network ownership, bridge pairs and prefix
/// intervals (`parse`, `elems`), as a host chain and as a host rule
/// (`hostfw::observe`); then the host-firewall plan for `admitted` against
/// the chains and rules read (`hostfw::diff`), as the batch that would be
/// sent. Returns how many messages the datagram held.
pub fn replies(datagram: &[u8], admitted: &[Admitted]) -> usize {
    let mut observed = diff::Observed::default();
    let mut count = 0;
    for r in conn::replies(datagram) {
        count += 1;
        if r.ty == nlm::MSG_ERROR {
            let _ = conn::decode_error(&r);
            continue;
        }
        // What `Conn::request_full` makes of a data message.
        let family = r.payload.first().copied().unwrap_or(0);
        let payload = r.payload.get(wire::NFGENMSG_LEN..).unwrap_or(&[]);
        let found = parse::set_elems(payload);
        for f in Fam::ALL {
            for e in &found {
                let _ = elems::port_from_elem(f, false, e);
                let _ = elems::port_from_elem(f, true, e);
                let _ = elems::own_from_elem(f, e);
            }
            let _ = elems::prefixes_from_elems(f, &found);
        }
        for e in &found {
            let _ = elems::pass_from_elem(e);
        }
        match observe::chain(family, payload) {
            Ok(c) => observed.chains.push((c, Vec::new())),
            Err(why) => observed.unreadable.push(why),
        }
        if let Some(rule) = observe::rule(payload) {
            let _ = rule.drops_everything();
            if let Some((_, rules)) = observed.chains.last_mut() {
                rules.push(rule);
            }
        }
    }
    let plan = diff::plan(admitted, &observed);
    for c in &plan.chains {
        let _ = c.describe();
        let _ = wire::encode_batch(&c.messages(), 1);
    }
    count
}
