//! trellis-controller, the cluster controller: `trellis-cluster`'s
//! [`Controller`] over a redb store, served over gRPC
//! (`trellis.v1.Controller`) by `trellis-grpc`'s controller edge, with the
//! lease sweeper running beside it.
//!
//! Design decisions:
//!
//! * **A thin binary.** Everything the controller decides lives in
//!   `trellis-cluster`, everything the wire needs in `trellis-grpc`; this
//!   crate opens the store, binds, runs the sweeper and waits for a signal.
//! * **One owner of the state.** The store is one redb file
//!   (`<state-dir>/controller.redb`), which redb locks: a second controller
//!   on the same directory fails to start instead of splitting the
//!   authority. Leases live in memory, so a restart gives every node a full
//!   lease again: a restart only ever delays a release, never hastens one.
//! * **No privileges needed.** The controller touches no kernel state; it
//!   runs as any user that owns its state directory and socket.
//! * **A daemon like trellisd.** The state directory, the socket's rules,
//!   logging, signals, TLS files and the drained shutdown are
//!   `trellis-daemon`'s, shared with trellisd.
//! * **The unix socket is the local front door**, mode 0600 as trellisd's;
//!   nodes reach the controller over TCP, which is refused without TLS
//!   unless `--insecure-tcp` says otherwise, explicitly.
//! * **Nodes are known by their certificates.** With `--tls-client-ca`,
//!   every TCP client shows a certificate naming a node or the admin
//!   (`trellis_grpc::identity`), and a node may act only for itself
//!   (`trellis_grpc::controller::access`); the unix socket is the admin.
//!   Without it, TCP trusts every client as the admin, as a lab may want,
//!   and the controller says so in a warning at start.
//! * **Servers take listeners and a shutdown future** ([`server::serve`]),
//!   as in mini-redis: `main` binds and waits for SIGTERM/SIGINT, and a
//!   clean stop turns health NOT_SERVING and ends open Watch streams before
//!   the servers drain.

pub mod config;
pub mod leader;
pub mod nodes;
pub mod server;

use anyhow::{Context, Result};
use config::Config;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use trellis_cluster::{Controller, Office};
use trellis_daemon::fs;
use trellis_grpc::identity::TcpClients;
use trellis_grpc::{ControllerService, ControllerServices};
use trellis_store::RedbStore;
use trellis_store_etcd::EtcdStore;

/// Runs the controller described by `cfg` until `shutdown` completes: opens
/// the store, binds, serves and sweeps leases, and removes the socket on
/// the way out. On etcd it also campaigns for office (see [`leader`]): it
/// serves, and sweeps, only while it leads.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<()> {
    let (controller, etcd) = open(&cfg)?;
    let controller = Arc::new(controller);
    let listeners = bind(&cfg).await?;
    let tcp_clients = if cfg.identifies_tcp_clients() {
        TcpClients::Certified
    } else {
        TcpClients::Trusted
    };
    let mut service = ControllerService::new(controller.clone()).tcp_clients(tcp_clients);
    // Reads nodes' Agent APIs (ListNodeEndpoints, CheckIpam) with its own certificate.
    service = service.node_clients(cfg.nodes.clients()?);
    let (stop, stopped) = watch::channel(false);
    // A single controller always holds office; a replica on etcd from the
    // moment it wins the election.
    let (office, in_office) = watch::channel(if etcd.is_some() {
        Office::Electing
    } else {
        Office::Leader
    });
    let election = match (etcd, &cfg.store) {
        (Some(store), config::Store::Etcd(e)) => {
            service = service.office(in_office.clone());
            let me = leader::Candidate {
                name: e.name.clone(),
                url: e.advertise_url.clone(),
                ttl: e.leader_ttl,
            };
            tracing::info!(name = %me.name, url = %me.url, endpoints = ?e.endpoints, "campaigning for office on etcd");
            Some(tokio::spawn(leader::run(
                store,
                me,
                controller.clone(),
                office,
                stopped.clone(),
            )))
        }
        _ => None,
    };
    let services = ControllerServices::with_edge(service).await;
    let sweeper = tokio::spawn(sweep_in_office(controller.clone(), in_office, stopped));
    tracing::info!(
        socket = %cfg.socket.display(),
        lease_ttl = ?cfg.lease_ttl,
        grace = ?cfg.grace,
        max_in_flight = cfg.limits.calls.get(),
        max_watches = cfg.limits.watches.get(),
        "trellis-controller serving"
    );
    let served = server::serve(&services, listeners, cfg.limits, shutdown).await;
    let _ = stop.send(true);
    if let Err(e) = sweeper.await {
        tracing::warn!(error = %e, "the lease sweeper did not stop cleanly");
    }
    if let Some(e) = election
        && let Err(e) = e.await
    {
        tracing::warn!(error = %e, "the election did not stop cleanly");
    }
    fs::remove_socket(&cfg.socket);
    Ok(served?)
}

