//! Configuration: flags (and their `TRELLIS_CONTROLLER_*` environment
//! variables) resolved into one validated [`Config`].
//!
//! There is no config file: the controller has few settings, and every one
//! of them is a flag. Errors name the flag at fault.

use anyhow::{Result, bail, ensure};
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where state (the redb file) lives by default.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/trellis-controller";
/// The default gRPC unix socket.
pub const DEFAULT_SOCKET: &str = "/run/trellis/controller.sock";
/// The name of the redb file inside the state directory.
pub const STORE_FILE: &str = "controller.redb";
/// The shortest lease accepted: nodes renew every third of it.
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(1);

/// The command line of trellis-controller.
#[derive(Debug, Parser)]
#[command(
    name = "trellis-controller",
    version,
    about = "The trellis cluster controller: pools, nodes and which node holds which address block"
)]
pub struct Args {
    /// Directory of the durable state (created 0700); the store is
    /// `controller.redb` inside.
    #[arg(long, env = "TRELLIS_CONTROLLER_STATE_DIR", value_name = "DIR",
          default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// The gRPC unix socket (mode 0600).
    #[arg(long, env = "TRELLIS_CONTROLLER_SOCKET", value_name = "PATH",
          default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Also serve gRPC on this TCP address (TLS required), e.g. 0.0.0.0:7444.
    #[arg(long, env = "TRELLIS_CONTROLLER_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// PEM certificate (chain) for TCP.
    #[arg(long, env = "TRELLIS_CONTROLLER_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TCP.
    #[arg(long, env = "TRELLIS_CONTROLLER_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: when given, TCP clients must present a certificate it
    /// signed, which names who they are (URI SAN `spiffe://trellis/node/<name>`
    /// or `spiffe://trellis/admin`; `scripts/certs` makes them), and a node
    /// may act only for itself. Without it every TCP client is the admin.
    #[arg(long, env = "TRELLIS_CONTROLLER_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Serve TCP in plaintext, without TLS (for labs only; flag only, on purpose).
    #[arg(long)]
    pub insecure_tcp: bool,
    /// How nodes' Agent APIs are read (`--node-ca`, `--node-client-cert`,
    /// `--node-client-key`).
    #[command(flatten)]
    pub nodes: crate::nodes::NodeArgs,
    /// A node not heard from for this long is dead: seconds, or a number with
    /// a unit (`1500ms`, `15s`, `2m`, `1h`); at least 1 s.
    #[arg(long, env = "TRELLIS_CONTROLLER_LEASE_TTL", value_name = "DURATION",
          default_value = "15s", value_parser = parse_duration)]
    pub lease_ttl: Duration,
    /// How long after its lease lapsed a dead node's blocks go back to their
    /// pools (same syntax; 0 gives them back as soon as the node is dead).
    #[arg(long, env = "TRELLIS_CONTROLLER_GRACE", value_name = "DURATION",
          default_value = "10m", value_parser = parse_duration)]
    pub grace: Duration,
    /// Where the state lives: `redb` (a file in --state-dir; one
    /// controller) or `etcd://HOST:PORT[,HOST:PORT…]` (etcd members: the
    /// controller runs as several replicas, one leader elected through an
    /// etcd lease, the others refusing calls with UNAVAILABLE naming it).
    #[arg(
        long,
        env = "TRELLIS_CONTROLLER_STORE",
        value_name = "STORE",
        default_value = "redb"
    )]
    pub store: String,
    /// With etcd: the key prefix of this cluster's state, so that several
    /// trellis clusters can share one etcd.
    #[arg(
        long,
        env = "TRELLIS_CONTROLLER_ETCD_PREFIX",
        value_name = "PREFIX",
        default_value = "trellis"
    )]
    pub etcd_prefix: String,
    /// With etcd: this replica's name, unique among the replicas [default:
    /// the host name].
    #[arg(long, env = "TRELLIS_CONTROLLER_NAME", value_name = "NAME")]
    pub name: Option<String>,
    /// With etcd: the address nodes reach this replica at, as they list it
    /// in trellisd's --controller (`https://10.1.253.2:7443`); followers
    /// name the leader by it, so clients move there [default: derived from
    /// --listen].
    #[arg(long, env = "TRELLIS_CONTROLLER_ADVERTISE_URL", value_name = "URL")]
    pub advertise_url: Option<String>,
    /// With etcd: the leader holds office with an etcd lease of this time to
    /// live, renewed every third of it; a leader that dies is replaced after
    /// at most this long (same syntax as --lease-ttl; at least 2 s).
    #[arg(long, env = "TRELLIS_CONTROLLER_LEADER_TTL", value_name = "DURATION",
          default_value = "3s", value_parser = parse_duration)]
    pub leader_ttl: Duration,
    /// Unary calls under way at once, across the unix socket and TCP; more
    /// are answered UNAVAILABLE at once ("trellis-controller is busy"), so a
    /// flood costs bounded memory and the client retries.
    #[arg(
        long,
        env = "TRELLIS_CONTROLLER_MAX_IN_FLIGHT",
        value_name = "N",
        default_value = "1024"
    )]
    pub max_in_flight: std::num::NonZeroUsize,
    /// Watch streams open at once (each node keeps one): more are refused
    /// UNAVAILABLE, and the node retries.
    #[arg(
        long,
        env = "TRELLIS_CONTROLLER_MAX_WATCHES",
        value_name = "N",
        default_value = "8192"
    )]
    pub max_watches: std::num::NonZeroUsize,
    /// Log format.
    #[arg(
        long,
        env = "TRELLIS_CONTROLLER_LOG_FORMAT",
        value_enum,
        default_value = "human"
    )]
    pub log_format: LogFormat,
    /// Log filter: a level or tracing directives (`info,trellis_cluster=debug`).
    #[arg(long, env = "RUST_LOG", value_name = "FILTER", default_value = "info")]
    pub log_level: String,
}

