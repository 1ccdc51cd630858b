//! Configuration: a TOML file, overridden by flags (and their `TRELLISD_*`
//! environment variables), resolved into one validated [`Config`].
//!
//! Precedence, highest first: command-line flag, environment variable, the
//! file, the built-in default. The default file may be missing (defaults
//! apply); a file named with `--config` must exist. Every error names the
//! offending value and where it came from.

use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, ValueEnum};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

/// Where the config file is looked for when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/trellis/trellisd.toml";
/// Where state (the redb file) lives by default.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/trellis";
/// The default gRPC unix socket.
pub const DEFAULT_SOCKET: &str = "/run/trellis/trellisd.sock";
/// The name of the redb file inside the state directory.
pub const STORE_FILE: &str = "trellis.redb";
/// The default limit on gRPC calls under way at once.
pub const DEFAULT_MAX_IN_FLIGHT: NonZeroUsize = NonZeroUsize::new(512).unwrap();
/// The default limit on Watch streams open at once.
pub const DEFAULT_MAX_WATCHES: NonZeroUsize = NonZeroUsize::new(1024).unwrap();
/// The default pause between two convergences of the node, in seconds (as
/// kube-proxy's sync period).
pub const DEFAULT_RECONCILE_INTERVAL: u64 = 30;

/// The command line of trellisd.
#[derive(Debug, Parser)]
#[command(name = "trellisd", version, about = "The trellis node daemon")]
pub struct Args {
    /// The TOML config file; a missing default file means "all defaults".
    #[arg(long, env = "TRELLISD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// This node's name [default: the host name].
    #[arg(long, env = "TRELLISD_NODE")]
    pub node: Option<String>,
    /// Directory of the durable state (created 0700) [default: /var/lib/trellis].
    #[arg(long, env = "TRELLISD_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The gRPC unix socket (mode 0600) [default: /run/trellis/trellisd.sock].
    #[arg(long, env = "TRELLISD_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Also serve gRPC on this TCP address (TLS required).
    #[arg(long, env = "TRELLISD_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// PEM certificate (chain) for TCP.
    #[arg(long, env = "TRELLISD_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TCP.
    #[arg(long, env = "TRELLISD_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: when given, TCP clients must present a certificate it signed.
    #[arg(long, env = "TRELLISD_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Serve TCP in plaintext, without TLS (for labs only; flag only, on purpose).
    #[arg(long)]
    pub insecure_tcp: bool,
    /// Log format [default: human].
    #[arg(long, env = "TRELLISD_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter: a level or tracing directives (`info,trellis_agent=debug`) [default: info].
    #[arg(long, env = "RUST_LOG", value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Serve Prometheus metrics over HTTP on this address (e.g. 127.0.0.1:9464).
    #[arg(long, env = "TRELLISD_METRICS_ADDR", value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Turn IP forwarding on for trellis's networks (false: leave it to you).
    #[arg(long, env = "TRELLISD_HOST_FORWARDING", value_name = "BOOL")]
    pub host_forwarding: Option<bool>,
    /// Add accept rules for trellis's networks to the host's forward chains
    /// that drop by policy (false: leave the host firewall alone).
    #[arg(long, env = "TRELLISD_HOST_FIREWALL", value_name = "BOOL")]
    pub host_firewall: Option<bool>,
    /// Join the cluster of this controller: `unix:/PATH`, `https://HOST:PORT`
    /// (with --controller-ca) or `http://HOST:PORT` (labs); the replicas of
    /// an HA controller comma-separated (calls fail over between them).
    /// Without it the node stands alone.
    #[arg(long, env = "TRELLISD_CONTROLLER", value_name = "URL")]
    pub controller: Option<String>,
    /// PEM CA that signed the controller's certificate.
    #[arg(long, env = "TRELLISD_CONTROLLER_CA", value_name = "FILE")]
    pub controller_ca: Option<PathBuf>,
    /// PEM certificate of this node, for a controller that asks for one.
    #[arg(long, env = "TRELLISD_CONTROLLER_CERT", value_name = "FILE")]
    pub controller_cert: Option<PathBuf>,
    /// PEM private key of `--controller-cert`.
    #[arg(long, env = "TRELLISD_CONTROLLER_KEY", value_name = "FILE")]
    pub controller_key: Option<PathBuf>,
    /// This node's underlay address (IPv4 and/or IPv6, the flag once each):
    /// where the other nodes route this node's blocks. Required with
    /// --controller.
    #[arg(
        long = "node-address",
        env = "TRELLISD_NODE_ADDRESS",
        value_name = "IP",
        value_delimiter = ','
    )]
    pub node_addresses: Vec<std::net::IpAddr>,
    /// Where the controller reads this node's Agent API (registered with
    /// it): https://HOST:PORT [default: https://<node address>:<--listen
    /// port> when trellisd serves TCP with TLS; else none, and the
    /// controller cannot read this node].
    #[arg(long, env = "TRELLISD_AGENT_ADDRESS", value_name = "URL")]
    pub agent_address: Option<String>,
    /// Claim the next block of a pool when fewer free addresses than this
    /// remain in the node's blocks of it [default: 8].
    #[arg(long, env = "TRELLISD_CLAIM_AHEAD", value_name = "N")]
    pub claim_ahead: Option<u32>,
    /// Give back a block that has been empty this many seconds (never the
    /// node's last of a pool) [default: 600].
    #[arg(long, env = "TRELLISD_RELEASE_EMPTY_AFTER", value_name = "SECS")]
    pub release_empty_after: Option<u64>,
    /// The most gRPC calls served at once, unix socket and TCP together
    /// (health checks and reflection aside); one more is answered
    /// UNAVAILABLE at once [default: 512].
    #[arg(long, env = "TRELLISD_MAX_IN_FLIGHT", value_name = "N")]
    pub max_in_flight: Option<usize>,
    /// The most Watch streams open at once, counted apart from other calls;
    /// one more is answered UNAVAILABLE at once [default: 1024].
    #[arg(long, env = "TRELLISD_MAX_WATCHES", value_name = "N")]
    pub max_watches: Option<usize>,
    /// Converge the node again this many seconds after each convergence
    /// ends: kernel objects removed behind trellis's back are put back,
    /// orphans removed, endpoints of dead containers detached (0: only at
    /// start) [default: 30].
    #[arg(long, env = "TRELLISD_RECONCILE_INTERVAL", value_name = "SECS")]
    pub reconcile_interval: Option<u64>,
    /// Print the resolved configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
}

