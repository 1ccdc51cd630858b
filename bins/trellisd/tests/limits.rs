//! The limits on calls under way, end to end: a storm of calls against a
//! daemon that takes two at a time gets quick UNAVAILABLE answers beside
//! its successes, watches are counted apart, health checks always pass, and
//! the daemon answers normally once the storm is over.

use crate::util::{Daemon, rss_kib, sample, scrape};
use std::time::Duration;
use tokio::task::JoinSet;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use trellis_proto::connect_unix;
use trellis_proto::v1::{
    AgentClient, CreateNetworkRequest, NetworkMode, NetworkSpec, StatusRequest, WatchRequest,
};
use trellis_testlab::{Netns, require_root};

const METRICS: &str = "127.0.0.1:9464";
const CALLS: u32 = 100;
const BUSY: &str = "trellisd is busy: 2 requests in flight (limit 2); retry";

/// A bridge network of its own for call `i` (10.78.<i>.0/24): creating it
/// takes the daemon a few milliseconds of netlink and nftables work.
fn network(i: u32) -> CreateNetworkRequest {
    let spec = NetworkSpec {
        name: format!("busy{i}"),
        mode: NetworkMode::Bridge as i32,
        subnets: vec![format!("10.78.{i}.0/24")],
        bridge: format!("trbusy{i}"),
        ..Default::default()
    };
    CreateNetworkRequest { spec: Some(spec) }
}

