//! The command line: one subcommand per RPC of `trellis.v1.Agent`; those of
//! `trellis.v1.Bgp` are declared in [`crate::bgp::cli`] (under `bgp`), those
//! of `trellis.v1.Controller` in [`crate::cluster::cli`] (flattened in here).
//!
//! Every value with a syntax of its own is parsed here (see [`crate::parse`]),
//! so a malformed flag fails with exit code 2 before any connection is made.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

use crate::bgp::cli::BgpCmd;
use crate::cluster::cli::ControllerCmd;
use crate::parse::{self, Address, Keep, Publish};

/// The default unix socket of trellisd.
pub const DEFAULT_SOCKET: &str = trellis_client::DEFAULT_TRELLISD_SOCKET;

/// The default unix socket of the cluster controller.
pub const DEFAULT_CONTROLLER: &str = trellis_client::DEFAULT_CONTROLLER_SOCKET;

/// Drive trellisd, the trellis node daemon, and the cluster controller.
#[derive(Debug, Parser)]
#[command(name = "netctl", version, about, after_help = crate::exit::HELP)]
pub struct Cli {
    /// How to reach trellisd and the controller.
    #[command(flatten)]
    pub conn: Connection,
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where trellisd and the controller listen: unix sockets, or TCP endpoints
/// with TLS (one set of TLS options serves both).
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The unix socket of trellisd.
    #[arg(long, global = true, env = "TRELLIS_SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// A TCP endpoint instead of the socket, e.g. https://node1:7443.
    #[arg(long, global = true, env = "TRELLIS_ENDPOINT", value_name = "URL")]
    pub endpoint: Option<String>,
    /// The cluster controller (pool, cnet, node, block, ipam and cluster
    /// commands): unix:PATH, a socket path, or https://HOST:PORT; an HA
    /// controller's replicas comma-separated (netctl finds the leader).
    #[arg(
        long,
        global = true,
        env = "NETCTL_CONTROLLER",
        value_name = "URL",
        default_value = DEFAULT_CONTROLLER,
        value_parser = parse::address
    )]
    pub controller: Address,
    /// PEM file of the CA that signed the server's certificate (with an
    /// https:// --endpoint or --controller).
    #[arg(long, global = true, env = "TRELLIS_CA", value_name = "PATH")]
    pub ca: Option<PathBuf>,
    /// PEM client certificate, for a server that asks for one (trellisd's
    /// `--tls-client-ca`); with --key.
    #[arg(
        long,
        global = true,
        env = "TRELLIS_CERT",
        value_name = "PATH",
        requires = "key"
    )]
    pub cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(
        long,
        global = true,
        env = "TRELLIS_KEY",
        value_name = "PATH",
        requires = "cert"
    )]
    pub key: Option<PathBuf>,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// JSON (one object per line for `watch`).
    Json,
    /// YAML (one document per event for `watch`).
    Yaml,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list, inspect and remove networks.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Attach containers to networks, detach, list and inspect endpoints.
    #[command(subcommand)]
    Endpoint(EndpointCmd),
    /// Check that the kernel matches the record of an endpoint.
    Check(EndpointRef),
    /// Remove every endpoint that is not in the list of attachments to keep
    /// (with --network, of that network only).
    Gc(GcArgs),
    /// Show whether trellisd is ready, and why not.
    Status,
    /// Stream network and endpoint events until interrupted.
    Watch {
        /// Start with one event per existing network and endpoint.
        #[arg(long)]
        replay: bool,
    },
    /// List, inspect, add and remove the node's BGP peers; show their routes.
    #[command(subcommand)]
    Bgp(BgpCmd),
    /// Commands of the cluster controller (`--controller`).
    #[command(flatten)]
    Controller(ControllerCmd),
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `netctl network …`
#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// Create a network.
    Create(NetworkCreate),
    /// List networks.
    #[command(visible_alias = "list")]
    Ls,
    /// Show networks in detail.
    Inspect {
        /// Names of networks.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove networks (refused while endpoints are attached).
    #[command(visible_alias = "remove")]
    Rm {
        /// Names of networks.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// The two network modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// A bridge and one subnet, as Docker does.
    Bridge,
    /// A route per container and proxy-ARP, as Calico does.
    Routed,
}

/// `netctl network create`
#[derive(Debug, Args)]
pub struct NetworkCreate {
    /// The network's name.
    pub name: String,
    /// Bridge or routed.
    #[arg(long, value_enum, default_value_t = Mode::Bridge)]
    pub mode: Mode,
    /// A subnet (bridge: exactly one) or pool (routed: one per family).
    #[arg(long = "subnet", value_name = "CIDR")]
    pub subnets: Vec<String>,
    /// The bridge's address (bridge mode; default: the subnet's first host).
    #[arg(long, value_name = "IP")]
    pub gateway: Option<String>,
    /// The bridge's interface name (bridge mode).
    #[arg(long, value_name = "IFNAME")]
    pub bridge: Option<String>,
    /// Masquerade traffic leaving the host (the default).
    #[arg(long, overrides_with = "no_outgoing_nat")]
    pub outgoing_nat: bool,
    /// Do not masquerade traffic leaving the host.
    #[arg(long, overrides_with = "outgoing_nat")]
    pub no_outgoing_nat: bool,
    /// MTU of the bridge and veths (default: the kernel's).
    #[arg(long, value_parser = clap::value_parser!(u32).range(68..=65535))]
    pub mtu: Option<u32>,
    /// Cut the network off: its containers reach each other and the host
    /// only (bridge mode; Docker's `--internal`).
    #[arg(long)]
    pub internal: bool,
    /// Reach the containers from outside the host by their own addresses
    /// (bridge mode; no NAT, as with Docker's `gateway_mode_ipv4=routed`):
    /// the subnet is not masqueraded (implies `--no-outgoing-nat`) and is
    /// announced with the node's routed blocks. Routers need a route to it
    /// via this host.
    #[arg(long, conflicts_with_all = ["internal", "outgoing_nat"])]
    pub routable: bool,
    /// Another bridge network this one's containers may connect to (bridge
    /// networks are kept apart otherwise); repeat for several.
    #[arg(long, value_name = "NETWORK")]
    pub reach: Vec<String>,
    /// On a node in a cluster: take the subnet from this bridge pool of the
    /// controller (one subnet per node) instead of `--subnet`.
    #[arg(long, value_name = "POOL", conflicts_with_all = ["subnets", "gateway"])]
    pub subnet_pool: Option<String>,
}

impl NetworkCreate {
    /// Outgoing NAT is on unless `--no-outgoing-nat` came last or the
    /// network is `--routable` (whose traffic is never masqueraded).
    pub fn nat(&self) -> bool {
        !self.no_outgoing_nat && !self.routable
    }
}

/// `netctl endpoint …`
#[derive(Debug, Subcommand)]
pub enum EndpointCmd {
    /// Attach a container's network namespace to a network.
    Attach(Attach),
    /// Detach an endpoint (succeeds if it is unknown).
    Detach(EndpointRef),
    /// List endpoints, optionally filtered.
    #[command(visible_alias = "list")]
    Ls(EndpointFilter),
    /// Show an endpoint in detail.
    Inspect(EndpointRef),
}

/// `netctl endpoint attach`
#[derive(Debug, Args)]
pub struct Attach {
    /// The network to attach to.
    #[arg(long)]
    pub network: String,
    /// The container's id.
    #[arg(long)]
    pub container: String,
    /// The container's network namespace (/run/netns/x, /proc/PID/ns/net).
    #[arg(long, value_name = "PATH")]
    pub netns: String,
    /// The interface inside the container (default eth0).
    #[arg(long, default_value = "")]
    #[arg(hide_default_value = true)]
    pub ifname: String,
    /// Publish a port: HOST:CONTAINER[/tcp|udp], ranges as 8000-8001:80-81.
    #[arg(short, long = "publish", value_name = "SPEC", value_parser = parse::publish)]
    pub publish: Vec<Publish>,
    /// A fixed address (one per family of the network).
    #[arg(long = "ip", value_name = "IP")]
    pub ips: Vec<String>,
    /// A label KEY=VALUE.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse::label)]
    pub labels: Vec<(String, String)>,
}

/// An endpoint: a container and one of its interfaces.
#[derive(Debug, Args)]
pub struct EndpointRef {
    /// The container's id.
    pub container: String,
    /// The interface inside the container (default eth0).
    #[arg(long, default_value = "", hide_default_value = true)]
    pub ifname: String,
}

/// Filters of `endpoint ls`; every filter given must match.
#[derive(Debug, Args)]
pub struct EndpointFilter {
    /// Only endpoints on this network.
    #[arg(long)]
    pub network: Option<String>,
    /// Only endpoints of this container.
    #[arg(long)]
    pub container: Option<String>,
    /// Only endpoints with this label KEY=VALUE.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse::label)]
    pub labels: Vec<(String, String)>,
}

/// `netctl gc`: what to keep must be said, so that a forgotten flag never
/// removes every endpoint on the node.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).multiple(true).args(["keep", "keep_file", "all"])))]
pub struct GcArgs {
    /// An attachment to keep: CONTAINER[/IFNAME].
    #[arg(long = "keep", value_name = "CONTAINER[/IFNAME]", value_parser = parse::keep)]
    pub keep: Vec<Keep>,
    /// A file of attachments to keep, one CONTAINER[/IFNAME] per line.
    #[arg(long, value_name = "PATH")]
    pub keep_file: Option<PathBuf>,
    /// Remove every endpoint, as when nothing is to be kept.
    #[arg(long, conflicts_with_all = ["keep", "keep_file"])]
    pub all: bool,
    /// Judge only this network's endpoints; other networks' are left alone
    /// even when not kept (as a CNI GC of one network configuration).
    #[arg(long)]
    pub network: Option<String>,
}

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;
