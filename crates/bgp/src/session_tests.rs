//! Sessions against a scripted peer over an in-memory pipe, with paused
//! time: every timer fires exactly when the protocol says.

use super::*;
use crate::wire::{LocalOpen, UpdateCheck, check_update, read_frame};
use std::net::Ipv4Addr;
use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;

const OUR_AS: u32 = 65002;
const THEIR_AS: u32 = 65000;

struct Lab {
    peer: DuplexStream,
    exports: watch::Sender<Exports>,
    status: Arc<Mutex<PeerStatus>>,
    stop: mpsc::Sender<Stop>,
    session: JoinHandle<Ended>,
}

fn speaker(hold: u16) -> SpeakerConfig {
    SpeakerConfig {
        hold_time: hold,
        ..SpeakerConfig::new(OUR_AS, Ipv4Addr::new(10, 99, 0, 1))
    }
}

fn start(sp: SpeakerConfig) -> Lab {
    let (ours, peer) = tokio::io::duplex(1 << 20);
    let (exports, rx) = watch::channel(None);
    let config = PeerConfig::new("10.99.0.2".parse().unwrap(), THEIR_AS);
    let status = Arc::new(Mutex::new(PeerStatus::new(config.clone())));
    let mut ctx = Ctx {
        speaker: Arc::new(sp),
        peer: config,
        status: status.clone(),
        exports: rx,
        restarted: true,
    };
    let (stop, mut stop_rx) = mpsc::channel(1);
    let session = tokio::spawn(async move {
        run(ours, "10.99.0.1".parse().unwrap(), &mut ctx, &mut stop_rx).await
    });
    Lab {
        peer,
        exports,
        status,
        stop,
        session,
    }
}

fn their_open(asn: u32, hold: u16) -> Vec<u8> {
    wire::open(&LocalOpen {
        asn,
        hold_time: hold,
        router_id: Ipv4Addr::new(10, 99, 0, 2),
        families: Family::ALL.to_vec(),
        graceful_restart: Some((120, false)),
    })
}

impl Lab {
    async fn read(&mut self) -> Frame {
        read_frame(&mut self.peer)
            .await
            .expect("a message from the speaker")
    }

    async fn send(&mut self, m: &[u8]) {
        self.peer.write_all(m).await.unwrap();
    }

