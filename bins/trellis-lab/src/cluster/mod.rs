//! `trellis-lab cluster`: cluster mode with the real daemons, in namespaces.
//!
//! trellis-controller runs on `ctl` (plaintext TCP on the underlay, a 5 s
//! lease); trellisd runs on h1, h2 and h3, joined to it. The controller gets
//! a routed pool with the cluster network `pods` and a bridge pool that
//! gives each node one /24 for its bridge network `web`. Every host then
//! runs one container in each, and every container requests every other one
//! and the external server: inside the cluster the server must see the
//! client's own address (host-gw routes, no NAT), outside the client's host
//! (masquerade).
//!
//! Teardown is the [`Lab`]'s drop, in order: servers, containers, nodes'
//! daemons, the controller, the temporary directory, the machines. SIGINT,
//! SIGTERM and SIGHUP are caught from the start, so a signal ends the run
//! through that same path rather than killing the process past it.

pub(crate) mod api;

use crate::daemon::{self, Binaries, Daemon};
use crate::matrix::{Matrix, Party, Place, Probe};
use anyhow::{Context, Result, anyhow};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use tokio::signal::unix::{Signal, SignalKind, signal};
use trellis_proto::v1 as pb;
use trellis_testlab::cluster::{CONTROLLER_IP, ClusterLab, HOST_IPS};
use trellis_testlab::{Netns, TcpServer, require_root, tcp_request};

/// The controller's TCP port on the underlay.
const CONTROLLER_PORT: u16 = 7443;
/// The port every lab server listens on.
pub(crate) const SERVER_PORT: u16 = 80;

/// SIGINT, SIGTERM and SIGHUP, caught for the lab's lifetime.
pub(crate) struct Stop(Vec<(Signal, &'static str)>);

impl Stop {
    /// Catches the signals from now on (their default action, death, no
    /// longer applies).
    pub(crate) fn install() -> Result<Self> {
        let kinds = [
            (SignalKind::interrupt(), "SIGINT"),
            (SignalKind::terminate(), "SIGTERM"),
            (SignalKind::hangup(), "SIGHUP"),
        ];
        let mut caught = Vec::new();
        for (kind, name) in kinds {
            caught.push((signal(kind).with_context(|| format!("catch {name}"))?, name));
        }
        Ok(Stop(caught))
    }

    /// Waits for one of the signals (also one that came earlier); its name.
    pub(crate) async fn wait(&mut self) -> &'static str {
        let [(int, a), (term, b), (hup, c)] = &mut self.0[..] else {
            unreachable!("three signals are caught")
        };
        tokio::select! {
            _ = int.recv() => a,
            _ = term.recv() => b,
            _ = hup.recv() => c,
        }
    }
}

/// A container of the lab.
struct Container {
    /// Its namespace.
    ns: Netns,
    /// What the matrix shows of it.
    party: Party,
}

/// Everything the lab made, removed on drop (see the module docs for the
/// order: fields drop in declaration order after [`Drop::drop`]).
struct Lab {
    servers: Vec<TcpServer>,
    containers: Vec<Container>,
    nodes: Vec<Daemon>,
    ctl: Option<Daemon>,
    dir: tempfile::TempDir,
    net: ClusterLab,
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.servers.clear();
        self.containers.clear();
        daemon::stop_all(&mut self.nodes);
        self.ctl = None;
    }
}

/// Runs the cluster lab; with `check`, exits after the matrix, else waits
/// for a signal first. An error if any pair was not as expected.
pub async fn run(check: bool) -> Result<()> {
    require_root();
    let bins = Binaries::find()?;
    let mut stop = Stop::install()?;
    println!(
        "building the cluster lab in namespaces: underlay, ctl {CONTROLLER_IP}, h1..h3 {}, router + external server 203.0.113.10",
        HOST_IPS.map(|ip| ip.to_string()).join(" ")
    );
    let mut lab = Lab {
        servers: Vec::new(),
        containers: Vec::new(),
        nodes: Vec::new(),
        ctl: None,
        net: ClusterLab::build(),
        dir: tempfile::Builder::new()
            .prefix("trellis-lab-")
            .tempdir()
            .context("a temporary directory")?,
    };
    let up = tokio::select! {
        biased;
        signal = stop.wait() => Err(signal),
        m = bring_up(&mut lab, &bins) => Ok(m),
    };
    let result = match up {
        Err(signal) => Err(anyhow!(
            "{signal} while the lab was being built: nothing checked"
        )),
        Ok(Err(e)) => {
            for d in lab.ctl.iter().chain(&lab.nodes) {
                let tail = d.log_tail();
                if !tail.is_empty() {
                    eprintln!("--- the end of {}'s log:\n{tail}", d.name);
                }
            }
            Err(e)
        }
        Ok(Ok(matrix)) => {
            println!("\n{}", matrix.render());
            if !check {
                print_hints(&lab);
                let signal = stop.wait().await;
                println!("\n{signal}");
            }
            let failed: Vec<String> = matrix.failures().into_iter().map(|f| f.0).collect();
            match failed.len() {
                0 => Ok(()),
                n => Err(anyhow!(
                    "{n} of {} pairs not as expected: {}",
                    matrix.probes.len(),
                    failed.join(", ")
                )),
            }
        }
    };
    println!("removing the lab: stopping the daemons, deleting the namespaces");
    drop(lab);
    println!("removed");
    result
}

