//! What the crash soaks share (tests/crash_soak.rs, tests/cluster_soak.rs):
//! the form and seed from the environment, the clients that toggle their
//! containers through daemons that may be killed at any moment, the killer,
//! the watch that ends the soak, and the checks of containers, traffic and
//! stores afterwards.
#![allow(dead_code)]

use crate::daemons::{Daemon, Retries, Retrying, interface_problem};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use trellis_proto::v1 as pb;
use trellis_store::{KvStore, RedbStore};
use trellis_testlab::{Netns, TcpServer, seen_ip, tcp_request};

/// `short` or `long` as `TRELLIS_SOAK` says (short if unset or empty).
pub fn form<F>(short: F, long: F) -> F {
    match std::env::var("TRELLIS_SOAK").as_deref() {
        Ok("long") => long,
        Ok("short" | "") | Err(_) => short,
        Ok(other) => panic!("TRELLIS_SOAK={other:?}: say short or long"),
    }
}

/// The seed of the soak's random choices: `TRELLIS_SOAK_SEED`, else the
/// clock.
pub fn seed() -> u64 {
    match std::env::var("TRELLIS_SOAK_SEED") {
        Ok(s) => s.parse().expect("TRELLIS_SOAK_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    }
}

/// The runtime the clients and the watch run on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// One container namespace and what it asks for.
#[derive(Clone)]
pub struct Slot {
    /// The node it is on (0 on a standalone trellisd).
    pub node: usize,
    /// Its index among all containers (and in the soak's namespaces).
    pub i: usize,
    pub id: String,
    pub netns: String,
}

impl Slot {
    pub fn handle(&self) -> String {
        format!("{}/eth0", self.id)
    }
}

/// What the clients, the killer and the watch over them share.
pub struct Soak {
    pub ops: AtomicUsize,
    pub repeats: AtomicUsize,
    pub kills: AtomicUsize,
    /// The longest a killed daemon took to be gone, in ms.
    pub slowest_kill_ms: AtomicU64,
    pub stop: AtomicBool,
    failures: Mutex<Vec<String>>,
    /// Address → the container answered it, while attached (on any node).
    addresses: Mutex<BTreeMap<String, String>>,
}

impl Soak {
    pub fn new() -> Self {
        Soak {
            ops: AtomicUsize::new(0),
            repeats: AtomicUsize::new(0),
            kills: AtomicUsize::new(0),
            slowest_kill_ms: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            failures: Mutex::new(Vec::new()),
            addresses: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn fail(&self, what: String) {
        eprintln!("soak failure: {what}");
        self.failures.lock().unwrap().push(what);
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Fails the test if the soak failed, with the failures and `logs`
    /// (`--- <logs>`: what the daemons logged).
    pub fn assert_no_failures(&self, seed: u64, logs: impl FnOnce() -> String) {
        let failures = self.failures.lock().unwrap().clone();
        assert!(
            failures.is_empty(),
            "{} failures in the soak (seed {seed}):\n{}\n--- {}",
            failures.len(),
            failures.join("\n"),
            logs()
        );
    }

    /// Prints the soak's figures; `kills` tells more of the kills before
    /// the slowest.
    pub fn print_soaked(&self, soaked: Duration, retries: &Retries, kills: &str) {
        eprintln!(
            "soaked {soaked:?}: {} operations, {} kills ({kills}the slowest gone after {} ms), {} \
             cut-off calls sent again ({} sends), {} refused connections, {} repeated calls\n  \
             causes: {:#?}",
            self.ops.load(Ordering::SeqCst),
            self.kills.load(Ordering::SeqCst),
            self.slowest_kill_ms.load(Ordering::SeqCst),
            retries.cut_off,
            retries.resent,
            retries.refused,
            self.repeats.load(Ordering::SeqCst),
            retries.causes
        );
    }

    /// Notes `ep`'s addresses as `holder`'s; a failure if another container
    /// still holds one a moment later (its client notes a detach just after
    /// the answer, which may come after this one).
    async fn take(&self, holder: &str, ep: &pb::Endpoint) {
        for a in &ep.addresses {
            let ip = bare(a);
            let mut tries = 0;
            loop {
                // The lock is held only here, never across the pause.
                let other = {
                    let mut held = self.addresses.lock().unwrap();
                    match held.get(&ip) {
                        Some(other) if other != holder => Some(other.clone()),
                        _ => {
                            held.insert(ip.clone(), holder.to_owned());
                            None
                        }
                    }
                };
                match other {
                    None => break,
                    Some(other) if tries >= 50 => {
                        self.fail(format!(
                            "address {ip} answered to {holder} while {other} holds it"
                        ));
                        return;
                    }
                    Some(_) => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }
    }

    fn give_back(&self, holder: &str, ep: &pb::Endpoint) {
        let mut held = self.addresses.lock().unwrap();
        for a in &ep.addresses {
            let ip = bare(a);
            if held.get(&ip).is_some_and(|h| h == holder) {
                held.remove(&ip);
            }
        }
    }
}

/// Sets the flag when dropped, also while a panic unwinds.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// `"10.0.0.5/24"` → `"10.0.0.5"`.
pub fn bare(a: &str) -> String {
    a.split('/').next().unwrap_or(a).to_owned()
}

pub async fn attach(r: &mut Retrying, req: &pb::AttachRequest) -> Result<pb::Endpoint, String> {
    let what = format!("attach {} to {}", req.container_id, req.network);
    r.call(&what, |mut c| {
        let req = req.clone();
        async move { c.attach(req).await }
    })
    .await
}

pub async fn detach(r: &mut Retrying, id: &str) -> Result<(), String> {
    let req = pb::DetachRequest {
        container_id: id.into(),
        ifname: "eth0".into(),
    };
    r.call(&format!("detach {id}"), |mut c| {
        let req = req.clone();
        async move { c.detach(req).await }
    })
    .await
    .map(|_| ())
}

/// What a client asks to attach a detached container with, chosen with the
/// client's random numbers.
pub type Request = fn(&Slot, &mut fastrand::Rng) -> pb::AttachRequest;

/// What each slot was last answered (`None`: detached).
pub type Finals = Vec<(Slot, Option<pb::Endpoint>)>;

/// Runs a soak: a client for each of `clients` (the socket of its daemon,
/// its slots, its seed) toggles its containers with `request`s while
/// `killer` runs on a thread of its own, until `watch` ends. Returns what
/// each slot was last answered, how the calls fared, and what `killer`
/// returns (the restart-to-serving times).
pub fn run(
    rt: &tokio::runtime::Runtime,
    sh: &Arc<Soak>,
    clients: Vec<(PathBuf, Vec<Slot>, u64)>,
    request: Request,
    killer: impl FnOnce() -> Vec<Duration> + Send,
    watch: impl Future<Output = ()>,
) -> (Finals, Retries, Vec<Duration>) {
    std::thread::scope(|s| {
        let killer = s.spawn(killer);
        let (finals, retries) = rt.block_on(async {
            let tasks: Vec<_> = clients
                .into_iter()
                .map(|(socket, mine, seed)| {
                    tokio::spawn(client(sh.clone(), socket, mine, seed, request))
                })
                .collect();
            watch.await;
            let mut finals = Vec::new();
            let mut retries = Retries::default();
            for t in tasks {
                let (f, r) = t.await.expect("a client panicked");
                finals.extend(f);
                retries.add(&r);
            }
            (finals, retries)
        });
        let serving = killer.join().expect("the killer panicked");
        (finals, retries, serving)
    })
}

/// One client of the daemon on `socket`: toggles its containers at random
/// until told to stop; returns what each of them was last answered, and
/// how its calls fared.
async fn client(
    sh: Arc<Soak>,
    socket: PathBuf,
    mine: Vec<Slot>,
    seed: u64,
    request: Request,
) -> (Finals, Retries) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut r = Retrying::new(&socket);
    let mut state: Vec<Option<pb::Endpoint>> = vec![None; mine.len()];
    while !sh.stop.load(Ordering::SeqCst) {
        let k = rng.usize(..mine.len());
        let slot = &mine[k];
        let repeat = rng.u8(..10) == 0;
        match state[k].take() {
            Some(ep) => {
                if let Err(e) = detach(&mut r, &slot.id).await {
                    sh.fail(e);
                    state[k] = Some(ep);
                    break;
                }
                sh.give_back(&slot.id, &ep);
                if repeat {
                    match detach(&mut r, &slot.id).await {
                        Ok(()) => _ = sh.repeats.fetch_add(1, Ordering::SeqCst),
                        Err(e) => sh.fail(format!("repeated: {e}")),
                    }
                }
            }
            None => {
                let req = request(slot, &mut rng);
                let ep = match attach(&mut r, &req).await {
                    Ok(ep) => ep,
                    Err(e) => {
                        sh.fail(e);
                        break;
                    }
                };
                // The answer fills in each port's container address.
                let asked = |ps: &[pb::PortMapping]| -> Vec<(i32, u32, u32)> {
                    ps.iter()
                        .map(|p| (p.protocol, p.host_port, p.container_port))
                        .collect()
                };
                if ep.container_id != slot.id
                    || ep.network != req.network
                    || asked(&ep.ports) != asked(&req.ports)
                {
                    sh.fail(format!("attach {req:?} answered {ep:?}"));
                }
                sh.take(&slot.id, &ep).await;
                if repeat {
                    match attach(&mut r, &req).await {
                        Ok(again) if again == ep => _ = sh.repeats.fetch_add(1, Ordering::SeqCst),
                        Ok(again) => {
                            sh.fail(format!("attach repeated answered {again:?}, first {ep:?}"))
                        }
                        Err(e) => sh.fail(format!("repeated: {e}")),
                    }
                }
                // Answered means plumbed: the container has its interface.
                if let Some(wrong) = interface_problem(&slot.netns, "eth0", &ep.addresses[0]).await
                {
                    sh.fail(format!("attach {} answered, but {wrong}", slot.id));
                }
                state[k] = Some(ep);
            }
        }
        sh.ops.fetch_add(1, Ordering::SeqCst);
    }
    (mine.into_iter().zip(state).collect(), r.retries)
}

/// The killer: after a random `wait` (ms), SIGKILLs the daemon `pick`
/// chooses among `daemons`, calls `gone` with its index, and after a random
/// `pause` (ms) starts it again; until told to stop (all left running).
/// Returns the restart-to-serving times.
pub fn killer(
    sh: &Soak,
    daemons: &mut [&mut Daemon],
    seed: u64,
    wait: Range<u64>,
    pause: Range<u64>,
    mut pick: impl FnMut(&mut fastrand::Rng) -> usize,
    mut gone: impl FnMut(usize),
) -> Vec<Duration> {
    let _stop = StopOnDrop(&sh.stop);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut serving = Vec::new();
    loop {
        let until = Instant::now() + Duration::from_millis(rng.u64(wait.clone()));
        while Instant::now() < until && !sh.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        if sh.stop.load(Ordering::SeqCst) {
            return serving;
        }
        let target = pick(&mut rng);
        let took = daemons[target].kill_timed(Duration::from_secs(5));
        sh.slowest_kill_ms
            .fetch_max(took.as_millis() as u64, Ordering::SeqCst);
        sh.kills.fetch_add(1, Ordering::SeqCst);
        gone(target);
        std::thread::sleep(Duration::from_millis(rng.u64(pause.clone())));
        let t = Instant::now();
        daemons[target].start_again();
        serving.push(t.elapsed());
    }
}

/// Where a soak stands, as its watch sees it.
pub struct Tally {
    /// Whether all its counts are reached.
    pub done: bool,
    /// Each count against what it must reach.
    pub of: String,
    /// The counts, for a progress line.
    pub now: String,
}

/// Watches the soak: stops it once `tally` says done, or fails it when it
/// runs over `within`; tells its progress every 10 s.
pub async fn watch(sh: &Soak, started: Instant, within: Duration, tally: impl Fn() -> Tally) {
    let mut last = Instant::now();
    while !sh.stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let t = tally();
        if t.done {
            sh.stop.store(true, Ordering::SeqCst);
        } else if started.elapsed() > within {
            sh.fail(format!("not done within {within:?}: {}", t.of));
        } else if last.elapsed() > Duration::from_secs(10) {
            last = Instant::now();
            eprintln!("  {:.0?}: {}", started.elapsed(), t.now);
        }
    }
}

/// The attached ones of `finals`.
pub fn attached(finals: &[(Slot, Option<pb::Endpoint>)]) -> Vec<(&Slot, &pb::Endpoint)> {
    finals
        .iter()
        .filter_map(|(s, e)| e.as_ref().map(|e| (s, e)))
        .collect()
}

/// `finals`' slots, all detached.
pub fn detached(finals: &[(Slot, Option<pb::Endpoint>)]) -> Finals {
    finals.iter().map(|(s, _)| (s.clone(), None)).collect()
}

/// The daemon's endpoints, sorted as [`sorted`].
pub async fn list_endpoints(r: &mut Retrying) -> Vec<pb::Endpoint> {
    let list = r
        .call("list endpoints", |mut c| async move {
            c.list_endpoints(pb::ListEndpointsRequest::default()).await
        })
        .await
        .unwrap();
    sorted(list.endpoints)
}

/// By container id.
pub fn sorted(mut eps: Vec<pb::Endpoint>) -> Vec<pb::Endpoint> {
    eps.sort_by(|a, b| a.container_id.cmp(&b.container_id));
    eps
}

/// What a host must hold for its `attached` endpoints: their veths' host
/// ends, and the routed ones' (network `pods`) /32 routes as `(address,
/// veth)`.
pub fn endpoint_objects(
    attached: &[(&Slot, &pb::Endpoint)],
) -> (BTreeSet<String>, BTreeSet<(String, String)>) {
    let veths = attached
        .iter()
        .map(|(_, e)| e.host_ifname.clone())
        .collect();
    let routes = attached
        .iter()
        .filter(|(_, e)| e.network == "pods")
        .map(|(_, e)| (bare(&e.addresses[0]), e.host_ifname.clone()))
        .collect();
    (veths, routes)
}

/// What is wrong in `now` against the `veths` and endpoint `routes` a host
/// must hold ([`endpoint_objects`]): other veths, retired veths left, other
/// endpoint routes.
pub fn endpoint_objects_wrong(
    now: &crate::daemons::HostObjects,
    veths: &BTreeSet<String>,
    routes: &BTreeSet<(String, String)>,
) -> Vec<String> {
    let mut wrong = Vec::new();
    if now.veths != *veths {
        wrong.push(format!("veths {:?}, want {veths:?}", now.veths));
    }
    if !now.retired.is_empty() {
        wrong.push(format!("retired veths left: {:?}", now.retired));
    }
    if now.host_routes() != *routes {
        wrong.push(format!(
            "endpoint routes {:?}, want {routes:?}",
            now.host_routes()
        ));
    }
    wrong
}

/// Each container namespace holds its `eth0` with its address if attached,
/// else nothing but `lo`.
pub fn check_containers(finals: &[(Slot, Option<pb::Endpoint>)], nets: &[Netns]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut wrong = Vec::new();
        for (s, ep) in finals {
            let ns = &nets[s.i];
            let links: Vec<String> = ns
                .ip("-o link show")
                .lines()
                .filter_map(|l| l.split(": ").nth(1))
                .map(|n| n.split('@').next().unwrap_or(n).to_owned())
                .collect();
            let want: Vec<String> = match ep {
                Some(_) => vec!["lo".into(), "eth0".into()],
                None => vec!["lo".into()],
            };
            if links != want {
                wrong.push(format!("{}: links {links:?}, want {want:?}", s.id));
            }
            if let Some(ep) = ep {
                let addrs = ns.ip("-4 -o addr show dev eth0");
                if !addrs.contains(&format!("inet {} ", ep.addresses[0])) {
                    wrong.push(format!(
                        "{}: eth0 has {addrs:?}, want {}",
                        s.id, ep.addresses[0]
                    ));
                }
            }
        }
        if wrong.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "containers:\n{}",
            wrong.join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Where [`traffic`] tries the endpoints from.
pub struct Vantage<'a> {
    /// The "internet" server's address (the server started by
    /// `external_server`).
    pub external: SocketAddr,
    /// The host of a container: its namespace, its name and the address
    /// its containers are masqueraded behind (and publish ports on).
    pub host: &'a dyn Fn(&Slot) -> (&'a Netns, String, Ipv4Addr),
    /// Whether a container may be tried from another of its network.
    pub neighbours: fn(&Slot, &Slot) -> bool,
    /// The machine that tries the published ports, and its address.
    pub pc: Option<(&'a Netns, IpAddr)>,
}

/// Every attached endpoint passes traffic: its host reaches it, it reaches
/// the internet masqueraded behind its host, it reaches the next endpoint
/// of its network that is its neighbour (if any) with its own address, and
/// its published ports answer the PC. Returns how many endpoints passed;
/// panics listing every failure.
pub fn traffic(
    finals: &[(Slot, Option<pb::Endpoint>)],
    nets: &[Netns],
    external_server: impl FnOnce() -> TcpServer,
    v: &Vantage,
) -> usize {
    let attached: Vec<(&Slot, &pb::Endpoint, IpAddr)> = finals
        .iter()
        .filter_map(|(s, e)| {
            e.as_ref()
                .map(|e| (s, e, bare(&e.addresses[0]).parse().unwrap()))
        })
        .collect();
    let _servers: Vec<TcpServer> = attached
        .iter()
        .map(|(s, _, ip)| TcpServer::start(&nets[s.i], SocketAddr::new(*ip, 80), &s.id))
        .collect();
    let _ext = external_server();
    let mut wrong = Vec::new();
    // A reply must come from the container tagged `tag`, and it must have
    // seen the connection come from `seen` (if given).
    let mut expect = |what: String,
                      reply: std::io::Result<String>,
                      tag: &str,
                      seen: Option<IpAddr>| match reply {
        Ok(r) if r.starts_with(&format!("{tag} ")) && seen.is_none_or(|ip| seen_ip(&r) == ip) => {}
        Ok(r) => wrong.push(format!(
            "{what}: answered {r:?}, want {tag} seeing {seen:?}"
        )),
        Err(e) => wrong.push(format!("{what}: {e}")),
    };
    for (k, (s, ep, ip)) in attached.iter().enumerate() {
        let ns = &nets[s.i];
        let (host, name, host_ip) = (v.host)(s);
        let reply = tcp_request(host, SocketAddr::new(*ip, 80));
        expect(format!("{name} → {}", s.id), reply, &s.id, None);
        let reply = tcp_request(ns, v.external);
        expect(
            format!("{} → internet", s.id),
            reply,
            "ext",
            Some(IpAddr::V4(host_ip)),
        );
        if let Some((n, _, nip)) = attached
            .iter()
            .cycle()
            .skip(k + 1)
            .take(attached.len() - 1)
            .find(|(n, e, _)| e.network == ep.network && (v.neighbours)(s, n))
        {
            let reply = tcp_request(ns, SocketAddr::new(*nip, 80));
            expect(format!("{} → {}", s.id, n.id), reply, &n.id, Some(*ip));
        }
        for p in &ep.ports {
            let published = SocketAddr::new(IpAddr::V4(host_ip), p.host_port as u16);
            let (reply, pc_ip) = match v.pc {
                Some((pc, pc_ip)) => (tcp_request(pc, published), Some(pc_ip)),
                None => (
                    Err(std::io::Error::other("no PC in this lab to try it")),
                    None,
                ),
            };
            expect(format!("pc → {published} ({})", s.id), reply, &s.id, pc_ip);
        }
    }
    assert!(wrong.is_empty(), "traffic failed:\n{}", wrong.join("\n"));
    attached.len()
}

/// A node's store (trellisd stopped).
pub struct NodeStore {
    /// Endpoint records, by handle.
    pub records: BTreeSet<String>,
    /// Addresses in use, as `(handle, address)`.
    pub allocations: BTreeSet<(String, String)>,
    /// Every other key.
    pub others: BTreeSet<String>,
}

impl NodeStore {
    /// The store of node `node` at `path` (trellisd stopped).
    pub async fn read(path: &Path, node: &str) -> Self {
        let store = Arc::new(RedbStore::open(path).expect("open the store after the crash"));
        let prefix = format!("nodes/{node}/endpoints/");
        let mut st = NodeStore {
            records: BTreeSet::new(),
            allocations: BTreeSet::new(),
            others: BTreeSet::new(),
        };
        for (key, _) in store.list("").await.unwrap().entries {
            match key.strip_prefix(&prefix) {
                Some(h) => st.records.insert(h.to_owned()),
                None => st.others.insert(key),
            };
        }
        let ipam = trellis_ipam::Ipam::new(store.clone(), node);
        st.allocations = ipam
            .check_leaks(&HashSet::new())
            .await
            .unwrap()
            .into_iter()
            .map(|a| (a.handle.to_string(), a.ip.to_string()))
            .collect();
        st
    }

    /// The records and the addresses in use a store must hold for
    /// `attached`.
    pub fn want<'a>(
        attached: impl Iterator<Item = &'a (&'a Slot, &'a pb::Endpoint)> + Clone,
    ) -> (BTreeSet<String>, BTreeSet<(String, String)>) {
        let records = attached.clone().map(|(s, _)| s.handle()).collect();
        let allocations = attached
            .flat_map(|(s, e)| e.addresses.iter().map(|a| (s.handle(), bare(a))))
            .collect();
        (records, allocations)
    }
}
