//! The `bgp` subcommands.
//!
//! Addresses, communities and hold times are parsed here, so a malformed one
//! fails with exit code 2 before any connection is made; what only the
//! speaker can judge (reserved AS numbers, a local address of the wrong
//! family, the MD5 key's length) is refused by trellisd, whose message
//! names the field.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::parse::{self, Community};

/// `netctl bgp …`
#[derive(Debug, Subcommand)]
pub enum BgpCmd {
    /// List the node's BGP peers: session state, uptime, prefixes sent.
    Peers,
    /// Show a peer in detail: configuration, negotiated session, counters.
    #[command(visible_alias = "inspect")]
    Peer {
        /// The peer's address.
        #[arg(value_name = "ADDRESS")]
        address: IpAddr,
    },
    /// Show the prefixes the node exports and the routes each peer has.
    Routes {
        /// Only this peer's routes.
        #[arg(long, value_name = "ADDRESS")]
        peer: Option<IpAddr>,
    },
    /// Add a peer and start its session; trellisd keeps it across restarts.
    Add(BgpAdd),
    /// Remove peers added with `bgp add` (config-file peers are removed
    /// there); their routers drop the node's routes.
    #[command(visible_alias = "remove")]
    Rm {
        /// Addresses of peers.
        #[arg(value_name = "ADDRESS", required = true)]
        addresses: Vec<IpAddr>,
    },
}

/// `netctl bgp add`
#[derive(Debug, Args)]
pub struct BgpAdd {
    /// The peer's address.
    #[arg(value_name = "ADDRESS")]
    pub address: IpAddr,
    /// The peer's AS number.
    #[arg(
        long = "as",
        value_name = "ASN",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub remote_as: u32,
    /// The peer's TCP port (default 179).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// Wait for the peer to connect to the node's listener (trellisd's
    /// `[bgp] listen`) instead of connecting to it.
    #[arg(long, conflicts_with_all = ["port", "local_address"])]
    pub passive: bool,
    /// The address to connect from (default: the kernel's choice).
    #[arg(long, value_name = "IP")]
    pub local_address: Option<IpAddr>,
    /// The next hop of the IPv4 routes sent to the peer (default: the
    /// node's).
    #[arg(long, value_name = "IP")]
    pub next_hop_v4: Option<Ipv4Addr>,
    /// The next hop of the IPv6 routes sent to the peer (default: the
    /// node's).
    #[arg(long, value_name = "IP")]
    pub next_hop_v6: Option<Ipv6Addr>,
    /// A community on the routes sent to the peer, ASN:VALUE (default: the
    /// node's); repeat for several.
    #[arg(long = "community", value_name = "ASN:VALUE", value_parser = parse::community)]
    pub communities: Vec<Community>,
    /// The hold time offered to the peer, in seconds: 0 (no keepalives) or
    /// 3..=65535 (default: the node's).
    #[arg(long, value_name = "SECONDS", value_parser = parse::hold_time)]
    pub hold_time: Option<u16>,
    /// A file holding the peer's TCP MD5 key (RFC 2385), so that the key is
    /// never on a command line for `ps` to show; a trailing newline is not
    /// part of the key.
    #[arg(long, value_name = "PATH")]
    pub md5_password_file: Option<PathBuf>,
}

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;