    /// OPEN both ways, KEEPALIVE both ways.
    async fn establish(&mut self, hold: u16) {
        let open = self.read().await;
        assert_eq!(open.kind, kind::OPEN);
        self.send(&their_open(THEIR_AS, hold)).await;
        assert_eq!(self.read().await.kind, kind::KEEPALIVE);
        self.send(&wire::keepalive()).await;
        // Let the session see it.
        tokio::task::yield_now().await;
        for _ in 0..10 {
            if self.state() == SessionState::Established {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("not established: {:?}", self.state());
    }

    fn state(&self) -> SessionState {
        self.status.lock().unwrap().state
    }

    fn set(&self, prefixes: &[&str]) {
        let set: BTreeSet<IpNet> = prefixes.iter().map(|p| p.parse().unwrap()).collect();
        self.exports.send_replace(Some(Arc::new(set)));
    }

    /// The next UPDATE, skipping KEEPALIVEs.
    async fn update(&mut self) -> (Frame, UpdateCheck) {
        loop {
            let f = self.read().await;
            if f.kind == kind::UPDATE {
                let c = check_update(&f, true);
                return (f, c);
            }
            assert_eq!(f.kind, kind::KEEPALIVE, "{f:?}");
        }
    }

    /// The next non-KEEPALIVE message.
    async fn next_not_keepalive(&mut self) -> Frame {
        loop {
            let f = self.read().await;
            if f.kind != kind::KEEPALIVE {
                return f;
            }
        }
    }
}

fn is_eor(f: &Frame) -> bool {
    f.bytes.len() == 23 || f.body() == [0, 0, 0, 6, 0x80, 0x0f, 3, 0, 2, 1]
}

#[tokio::test(start_paused = true)]
async fn the_table_goes_out_with_end_of_rib_and_then_only_differences() {
    let sp = SpeakerConfig {
        next_hop_v6: Some("fd00:99::1".parse().unwrap()),
        ..speaker(9)
    };
    let mut lab = start(sp);
    lab.set(&["10.244.0.0/26", "10.244.0.64/26", "fd00:244::/122"]);
    lab.establish(9).await;
    let (_, c) = lab.update().await;
    assert_eq!((c.announced, c.verdict.clone()), (2, wire::Verdict::Fine));
    let (_, c) = lab.update().await;
    assert_eq!(c.announced, 1, "the IPv6 block");
    let (eor4, _) = lab.update().await;
    let (eor6, _) = lab.update().await;
    assert!(is_eor(&eor4) && is_eor(&eor6));
    assert_eq!(lab.status.lock().unwrap().advertised.len(), 3);

    // One block given back, one claimed: one withdrawal, one announcement.
    lab.set(&["10.244.0.0/26", "10.244.0.128/26", "fd00:244::/122"]);
    let (_, w) = lab.update().await;
    assert_eq!((w.withdrawn, w.announced), (1, 0));
    let (_, a) = lab.update().await;
    assert_eq!((a.withdrawn, a.announced), (0, 1));
    let st = lab.status.lock().unwrap().clone();
    assert_eq!(st.counters.prefixes_announced, 4);
    assert_eq!(st.counters.prefixes_withdrawn, 1);
    assert!(st.advertised.contains(&"10.244.0.128/26".parse().unwrap()));
}

#[tokio::test(start_paused = true)]
async fn nothing_is_sent_before_the_export_set_is_known() {
    let mut lab = start(speaker(9));
    lab.establish(9).await;
    // 20 s: keepalives only (every 3 s), no UPDATE, no End-of-RIB.
    let until = Instant::now() + Duration::from_secs(20);
    let mut keepalives = 0;
    while Instant::now() < until {
        let f = lab.read().await;
        assert_eq!(
            f.kind,
            kind::KEEPALIVE,
            "something before the export set: {f:?}"
        );
        keepalives += 1;
        lab.send(&wire::keepalive()).await;
    }
    assert!(keepalives >= 6, "{keepalives}");
    lab.set(&["10.244.0.0/26"]);
    let (_, c) = lab.update().await;
    assert_eq!(c.announced, 1);
    let (eor, _) = lab.update().await;
    assert!(is_eor(&eor));
    // No IPv6 next hop over an IPv4 session: IPv6 left out, and said so.
    let st = lab.status.lock().unwrap().clone();
    assert!(
        st.warnings
            .iter()
            .any(|w| w.contains("ipv6-unicast routes are not sent")),
        "{:?}",
        st.warnings
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_detected_when_the_hold_timer_expires() {
    let mut lab = start(speaker(9));
    lab.establish(9).await;
    let t0 = Instant::now();
    let mut keepalives = 0;
    let n = loop {
        let f = lab.read().await;
        match f.kind {
            kind::KEEPALIVE => keepalives += 1,
            kind::NOTIFICATION => break f,
            k => panic!("type {k}"),
        }
    };
    assert_eq!(wire::parse_notification(&n), (4, 0));
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    assert_eq!(
        keepalives, 2,
        "keepalives at 3 s and 6 s (9 s is the expiry)"
    );
    let ended = lab.session.await.unwrap();
    assert!(ended.unwrap_err().contains("nothing from the peer for 9 s"));
    assert_eq!(lab.status.lock().unwrap().counters.hold_timer_expired, 1);
}

#[tokio::test(start_paused = true)]
async fn keepalives_from_the_peer_keep_the_session_up() {
    let mut lab = start(speaker(9));
    lab.establish(9).await;
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        let f = lab.read().await;
        assert_eq!(f.kind, kind::KEEPALIVE);
        lab.send(&wire::keepalive()).await;
    }
    assert_eq!(lab.state(), SessionState::Established);
}

#[tokio::test(start_paused = true)]
async fn a_malformed_update_is_treated_as_withdraw_or_resets_by_rfc7606() {
    let mut lab = start(speaker(9));
    lab.establish(9).await;
    // ORIGIN value 7: treat-as-withdraw, the session stays.
    let bad_origin = [
        0xffu8,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff,
        0,
        27 + 20 - 4,
        2, //
        0,
        0,
        0,
        20, //
        0x40,
        1,
        1,
        7,
        0x40,
        2,
        6,
        2,
        1,
        0,
        0,
        0xfd,
        0xe8,
        0x40,
        3,
        4,
        10,
        0,
        0,
        1, //
        24,
        10,
        1,
        2,
    ];
    let mut m = bad_origin.to_vec();
    let len = m.len() as u16;
    m[16..18].copy_from_slice(&len.to_be_bytes());
    lab.send(&m).await;
    lab.send(&wire::keepalive()).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    {
        let st = lab.status.lock().unwrap();
        assert_eq!(st.state, SessionState::Established);
        assert_eq!(st.counters.treat_as_withdraw, 1);
        assert!(st.last_error.as_deref().unwrap().contains("ORIGIN value 7"));
    }
    // NLRI /40: invalid network field, NOTIFICATION 3/10 and the end.
    let mut m = bad_origin.to_vec();
    let len = m.len() as u16;
    m[16..18].copy_from_slice(&len.to_be_bytes());
    m[26] = 0; // ORIGIN IGP
    let at = m.len() - 4;
    m[at] = 40;
    lab.send(&m).await;
    let n = lab.next_not_keepalive().await;
    assert_eq!(wire::parse_notification(&n), (3, 10));
    assert!(lab.session.await.unwrap().unwrap_err().contains("NLRI"));
}

#[tokio::test(start_paused = true)]
async fn route_refresh_is_answered_with_the_family_again() {
    let mut lab = start(speaker(9));
    lab.set(&["10.244.0.0/26", "10.244.1.0/26"]);
    lab.establish(9).await;
    let _ = lab.update().await;
    let _ = lab.update().await; // End-of-RIB
    let mut rr = wire::keepalive();
    rr[17] = 23;
    rr[18] = kind::ROUTE_REFRESH;
    rr.extend_from_slice(&[0, 1, 0, 1]);
    lab.send(&rr).await;
    let (_, c) = lab.update().await;
    assert_eq!(c.announced, 2);
    assert_eq!(lab.status.lock().unwrap().counters.route_refreshes_in, 1);
}

#[tokio::test(start_paused = true)]
async fn a_peer_in_the_wrong_as_gets_bad_peer_as() {
    let mut lab = start(speaker(9));
    assert_eq!(lab.read().await.kind, kind::OPEN);
    lab.send(&their_open(65099, 9)).await;
    let n = lab.read().await;
    assert_eq!(wire::parse_notification(&n), (2, 2));
    assert!(lab.session.await.unwrap().unwrap_err().contains("AS 65099"));
}

#[tokio::test(start_paused = true)]
async fn no_open_in_time_ends_the_attempt() {
    let mut lab = start(speaker(9));
    assert_eq!(lab.read().await.kind, kind::OPEN);
    let n = lab.read().await;
    assert_eq!(wire::parse_notification(&n), (4, 0));
}

#[tokio::test(start_paused = true)]
async fn removing_the_peer_sends_cease_and_a_restart_sends_nothing() {
    let mut lab = start(speaker(9));
    lab.establish(9).await;
    lab.stop.send(Stop::Deconfigured).await.unwrap();
    let n = lab.next_not_keepalive().await;
    assert_eq!(wire::parse_notification(&n), (6, 3));
    assert!(lab.session.await.unwrap().is_ok());

    let mut lab = start(speaker(9));
    lab.establish(9).await;
    lab.stop.send(Stop::Restart).await.unwrap();
    assert!(lab.session.await.unwrap().is_ok());
    loop {
        match read_frame(&mut lab.peer).await {
            Ok(f) => assert_eq!(f.kind, kind::KEEPALIVE, "a restart sends no NOTIFICATION"),
            Err(ReadError::Closed) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_first_open_after_start_carries_the_restart_bit() {
    let mut lab = start(speaker(9));
    let open = lab.read().await;
    // Find the graceful-restart capability (code 64): flags nibble R=0x8.
    let b = open.body();
    let params = &b[10..];
    let pos = params
        .windows(2)
        .position(|w| w[0] == 64 && w[1] == 10)
        .expect("graceful restart capability with two families");
    assert_eq!(params[pos + 2] & 0x80, 0x80, "R bit");
    // Each family keeps forwarding state (F bit).
    assert_eq!(params[pos + 4 + 3] & 0x80, 0x80);
    assert_eq!(params[pos + 8 + 3] & 0x80, 0x80);
}
