//! The speaker over real TCP on loopback: connecting out with backoff,
//! taking connections in, replacing a passive peer's session, refusing
//! strangers, TCP MD5, and the peer table's errors.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use trellis_bgp::wire::{self, Family, Frame, LocalOpen, ReadError, kind, read_frame};
use trellis_bgp::{Error, PeerConfig, SessionState, Speaker, SpeakerConfig, Stop};

const OUR_AS: u32 = 4_200_000_002;
const THEIR_AS: u32 = 65000;
const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn config() -> SpeakerConfig {
    SpeakerConfig {
        hold_time: 9,
        connect_retry: Duration::from_millis(100),
        connect_retry_max: Duration::from_millis(400),
        open_timeout: Duration::from_secs(2),
        ..SpeakerConfig::new(OUR_AS, Ipv4Addr::new(10, 99, 0, 1))
    }
}

/// A scripted peer on one connection.
struct Scripted(TcpStream);

impl Scripted {
    async fn read(&mut self) -> Frame {
        tokio::time::timeout(Duration::from_secs(10), read_frame(&mut self.0))
            .await
            .expect("a message within 10 s")
            .expect("a message")
    }

    async fn establish(&mut self) {
        assert_eq!(self.read().await.kind, kind::OPEN);
        let open = wire::open(&LocalOpen {
            asn: THEIR_AS,
            hold_time: 9,
            router_id: Ipv4Addr::new(10, 99, 0, 2),
            families: Family::ALL.to_vec(),
            graceful_restart: Some((120, false)),
        });
        self.0.write_all(&open).await.unwrap();
        assert_eq!(self.read().await.kind, kind::KEEPALIVE);
        self.0.write_all(&wire::keepalive()).await.unwrap();
    }

    /// Announced prefixes until End-of-RIB for IPv4.
    async fn table(&mut self) -> usize {
        let mut n = 0;
        loop {
            let f = self.read().await;
            if f.kind == kind::KEEPALIVE {
                continue;
            }
            assert_eq!(f.kind, kind::UPDATE, "{f:?}");
            if f.bytes.len() == 23 {
                return n;
            }
            n += wire::check_update(&f, true).announced;
        }
    }

    async fn closed(&mut self) -> bool {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), read_frame(&mut self.0)).await {
                Err(_) => return false,
                Ok(Err(ReadError::Closed | ReadError::Io(_))) => return true,
                Ok(Err(e)) => panic!("{e:?}"),
                Ok(Ok(f)) if f.kind == kind::NOTIFICATION => {}
                Ok(Ok(_)) => {}
            }
        }
    }
}

fn blocks() -> Vec<IpNet> {
    vec![
        "10.244.0.0/26".parse().unwrap(),
        "10.244.0.64/26".parse().unwrap(),
    ]
}