/// How log lines are written (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The config file's shape; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    node: Option<String>,
    state_dir: Option<PathBuf>,
    socket: Option<PathBuf>,
    #[serde(default)]
    tcp: FileTcp,
    #[serde(default)]
    log: FileLog,
    #[serde(default)]
    metrics: FileMetrics,
    #[serde(default)]
    host: FileHost,
    #[serde(default)]
    cluster: FileCluster,
    #[serde(default)]
    limits: FileLimits,
    #[serde(default)]
    reconcile: FileReconcile,
    bgp: Option<FileBgp>,
}

/// `[reconcile]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileReconcile {
    interval: Option<u64>,
}

/// `[limits]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    max_in_flight: Option<usize>,
    max_watches: Option<usize>,
}

/// `[bgp]`: present turns BGP export on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBgp {
    asn: u32,
    router_id: Option<std::net::Ipv4Addr>,
    hold_time: Option<u16>,
    graceful_restart: Option<u16>,
    listen: Option<SocketAddr>,
    next_hop_v4: Option<std::net::Ipv4Addr>,
    next_hop_v6: Option<std::net::Ipv6Addr>,
    #[serde(default)]
    communities: Vec<String>,
    #[serde(default)]
    peers: Vec<FilePeer>,
}

/// `[[bgp.peers]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePeer {
    address: std::net::IpAddr,
    asn: u32,
    port: Option<u16>,
    #[serde(default)]
    passive: bool,
    local_address: Option<std::net::IpAddr>,
    next_hop_v4: Option<std::net::Ipv4Addr>,
    next_hop_v6: Option<std::net::Ipv6Addr>,
    communities: Option<Vec<String>>,
    hold_time: Option<u16>,
    md5_password: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCluster {
    controller: Option<String>,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    #[serde(default)]
    node_addresses: Vec<std::net::IpAddr>,
    agent_address: Option<String>,
    claim_ahead: Option<u32>,
    release_empty_after: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHost {
    forwarding: Option<bool>,
    firewall: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTcp {
    listen: Option<SocketAddr>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLog {
    format: Option<LogFormat>,
    level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMetrics {
    listen: Option<SocketAddr>,
}

/// The resolved, validated configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Config {
    /// This node's name.
    pub node: String,
    /// Directory of the durable state.
    pub state_dir: PathBuf,
    /// The gRPC unix socket.
    pub socket: PathBuf,
    /// The optional TCP listener.
    pub tcp: Option<Tcp>,
    /// Logging.
    pub log: Log,
    /// Where Prometheus metrics are served, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// What trellis manages on the host beyond its own objects.
    pub host: Host,
    /// The cluster this node is a member of (`None`: standalone).
    pub cluster: Option<Cluster>,
    /// How many gRPC calls are served at once.
    pub limits: Limits,
    /// How often the node is converged after the start.
    pub reconcile: Reconcile,
    /// BGP export (`None`: off).
    pub bgp: Option<Bgp>,
}

/// Periodic convergence: the start-up reconcile run again, so that what is
/// removed or changed behind trellis's back while it runs comes back
/// without a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Reconcile {
    /// Seconds from the end of one convergence to the start of the next;
    /// 0: only the start-up one.
    pub interval: u64,
}

impl Reconcile {
    /// The pause between two convergences, if they repeat.
    pub fn every(&self) -> Option<std::time::Duration> {
        (self.interval > 0).then(|| std::time::Duration::from_secs(self.interval))
    }
}

/// How many gRPC calls trellisd serves at once, over all its listeners;
/// beyond them a call is answered UNAVAILABLE at once
/// (`trellis_daemon::limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Unary calls under way.
    pub max_in_flight: NonZeroUsize,
    /// Watch streams open.
    pub max_watches: NonZeroUsize,
}

impl From<Limits> for trellis_daemon::limit::CallLimits {
    fn from(l: Limits) -> Self {
        trellis_daemon::limit::CallLimits {
            calls: l.max_in_flight,
            watches: l.max_watches,
        }
    }
}

/// BGP export: the speaker's settings and the peers from the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bgp {
    /// The speaker's settings.
    #[serde(skip)]
    pub speaker: trellis_bgp::SpeakerConfig,
    /// The peers from the config file (changed there, not over gRPC).
    pub peers: Vec<trellis_bgp::PeerConfig>,
}