/// Starts the daemons, defines the cluster, attaches the containers, starts
/// the servers and probes every pair.
async fn bring_up(lab: &mut Lab, bins: &Binaries) -> Result<Matrix> {
    start_daemons(lab, bins).await?;
    let ctl = lab.ctl.as_ref().expect("started").socket.clone();
    let mut ctl = pb::ControllerClient::new(trellis_proto::channel_unix(&ctl).await?);
    api::define(&mut ctl).await?;
    let mut agents = Vec::new();
    for node in &lab.nodes {
        agents.push(trellis_proto::connect_unix(&node.socket).await?);
    }
    for (i, agent) in agents.iter_mut().enumerate() {
        api::wait_for_pods(agent, i).await?;
        let web = api::create_web(agent).await?;
        println!(
            "h{}: serves `pods`; created `web`, subnet {web} from web-v4",
            i + 1
        );
    }
    for (i, agent) in agents.iter_mut().enumerate() {
        for (prefix, network, what) in
            [("p", "pods", "pods (routed)"), ("w", "web", "web (bridge)")]
        {
            let name = format!("{prefix}{}", i + 1);
            let ns = Netns::new(&name);
            let addr = api::attach(agent, network, &name, &ns).await?;
            let place = Place::Node {
                name: format!("h{}", i + 1),
                addr: HOST_IPS[i].into(),
            };
            let what = what.to_owned();
            let party = Party {
                name,
                addr,
                what,
                place,
            };
            lab.containers.push(Container { ns, party });
        }
    }
    api::wait_for_routes(&lab.net.hosts, &mut ctl).await?;
    println!("every node routes every other node's blocks via that node");
    for c in &lab.containers {
        let addr = SocketAddr::new(c.party.addr, SERVER_PORT);
        lab.servers
            .push(TcpServer::start(&c.ns, addr, &c.party.name));
    }
    let ext = lab.net.external_server(SERVER_PORT);
    let mut parties: Vec<Party> = lab.containers.iter().map(|c| c.party.clone()).collect();
    parties.push(Party {
        name: "ext".into(),
        addr: ext.addr().ip(),
        what: "external server".into(),
        place: Place::Outside,
    });
    lab.servers.push(ext);
    let probes = probe(&lab.containers, &parties);
    Ok(Matrix { parties, probes })
}

/// The controller on `ctl`, then trellisd on every host, each answering.
async fn start_daemons(lab: &mut Lab, bins: &Binaries) -> Result<()> {
    let dir = lab.dir.path().to_path_buf();
    lab.ctl = Some(start_controller(&lab.net.ctl, &dir, bins).await?);
    // Outside the defaults: a trellisd.toml of this machine must not apply.
    let config = |_: usize| String::new();
    lab.nodes = start_nodes(&lab.net.hosts, &dir, bins, config).await?;
    println!("trellisd up on h1, h2, h3, joined to the controller");
    Ok(())
}

/// trellis-controller on `ns`, plaintext TCP on the underlay, 5 s lease,
/// its files under `dir`; answering.
pub(crate) async fn start_controller(ns: &Netns, dir: &Path, bins: &Binaries) -> Result<Daemon> {
    let p = |name: &str| dir.join(name).display().to_string();
    let listen = format!("{CONTROLLER_IP}:{CONTROLLER_PORT}");
    let args: Vec<String> = vec![
        "--state-dir".into(),
        p("ctl"),
        "--socket".into(),
        p("ctl.sock"),
        "--listen".into(),
        listen.clone(),
        "--insecure-tcp".into(),
        "--lease-ttl".into(),
        "5s".into(),
    ];
    let (socket, log) = (dir.join("ctl.sock"), dir.join("ctl.log"));
    let mut ctl = Daemon::spawn("ctl", ns, &bins.controller, &args, socket, log)?;
    ctl.ready().await?;
    println!("trellis-controller up on ctl, gRPC on {listen} (plaintext, for the lab), lease 5 s");
    Ok(ctl)
}