async fn wait_state(s: &Speaker, peer: IpAddr, want: SessionState) {
    for _ in 0..200 {
        if s.peer(peer).map(|p| p.state) == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("peer {peer} never {want:?}: {:?}", s.peer(peer));
}

#[tokio::test]
async fn an_active_peer_connects_sends_its_table_and_reconnects_after_a_drop() {
    let router = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = router.local_addr().unwrap().port();
    let s = Speaker::start(config()).await.unwrap();
    s.set_routes(blocks());
    s.add_peer(PeerConfig {
        port,
        ..PeerConfig::new(LO, THEIR_AS)
    })
    .unwrap();
    let (c, _) = router.accept().await.unwrap();
    let mut p = Scripted(c);
    p.establish().await;
    assert_eq!(p.table().await, 2);
    wait_state(&s, LO, SessionState::Established).await;
    let st = s.peer(LO).unwrap();
    assert_eq!(st.advertised.len(), 2);
    let n = st.negotiated.unwrap();
    assert_eq!(
        (n.peer.asn, n.hold_time, n.four_octet_as),
        (THEIR_AS, 9, true)
    );

    drop(p); // the router goes away
    let (c, _) = tokio::time::timeout(Duration::from_secs(5), router.accept())
        .await
        .expect("the speaker reconnects")
        .unwrap();
    let mut p = Scripted(c);
    p.establish().await;
    assert_eq!(p.table().await, 2, "the whole table again");
    let st = s.peer(LO).unwrap();
    assert_eq!(st.counters.established, 2);
    assert!(
        st.last_error.unwrap().contains("closed"),
        "why the first session ended"
    );

    s.remove_peer(LO).await.unwrap();
    let n = loop {
        let f = p.read().await;
        if f.kind == kind::NOTIFICATION {
            break f;
        }
    };
    assert_eq!(wire::parse_notification(&n), (6, 3));
    assert!(s.peers().is_empty());
}

#[tokio::test]
async fn a_refused_connection_is_retried_with_backoff() {
    // A port with nothing listening: grab one and close it.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = Speaker::start(config()).await.unwrap();
    s.add_peer(PeerConfig {
        port,
        ..PeerConfig::new(LO, THEIR_AS)
    })
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let st = s.peer(LO).unwrap();
    // 100, 200, 400, 400 ms (75–100 % each): 3 to 6 attempts in 1.2 s.
    let n = st.counters.connect_failures;
    assert!((3..=7).contains(&n), "{n} attempts");
    assert!(st.last_error.unwrap().contains("refused"));
    s.shutdown(Stop::Shutdown).await;
}

#[tokio::test]
async fn a_passive_peer_is_taken_on_the_listener_and_a_new_connection_replaces_the_old() {
    let s = Speaker::start(SpeakerConfig {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        ..config()
    })
    .await
    .unwrap();
    let at: SocketAddr = s.listen_addr().unwrap();
    s.set_routes(blocks());
    s.add_peer(PeerConfig {
        passive: true,
        ..PeerConfig::new(LO, THEIR_AS)
    })
    .unwrap();
    let mut first = Scripted(TcpStream::connect(at).await.unwrap());
    first.establish().await;
    assert_eq!(first.table().await, 2);
    // The router restarts and comes back before our hold timer notices.
    let mut second = Scripted(TcpStream::connect(at).await.unwrap());
    second.establish().await;
    assert_eq!(second.table().await, 2);
    assert!(first.closed().await, "the old connection is closed");
    let st = s.peer(LO).unwrap();
    assert_eq!(st.counters.established, 2);
    assert_eq!(st.state, SessionState::Established);
    s.shutdown(Stop::Shutdown).await;
}

#[tokio::test]
async fn a_connection_from_a_stranger_or_an_active_peer_is_closed() {
    let s = Speaker::start(SpeakerConfig {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        ..config()
    })
    .await
    .unwrap();
    let at = s.listen_addr().unwrap();
    let mut stranger = Scripted(TcpStream::connect(at).await.unwrap());
    assert!(stranger.closed().await);
    // An active peer at 127.0.0.1 (port 9: nobody) refuses our connection too.
    s.add_peer(PeerConfig {
        port: 9,
        ..PeerConfig::new(LO, THEIR_AS)
    })
    .unwrap();
    let mut c = Scripted(TcpStream::connect(at).await.unwrap());
    assert!(c.closed().await);
    s.shutdown(Stop::Shutdown).await;
}

#[tokio::test]
async fn tcp_md5_lets_the_right_key_in_and_keeps_a_wrong_one_out() {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    trellis_bgp::md5::set_key(&sock, LO, b"s3cret").unwrap();
    let router = sock.listen(8).unwrap();
    let port = router.local_addr().unwrap().port();
    let s = Speaker::start(config()).await.unwrap();
    s.set_routes(blocks());
    // The wrong key first: the SYN is dropped by the kernel, nothing connects.
    s.add_peer(PeerConfig {
        port,
        md5_password: Some("wrong".into()),
        ..PeerConfig::new(LO, THEIR_AS)
    })
    .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(2500), router.accept())
            .await
            .is_err(),
        "a connection with the wrong MD5 key got through"
    );
    s.remove_peer(LO).await.unwrap();
    s.add_peer(PeerConfig {
        port,
        md5_password: Some("s3cret".into()),
        ..PeerConfig::new(LO, THEIR_AS)
    })
    .unwrap();
    let (c, _) = tokio::time::timeout(Duration::from_secs(5), router.accept())
        .await
        .expect("the right key connects")
        .unwrap();
    let mut p = Scripted(c);
    p.establish().await;
    assert_eq!(p.table().await, 2);
    s.shutdown(Stop::Shutdown).await;
}

#[tokio::test]
async fn the_peer_table_refuses_what_it_cannot_do_by_name() {
    let s = Speaker::start(config()).await.unwrap();
    s.add_peer(PeerConfig {
        port: 9,
        ..PeerConfig::new(LO, THEIR_AS)
    })
    .unwrap();
    let e = s
        .add_peer(PeerConfig {
            port: 9,
            ..PeerConfig::new(LO, 65009)
        })
        .unwrap_err();
    assert!(matches!(e, Error::Exists(a) if a == LO), "{e}");
    let e = s
        .remove_peer("10.9.9.9".parse().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e}");
    let e = s
        .add_peer(PeerConfig {
            passive: true,
            ..PeerConfig::new("10.9.9.9".parse().unwrap(), THEIR_AS)
        })
        .unwrap_err();
    assert!(
        e.to_string().contains("passive") && e.to_string().contains("listener"),
        "{e}"
    );
    let e = s
        .add_peer(PeerConfig::new("224.0.0.5".parse().unwrap(), THEIR_AS))
        .unwrap_err();
    assert!(e.to_string().starts_with("address 224.0.0.5"), "{e}");
    let e = s
        .add_peer(PeerConfig {
            hold_time: Some(2),
            ..PeerConfig::new("10.9.9.9".parse().unwrap(), THEIR_AS)
        })
        .unwrap_err();
    assert!(e.to_string().starts_with("hold_time 2"), "{e}");
    let e = s
        .add_peer(PeerConfig {
            md5_password: Some("x".repeat(81)),
            ..PeerConfig::new("10.9.9.9".parse().unwrap(), THEIR_AS)
        })
        .unwrap_err();
    assert!(e.to_string().starts_with("md5_password 81 bytes"), "{e}");
    assert_eq!(s.peers().len(), 1, "nothing half-added");
    let e = Speaker::start(SpeakerConfig::new(0, Ipv4Addr::new(10, 0, 0, 1)))
        .await
        .err()
        .unwrap();
    assert!(e.to_string().starts_with("local_as 0"), "{e}");
    s.shutdown(Stop::Shutdown).await;
}
