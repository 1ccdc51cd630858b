//! The `bgp` commands through the whole of netctl, in process: a fake BGP
//! service serves a unix socket in a temporary directory and
//! [`crate::run::run`] is given a parsed command line, as `main` does.
//! What is checked is netctl's side: `--socket` reaches the service,
//! requests carry the flags (the MD5 key read from its file), answers are
//! sorted and rendered, statuses become exit codes with the server's
//! message as it came.

use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};
use trellis_proto::v1::{self, BgpServer};

use crate::cli::Cli;

/// trellisd's message when `[bgp]` is not in its config file.
const NOT_CONFIGURED: &str = "BGP is not configured on this node: set [bgp] asn (and \
                              router_id) in trellisd's config file";

/// Answers from canned peers, or FAILED_PRECONDITION for every call when
/// not `configured`; keeps the peers it was asked to add.
#[derive(Clone)]
struct Fake {
    configured: bool,
    added: Arc<Mutex<Vec<v1::BgpPeerConfig>>>,
}

type Answer<T> = Result<Response<T>, Status>;

fn peer(address: &str, state: &str, source: &str) -> v1::BgpPeer {
    v1::BgpPeer {
        config: Some(v1::BgpPeerConfig {
            address: address.into(),
            remote_as: 65001,
            port: 179,
            ..Default::default()
        }),
        source: source.into(),
        state: state.into(),
        uptime_seconds: if state == "Established" { 75.0 } else { 0.0 },
        counters: Some(v1::BgpCounters::default()),
        ..Default::default()
    }
}

fn route(prefix: &str) -> v1::BgpRoute {
    v1::BgpRoute {
        prefix: prefix.into(),
        next_hop: "192.0.2.11".into(),
        communities: vec!["65000:100".into()],
    }
}

impl Fake {
    fn configured(&self) -> Result<(), Status> {
        match self.configured {
            true => Ok(()),
            false => Err(Status::failed_precondition(NOT_CONFIGURED)),
        }
    }
}

#[tonic::async_trait]
impl v1::Bgp for Fake {
    async fn add_peer(&self, r: Request<v1::AddBgpPeerRequest>) -> Answer<v1::BgpPeer> {
        self.configured()?;
        let config = r.into_inner().peer.unwrap_or_default();
        if config.remote_as == 23456 {
            let why = "peer.remote_as 23456: AS 0 and AS_TRANS 23456 are reserved";
            return Err(Status::invalid_argument(why));
        }
        self.added.lock().unwrap().push(config.clone());
        let answer = v1::BgpPeer {
            md5: !config.md5_password.is_empty(),
            config: Some(v1::BgpPeerConfig {
                md5_password: String::new(),
                port: config.port.max(179),
                ..config
            }),
            source: "api".into(),
            state: "Active".into(),
            ..Default::default()
        };
        Ok(Response::new(answer))
    }

    async fn remove_peer(
        &self,
        r: Request<v1::RemoveBgpPeerRequest>,
    ) -> Answer<v1::RemoveBgpPeerResponse> {
        self.configured()?;
        match r.into_inner().address.as_str() {
            "10.0.0.9" => Err(Status::failed_precondition(
                "peer 10.0.0.9 comes from the config file: remove it there",
            )),
            _ => Ok(Response::new(v1::RemoveBgpPeerResponse {})),
        }
    }

    async fn list_peers(
        &self,
        _: Request<v1::ListBgpPeersRequest>,
    ) -> Answer<v1::ListBgpPeersResponse> {
        self.configured()?;
        // Out of address order, as a map of strings would give them.
        let peers = vec![
            peer("10.0.0.10", "Idle", "api"),
            peer("2001:db8::1", "Connect", "api"),
            peer("10.0.0.9", "Established", "config"),
        ];
        Ok(Response::new(v1::ListBgpPeersResponse { peers }))
    }

