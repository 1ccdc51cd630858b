//! Leader failover of an HA controller on etcd: how long the cluster has no
//! leader when the leader dies, as the nodes see it.
//!
//! In a namespace of its own: three etcd members ([`crate::etcd`]) and
//! three replicas of the real trellis-controller on them, each listening
//! on its own port of the namespace's loopback in plaintext
//! (`--insecure-tcp`, `--advertise-url http://127.0.0.1:PORT`), with
//! `--leader-ttl 2s`. The bench's clients run on a thread that entered the
//! namespace, so they reach the replicas over TCP as nodes would, and
//! nothing touches the machine's own network namespace.
//!
//! Each round: the leader is found (the one replica that answers
//! ControllerStatus; the others refuse with UNAVAILABLE naming it), a node's
//! client renews its lease through it, and after a short pause the leader
//! is killed with SIGKILL (no clean stop: its etcd lease must lapse). From
//! the kill, two clocks run at once:
//!
//! * **leader**: the surviving replicas are asked ControllerStatus every
//!   [`PROBE_EVERY`], until one answers OK;
//! * **claim**: the node claims a block through trellis-member's
//!   [`GrpcController`] given all three addresses (comma-separated, as
//!   trellisd's `--controller`), retrying every [`CLAIM_RETRY`] after a
//!   refusal or an unreachable replica (the client moves on by itself: to
//!   the leader a refusal names, else to the next address), until a claim
//!   is answered OK.
//!
//! Then the killed replica is started again on its state and must come
//! back as a follower naming the new leader before the next round; the
//! next round kills whichever replica leads then. Target: the leader
//! replaced within 5 s (issue 13).

use crate::daemon::Daemon;
use crate::etcd::{EtcdCluster, panic_message};
use anyhow::{Context, Result, anyhow, bail, ensure};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};
use trellis_cluster::NodeSpec;
use trellis_member::{ApiError, ControllerApi, GrpcController};
use trellis_proto::v1::{self as pb, ControllerClient};
use trellis_testlab::Netns;
use trellis_types::{NodeName, PoolName};

/// Controller replicas.
pub const REPLICAS: usize = 3;
/// Their `--leader-ttl`.
pub const LEADER_TTL: &str = "2s";
/// The leader must be replaced within this (issue 13).
pub const TARGET: Duration = Duration::from_secs(5);
/// How often the survivors are asked ControllerStatus.
pub const PROBE_EVERY: Duration = Duration::from_millis(10);
/// The pause after a claim refused or unanswered.
pub const CLAIM_RETRY: Duration = Duration::from_millis(20);
/// The pause between the lease renewal and the kill.
pub const SETTLE: Duration = Duration::from_millis(500);
/// How long a step of a round may take before the run fails.
pub const STEP_LIMIT: Duration = Duration::from_secs(30);
/// The replicas' ports: this, and the next ones.
const FIRST_PORT: u16 = 7441;
/// How long one ControllerStatus probe may take.
const PROBE_LIMIT: Duration = Duration::from_millis(500);
/// The pool the node claims from: a routed /16 in /29 blocks.
const POOL: (&str, &str, u32) = ("ha-v4", "10.250.0.0/16", 29);
/// The node that claims.
const NODE: &str = "ha-node";

/// What one round measured.
#[derive(Debug, Clone)]
pub struct Round {
    /// The replica killed (index; `ctl-<i>`).
    pub killed: usize,
    /// The replica that led next.
    pub successor: usize,
    /// Kill → a survivor answers ControllerStatus OK.
    pub elected: Duration,
    /// Kill → the node's claim answered OK.
    pub claimed: Duration,
    /// The node's claims refused or unanswered before that one.
    pub refused: usize,
    /// The first refusal's words.
    pub first_refusal: Option<String>,
    /// Killed replica started again → it names the new leader.
    pub rejoined: Duration,
}

/// What the rounds measured.
#[derive(Debug, Clone)]
pub struct Failover {
    /// The replicas started → the first answering as leader.
    pub first_election: Duration,
    /// Each round.
    pub rounds: Vec<Round>,
}

impl Failover {
    /// Every round's kill → leader.
    pub fn elected(&self) -> Vec<Duration> {
        self.rounds.iter().map(|r| r.elected).collect()
    }

    /// Every round's kill → claim OK.
    pub fn claimed(&self) -> Vec<Duration> {
        self.rounds.iter().map(|r| r.claimed).collect()
    }