/// Runs the lease sweeper during each term of office, until `stop`.
async fn sweep_in_office(
    controller: Arc<Controller>,
    mut office: watch::Receiver<Office>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = office.wait_for(|o| *o == Office::Leader) => if r.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
        let mut left = office.clone();
        let mut stopping = stop.clone();
        controller
            .clone()
            .run_sweeper(async move {
                tokio::select! {
                    _ = left.wait_for(|o| *o != Office::Leader) => {}
                    _ = stopping.wait_for(|s| *s) => {}
                }
            })
            .await;
        if *stop.borrow() {
            return;
        }
    }
}

fn open(cfg: &Config) -> Result<(Controller, Option<EtcdStore>)> {
    let config = trellis_cluster::Config {
        lease_ttl: cfg.lease_ttl,
        grace: cfg.grace,
        ..trellis_cluster::Config::default()
    };
    match &cfg.store {
        config::Store::Redb => {
            fs::ensure_state_dir(&cfg.state_dir)?;
            let path = cfg.store_path();
            let store =
                RedbStore::open(&path).with_context(|| format!("open store {}", path.display()))?;
            tracing::info!(store = %path.display(), "store opened");
            Ok((Controller::new(Arc::new(store), config), None))
        }
        config::Store::Etcd(e) => {
            let store = EtcdStore::connect(&e.endpoints, Some(&e.prefix))
                .with_context(|| format!("etcd at {}", e.endpoints.join(",")))?;
            tracing::info!(endpoints = ?e.endpoints, prefix = %e.prefix, "store: etcd");
            Ok((
                Controller::new(Arc::new(store.clone()), config),
                Some(store),
            ))
        }
    }
}

/// Binds every listener the config names. The TCP address actually bound
/// is logged (`listen=…`), so that port 0 can be used.
pub async fn bind(cfg: &Config) -> Result<server::Listeners> {
    // TCP and its TLS files first: a failure there leaves no socket behind.
    let tcp = match &cfg.tcp {
        Some(tcp) => {
            let listener = TcpListener::bind(tcp.listen)
                .await
                .with_context(|| format!("bind TCP {}", tcp.listen))?;
            let tls = tcp.tls.as_ref().map(server::tls_config).transpose()?;
            let listen = listener.local_addr().context("the bound TCP address")?;
            match tcp.tls.as_ref().map(|t| t.client_ca.is_some()) {
                None => tracing::warn!(
                    %listen,
                    "serving gRPC over TCP WITHOUT TLS (--insecure-tcp): every TCP client is trusted as the admin"
                ),
                Some(false) => tracing::warn!(
                    %listen,
                    "serving gRPC over TCP with TLS but WITHOUT client certificates: every TCP client \
                     is trusted as the admin (give --tls-client-ca to know nodes by their certificates)"
                ),
                Some(true) => tracing::info!(
                    %listen,
                    "serving gRPC over TCP with mutual TLS: nodes act only as their certificates name them"
                ),
            }
            Some((listener, tls))
        }
        None => None,
    };
    let unix = fs::bind_unix(&cfg.socket, "trellis-controller")?;
    Ok(server::Listeners { unix, tcp })
}
