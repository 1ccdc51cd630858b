use super::*;
use std::net::Ipv6Addr;

fn parse(bytes: &[u8]) -> BgpMessage {
    let mut ctx = BgpParsingContext::default();
    BgpMessage::parse(&mut SliceReader::new(bytes), &mut ctx)
        .unwrap_or_else(|e| panic!("netgauze cannot parse what we wrote: {e:?}"))
}

fn frame(bytes: Vec<u8>) -> Frame {
    let h: [u8; HEADER_LEN] = bytes[..HEADER_LEN].try_into().unwrap();
    let (kind, len) = check_header(&h).expect("a good header");
    assert_eq!(len, bytes.len());
    Frame { kind, bytes }
}

fn raw_update(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Frame {
    let mut body = Vec::new();
    body.extend_from_slice(&(withdrawn.len() as u16).to_be_bytes());
    body.extend_from_slice(withdrawn);
    body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    body.extend_from_slice(attrs);
    body.extend_from_slice(nlri);
    let mut m = header(kind::UPDATE, body.len());
    m.extend_from_slice(&body);
    frame(m)
}

fn attrs4(nh: Ipv4Addr) -> Attributes {
    Attributes {
        local_as: 4_200_000_001,
        four_octet_as: true,
        next_hop: IpAddr::V4(nh),
        communities: vec![(65000, 100)],
    }
}

/// ORIGIN IGP, AS_PATH [65002] (4-byte), NEXT_HOP 10.0.0.1.
const GOOD_ATTRS: &[u8] = &[
    0x40, 1, 1, 0, // ORIGIN
    0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xea, // AS_PATH
    0x40, 3, 4, 10, 0, 0, 1, // NEXT_HOP
];

fn nets(n: u32, v6: bool) -> Vec<IpNet> {
    (0..n)
        .map(|i| {
            if v6 {
                format!("2001:db8:{:x}:{:x}::/64", i >> 16, i & 0xffff)
                    .parse()
                    .unwrap()
            } else {
                format!("10.{}.{}.0/24", i >> 8, i & 0xff).parse().unwrap()
            }
        })
        .collect()
}

#[test]
fn netgauze_still_writes_a_long_attribute_malformed_without_the_flag() {
    // Why `attr` exists: with the extended-length flag off, an attribute over
    // 255 bytes is written with a 2-byte length and no flag. If this starts
    // failing, the pin moved to a fixed version: re-check `attr`.
    let list: Vec<Community> = (0..100).map(Community::new).collect();
    let a = PathAttribute::from(
        true,
        true,
        false,
        false,
        PathAttributeValue::Communities(Communities::new(list)),
    )
    .unwrap();
    let msg = BgpMessage::Update(BgpUpdateMessage::new(vec![], vec![a], vec![]));
    let mut out = Vec::new();
    msg.write(&mut out).unwrap();
    let mut ctx = BgpParsingContext::default();
    assert!(
        BgpMessage::parse(&mut SliceReader::new(&out), &mut ctx).is_err(),
        "netgauze now writes long attributes correctly without the flag"
    );
}

#[test]
fn a_long_attribute_gets_the_extended_length_flag_and_round_trips() {
    let a = Attributes {
        communities: (0..100).map(|i| (65000, i)).collect(),
        ..attrs4(Ipv4Addr::new(10, 0, 0, 1))
    };
    let msgs = announce(Family::Ipv4, &nets(3, false), &a);
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    // The COMMUNITIES attribute: flags 0xd0 (optional, transitive, extended).
    let body = &m[HEADER_LEN..];
    let attrs_start = 4;
    let mut pos = attrs_start;
    let mut found = false;
    while pos < attrs_start + usize::from(u16::from_be_bytes([body[2], body[3]])) {
        let (flags, code) = (body[pos], body[pos + 1]);
        let (len, hdr) = if flags & 0x10 != 0 {
            (
                usize::from(u16::from_be_bytes([body[pos + 2], body[pos + 3]])),
                4,
            )
        } else {
            (usize::from(body[pos + 2]), 3)
        };
        if code == 8 {
            assert_eq!(flags, 0xd0);
            assert_eq!(len, 400);
            found = true;
        }
        pos += hdr + len;
    }
    assert!(found);
    let BgpMessage::Update(u) = parse(m) else {
        panic!("not an UPDATE")
    };
    assert_eq!(u.nlri().len(), 3);
    assert_eq!(check_update(&frame(m.clone()), true).verdict, Verdict::Fine);
}

#[test]
fn many_ipv4_prefixes_pack_into_the_fewest_updates_of_at_most_4096_bytes() {
    let prefixes = nets(5000, false);
    let a = attrs4(Ipv4Addr::new(10, 0, 0, 1));
    let msgs = announce(Family::Ipv4, &prefixes, &a);
    let mut seen = 0;
    for m in &msgs {
        assert!(m.len() <= MAX_MESSAGE, "{} bytes", m.len());
        let BgpMessage::Update(u) = parse(m) else {
            panic!()
        };
        seen += u.nlri().len();
        let c = check_update(&frame(m.clone()), true);
        assert_eq!(c.verdict, Verdict::Fine);
    }
    assert_eq!(seen, 5000);
    // 4 bytes a /24: ~1015 a message.
    assert_eq!(
        msgs.len(),
        5,
        "{:?}",
        msgs.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let w = withdraw(Family::Ipv4, &prefixes, false);
    assert!(w.iter().all(|m| m.len() <= MAX_MESSAGE));
    let n: usize = w
        .iter()
        .map(|m| check_update(&frame(m.clone()), true).withdrawn)
        .sum();
    assert_eq!(n, 5000);
    assert_eq!(w.len(), 5);
}

#[test]
fn many_ipv6_prefixes_pack_into_mp_reach_of_at_most_4096_bytes() {
    let prefixes = nets(3000, true);
    let a = Attributes {
        next_hop: "fd00:99::1".parse().unwrap(),
        ..attrs4(Ipv4Addr::new(10, 0, 0, 1))
    };
    let msgs = announce(Family::Ipv6, &prefixes, &a);
    let mut seen = 0;
    for m in &msgs {
        assert!(m.len() <= MAX_MESSAGE);
        let c = check_update(&frame(m.clone()), true);
        assert_eq!(c.verdict, Verdict::Fine);
        seen += c.announced;
        assert!(matches!(parse(m), BgpMessage::Update(_)));
    }
    assert_eq!(seen, 3000);
    assert!(msgs.len() <= 7, "{}", msgs.len());
    let w = withdraw(Family::Ipv6, &prefixes, false);
    let n: usize = w
        .iter()
        .map(|m| {
            assert!(m.len() <= MAX_MESSAGE);
            check_update(&frame(m.clone()), true).withdrawn
        })
        .sum();
    assert_eq!(n, 3000);
}

#[test]
fn ipv6_routes_carry_the_global_next_hop_given() {
    let a = Attributes {
        next_hop: "fd00:99::1".parse().unwrap(),
        ..attrs4(Ipv4Addr::new(10, 0, 0, 1))
    };
    let m = &announce(Family::Ipv6, &nets(1, true), &a)[0];
    let BgpMessage::Update(u) = parse(m) else {
        panic!()
    };
    let reach = u
        .path_attributes()
        .iter()
        .find_map(|a| match a.value() {
            PathAttributeValue::MpReach(MpReach::Ipv6Unicast {
                next_hop_global, ..
            }) => Some(*next_hop_global),
            _ => None,
        })
        .expect("MP_REACH_NLRI");
    assert_eq!(reach, "fd00:99::1".parse::<Ipv6Addr>().unwrap());
}

#[test]
fn end_of_rib_markers_are_what_the_rfc_says() {
    for f in Family::ALL {
        let BgpMessage::Update(u) = parse(&end_of_rib(f)) else {
            panic!()
        };
        assert_eq!(u.end_of_rib(), Some(f.address_type()));
    }
    assert_eq!(end_of_rib(Family::Ipv4).len(), 23);
}

#[test]
fn our_open_uses_as_trans_and_offers_every_capability() {
    let l = LocalOpen {
        asn: 4_200_000_001,
        hold_time: 9,
        router_id: Ipv4Addr::new(10, 99, 0, 1),
        families: Family::ALL.to_vec(),
        graceful_restart: Some((120, true)),
    };
    let bytes = open(&l);
    assert_eq!(u16::from_be_bytes([bytes[20], bytes[21]]), AS_TRANS);
    let o = parse_open(
        &frame(bytes),
        4_200_000_001,
        65000,
        Ipv4Addr::new(10, 99, 0, 2),
    )
    .unwrap();
    assert_eq!(o.asn, 4_200_000_001);
    assert!(o.four_octet_as);
    assert_eq!(o.families, Family::ALL.to_vec());
    assert!(o.route_refresh);
    assert_eq!(o.graceful_restart, Some(120));
    assert_eq!(o.hold_time, 9);
}

#[test]
fn a_wrong_open_gets_the_notification_the_rfc_names() {
    let l = |asn, hold| LocalOpen {
        asn,
        hold_time: hold,
        router_id: Ipv4Addr::new(10, 99, 0, 1),
        families: vec![Family::Ipv4],
        graceful_restart: None,
    };
    let id = Ipv4Addr::new(10, 99, 0, 2);
    let e = parse_open(&frame(open(&l(65001, 9))), 65002, 65000, id).unwrap_err();
    assert_eq!((e.code, e.subcode), (2, 2), "{e}");
    assert!(e.reason.contains("AS 65001"), "{e}");
    let e = parse_open(&frame(open(&l(65001, 2))), 65001, 65000, id).unwrap_err();
    assert_eq!((e.code, e.subcode), (2, 6), "{e}");
    let mut v3 = open(&l(65001, 9));
    v3[HEADER_LEN] = 3;
    let e = parse_open(&frame(v3), 65001, 65000, id).unwrap_err();
    assert_eq!((e.code, e.subcode), (2, 1), "{e}");
    // iBGP with our own identifier.
    let e = parse_open(
        &frame(open(&l(65000, 9))),
        65000,
        65000,
        Ipv4Addr::new(10, 99, 0, 1),
    )
    .unwrap_err();
    assert_eq!((e.code, e.subcode), (2, 3), "{e}");
}

#[test]
fn bad_headers_are_named_by_their_codes() {
    let mut h = [0xffu8; HEADER_LEN];
    h[16..18].copy_from_slice(&19u16.to_be_bytes());
    h[18] = kind::KEEPALIVE;
    assert_eq!(check_header(&h), Ok((kind::KEEPALIVE, 19)));
    let mut m = h;
    m[3] = 0;
    assert_eq!(check_header(&m).unwrap_err().subcode, 1);
    let mut m = h;
    m[16..18].copy_from_slice(&5000u16.to_be_bytes());
    let e = check_header(&m).unwrap_err();
    assert_eq!(
        (e.code, e.subcode, e.data.clone()),
        (1, 2, 5000u16.to_be_bytes().to_vec())
    );
    let mut m = h;
    m[16..18].copy_from_slice(&20u16.to_be_bytes());
    assert_eq!(
        check_header(&m).unwrap_err().subcode,
        2,
        "a 20-byte KEEPALIVE"
    );
    let mut m = h;
    m[18] = 9;
    let e = check_header(&m).unwrap_err();
    assert_eq!((e.code, e.subcode, e.data.clone()), (1, 3, vec![9]));
}

#[test]
fn a_good_update_is_fine_and_counted() {
    let c = check_update(&raw_update(&[], GOOD_ATTRS, &[24, 10, 1, 2]), true);
    assert_eq!(
        c,
        UpdateCheck {
            announced: 1,
            withdrawn: 0,
            verdict: Verdict::Fine
        }
    );
    let c = check_update(&raw_update(&[16, 10, 9], &[], &[]), true);
    assert_eq!(
        c,
        UpdateCheck {
            announced: 0,
            withdrawn: 1,
            verdict: Verdict::Fine
        }
    );
}

fn with_attr(extra: &[u8]) -> Vec<u8> {
    let mut a = GOOD_ATTRS.to_vec();
    a.extend_from_slice(extra);
    a
}

fn verdict(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Verdict {
    check_update(&raw_update(withdrawn, attrs, nlri), true).verdict
}

fn reset_code(v: Verdict) -> (u8, u8) {
    match v {
        Verdict::Reset(n) => (n.code, n.subcode),
        other => panic!("expected a reset, got {other:?}"),
    }
}

#[test]
fn rfc7606_treat_as_withdraw_cases() {
    let nlri = [24, 10, 1, 2];
    let mut bad_origin = GOOD_ATTRS.to_vec();
    bad_origin[3] = 5;
    assert!(
        matches!(verdict(&[], &bad_origin, &nlri), Verdict::TreatAsWithdraw(w) if w.contains("ORIGIN value 5"))
    );
    // NEXT_HOP missing while NLRI is present.
    let no_nh = &GOOD_ATTRS[..13];
    assert!(
        matches!(verdict(&[], no_nh, &nlri), Verdict::TreatAsWithdraw(w) if w.contains("NEXT_HOP"))
    );
    // NEXT_HOP of length 5 (the value still within the attributes).
    let mut a = GOOD_ATTRS[..13].to_vec();
    a.extend_from_slice(&[0x40, 3, 5, 10, 0, 0, 1, 0]);
    assert!(
        matches!(verdict(&[], &a, &nlri), Verdict::TreatAsWithdraw(w) if w.contains("NEXT_HOP of length 5"))
    );
    // AS_PATH with an empty segment.
    let mut a = GOOD_ATTRS.to_vec();
    a[4..13].copy_from_slice(&[0x40, 2, 6, 2, 0, 0, 0, 0xfd, 0xea]);
    assert!(
        matches!(verdict(&[], &a, &nlri), Verdict::TreatAsWithdraw(w) if w.contains("AS_PATH"))
    );
    // COMMUNITIES of length 3.
    assert!(matches!(
        verdict(&[], &with_attr(&[0xc0, 8, 3, 1, 2, 3]), &nlri),
        Verdict::TreatAsWithdraw(_)
    ));
    // ORIGIN with the optional bit.
    let mut a = GOOD_ATTRS.to_vec();
    a[0] = 0xc0;
    assert!(matches!(verdict(&[], &a, &nlri), Verdict::TreatAsWithdraw(w) if w.contains("flags")));
    // An attribute's length overruns the attribute list (no MP attribute).
    assert!(
        matches!(verdict(&[], &with_attr(&[0xc0, 8, 40, 1, 2, 3, 4]), &nlri), Verdict::TreatAsWithdraw(w) if w.contains("overruns"))
    );
}

#[test]
fn rfc7606_attribute_discard_cases() {
    let nlri = [24, 10, 1, 2];
    // A second ORIGIN.
    assert!(
        matches!(verdict(&[], &with_attr(&[0x40, 1, 1, 0]), &nlri), Verdict::AttributeDiscard(w) if w.contains("twice"))
    );
    // AGGREGATOR of length 3.
    assert!(matches!(
        verdict(&[], &with_attr(&[0xc0, 7, 3, 1, 2, 3]), &nlri),
        Verdict::AttributeDiscard(_)
    ));
    // ATOMIC_AGGREGATE with a value.
    assert!(matches!(
        verdict(&[], &with_attr(&[0x40, 6, 1, 0]), &nlri),
        Verdict::AttributeDiscard(_)
    ));
}

#[test]
fn rfc7606_session_reset_cases() {
    let nlri = [24, 10, 1, 2];
    // NLRI prefix length 33: invalid network field.
    assert_eq!(
        reset_code(verdict(&[], GOOD_ATTRS, &[33, 10, 1, 2, 3, 4])),
        (3, 10)
    );
    // Withdrawn prefix overruns its field.
    assert_eq!(reset_code(verdict(&[24, 10], &[], &[])), (3, 10));
    // Total attribute length overruns the message.
    let mut f = raw_update(&[], GOOD_ATTRS, &nlri);
    let at = HEADER_LEN + 2;
    f.bytes[at..at + 2].copy_from_slice(&200u16.to_be_bytes());
    assert_eq!(reset_code(check_update(&f, true).verdict), (3, 1));
    // Withdrawn length overruns the message.
    let mut f = raw_update(&[], GOOD_ATTRS, &nlri);
    f.bytes[HEADER_LEN..HEADER_LEN + 2].copy_from_slice(&300u16.to_be_bytes());
    assert_eq!(reset_code(check_update(&f, true).verdict), (3, 1));
    // MP_REACH_NLRI (IPv6) with a /129.
    let mp = [
        0x80, 14, 22, 0, 2, 1, 16, 0xfd, 0, 0, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 129,
    ];
    let mut a = GOOD_ATTRS[..13].to_vec();
    a.extend_from_slice(&mp[..3]);
    a.extend_from_slice(&mp[3..]);
    // fix the length byte to the value's real length
    a[15] = (mp.len() - 3) as u8;
    assert_eq!(reset_code(verdict(&[], &a, &[])), (3, 9));
    // Two MP_UNREACH_NLRI.
    let un = [0x80, 15, 3, 0, 2, 1];
    let mut a = GOOD_ATTRS.to_vec();
    a.extend_from_slice(&un);
    a.extend_from_slice(&un);
    assert_eq!(reset_code(verdict(&[], &a, &nlri)), (3, 1));
    // An unknown well-known attribute (optional bit clear).
    assert_eq!(
        reset_code(verdict(&[], &with_attr(&[0x40, 99, 1, 0]), &nlri)),
        (3, 2)
    );
}

#[test]
fn route_refresh_names_its_family_or_is_refused_by_length() {
    let mut m = header(kind::ROUTE_REFRESH, 4);
    m.extend_from_slice(&[0, 2, 0, 1]);
    assert_eq!(parse_route_refresh(&frame(m)), Ok(Some(Family::Ipv6)));
    let mut m = header(kind::ROUTE_REFRESH, 4);
    m.extend_from_slice(&[0, 1, 0, 128]);
    assert_eq!(parse_route_refresh(&frame(m)), Ok(None));
    let mut m = header(kind::ROUTE_REFRESH, 5);
    m.extend_from_slice(&[0, 2, 0, 1, 0]);
    let e = parse_route_refresh(&frame(m)).unwrap_err();
    assert_eq!((e.code, e.subcode), (7, 1));
}

#[test]
fn a_notification_carrying_a_whole_long_message_is_cut_to_4096_bytes() {
    // A ROUTE-REFRESH of the largest length: its NOTIFICATION carries it
    // back as data, which would make 4117 bytes (fuzz/'s bgp_message).
    let mut m = header(kind::ROUTE_REFRESH, MAX_MESSAGE - HEADER_LEN);
    m.extend_from_slice(&[0, 1, 0, 1]);
    m.resize(MAX_MESSAGE, 0);
    let sent = m.clone();
    let n = parse_route_refresh(&frame(m)).unwrap_err();
    assert_eq!(n.data, sent, "the data is the whole message");
    let out = n.encode();
    assert_eq!(out.len(), MAX_MESSAGE);
    assert_eq!(
        check_header(&out[..HEADER_LEN].try_into().unwrap()),
        Ok((kind::NOTIFICATION, MAX_MESSAGE))
    );
    assert_eq!(&out[HEADER_LEN..HEADER_LEN + 2], &[7, 1]);
    assert_eq!(
        &out[HEADER_LEN + 2..],
        &sent[..MAX_MESSAGE - HEADER_LEN - 2]
    );
}

#[test]
fn a_notification_is_written_as_code_subcode_and_data() {
    let n = Notify::new(6, 2, b"bye".to_vec(), "shutdown");
    let m = n.encode();
    assert_eq!(m.len(), 24);
    assert_eq!(&m[18..], &[3, 6, 2, b'b', b'y', b'e']);
    assert_eq!(parse_notification(&frame(m)), (6, 2));
}