/// Membership of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cluster {
    /// The controller's address.
    pub controller: String,
    /// The CA of the controller's certificate (https).
    pub ca: Option<PathBuf>,
    /// This node's certificate and key (mutual TLS).
    pub identity: Option<(PathBuf, PathBuf)>,
    /// The node's IPv4 underlay address.
    pub address_v4: Option<std::net::Ipv4Addr>,
    /// The node's IPv6 underlay address.
    pub address_v6: Option<std::net::Ipv6Addr>,
    /// Where the controller reads this node's Agent API (`None`: it cannot).
    pub agent_address: Option<trellis_types::AgentAddress>,
    /// Claim ahead under this many free addresses.
    pub claim_ahead: u32,
    /// Give back blocks empty this many seconds.
    pub release_empty_after: u64,
}

/// Host-wide settings trellis manages (both on by default, as Docker does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Host {
    /// Turn `net.ipv4.ip_forward` (and IPv6 forwarding for IPv6 networks) on.
    pub forwarding: bool,
    /// Insert tagged accept rules into the host's dropping forward chains.
    pub firewall: bool,
}

/// gRPC over TCP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tcp {
    /// The address to bind.
    pub listen: SocketAddr,
    /// TLS material; `None` only with `--insecure-tcp`.
    pub tls: Option<Tls>,
}

/// Paths of the TLS material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tls {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA bundle that client certificates must chain to.
    pub client_ca: Option<PathBuf>,
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Log {
    /// Human or JSON.
    pub format: LogFormat,
    /// An `EnvFilter` directive string.
    pub level: String,
}