/// How log lines are written (to stderr), as every trellis daemon's.
pub use trellis_daemon::LogFormat;

/// The resolved, validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Directory of the durable state.
    pub state_dir: PathBuf,
    /// The gRPC unix socket.
    pub socket: PathBuf,
    /// The optional TCP listener.
    pub tcp: Option<Tcp>,
    /// How nodes' Agent APIs are read.
    pub nodes: crate::nodes::NodeTls,
    /// Lease time to live.
    pub lease_ttl: Duration,
    /// Grace after a lease lapsed before a dead node's blocks go back.
    pub grace: Duration,
    /// Log format.
    pub log_format: LogFormat,
    /// An `EnvFilter` directive string.
    pub log_level: String,
    /// Where the state lives.
    pub store: Store,
    /// The limits on calls under way.
    pub limits: trellis_daemon::limit::CallLimits,
}

/// Where the controller's state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// A redb file in the state directory: one controller.
    Redb,
    /// etcd: replicas with an elected leader.
    Etcd(Etcd),
}

/// The etcd store and this replica's part in the election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Etcd {
    /// The members' client URLs (`http://host:port`).
    pub endpoints: Vec<String>,
    /// The key prefix of this cluster's state.
    pub prefix: String,
    /// This replica's name.
    pub name: String,
    /// The address clients reach this replica at.
    pub advertise_url: String,
    /// The leader lease's time to live.
    pub leader_ttl: Duration,
}

/// The shortest leader lease accepted (etcd's own minimum is 1.5 s).
pub const MIN_LEADER_TTL: Duration = Duration::from_secs(2);

/// gRPC over TCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tcp {
    /// The address to bind.
    pub listen: SocketAddr,
    /// TLS material; `None` only with `--insecure-tcp`.
    pub tls: Option<Tls>,
}

/// Paths of the TLS material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA bundle that client certificates must chain to.
    pub client_ca: Option<PathBuf>,
}

impl Config {
    /// Whether TCP clients are identified by their certificates
    /// (`--tls-client-ca`); otherwise every TCP client is the admin.
    pub fn identifies_tcp_clients(&self) -> bool {
        let tls = self.tcp.as_ref().and_then(|t| t.tls.as_ref());
        tls.is_some_and(|t| t.client_ca.is_some())
    }