    async fn list_routes(
        &self,
        r: Request<v1::ListBgpRoutesRequest>,
    ) -> Answer<v1::ListBgpRoutesResponse> {
        self.configured()?;
        let want = r.into_inner().peer;
        let peers = [
            v1::BgpPeerRoutes {
                peer: "10.0.0.10".into(),
                routes: vec![],
            },
            v1::BgpPeerRoutes {
                peer: "10.0.0.9".into(),
                routes: vec![route("10.244.0.128/26"), route("10.244.0.64/26")],
            },
        ];
        if !want.is_empty() && !peers.iter().any(|p| p.peer == want) {
            return Err(Status::not_found(format!("no peer {want}")));
        }
        Ok(Response::new(v1::ListBgpRoutesResponse {
            exported: vec!["10.244.0.128/26".into(), "10.244.0.64/26".into()],
            peers: peers
                .into_iter()
                .filter(|p| want.is_empty() || p.peer == want)
                .collect(),
        }))
    }
}

/// Serves `fake` (none: a trellisd without the BGP service) on
/// `dir/trellisd.sock` until the test's runtime ends.
fn serve(dir: &Path, fake: Option<Fake>) -> String {
    let path = dir.join("trellisd.sock");
    let listener = UnixListener::bind(&path).expect("bind the socket");
    let server = tonic::transport::Server::builder()
        .add_optional_service(fake.map(BgpServer::new))
        .serve_with_incoming(UnixListenerStream::new(listener));
    tokio::spawn(server);
    path.display().to_string()
}

/// `netctl --socket PATH ARGS`: the exit code and standard output, or the
/// error line and exit code as `main` prints them.
async fn netctl(socket: &str, args: &[&str]) -> Result<(u8, String), (String, ExitCode)> {
    let argv = ["netctl", "--socket", socket]
        .into_iter()
        .chain(args.iter().copied());
    let cli = <Cli as clap::Parser>::try_parse_from(argv).expect("valid command line");
    let mut out = Vec::new();
    match crate::run::run(cli, &mut out).await {
        Ok(code) => Ok((code, String::from_utf8(out).unwrap())),
        Err(e) => Err(crate::exit::report(&e)),
    }
}

fn fake() -> Fake {
    Fake {
        configured: true,
        added: Arc::default(),
    }
}

#[tokio::test]
async fn peers_and_routes_come_sorted_by_address() {
    let dir = tempfile::tempdir().unwrap();
    let socket = serve(dir.path(), Some(fake()));

    let (code, table) = netctl(&socket, &["bgp", "peers"]).await.unwrap();
    assert_eq!(code, 0, "a peer that is down is no failure of the command");
    let want = "\
PEER          AS      STATE         UPTIME   PREFIXES   SOURCE   LAST ERROR
10.0.0.9      65001   Established   1m15s    0          config   -
10.0.0.10     65001   Idle          -        0          api      -
2001:db8::1   65001   Connect       -        0          api      -
";
    assert_eq!(table, want);

    let (_, json) = netctl(&socket, &["-o", "json", "bgp", "peers"])
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["address"], "10.0.0.9");
    assert_eq!(v[0]["counters"]["established"], 0);

    let (_, table) = netctl(&socket, &["bgp", "routes"]).await.unwrap();
    let want = "\
Exported:
  10.244.0.64/26
  10.244.0.128/26

PEER        PREFIX            NEXT HOP     COMMUNITIES
10.0.0.9    10.244.0.64/26    192.0.2.11   65000:100
10.0.0.9    10.244.0.128/26   192.0.2.11   65000:100
10.0.0.10   -                 -            -
";
    assert_eq!(table, want);
    let args = ["-o", "yaml", "bgp", "routes", "--peer", "10.0.0.10"];
    let (_, yaml) = netctl(&socket, &args).await.unwrap();
    assert!(
        yaml.ends_with("peers:\n- peer: 10.0.0.10\n  routes: []\n"),
        "{yaml}"
    );
}

#[tokio::test]
async fn one_peer_is_picked_from_the_list_by_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let socket = serve(dir.path(), Some(fake()));

    let (_, text) = netctl(&socket, &["bgp", "peer", "10.0.0.9"]).await.unwrap();
    assert!(text.starts_with("Peer:        10.0.0.9\n"), "{text}");
    assert!(text.contains("\nUptime:      1m15s\n"), "{text}");
    // Any spelling of the address finds it.
    let (_, json) = netctl(&socket, &["-o", "json", "bgp", "inspect", "2001:db8:0::1"])
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["address"], "2001:db8::1");
    // None has it: NOT_FOUND, as the server says it of `routes --peer`.
    for args in [
        &["bgp", "peer", "10.0.0.99"][..],
        &["bgp", "routes", "--peer", "10.0.0.99"],
    ] {
        let err = netctl(&socket, args).await.unwrap_err();
        let want = ("NOT_FOUND: no peer 10.0.0.99".to_owned(), ExitCode::from(5));
        assert_eq!(err, want, "{args:?}");
    }
}