impl Config {
    /// Reads the file the arguments point at (or the default one) and
    /// resolves it with the arguments.
    pub fn load(args: &Args) -> Result<Self> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None if Path::new(DEFAULT_CONFIG).exists() => read_file(Path::new(DEFAULT_CONFIG))?,
            None => String::new(),
        };
        let origin = args.config.as_deref().unwrap_or(Path::new(DEFAULT_CONFIG));
        Self::resolve(args, &file, origin)
    }

    /// Resolves `args` over the TOML text `file` (read from `origin`).
    pub fn resolve(args: &Args, file: &str, origin: &Path) -> Result<Self> {
        let f: FileConfig =
            toml::from_str(file).with_context(|| format!("config file {}", origin.display()))?;
        let node = match args.node.clone().or(f.node) {
            Some(n) => n,
            None => hostname()?,
        };
        check_node(&node)?;
        let log = Log {
            format: args.log_format.or(f.log.format).unwrap_or(LogFormat::Human),
            level: args
                .log_level
                .clone()
                .or(f.log.level)
                .unwrap_or("info".into()),
        };
        tracing_subscriber::EnvFilter::try_new(&log.level)
            .with_context(|| format!("log level {:?} is not a valid filter", log.level))?;
        let tcp = resolve_tcp(args, f.tcp)?;
        let cluster = resolve_cluster(args, f.cluster, tcp.as_ref())?;
        let limits = resolve_limits(args, &f.limits)?;
        Ok(Config {
            node,
            state_dir: args
                .state_dir
                .clone()
                .or(f.state_dir)
                .unwrap_or(DEFAULT_STATE_DIR.into()),
            socket: args
                .socket
                .clone()
                .or(f.socket)
                .unwrap_or(DEFAULT_SOCKET.into()),
            tcp,
            log,
            metrics: args.metrics_addr.or(f.metrics.listen),
            host: Host {
                forwarding: args.host_forwarding.or(f.host.forwarding).unwrap_or(true),
                firewall: args.host_firewall.or(f.host.firewall).unwrap_or(true),
            },
            bgp: None,
            cluster,
            limits,
            reconcile: Reconcile {
                interval: args
                    .reconcile_interval
                    .or(f.reconcile.interval)
                    .unwrap_or(DEFAULT_RECONCILE_INTERVAL),
            },
        })
        .and_then(|mut c: Config| {
            c.bgp = f
                .bgp
                .map(|b| resolve_bgp(b, c.cluster.as_ref()))
                .transpose()?;
            Ok(c)
        })
    }

    /// The redb file inside the state directory.
    pub fn store_path(&self) -> PathBuf {
        self.state_dir.join(STORE_FILE)
    }

    /// What a TCP caller without a client certificate is: refused when TCP
    /// asks for client certificates (`--tls-client-ca`), the admin
    /// otherwise.
    pub fn tcp_clients(&self) -> trellis_grpc::identity::TcpClients {
        let tls = self.tcp.as_ref().and_then(|t| t.tls.as_ref());
        if tls.is_some_and(|t| t.client_ca.is_some()) {
            trellis_grpc::identity::TcpClients::Certified
        } else {
            trellis_grpc::identity::TcpClients::Trusted
        }
    }
}

fn read_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("read config file {}", path.display()))
}

fn resolve_tcp(args: &Args, f: FileTcp) -> Result<Option<Tcp>> {
    let cert = args.tls_cert.clone().or(f.tls_cert);
    let key = args.tls_key.clone().or(f.tls_key);
    let client_ca = args.tls_client_ca.clone().or(f.tls_client_ca);
    let Some(listen) = args.listen.or(f.listen) else {
        ensure!(
            cert.is_none() && key.is_none() && client_ca.is_none(),
            "TLS files are configured but no TCP listen address is (set tcp.listen or --listen)"
        );
        ensure!(
            !args.insecure_tcp,
            "--insecure-tcp given without a TCP listen address"
        );
        return Ok(None);
    };
    let tls = match (cert, key) {
        (Some(cert), Some(key)) => Some(Tls {
            cert,
            key,
            client_ca,
        }),
        (Some(_), None) => bail!("TLS certificate given without a key (tcp.tls_key, --tls-key)"),
        (None, Some(_)) => {
            bail!("TLS key given without a certificate (tcp.tls_cert, --tls-cert)")
        }
        (None, None) if args.insecure_tcp => {
            ensure!(
                client_ca.is_none(),
                "a TLS client CA makes no sense with --insecure-tcp"
            );
            None
        }
        (None, None) => bail!(
            "TCP listen address {listen} has no TLS: give a certificate and key \
             (--tls-cert/--tls-key or tcp.tls_cert/tcp.tls_key), or --insecure-tcp to serve plaintext"
        ),
    };
    Ok(Some(Tcp { listen, tls }))
}

fn resolve_limits(args: &Args, f: &FileLimits) -> Result<Limits> {
    let limit = |flag: Option<usize>, file: Option<usize>, names: [&str; 2], default| {
        let (n, name) = match (flag, file) {
            (Some(n), _) => (n, names[0]),
            (None, Some(n)) => (n, names[1]),
            (None, None) => return Ok(default),
        };
        NonZeroUsize::new(n)
            .with_context(|| format!("{name} 0: must be at least 1 (0 would refuse them all)"))
    };
    Ok(Limits {
        max_in_flight: limit(
            args.max_in_flight,
            f.max_in_flight,
            ["--max-in-flight", "limits.max_in_flight"],
            DEFAULT_MAX_IN_FLIGHT,
        )?,
        max_watches: limit(
            args.max_watches,
            f.max_watches,
            ["--max-watches", "limits.max_watches"],
            DEFAULT_MAX_WATCHES,
        )?,
    })
}