    /// Validates `args`.
    pub fn resolve(args: Args) -> Result<Self> {
        ensure!(
            args.lease_ttl >= MIN_LEASE_TTL,
            "--lease-ttl {:?} is shorter than {MIN_LEASE_TTL:?}",
            args.lease_ttl
        );
        trellis_daemon::logging::filter(&args.log_level)?;
        let tcp = resolve_tcp(&args)?;
        let store = resolve_store(&args, tcp.as_ref())?;
        let nodes = crate::nodes::NodeTls::resolve(&args)?;
        Ok(Config {
            nodes,
            store,
            tcp,
            state_dir: args.state_dir,
            socket: args.socket,
            lease_ttl: args.lease_ttl,
            grace: args.grace,
            log_format: args.log_format,
            log_level: args.log_level,
            limits: trellis_daemon::limit::CallLimits {
                calls: args.max_in_flight,
                watches: args.max_watches,
            },
        })
    }

    /// The redb file inside the state directory.
    pub fn store_path(&self) -> PathBuf {
        self.state_dir.join(STORE_FILE)
    }
}

fn resolve_store(args: &Args, tcp: Option<&Tcp>) -> Result<Store> {
    if args.store == "redb" {
        ensure!(
            args.name.is_none() && args.advertise_url.is_none(),
            "--name and --advertise-url are for replicas on etcd (--store etcd://…)"
        );
        return Ok(Store::Redb);
    }
    let Some(list) = args.store.strip_prefix("etcd://") else {
        bail!(
            "--store {:?}: expected `redb` or `etcd://HOST:PORT[,HOST:PORT…]`",
            args.store
        );
    };
    let mut endpoints = Vec::new();
    for hp in list.split(',').map(str::trim) {
        ensure!(
            !hp.is_empty()
                && !hp.contains('/')
                && hp
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()),
            "--store {:?}: {hp:?} is not HOST:PORT",
            args.store
        );
        endpoints.push(format!("http://{hp}"));
    }
    ensure!(
        args.leader_ttl >= MIN_LEADER_TTL,
        "--leader-ttl {:?} is shorter than {MIN_LEADER_TTL:?}",
        args.leader_ttl
    );
    let name = match &args.name {
        Some(n) => n.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .map_err(|e| anyhow::anyhow!("--name not given and the host name unreadable: {e}"))?,
    };
    trellis_types::NodeName::parse("--name", &name)?;
    let advertise_url = match (&args.advertise_url, tcp) {
        (Some(u), _) => {
            ensure!(
                u.starts_with("https://") || u.starts_with("http://"),
                "--advertise-url {u:?}: expected https://HOST:PORT or http://HOST:PORT"
            );
            u.clone()
        }
        (None, Some(t)) if !t.listen.ip().is_unspecified() => {
            let scheme = if t.tls.is_some() { "https" } else { "http" };
            format!("{scheme}://{}", t.listen)
        }
        (None, _) => bail!(
            "--advertise-url is needed with etcd: the address nodes reach this replica at \
             (it cannot be derived from an unspecified or missing --listen)"
        ),
    };
    ensure!(
        !args.etcd_prefix.is_empty() && trellis_store::check_key(&args.etcd_prefix).is_ok(),
        "--etcd-prefix {:?}: a non-empty key path without leading or trailing '/'",
        args.etcd_prefix
    );
    Ok(Store::Etcd(Etcd {
        endpoints,
        prefix: args.etcd_prefix.clone(),
        name,
        advertise_url,
        leader_ttl: args.leader_ttl,
    }))
}

fn resolve_tcp(args: &Args) -> Result<Option<Tcp>> {
    let (cert, key, client_ca) = (&args.tls_cert, &args.tls_key, &args.tls_client_ca);
    let Some(listen) = args.listen else {
        ensure!(
            cert.is_none() && key.is_none() && client_ca.is_none(),
            "TLS files are given but no TCP listen address is (--listen)"
        );
        ensure!(
            !args.insecure_tcp,
            "--insecure-tcp given without a TCP listen address (--listen)"
        );
        return Ok(None);
    };
    let tls = match (cert, key) {
        (Some(cert), Some(key)) => {
            ensure!(
                !args.insecure_tcp,
                "--insecure-tcp given with a TLS certificate and key"
            );
            Some(Tls {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: client_ca.clone(),
            })
        }
        (Some(_), None) => bail!("--tls-cert given without --tls-key"),
        (None, Some(_)) => bail!("--tls-key given without --tls-cert"),
        (None, None) if args.insecure_tcp => {
            ensure!(
                client_ca.is_none(),
                "--tls-client-ca makes no sense with --insecure-tcp"
            );
            None
        }
        (None, None) => bail!(
            "TCP listen address {listen} has no TLS: give --tls-cert and --tls-key, \
             or --insecure-tcp to serve plaintext"
        ),
    };
    Ok(Some(Tcp { listen, tls }))
}