/// trellisd on each of `hosts` (`h1`, `h2`, …), joined to the controller,
/// each with the config file `config(i)` written under `dir`; answering.
/// The daemons are returned as they start, so that a failure to answer
/// still stops the ones started.
pub(crate) async fn start_nodes(
    hosts: &[Netns],
    dir: &Path,
    bins: &Binaries,
    config: impl Fn(usize) -> String,
) -> Result<Vec<Daemon>> {
    let p = |name: &str| dir.join(name).display().to_string();
    let mut nodes = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        let name = format!("h{}", i + 1);
        let file = format!("{name}.toml");
        std::fs::write(dir.join(&file), config(i)).with_context(|| format!("write {file}"))?;
        let args: Vec<String> = vec![
            "--config".into(),
            p(&file),
            "--node".into(),
            name.clone(),
            "--state-dir".into(),
            p(&name),
            "--socket".into(),
            p(&format!("{name}.sock")),
            "--controller".into(),
            format!("http://{CONTROLLER_IP}:{CONTROLLER_PORT}"),
            "--node-address".into(),
            HOST_IPS[i].to_string(),
        ];
        let socket = dir.join(format!("{name}.sock"));
        let log = dir.join(format!("{name}.log"));
        nodes.push(Daemon::spawn(
            &name,
            host,
            &bins.trellisd,
            &args,
            socket,
            log,
        )?);
    }
    let mut failed = None;
    for node in &mut nodes {
        if let Err(e) = node.ready().await {
            failed = Some(e);
            break;
        }
    }
    match failed {
        None => Ok(nodes),
        Some(e) => {
            daemon::stop_all(&mut nodes);
            Err(e)
        }
    }
}

/// Every container requests every other party, all at once; what each
/// server said it saw.
fn probe(containers: &[Container], parties: &[Party]) -> Vec<Probe> {
    std::thread::scope(|s| {
        let running: Vec<_> = Matrix::pairs(parties)
            .into_iter()
            .map(|(from, to)| {
                let ns = &containers[from].ns;
                let addr = SocketAddr::new(parties[to].addr, SERVER_PORT);
                (from, to, s.spawn(move || tcp_request(ns, addr)))
            })
            .collect();
        running
            .into_iter()
            .map(|(from, to, handle)| {
                let seen = match handle.join() {
                    Ok(Ok(reply)) => client_address(&reply),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("the probe panicked".into()),
                };
                Probe { from, to, seen }
            })
            .collect()
    })
}

/// The client address in a [`TcpServer`]'s reply (`"p2 10.244.0.1:40312"`).
pub(crate) fn client_address(reply: &str) -> Result<IpAddr, String> {
    let peer = reply.rsplit(' ').next().unwrap_or_default();
    peer.parse::<SocketAddr>()
        .map(|a| a.ip())
        .map_err(|_| format!("a reply without an address: {reply:?}"))
}

/// How to look around while the lab is up.
fn print_hints(lab: &Lab) {
    let dir = lab.dir.path().display();
    let ns = |i: usize| lab.containers[i].ns.name().to_owned();
    println!("\nthe lab is up; Ctrl-C removes it. Meanwhile, as root:");
    println!(
        "  ip netns exec {} ip route     # a routed container: default via 169.254.1.1",
        ns(0)
    );
    println!(
        "  ip -n {} route show proto {}   # h1's routes to the other nodes' blocks",
        lab.net.hosts[0].name(),
        api::TRELLIS_ROUTE_PROTO
    );
    println!("  netctl --socket {dir}/h1.sock endpoint ls");
    println!("  netctl --controller {dir}/ctl.sock block ls");
    println!("  daemon logs: {dir}/{{ctl,h1,h2,h3}}.log");
    println!("namespaces:");
    println!("  ctl  {}", lab.net.ctl.name());
    for (i, host) in lab.net.hosts.iter().enumerate() {
        let on: Vec<String> = lab.containers[2 * i..2 * i + 2]
            .iter()
            .map(|c| format!("{} {}", c.party.name, c.ns.name()))
            .collect();
        println!(
            "  h{}   {}  containers: {}",
            i + 1,
            host.name(),
            on.join(", ")
        );
    }
    println!("  ext  {}  pc {}", lab.net.ext.name(), lab.net.pc.name());
}