fn resolve_cluster(args: &Args, f: FileCluster, tcp: Option<&Tcp>) -> Result<Option<Cluster>> {
    let agent_address = args.agent_address.clone().or(f.agent_address);
    let ca = args.controller_ca.clone().or(f.ca);
    let cert = args.controller_cert.clone().or(f.cert);
    let key = args.controller_key.clone().or(f.key);
    let addresses = if args.node_addresses.is_empty() {
        f.node_addresses
    } else {
        args.node_addresses.clone()
    };
    let Some(controller) = args.controller.clone().or(f.controller) else {
        ensure!(
            ca.is_none()
                && cert.is_none()
                && key.is_none()
                && addresses.is_empty()
                && agent_address.is_none(),
            "cluster settings are given but no controller is (set cluster.controller or --controller)"
        );
        return Ok(None);
    };
    // One address, or the replicas of an HA controller, comma-separated.
    let urls: Vec<&str> = controller.split(',').map(str::trim).collect();
    let https = urls.first().is_some_and(|u| u.starts_with("https://"));
    for url in &urls {
        ensure!(
            url.starts_with("https://") || url.starts_with("http://") || url.starts_with("unix:"),
            "controller {url:?}: expected unix:/PATH, https://HOST:PORT or http://HOST:PORT \
             (several: comma-separated)"
        );
        ensure!(
            url.starts_with("https://") == https,
            "controller {controller:?}: the replicas' addresses mix https with others"
        );
    }
    ensure!(
        https == ca.is_some(),
        "controller {controller:?}: an https controller needs --controller-ca, and only an https one takes it"
    );
    let identity = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => bail!("--controller-cert and --controller-key go together"),
    };
    let mut v4 = None;
    let mut v6 = None;
    for ip in addresses {
        match ip {
            std::net::IpAddr::V4(a) if v4.is_none() => v4 = Some(a),
            std::net::IpAddr::V6(a) if v6.is_none() => v6 = Some(a),
            other => bail!("node address {other}: at most one IPv4 and one IPv6 address"),
        }
    }
    ensure!(
        v4.is_some() || v6.is_some(),
        "a cluster member needs its underlay address (--node-address or cluster.node_addresses): the other nodes route this node's blocks to it"
    );
    let agent_address = match agent_address {
        Some(a) => Some(trellis_types::AgentAddress::parse("--agent-address", &a)?),
        None => default_agent_address(tcp, v4, v6),
    };
    Ok(Some(Cluster {
        controller,
        ca,
        identity,
        address_v4: v4,
        address_v6: v6,
        agent_address,
        claim_ahead: args.claim_ahead.or(f.claim_ahead).unwrap_or(8),
        release_empty_after: args
            .release_empty_after
            .or(f.release_empty_after)
            .unwrap_or(600),
    }))
}

/// Where the controller reads this node by default: the TCP listener, when
/// it serves TLS, at its own address, or at the node's underlay address of
/// its family when it listens on every address (`0.0.0.0`, `::`). None
/// without TLS: a plaintext Agent API is registered only when asked for.
fn default_agent_address(
    tcp: Option<&Tcp>,
    v4: Option<std::net::Ipv4Addr>,
    v6: Option<std::net::Ipv6Addr>,
) -> Option<trellis_types::AgentAddress> {
    let tcp = tcp.filter(|t| t.tls.is_some())?;
    let listen = tcp.listen;
    let ip = match listen.ip() {
        ip if !ip.is_unspecified() => ip,
        std::net::IpAddr::V4(_) => v4?.into(),
        std::net::IpAddr::V6(_) => v6.map(Into::into).or(v4.map(Into::into))?,
    };
    let addr = SocketAddr::new(ip, listen.port());
    Some(trellis_types::AgentAddress::of(true, addr))
}

fn communities(field: &str, list: &[String]) -> Result<Vec<(u16, u16)>> {
    list.iter()
        .map(|c| {
            trellis_bgp::config::parse_community(c)
                .map_err(|why| anyhow::anyhow!("{field} {c:?}: {why}"))
        })
        .collect()
}

