//! Restarting the trellisd binary disturbs no running container: traffic
//! from the seed's PC to a published port keeps flowing, counted, through a
//! clean stop (SIGTERM) and a crash (SIGKILL) with the daemon down for a
//! while each time; afterwards the endpoint is still recorded, the kernel
//! matches the record, and its veth is the same one (never recreated).

use crate::util::Daemon;
use nix::sys::signal::Signal;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use trellis_proto::connect_unix;
use trellis_proto::v1::{
    AgentClient, AttachRequest, CheckRequest, CreateNetworkRequest, Endpoint, ListEndpointsRequest,
    NetworkMode, NetworkSpec, PortMapping, Protocol, StatusRequest,
};
use trellis_testlab::seed::{HOST_IP, SeedLab};
use trellis_testlab::{Counts, Netns, TcpServer, require_root, tcp_traffic};

/// How long the daemon stays down at each restart, traffic still flowing.
const DOWN: Duration = Duration::from_millis(500);
async fn client(d: &Daemon) -> AgentClient<Channel> {
    connect_unix(&d.socket).await.expect("connect")
}

/// A bridge network with masquerade, and `c1` attached with 8086 → 80.
async fn attach_web(agent: &mut AgentClient<Channel>, c1: &Netns) -> Endpoint {
    let spec = NetworkSpec {
        name: "web".into(),
        mode: NetworkMode::Bridge as i32,
        subnets: vec!["192.168.172.0/24".into()],
        bridge: "trweb1".into(),
        outgoing_nat: true,
        ..Default::default()
    };
    let req = CreateNetworkRequest { spec: Some(spec) };
    agent.create_network(req).await.expect("create network");
    let req = AttachRequest {
        network: "web".into(),
        container_id: "c1".into(),
        netns: c1.path_str(),
        ifname: "eth0".into(),
        ports: vec![PortMapping {
            protocol: Protocol::Tcp as i32,
            host_port: 8086,
            container_port: 80,
            ..Default::default()
        }],
        ..Default::default()
    };
    agent.attach(req).await.expect("attach").into_inner()
}

/// The host interface's index: a recreated veth would get a new one.
fn ifindex(host: &Netns, ifname: &str) -> String {
    let line = host.ip(&format!("-o link show {ifname}"));
    line.split(':').next().expect("index").to_owned()
}

fn wait_for(counts: &Counts, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while counts.ok.load(Ordering::SeqCst) < at_least {
        assert!(Instant::now() < deadline, "traffic does not flow");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[test]
fn restarting_the_daemon_disturbs_no_running_container() {
    require_root();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let lab = SeedLab::build();
    let dir = tempfile::tempdir().unwrap();
    let c1 = Netns::new("c1");
    let mut d = Daemon::start(&lab.host, dir.path(), &[]);
    d.wait_ready();
    let ep = rt.block_on(async { attach_web(&mut client(&d).await, &c1).await });
    let ip: IpAddr = ep.addresses[0].split('/').next().unwrap().parse().unwrap();
    let _web = TcpServer::start(&c1, SocketAddr::new(ip, 80), "c1");
    let published = SocketAddr::new(IpAddr::V4(HOST_IP), 8086);
    let before = ifindex(&lab.host, &ep.host_ifname);

    let (stop, counts) = (AtomicBool::new(false), Counts::default());
    std::thread::scope(|s| {
        s.spawn(|| tcp_traffic(&lab.pc, published, &stop, &counts));
        wait_for(&counts, 5);
        let status = d.terminate();
        assert!(status.success(), "exit {status}:\n{}", d.log());
        std::thread::sleep(DOWN);
        let ok_while_down = counts.ok.load(Ordering::SeqCst);
        d = Daemon::start(&lab.host, dir.path(), &[]);
        d.wait_ready();
        wait_for(&counts, ok_while_down + 5);

        d.signal(Signal::SIGKILL);
        d.wait_exit(Duration::from_secs(10));
        std::thread::sleep(DOWN);
        let n = counts.ok.load(Ordering::SeqCst);
        d = Daemon::start(&lab.host, dir.path(), &[]);
        d.wait_ready();
        wait_for(&counts, n + 5);
        stop.store(true, Ordering::SeqCst);
    });
    let (ok, failed) = (counts.ok.into_inner(), counts.failed.into_inner());
    eprintln!("requests across two restarts: {ok} answered, {failed} failed");
    assert_eq!(failed, 0, "{failed} requests failed across the restarts");
    assert!(ok >= 15, "only {ok} requests");

    rt.block_on(async {
        let mut agent = client(&d).await;
        // It serves at once and reconciles in the background: ready soon.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let status = agent.status(StatusRequest {}).await.unwrap().into_inner();
            if status.ready {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{:?}", status.reasons);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let list = agent
            .list_endpoints(ListEndpointsRequest::default())
            .await
            .unwrap();
        assert_eq!(list.into_inner().endpoints, std::slice::from_ref(&ep));
        let check = CheckRequest {
            container_id: "c1".into(),
            ifname: "eth0".into(),
        };
        let check = agent.check(check).await.unwrap().into_inner();
        assert!(check.ok, "{:?}", check.problems);
    });
    assert_eq!(
        ifindex(&lab.host, &ep.host_ifname),
        before,
        "the veth was recreated"
    );
    trellis_testlab::report::record(
        "trellisd",
        "SIGTERM, then SIGKILL, each with trellisd down a while, while a client sends requests through a published port",
        &format!(
            "{ok} requests answered, {failed} failed across both; after each start: ready, the same endpoint, CHECK ok, the veth not recreated (same ifindex)"
        ),
    );
    let status = d.terminate();
    assert!(status.success(), "exit {status}:\n{}", d.log());
}