    /// Every round's restart → following.
    pub fn rejoined(&self) -> Vec<Duration> {
        self.rounds.iter().map(|r| r.rejoined).collect()
    }
}

/// A controller replica and a client of its TCP address.
struct Replica {
    url: String,
    status: ControllerClient<Channel>,
    daemon: Daemon,
}

/// Runs `rounds` rounds against replicas of `controller`.
pub fn run(controller: &Path, rounds: usize) -> Result<Failover> {
    let ns = Arc::new(Netns::new("ha"));
    let etcd = EtcdCluster::start(&ns, super::store::ETCD_MEMBERS)?;
    let (binary, store, inside) = (controller.to_owned(), etcd.store_flag(), ns.clone());
    let joined = ns
        .enter_background(move || in_namespace(&binary, &inside, &store, rounds))
        .join();
    let result = match joined {
        Ok(r) => r.with_context(|| format!("etcd:\n{}", etcd.logs())),
        Err(panic) => Err(anyhow!(
            "the failover rounds panicked: {}",
            panic_message(&panic)
        )),
    };
    // The replicas died with the thread; the members go before the namespace.
    drop(etcd);
    result
}

/// The rounds, on a thread inside the namespace: the replicas are started
/// from here, and every client connects from here.
fn in_namespace(binary: &Path, ns: &Netns, store: &str, rounds: usize) -> Result<Failover> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The clients' lazy channels spawn their workers on it.
    let _in_rt = rt.enter();
    let started = Instant::now();
    let mut replicas = Vec::with_capacity(REPLICAS);
    for i in 0..REPLICAS {
        replicas.push(start_replica(binary, ns, store, i)?);
    }
    let result = rt.block_on(measure(&mut replicas, started, rounds));
    result.with_context(|| {
        let logs: Vec<String> = replicas
            .iter()
            .enumerate()
            .map(|(i, r)| format!("--- ctl-{i} (tail):\n{}", r.daemon.log()))
            .collect();
        logs.join("\n")
    })
}

fn start_replica(binary: &Path, ns: &Netns, store: &str, i: usize) -> Result<Replica> {
    let port = FIRST_PORT + i as u16;
    let listen = format!("127.0.0.1:{port}");
    let url = format!("http://{listen}");
    let name = format!("ctl-{i}");
    let args = [
        "--store",
        store,
        "--name",
        &name,
        "--listen",
        &listen,
        "--insecure-tcp",
        "--advertise-url",
        &url,
        "--leader-ttl",
        LEADER_TTL,
    ];
    let daemon = Daemon::start_with(binary, ns, &args)?;
    let channel = Endpoint::from_shared(url.clone())?
        .connect_timeout(PROBE_LIMIT)
        .connect_lazy();
    Ok(Replica {
        url,
        status: ControllerClient::new(channel),
        daemon,
    })
}

/// What a replica answered ControllerStatus.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Standing {
    /// OK: it leads.
    Leads,
    /// UNAVAILABLE naming the leader at this address.
    Follows(String),
    /// Anything else: electing, down, unanswered.
    Neither(String),
}

async fn standing(r: &Replica) -> Standing {
    let mut c = r.status.clone();
    let asked = tokio::time::timeout(
        PROBE_LIMIT,
        c.controller_status(pb::ControllerStatusRequest {}),
    )
    .await;
    match asked {
        Ok(Ok(_)) => Standing::Leads,
        Ok(Err(s)) => match s.message().split_once("the leader is ") {
            Some((_, rest)) if s.code() == tonic::Code::Unavailable => {
                Standing::Follows(rest.split_whitespace().next().unwrap_or("").to_owned())
            }
            _ => Standing::Neither(format!("{} {}", s.code(), s.message())),
        },
        Err(_) => Standing::Neither(format!("no answer within {PROBE_LIMIT:?}")),
    }
}