#[tokio::test]
async fn add_sends_the_key_from_its_file_and_prints_the_peer() {
    let dir = tempfile::tempdir().unwrap();
    let f = fake();
    let socket = serve(dir.path(), Some(f.clone()));
    let key = dir.path().join("key");
    std::fs::write(&key, "k3y\n").unwrap();
    let args = [
        "bgp",
        "add",
        "192.0.2.7",
        "--as",
        "65007",
        "--community",
        "65000:7",
        "--md5-password-file",
        key.to_str().unwrap(),
    ];
    let (code, text) = netctl(&socket, &args).await.unwrap();
    assert_eq!(code, 0);
    assert!(text.starts_with("Peer:        192.0.2.7\n"), "{text}");
    assert!(text.contains("\n  MD5:            on\n"), "{text}");
    assert!(text.contains("\n  Communities:    65000:7\n"), "{text}");
    assert!(!text.contains("k3y"), "{text}");
    let added = f.added.lock().unwrap().clone();
    assert_eq!(added.len(), 1);
    assert_eq!(added[0].md5_password, "k3y");
    assert_eq!(added[0].communities, ["65000:7"]);

    // The server's refusal, as it came: it names the field.
    let err = netctl(&socket, &["bgp", "add", "192.0.2.8", "--as", "23456"])
        .await
        .unwrap_err();
    let line = "INVALID_ARGUMENT: peer.remote_as 23456: AS 0 and AS_TRANS 23456 are reserved";
    assert_eq!(err, (line.to_owned(), ExitCode::from(4)));
}

#[tokio::test]
async fn rm_prints_what_it_removed_and_stops_at_a_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let socket = serve(dir.path(), Some(fake()));
    let (_, text) = netctl(&socket, &["bgp", "rm", "192.0.2.7", "2001:db8:0::7"])
        .await
        .unwrap();
    assert_eq!(text, "192.0.2.7\n2001:db8::7\n");
    let err = netctl(&socket, &["bgp", "rm", "10.0.0.9"])
        .await
        .unwrap_err();
    let line = "FAILED_PRECONDITION: peer 10.0.0.9 comes from the config file: remove it there";
    assert_eq!(err, (line.to_owned(), ExitCode::from(7)));
}

#[tokio::test]
async fn a_node_without_bgp_says_how_to_turn_it_on() {
    let dir = tempfile::tempdir().unwrap();
    let unconfigured = Fake {
        configured: false,
        ..fake()
    };
    let socket = serve(dir.path(), Some(unconfigured));
    let want = (
        format!("FAILED_PRECONDITION: {NOT_CONFIGURED}"),
        ExitCode::from(7),
    );
    for args in [
        &["bgp", "peers"][..],
        &["bgp", "peer", "10.0.0.9"],
        &["bgp", "routes"],
        &["bgp", "add", "192.0.2.7", "--as", "65007"],
        &["bgp", "rm", "192.0.2.7"],
    ] {
        assert_eq!(netctl(&socket, args).await.unwrap_err(), want, "{args:?}");
    }
}

#[tokio::test]
async fn a_trellisd_without_the_service_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let socket = serve(dir.path(), None);
    let (line, code) = netctl(&socket, &["bgp", "peers"]).await.unwrap_err();
    assert_eq!(
        line,
        "UNIMPLEMENTED: trellisd does not serve trellis.v1.Bgp (is it older than netctl?)"
    );
    assert_eq!(code, ExitCode::from(1));
}

#[tokio::test]
async fn no_trellisd_is_a_connection_failure() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("{}/trellisd.sock", dir.path().display());
    let (line, code) = netctl(&missing, &["bgp", "peers"]).await.unwrap_err();
    assert_eq!(code, ExitCode::from(crate::exit::CONNECT));
    assert!(line.contains(&missing), "{line}");
}
