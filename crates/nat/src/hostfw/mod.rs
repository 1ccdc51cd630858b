//! Letting trellis's forwarded traffic through the host's own firewall.
//!
//! # Why trellis writes outside its table
//!
//! In nftables every base chain registered at a hook sees the packet and each
//! must accept it: an `accept` in `inet trellis` does not override a
//! `policy drop` in another table's forward chain. A host whose firewall
//! drops forwarding by policy (iptables-nft's `ip filter FORWARD` after
//! `iptables -P FORWARD DROP`, Debian's `/etc/nftables.conf` with an `inet
//! filter forward` chain set to drop, ufw) therefore cuts every container off
//! the network. Docker's answer is to insert accept rules where the host's
//! firewall looks, into its filter FORWARD chain; trellis does the
//! equivalent, and nothing more:
//!
//! * **Only chains that drop by policy.** A base chain of family `ip`, `ip6`
//!   or `inet` at hook `forward` with `policy drop`, in any table but
//!   trellis's own, gets at its head, per bridge network,
//!   `iifname "<bridge>" accept` and `oifname "<bridge>" accept`, and, while
//!   routed networks exist, the same with the wildcard `"tr*"` (the host ends
//!   of routed veths). `ip` chains get the rules of IPv4 networks only, `ip6`
//!   chains those of IPv6 networks, `inet` chains all of them. Isolation
//!   between networks is enforced by drops in trellis's own table (a drop in
//!   any chain wins), so plain accepts here are enough.
//! * **Only what iptables can read.** `meta iifname`/`oifname` compared with a
//!   name (or a prefix, for the wildcard) and an `accept` verdict is what
//!   iptables-nft writes for `-i br -j ACCEPT`, so `iptables -S FORWARD` still
//!   lists the chain (as `-i br -m comment --comment trellis:web -j ACCEPT`).
//! * **Tagged, found again by tag.** Every rule carries an nft comment in its
//!   userdata, `trellis:<network>` (or `trellis:(routed)`; `(` cannot appear
//!   in a network name). trellis only ever deletes rules whose comment starts
//!   with `trellis:`, by handle; it never matches rules by shape.
//! * **Desired state, diff, one batch.** `rules` computes the rules as
//!   values (pure, golden-tested), `observe` reads the host's chains and
//!   rules from `NFT_MSG_GETCHAIN`/`GETRULE` dumps, `diff` compares them
//!   and lists what to delete and insert, and the sender applies it in one
//!   nfnetlink batch. A chain whose change the kernel refuses (a table
//!   another process owns, `NFT_TABLE_F_OWNER`) is left out and the rest is
//!   sent again, so one refusal does not hold back the other chains.
//! * **Re-asserted, not remembered.** A reload of the host firewall (`nft -f
//!   /etc/nftables.conf`, `iptables-restore`, `ufw reload`) flushes these
//!   rules; trellis puts them back at its next network change, reconcile or
//!   start-up, and its `Status` says meanwhile that they are missing.
//!
//! # What trellis does not amend, and says so
//!
//! These come back as warnings (shown by `Status`), never as errors: the
//! networks work on hosts that do not drop, and an operator may want the
//! firewall exactly as it is.
//!
//! * a forward chain whose policy is accept but whose last rule drops or
//!   rejects unconditionally: that is the operator's own policy language,
//!   not a default-deny policy, and trellis does not edit it;
//! * a `bridge` family chain at hook forward that drops by policy (it drops
//!   frames between containers on one bridge) and a `netdev` chain that drops
//!   by policy: trellis does not write into layer-2 filters;
//! * a chain that cannot be read back;
//! * a change the kernel refuses.

mod apply;
pub(crate) mod diff;
pub(crate) mod observe;
pub(crate) mod rules;

use crate::Error;
use async_trait::async_trait;
use trellis_types::IfName;

/// Comments of trellis's rules in the host's chains start with this.
pub const TAG_PREFIX: &str = "trellis:";

/// What trellis admits through the host's dropping forward chains.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Admitted {
    /// A bridge network: traffic in from and out to its bridge, tagged
    /// `trellis:<network>`.
    Bridge {
        /// The network's name (the tag).
        network: String,
        /// Its bridge.
        bridge: IfName,
        /// Whether the network has an IPv4 subnet (rules in `ip` chains).
        v4: bool,
        /// Whether the network has an IPv6 subnet (rules in `ip6` chains).
        v6: bool,
    },
    /// The host ends of routed veths (`tr*`), tagged `trellis:(routed)`.
    RoutedPorts {
        /// Whether a routed network has an IPv4 pool.
        v4: bool,
        /// Whether a routed network has an IPv6 pool.
        v6: bool,
    },
}

/// The host's firewall, as far as trellis's forwarded traffic is concerned.
///
/// A sibling of [`crate::Nat`] rather than part of it: it writes into other
/// tools' tables, not trellis's, and an agent configured to leave the host
/// firewall alone never calls it.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait HostFirewall: Send + Sync {
    /// Makes trellis's tagged rules in the host's dropping forward chains
    /// exactly those that `admitted` needs (none for an empty slice): inserts
    /// what is missing, deletes what is stale, in one batch. Returns what it
    /// could not do, as warnings; an error only when the host's chains cannot
    /// be read at all.
    async fn admit(&self, admitted: &[Admitted]) -> Result<Vec<String>, Error>;

    /// The same comparison without changing anything: a warning per chain
    /// that lacks trellis's rules or holds stale ones, and per chain that
    /// trellis cannot amend. For readiness reports, which must not write.
    async fn check_admitted(&self, admitted: &[Admitted]) -> Result<Vec<String>, Error>;
}