/// The first of `which` replicas seen answering as leader, and when: all
/// of them asked at once, every [`PROBE_EVERY`], for up to `limit`.
async fn wait_leader(
    replicas: &[Replica],
    which: &[usize],
    limit: Duration,
) -> Result<(usize, Instant)> {
    let start = Instant::now();
    loop {
        let asked = which.iter().map(|i| standing(&replicas[*i]));
        let answers = futures::future::join_all(asked).await;
        if let Some(k) = answers.iter().position(|a| *a == Standing::Leads) {
            return Ok((which[k], Instant::now()));
        }
        if start.elapsed() > limit {
            let said: Vec<String> = which
                .iter()
                .zip(&answers)
                .map(|(i, a)| format!("ctl-{i}: {a:?}"))
                .collect();
            bail!("no replica leads after {limit:?}: {}", said.join("; "));
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// Calls `f` until it succeeds, every [`CLAIM_RETRY`], for up to `limit`;
/// its answer, and how many calls failed before (and the first failure).
async fn until_ok<T, F: Future<Output = Result<T, ApiError>>>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> F,
) -> Result<(T, usize, Option<String>)> {
    let start = Instant::now();
    let (mut failed, mut first) = (0, None);
    loop {
        match f().await {
            Ok(v) => return Ok((v, failed, first)),
            Err(e) => {
                failed += 1;
                first.get_or_insert_with(|| e.to_string());
                ensure!(
                    start.elapsed() < limit,
                    "{what}: no success in {limit:?} ({failed} tries), the last: {e}"
                );
                tokio::time::sleep(CLAIM_RETRY).await;
            }
        }
    }
}

async fn measure(replicas: &mut [Replica], started: Instant, rounds: usize) -> Result<Failover> {
    let all: Vec<usize> = (0..replicas.len()).collect();
    let (first, seen) = wait_leader(replicas, &all, STEP_LIMIT).await?;
    let first_election = seen - started;
    let (name, prefix, block_size) = POOL;
    replicas[first]
        .status
        .clone()
        .create_pool(pb::CreatePoolRequest {
            spec: Some(pb::PoolSpec {
                name: name.into(),
                prefix: prefix.into(),
                block_size,
                mode: pb::PoolMode::Routed.into(),
                outgoing_nat: false,
                max_blocks_per_node: 1 << 16,
            }),
        })
        .await
        .context("create the pool on the leader")?;
    let urls: Vec<&str> = replicas.iter().map(|r| r.url.as_str()).collect();
    let api = GrpcController::new(&urls.join(","), None).map_err(|e| anyhow!(e))?;
    let node = NodeName::parse("node", NODE)?;
    let pool = PoolName::parse("pool", name)?;
    let spec: NodeSpec = serde_json::from_value(serde_json::json!({
        "name": NODE,
        "address_v4": "10.1.253.101",
        "address_v6": null,
        "labels": {},
    }))
    .context("the node's spec")?;
    until_ok("RegisterNode", STEP_LIMIT, || api.register(&spec)).await?;

    let mut out = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        eprintln!("  failover: round {round}/{rounds} ...");
        let (leader, _) = wait_leader(replicas, &all, STEP_LIMIT).await?;
        // The node's client is on the leader, its lease fresh.
        until_ok("KeepAlive", STEP_LIMIT, || api.keep_alive(&node, &[])).await?;
        tokio::time::sleep(SETTLE).await;

        let killed_at = Instant::now();
        replicas[leader].daemon.kill()?;
        let alive: Vec<usize> = all.iter().copied().filter(|i| *i != leader).collect();
        let (api, node, pool, spec) = (&api, &node, &pool, &spec);
        let claim = move || async move {
            let r = api.claim_block(node, pool).await;
            if let Err(ApiError::NotRegistered(_)) = &r {
                // As a member does: register again, the claim retried.
                let _ = api.register(spec).await;
            }
            r
        };
        let (elected, claimed) = tokio::join!(wait_leader(replicas, &alive, STEP_LIMIT), async {
            let r = until_ok("ClaimBlock after the kill", STEP_LIMIT, claim).await;
            r.map(|(_, refused, first)| (killed_at.elapsed(), refused, first))
        });
        let (successor, seen) = elected?;
        let (claimed, refused, first_refusal) = claimed?;

        let restarted = Instant::now();
        replicas[leader].daemon.start_again()?;
        let want = Standing::Follows(replicas[successor].url.clone());
        loop {
            let now = standing(&replicas[leader]).await;
            if now == want {
                break;
            }
            ensure!(
                restarted.elapsed() < STEP_LIMIT,
                "ctl-{leader}, started again, does not follow ctl-{successor} after \
                 {STEP_LIMIT:?}: {now:?}"
            );
            tokio::time::sleep(PROBE_EVERY).await;
        }
        out.push(Round {
            killed: leader,
            successor,
            elected: seen - killed_at,
            claimed,
            refused,
            first_refusal,
            rejoined: restarted.elapsed(),
        });
    }
    Ok(Failover {
        first_election,
        rounds: out,
    })
}