/// Opens a Watch stream, kept open while the result is held.
async fn watch(
    agent: &AgentClient<Channel>,
) -> Result<tonic::Streaming<trellis_proto::v1::Event>, tonic::Status> {
    let req = WatchRequest { replay: false };
    Ok(agent.clone().watch(req).await?.into_inner())
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_calls_gets_quick_refusals_beside_its_successes() {
    require_root();
    let ns = Netns::new("tdl");
    let dir = tempfile::tempdir().unwrap();
    let limits = ["--max-in-flight", "2", "--max-watches", "3"];
    let mut d = Daemon::start(
        &ns,
        dir.path(),
        &[&limits[..], &["--metrics-addr", METRICS]].concat(),
    );
    d.wait_ready();
    let agent = connect_unix(&d.socket).await.unwrap();

    // Watches have their places apart: three fill them, and take none of
    // the two calls'.
    let mut watches = Vec::new();
    for _ in 0..3 {
        watches.push(watch(&agent).await.expect("a watch within the limit"));
    }
    let e = watch(&agent).await.expect_err("a fourth watch is refused");
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert_eq!(
        e.message(),
        "trellisd is busy: 3 watches open (limit 3); retry"
    );

    let mut calls = JoinSet::new();
    let mut probes = JoinSet::new();
    let health = HealthClient::new(trellis_proto::channel_unix(&d.socket).await.unwrap());
    for i in 0..CALLS {
        let mut a = agent.clone();
        calls.spawn(async move { a.create_network(network(i)).await });
        if i % 10 == 0 {
            let mut h = health.clone();
            let req = HealthCheckRequest::default();
            probes.spawn(async move { h.check(req).await });
        }
    }
    let (mut created, mut refused) = (0, 0);
    while let Some(answer) = calls.join_next().await {
        match answer.unwrap() {
            Ok(_) => created += 1,
            Err(e) => {
                assert_eq!(e.code(), Code::Unavailable, "{e:?}");
                assert_eq!(e.message(), BUSY);
                refused += 1;
            }
        }
    }
    while let Some(answer) = probes.join_next().await {
        answer.unwrap().expect("health checks are never refused");
    }
    // The first two find nothing in flight; the rest arrive while some are.
    assert!(
        created >= 2 && refused >= 1,
        "{created} created, {refused} refused"
    );
    assert_eq!(created + refused, CALLS);

    let status = agent
        .clone()
        .status(StatusRequest {})
        .await
        .expect("status after the storm");
    assert_eq!(status.into_inner().networks, created);
    let m = scrape(&ns, METRICS.parse().unwrap());
    let create = r#"service="trellis.v1.Agent",method="CreateNetwork""#;
    let counted = sample(&m, &format!("trellis_rpc_refused_total{{{create}}}"));
    assert_eq!(counted, Some(f64::from(refused)), "{m}");
    let watch_refused = r#"trellis_rpc_refused_total{service="trellis.v1.Agent",method="Watch"}"#;
    assert_eq!(sample(&m, watch_refused), Some(1.0), "{m}");
    trellis_testlab::report::record(
        "trellisd",
        &format!(
            "{CALLS} CreateNetwork calls at once against --max-in-flight 2, a fourth Watch against --max-watches 3"
        ),
        &format!(
            "{created} created, {refused} refused at once UNAVAILABLE \"{BUSY}\" and counted in trellis_rpc_refused_total; health checks all served; the watch refused the same way"
        ),
    );

    // A watch closed by its client gives its place back.
    drop(watches);
    let mut again = watch(&agent).await;
    for _ in 0..50 {
        if again.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        again = watch(&agent).await;
    }
    again.expect("a watch once the others are closed");

    let status = d.terminate();
    assert!(status.success(), "exit {status}:\n{}", d.log());
}

/// Floods of 250, 2 000 and 10 000 CreateNetwork calls at once, each
/// against a fresh trellisd at the default limit (512 in flight): each flood
/// is answered in full — created or refused UNAVAILABLE, nothing else — and
/// trellisd's peak memory does not grow with the flood: the 10 000-call flood
/// peaks within a bounded margin of the 2 000-call one (both create at most
/// 512 networks), where an unbounded queue would hold five times the calls.
#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_calls_keeps_memory_bounded() {
    require_root();
    let mut peaks = Vec::new();
    for flood in [250u32, 2_000, 10_000] {
        let ns = Netns::new("tdf");
        let dir = tempfile::tempdir().unwrap();
        let mut d = Daemon::start(&ns, dir.path(), &[]);
        d.wait_ready();
        let pid = d.pid();
        // Several connections, as many clients would open.
        let mut agents = Vec::new();
        for _ in 0..4 {
            agents.push(connect_unix(&d.socket).await.unwrap());
        }
        let idle = rss_kib(pid);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sampler = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut peak = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    peak = peak.max(rss_kib(pid));
                    std::thread::sleep(Duration::from_millis(2));
                }
                peak
            })
        };
        let started = std::time::Instant::now();
        let mut calls = JoinSet::new();
        for n in 0..flood {
            let mut a = agents[n as usize % agents.len()].clone();
            let spec = NetworkSpec {
                name: format!("f{n}"),
                mode: NetworkMode::Bridge as i32,
                subnets: vec![format!("10.{}.{}.0/24", 100 + n / 256, n % 256)],
                bridge: format!("trf{n}"),
                ..Default::default()
            };
            let req = CreateNetworkRequest { spec: Some(spec) };
            calls.spawn(async move { a.create_network(req).await });
        }
        let (mut created, mut refused) = (0u32, 0u32);
        while let Some(answer) = calls.join_next().await {
            match answer.unwrap() {
                Ok(_) => created += 1,
                Err(e) => {
                    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
                    assert!(e.message().starts_with("trellisd is busy"), "{e:?}");
                    refused += 1;
                }
            }
        }
        let took = started.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let peak = sampler.join().unwrap();
        assert_eq!(created + refused, flood);
        let status = agents[0]
            .clone()
            .status(StatusRequest {})
            .await
            .expect("status after the flood")
            .into_inner();
        assert_eq!(status.networks, created);
        println!(
            "flood of {flood}: {created} created, {refused} refused in {took:.2?}; trellisd RSS idle {} MiB, peak {} MiB",
            idle / 1024,
            peak / 1024
        );
        trellis_testlab::report::record(
            "trellisd",
            &format!(
                "{flood} CreateNetwork calls at once over 4 connections (limit 512 in flight)"
            ),
            &format!(
                "all answered in {:.1} s: {created} created, {refused} refused UNAVAILABLE \"trellisd is busy…\"; RSS peak {} MiB (idle {} MiB)",
                took.as_secs_f64(),
                peak / 1024,
                idle / 1024
            ),
        );
        peaks.push(peak);
        let status = d.terminate();
        assert!(status.success(), "exit {status}:\n{}", d.log());
    }
    // Bounded: five times the calls, not five times the memory.
    assert!(
        peaks[2] < peaks[1] + peaks[1] / 2 + 16 * 1024,
        "peak RSS grows with the flood: {peaks:?} KiB"
    );
}