/// `[bgp]`: the router id defaults to the node's IPv4 underlay address and
/// the next hops to its underlay addresses (in a cluster); every value is
/// checked here, by the speaker's own rules, with the field named.
fn resolve_bgp(b: FileBgp, cluster: Option<&Cluster>) -> Result<Bgp> {
    let node_v4 = cluster.and_then(|c| c.address_v4);
    let node_v6 = cluster.and_then(|c| c.address_v6);
    let router_id = b.router_id.or(node_v4).or(b.next_hop_v4).context(
        "bgp.router_id: required (this node has no IPv4 underlay address to take it from)",
    )?;
    let mut speaker = trellis_bgp::SpeakerConfig::new(b.asn, router_id);
    speaker.hold_time = b.hold_time.unwrap_or(speaker.hold_time);
    speaker.graceful_restart = match b.graceful_restart {
        Some(0) => None,
        Some(t) => Some(t),
        None => speaker.graceful_restart,
    };
    speaker.listen = b.listen;
    speaker.next_hop_v4 = b.next_hop_v4.or(node_v4);
    speaker.next_hop_v6 = b.next_hop_v6.or(node_v6);
    speaker.communities = communities("bgp.communities", &b.communities)?;
    speaker.validate().map_err(|e| anyhow::anyhow!("bgp.{e}"))?;
    let mut peers = Vec::new();
    for (i, p) in b.peers.into_iter().enumerate() {
        let field = format!("bgp.peers[{i}]");
        let peer = trellis_bgp::PeerConfig {
            port: p.port.unwrap_or(179),
            passive: p.passive,
            local_address: p.local_address,
            next_hop_v4: p.next_hop_v4,
            next_hop_v6: p.next_hop_v6,
            communities: p
                .communities
                .map(|c| communities(&format!("{field}.communities"), &c))
                .transpose()?,
            hold_time: p.hold_time,
            md5_password: p.md5_password,
            ..trellis_bgp::PeerConfig::new(p.address, p.asn)
        };
        peer.validate()
            .map_err(|e| anyhow::anyhow!("{field}.{e}"))?;
        ensure!(
            !peer.passive || speaker.listen.is_some(),
            "{field}: a passive peer connects to bgp.listen, which is not set"
        );
        ensure!(
            !peers
                .iter()
                .any(|q: &trellis_bgp::PeerConfig| q.address == peer.address),
            "{field}.address {}: listed twice",
            peer.address
        );
        peers.push(peer);
    }
    Ok(Bgp { speaker, peers })
}

/// Node names are store keys (`nodes/<node>/…`): the one rule is
/// [`trellis_types::NodeName`]'s (1..=63 bytes of `[A-Za-z0-9_.-]`, not `.`
/// or `..`; a host name fits).
fn check_node(node: &str) -> Result<()> {
    trellis_types::NodeName::parse("node", node)?;
    Ok(())
}