/// A duration: whole seconds (`15`), or a whole number with a unit (`ms`,
/// `s`, `m`, `h`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let bad = || format!("{s:?} is not a duration like 15, 15s, 1500ms, 10m or 1h");
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let per_unit_ms: u64 = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(bad()),
    };
    n.checked_mul(per_unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{s:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(argv: &[&str]) -> Result<Config> {
        let argv = std::iter::once("trellis-controller").chain(argv.iter().copied());
        Config::resolve(Args::try_parse_from(argv)?)
    }

    fn refused(argv: &[&str], says: &str) {
        let e = format!("{:#}", resolve(argv).unwrap_err());
        assert!(e.contains(says), "{argv:?}: {e}");
    }

    #[test]
    fn durations_take_seconds_or_a_unit() {
        let d = |s| parse_duration(s).unwrap();
        assert_eq!(d("15"), Duration::from_secs(15));
        assert_eq!(d("15s"), Duration::from_secs(15));
        assert_eq!(d("1500ms"), Duration::from_millis(1500));
        assert_eq!(d("10m"), Duration::from_secs(600));
        assert_eq!(d("1h"), Duration::from_secs(3600));
        for bad in ["", "s", "1.5s", "-1", "10 days", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn defaults() {
        let c = resolve(&[]).unwrap();
        assert_eq!(
            c.store_path(),
            PathBuf::from(DEFAULT_STATE_DIR).join(STORE_FILE)
        );
        assert_eq!(c.socket, PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(
            (c.lease_ttl, c.grace),
            (
                trellis_cluster::DEFAULT_LEASE_TTL,
                trellis_cluster::DEFAULT_GRACE
            )
        );
        assert_eq!((c.tcp, c.log_format), (None, LogFormat::Human));
        assert_eq!((c.limits.calls.get(), c.limits.watches.get()), (1024, 8192));
        let c = resolve(&["--max-in-flight=8", "--max-watches=2"]).unwrap();
        assert_eq!((c.limits.calls.get(), c.limits.watches.get()), (8, 2));
        assert!(resolve(&["--max-in-flight=0"]).is_err());
    }

    #[test]
    fn tcp_needs_tls_or_an_explicit_insecure_flag() {
        refused(&["--listen=127.0.0.1:1"], "has no TLS");
        refused(
            &["--listen=127.0.0.1:1", "--tls-cert=c"],
            "without --tls-key",
        );
        refused(&["--tls-cert=c", "--tls-key=k"], "no TCP listen address");
        refused(&["--insecure-tcp"], "without a TCP listen address");
        refused(
            &[
                "--listen=127.0.0.1:1",
                "--insecure-tcp",
                "--tls-client-ca=ca",
            ],
            "--tls-client-ca",
        );
        let c = resolve(&["--listen=127.0.0.1:1", "--insecure-tcp"]).unwrap();
        assert_eq!(c.tcp.unwrap().tls, None);
        let c = resolve(&["--listen=127.0.0.1:1", "--tls-cert=c", "--tls-key=k"]).unwrap();
        assert!(!c.identifies_tcp_clients());
        assert_eq!(c.tcp.unwrap().tls.unwrap().key, PathBuf::from("k"));
        let tls = ["--tls-cert=c", "--tls-key=k", "--tls-client-ca=ca"];
        let c = resolve(&[&["--listen=127.0.0.1:1"], &tls[..]].concat()).unwrap();
        assert!(c.identifies_tcp_clients());
    }

    #[test]
    fn leases_and_log_filters_are_checked() {
        refused(&["--lease-ttl=500ms"], "--lease-ttl");
        refused(&["--log-level=trellis=notalevel"], "log level");
        let c = resolve(&["--lease-ttl=3", "--grace=0"]).unwrap();
        assert_eq!(
            (c.lease_ttl, c.grace),
            (Duration::from_secs(3), Duration::ZERO)
        );
    }
}