fn hostname() -> Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("read the host name (give --node)")?;
    Ok(name.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(argv: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("trellisd").chain(argv.iter().copied())).unwrap()
    }

    #[test]
    fn node_names() {
        assert!(check_node("host-1.example_x").is_ok());
        assert!(check_node("").is_err());
        assert!(check_node("a b").is_err());
        assert!(check_node(&"a".repeat(64)).is_err());
    }

    #[test]
    fn host_knobs_default_on_and_flags_beat_the_file() {
        let file = "[host]\nforwarding = false\n";
        let c = Config::resolve(&args(&["--node=n"]), file, Path::new("f")).unwrap();
        assert_eq!(
            c.host,
            Host {
                forwarding: false,
                firewall: true
            }
        );
        let a = args(&[
            "--node=n",
            "--host-forwarding=true",
            "--host-firewall=false",
        ]);
        let c = Config::resolve(&a, file, Path::new("f")).unwrap();
        assert_eq!(
            c.host,
            Host {
                forwarding: true,
                firewall: false
            }
        );
    }

    #[test]
    fn bgp_takes_its_peers_and_names_each_bad_value() {
        let file = r#"
[bgp]
asn = 4200000002
router_id = "10.99.0.1"
hold_time = 9
listen = "0.0.0.0:179"
communities = ["65000:100"]
[[bgp.peers]]
address = "10.99.0.2"
asn = 65000
[[bgp.peers]]
address = "10.99.0.3"
asn = 65000
passive = true
md5_password = "s3cret"
"#;
        let c = Config::resolve(&args(&["--node=n"]), file, Path::new("f")).unwrap();
        let b = c.bgp.unwrap();
        assert_eq!(b.speaker.local_as, 4_200_000_002);
        assert_eq!(b.speaker.hold_time, 9);
        assert_eq!(b.speaker.graceful_restart, Some(120));
        assert_eq!(b.speaker.communities, vec![(65000, 100)]);
        assert_eq!(b.peers.len(), 2);
        assert!(b.peers[1].passive);
        assert_eq!(b.peers[0].port, 179);
        let none = Config::resolve(&args(&["--node=n"]), "", Path::new("f")).unwrap();
        assert!(none.bgp.is_none(), "no [bgp]: no BGP");

        for (bad, want) in [
            ("[bgp]\nasn = 65000\n", "bgp.router_id: required"),
            (
                "[bgp]\nasn = 0\nrouter_id = \"10.0.0.1\"\n",
                "bgp.local_as 0",
            ),
            (
                "[bgp]\nasn = 65000\nrouter_id = \"10.0.0.1\"\nhold_time = 2\n",
                "bgp.hold_time 2",
            ),
            (
                "[bgp]\nasn = 65000\nrouter_id = \"10.0.0.1\"\ncommunities = [\"x\"]\n",
                "bgp.communities \"x\"",
            ),
            (
                "[bgp]\nasn = 65000\nrouter_id = \"10.0.0.1\"\n[[bgp.peers]]\naddress = \"10.0.0.2\"\nasn = 1\npassive = true\n",
                "bgp.peers[0]: a passive peer",
            ),
            (
                "[bgp]\nasn = 65000\nrouter_id = \"10.0.0.1\"\n[[bgp.peers]]\naddress = \"224.0.0.1\"\nasn = 1\n",
                "bgp.peers[0].address 224.0.0.1",
            ),
            (
                "[bgp]\nasn = 65000\nrouter_id = \"10.0.0.1\"\n[[bgp.peers]]\naddress = \"10.0.0.2\"\nasn = 1\n[[bgp.peers]]\naddress = \"10.0.0.2\"\nasn = 2\n",
                "bgp.peers[1].address 10.0.0.2: listed twice",
            ),
        ] {
            let e = format!(
                "{:#}",
                Config::resolve(&args(&["--node=n"]), bad, Path::new("f")).unwrap_err()
            );
            assert!(e.starts_with(want), "{e:?} does not start with {want:?}");
        }
    }

    #[test]
    fn a_controller_may_be_several_replicas_of_one_scheme() {
        let a = args(&[
            "--node=n",
            "--controller=https://a:7443,https://b:7443",
            "--controller-ca=/ca",
            "--node-address=10.0.0.1",
        ]);
        let c = Config::resolve(&a, "", Path::new("f")).unwrap();
        assert_eq!(
            c.cluster.unwrap().controller,
            "https://a:7443,https://b:7443"
        );
        let a = args(&[
            "--node=n",
            "--controller=https://a:7443,http://b:7443",
            "--controller-ca=/ca",
            "--node-address=10.0.0.1",
        ]);
        let e = format!("{:#}", Config::resolve(&a, "", Path::new("f")).unwrap_err());
        assert!(e.contains("mix https"), "{e}");
        let a = args(&[
            "--node=n",
            "--controller=http://a:1,ftp://b",
            "--node-address=10.0.0.1",
        ]);
        let e = format!("{:#}", Config::resolve(&a, "", Path::new("f")).unwrap_err());
        assert!(e.contains("\"ftp://b\""), "{e}");
    }

    #[test]
    fn the_agent_address_defaults_to_the_tls_listener_at_the_node_address() {
        let cluster = |argv: &[&str]| {
            let base = [
                "--node=n",
                "--controller=http://c:1",
                "--node-address=10.0.0.1",
            ];
            let a = args(&[&base[..], argv].concat());
            let c = Config::resolve(&a, "", Path::new("f"));
            c.map(|c| c.cluster.unwrap().agent_address.map(String::from))
        };
        let tls = ["--tls-cert=/c", "--tls-key=/k", "--tls-client-ca=/ca"];
        let on = |listen: &'static str| [&[listen][..], &tls[..]].concat();
        assert_eq!(
            cluster(&on("--listen=0.0.0.0:7444")).unwrap().as_deref(),
            Some("https://10.0.0.1:7444")
        );
        assert_eq!(
            cluster(&on("--listen=10.0.0.9:7444")).unwrap().as_deref(),
            Some("https://10.0.0.9:7444")
        );
        assert_eq!(
            cluster(&on("--listen=[::]:7444")).unwrap().as_deref(),
            Some("https://10.0.0.1:7444")
        );
        // No TLS, or no TCP: nothing to register unless asked for.
        assert_eq!(cluster(&[]).unwrap(), None);
        assert_eq!(
            cluster(&["--listen=0.0.0.0:7444", "--insecure-tcp"]).unwrap(),
            None
        );
        assert_eq!(
            cluster(&["--agent-address=http://10.0.0.1:7444"])
                .unwrap()
                .as_deref(),
            Some("http://10.0.0.1:7444")
        );
        let file = "[cluster]\ncontroller = \"http://c:1\"\nnode_addresses = [\"10.0.0.1\"]\n\
                    agent_address = \"https://node.example:7444\"\n";
        let c = Config::resolve(&args(&["--node=n"]), file, Path::new("f")).unwrap();
        let a = c.cluster.unwrap().agent_address.unwrap();
        assert_eq!(a.as_str(), "https://node.example:7444");
        let e = format!(
            "{:#}",
            cluster(&["--agent-address=10.0.0.1:7444"]).unwrap_err()
        );
        assert!(e.starts_with("--agent-address \"10.0.0.1:7444\""), "{e}");
        let a = args(&["--node=n", "--agent-address=https://h:1"]);
        let e = format!("{:#}", Config::resolve(&a, "", Path::new("f")).unwrap_err());
        assert!(e.contains("no controller"), "{e}");
    }

    #[test]
    fn limits_default_flags_beat_the_file_and_0_is_refused_by_name() {
        let c = Config::resolve(&args(&["--node=n"]), "", Path::new("f")).unwrap();
        let want = Limits {
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_watches: DEFAULT_MAX_WATCHES,
        };
        assert_eq!(c.limits, want);
        let file = "[limits]\nmax_in_flight = 64\nmax_watches = 8\n";
        let c = Config::resolve(&args(&["--node=n"]), file, Path::new("f")).unwrap();
        assert_eq!(
            (c.limits.max_in_flight.get(), c.limits.max_watches.get()),
            (64, 8)
        );
        let a = args(&["--node=n", "--max-in-flight=2", "--max-watches=3"]);
        let c = Config::resolve(&a, file, Path::new("f")).unwrap();
        assert_eq!(
            (c.limits.max_in_flight.get(), c.limits.max_watches.get()),
            (2, 3)
        );
        for (argv, file, want) in [
            (
                &["--max-in-flight=0"][..],
                "",
                "--max-in-flight 0: must be at least 1",
            ),
            (
                &["--max-watches=0"][..],
                "",
                "--max-watches 0: must be at least 1",
            ),
            (
                &[][..],
                "[limits]\nmax_in_flight = 0\n",
                "limits.max_in_flight 0",
            ),
            (
                &[][..],
                "[limits]\nmax_watches = 0\n",
                "limits.max_watches 0",
            ),
        ] {
            let a = args(&[&["--node=n"][..], argv].concat());
            let e = format!(
                "{:#}",
                Config::resolve(&a, file, Path::new("f")).unwrap_err()
            );
            assert!(e.starts_with(want), "{e:?} does not start with {want:?}");
        }
    }

    #[test]
    fn the_reconcile_interval_defaults_to_30_s_and_0_turns_it_off() {
        let c = Config::resolve(&args(&["--node=n"]), "", Path::new("f")).unwrap();
        assert_eq!(c.reconcile.interval, DEFAULT_RECONCILE_INTERVAL);
        assert_eq!(
            c.reconcile.every(),
            Some(std::time::Duration::from_secs(30))
        );
        let file = "[reconcile]\ninterval = 5\n";
        let c = Config::resolve(&args(&["--node=n"]), file, Path::new("f")).unwrap();
        assert_eq!(c.reconcile.interval, 5);
        let a = args(&["--node=n", "--reconcile-interval=0"]);
        let c = Config::resolve(&a, file, Path::new("f")).unwrap();
        assert_eq!((c.reconcile.interval, c.reconcile.every()), (0, None));
        let e = format!(
            "{:#}",
            Config::resolve(
                &args(&["--node=n"]),
                "[reconcile]\nevery = 5\n",
                Path::new("f")
            )
            .unwrap_err()
        );
        assert!(e.contains("unknown field `every`"), "{e}");
        let e = Args::try_parse_from(["trellisd", "--reconcile-interval=-1"]).unwrap_err();
        assert!(e.to_string().contains("'-1'"), "{e}");
    }

    #[test]
    fn client_ca_without_tls_is_refused() {
        let a = args(&["--node=n", "--listen=127.0.0.1:1", "--insecure-tcp"]);
        let err = Config::resolve(&a, "[tcp]\ntls_client_ca = \"/ca\"\n", Path::new("f"));
        assert!(format!("{:#}", err.unwrap_err()).contains("client CA"));
    }
}
