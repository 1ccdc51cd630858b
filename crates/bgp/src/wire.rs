//! Messages on the wire: framing, what we send, and what we check of what we
//! receive.
//!
//! Encoding of OPEN, UPDATE and KEEPALIVE is netgauze-bgp-pkt's (pinned); this
//! module adds what that crate leaves to its user (docs/bgp-netgauze-0.13.md):
//!
//! * **framing** — its parser takes one whole message and errors on a partial
//!   one, so [`read_frame`] reads the 19-byte header, checks it (marker,
//!   length, type: RFC 4271 §6.1) and then the body;
//! * **extended length** — an attribute longer than 255 bytes is written
//!   malformed unless its extended-length flag is set by hand: [`attr`] sets it;
//! * **4096 bytes** — the encoder does not cap an UPDATE (its length even wraps
//!   past 64 KiB): [`announce`] and [`withdraw`] pack prefixes by `len()` and
//!   never exceed [`MAX_MESSAGE`], and [`encode`] refuses anything bigger;
//! * **RFC 7606** — the decoder fails a whole UPDATE and cannot say whether an
//!   error resets the session, withdraws the routes or drops one attribute, so
//!   [`check_update`] walks the UPDATE's fields itself and classifies. An
//!   export-only speaker keeps no routes it receives, so the verdict decides
//!   only between going on (counted, reported) and a NOTIFICATION.
//!
//! NOTIFICATIONs are written and read here as raw code, subcode and data:
//! the crate's typed enums add nothing for a speaker that must send exact
//! codes with data of its choosing.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::capabilities::{
    BgpCapability, FourOctetAsCapability, GracefulRestartAddressFamily, GracefulRestartCapability,
    MultiProtocolExtensionsCapability,
};
use netgauze_bgp_pkt::community::Community;
use netgauze_bgp_pkt::nlri::{Ipv4Unicast, Ipv4UnicastAddress, Ipv6Unicast, Ipv6UnicastAddress};
use netgauze_bgp_pkt::open::{BgpOpenMessage, BgpOpenMessageParameter};
use netgauze_bgp_pkt::path_attribute::{
    As2PathSegment, As4PathSegment, AsPath, AsPathSegmentType, Communities, MpReach, MpUnreach,
    NextHop, Origin, PathAttribute, PathAttributeValue,
};
use netgauze_bgp_pkt::update::BgpUpdateMessage;
use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
use netgauze_iana::address_family::AddressType;
use netgauze_parse_utils::WritablePdu;
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::ParseFromWithOneInput;
use std::net::{IpAddr, Ipv4Addr};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The fixed header: 16 bytes of marker, 2 of length, 1 of type.
pub const HEADER_LEN: usize = 19;
/// The largest message (RFC 4271 §4.1; we never negotiate RFC 8654).
pub const MAX_MESSAGE: usize = 4096;
/// AS_TRANS (RFC 6793): the OPEN's 2-byte AS field when ours is wider.
pub const AS_TRANS: u16 = 23456;

/// Message types (RFC 4271 §4.1, RFC 2918).
pub mod kind {
    /// OPEN
    pub const OPEN: u8 = 1;
    /// UPDATE
    pub const UPDATE: u8 = 2;
    /// NOTIFICATION
    pub const NOTIFICATION: u8 = 3;
    /// KEEPALIVE
    pub const KEEPALIVE: u8 = 4;
    /// ROUTE-REFRESH
    pub const ROUTE_REFRESH: u8 = 5;
}

/// An address family this speaker exports: IPv4 or IPv6 unicast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Family {
    /// AFI 1, SAFI 1.
    Ipv4,
    /// AFI 2, SAFI 1.
    Ipv6,
}

impl Family {
    /// Both, in the order they are sent.
    pub const ALL: [Family; 2] = [Family::Ipv4, Family::Ipv6];

    /// The family of a prefix.
    pub fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::Ipv4,
            IpNet::V6(_) => Family::Ipv6,
        }
    }

    fn address_type(self) -> AddressType {
        match self {
            Family::Ipv4 => AddressType::Ipv4Unicast,
            Family::Ipv6 => AddressType::Ipv6Unicast,
        }
    }

    fn from_address_type(t: AddressType) -> Option<Family> {
        match t {
            AddressType::Ipv4Unicast => Some(Family::Ipv4),
            AddressType::Ipv6Unicast => Some(Family::Ipv6),
            _ => None,
        }
    }

    fn from_afi_safi(afi: u16, safi: u8) -> Option<Family> {
        match (afi, safi) {
            (1, 1) => Some(Family::Ipv4),
            (2, 1) => Some(Family::Ipv6),
            _ => None,
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::Ipv4 => "ipv4-unicast",
            Family::Ipv6 => "ipv6-unicast",
        })
    }
}

/// An error that ends the session with a NOTIFICATION (RFC 4271 §4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// Error code.
    pub code: u8,
    /// Error subcode.
    pub subcode: u8,
    /// Data, as the RFC defines it for the (sub)code.
    pub data: Vec<u8>,
    /// What went wrong, for the log and the peer's last error.
    pub reason: String,
}

impl Notify {
    /// A NOTIFICATION of `code`/`subcode` with `data`, for `reason`.
    pub fn new(code: u8, subcode: u8, data: Vec<u8>, reason: impl Into<String>) -> Self {
        Notify {
            code,
            subcode,
            data,
            reason: reason.into(),
        }
    }

    /// The whole message, at most [`MAX_MESSAGE`] bytes: data that would
    /// take it past that is cut to fit, as a peer refuses any longer message
    /// (the data of a ROUTE-REFRESH length error is that whole message,
    /// itself up to 4096 bytes: found by `fuzz/`'s bgp_message).
    pub fn encode(&self) -> Vec<u8> {
        let data = &self.data[..self.data.len().min(MAX_MESSAGE - HEADER_LEN - 2)];
        let mut out = header(kind::NOTIFICATION, 2 + data.len());
        out.push(self.code);
        out.push(self.subcode);
        out.extend_from_slice(data);
        out
    }
}

impl std::fmt::Display for Notify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}/{} {})",
            self.reason,
            self.code,
            self.subcode,
            describe(self.code, self.subcode)
        )
    }
}

/// The RFC's name of a NOTIFICATION code and subcode, for logs and status.
pub fn describe(code: u8, subcode: u8) -> &'static str {
    match (code, subcode) {
        (1, 1) => "message header error: connection not synchronized",
        (1, 2) => "message header error: bad message length",
        (1, 3) => "message header error: bad message type",
        (1, _) => "message header error",
        (2, 1) => "OPEN error: unsupported version number",
        (2, 2) => "OPEN error: bad peer AS",
        (2, 3) => "OPEN error: bad BGP identifier",
        (2, 4) => "OPEN error: unsupported optional parameter",
        (2, 6) => "OPEN error: unacceptable hold time",
        (2, 7) => "OPEN error: unsupported capability",
        (2, _) => "OPEN error",
        (3, 1) => "UPDATE error: malformed attribute list",
        (3, 2) => "UPDATE error: unrecognized well-known attribute",
        (3, 3) => "UPDATE error: missing well-known attribute",
        (3, 4) => "UPDATE error: attribute flags error",
        (3, 5) => "UPDATE error: attribute length error",
        (3, 9) => "UPDATE error: optional attribute error",
        (3, 10) => "UPDATE error: invalid network field",
        (3, 11) => "UPDATE error: malformed AS_PATH",
        (3, _) => "UPDATE error",
        (4, _) => "hold timer expired",
        (5, _) => "finite state machine error",
        (6, 2) => "cease: administrative shutdown",
        (6, 3) => "cease: peer de-configured",
        (6, 4) => "cease: administrative reset",
        (6, 5) => "cease: connection rejected",
        (6, 6) => "cease: other configuration change",
        (6, _) => "cease",
        (7, _) => "ROUTE-REFRESH error",
        _ => "unknown error",
    }
}

fn header(kind: u8, body: usize) -> Vec<u8> {
    let len = HEADER_LEN + body;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&[0xff; 16]);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.push(kind);
    out
}

/// One received message: its type and its bytes after the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The message type.
    pub kind: u8,
    /// The whole message, header included (the parser wants it whole).
    pub bytes: Vec<u8>,
}

impl Frame {
    /// The bytes after the header.
    pub fn body(&self) -> &[u8] {
        &self.bytes[HEADER_LEN..]
    }
}

/// Why no frame could be read.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the connection.
    Closed,
    /// The socket failed.
    Io(std::io::Error),
    /// The header is wrong: answer with this NOTIFICATION.
    Header(Notify),
}

/// Checks a header (RFC 4271 §6.1): returns the type and the whole length.
pub fn check_header(h: &[u8; HEADER_LEN]) -> Result<(u8, usize), Notify> {
    if h[..16].iter().any(|&b| b != 0xff) {
        return Err(Notify::new(
            1,
            1,
            vec![],
            "the header's marker is not all ones",
        ));
    }
    let len = u16::from_be_bytes([h[16], h[17]]);
    let kind = h[18];
    let bad_len = || {
        Notify::new(
            1,
            2,
            len.to_be_bytes().to_vec(),
            format!("a message of type {kind} has length {len}"),
        )
    };
    let len = usize::from(len);
    if !(HEADER_LEN..=MAX_MESSAGE).contains(&len) {
        return Err(bad_len());
    }
    let ok = match kind {
        kind::OPEN => len >= 29,
        kind::UPDATE => len >= 23,
        kind::NOTIFICATION => len >= 21,
        kind::KEEPALIVE => len == HEADER_LEN,
        kind::ROUTE_REFRESH => true, // checked as a message: its error is 7/1, not 1/2
        _ => {
            return Err(Notify::new(
                1,
                3,
                vec![kind],
                format!("unknown message type {kind}"),
            ));
        }
    };
    if ok { Ok((kind, len)) } else { Err(bad_len()) }
}

/// Reads one whole message. Not cancel-safe: run it in a task of its own.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Frame, ReadError> {
    let mut h = [0u8; HEADER_LEN];
    match r.read_exact(&mut h).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(ReadError::Closed),
        Err(e) => return Err(ReadError::Io(e)),
    }
    let (kind, len) = check_header(&h).map_err(ReadError::Header)?;
    let mut bytes = vec![0u8; len];
    bytes[..HEADER_LEN].copy_from_slice(&h);
    match r.read_exact(&mut bytes[HEADER_LEN..]).await {
        Ok(_) => Ok(Frame { kind, bytes }),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ReadError::Closed),
        Err(e) => Err(ReadError::Io(e)),
    }
}

/// Encodes a message, refusing one over [`MAX_MESSAGE`] (the crate would
/// write it, and wrap its length past 64 KiB).
pub fn encode(msg: &BgpMessage) -> Vec<u8> {
    let len = msg.len();
    assert!(
        len <= MAX_MESSAGE,
        "a BGP message of {len} bytes: the packer must keep to {MAX_MESSAGE}"
    );
    let mut out = Vec::with_capacity(len);
    msg.write(&mut out)
        .expect("writing into a Vec cannot fail for a valid message");
    debug_assert_eq!(out.len(), len, "netgauze's len() disagrees with write()");
    out
}

/// KEEPALIVE.
pub fn keepalive() -> Vec<u8> {
    header(kind::KEEPALIVE, 0)
}

/// What we say of ourselves in OPEN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalOpen {
    /// Our AS number.
    pub asn: u32,
    /// Our hold time (0 or ≥ 3).
    pub hold_time: u16,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// The families we offer.
    pub families: Vec<Family>,
    /// Graceful restart: our restart time, and whether we just restarted
    /// (the R bit). Forwarding state is always kept (F bit): the kernel's
    /// routes outlive the daemon.
    pub graceful_restart: Option<(u16, bool)>,
}

/// Our OPEN: 4-byte AS (AS_TRANS in the 2-byte field when wider),
/// multiprotocol per family, route refresh, graceful restart.
pub fn open(l: &LocalOpen) -> Vec<u8> {
    let mut caps = vec![BgpCapability::FourOctetAs(FourOctetAsCapability::new(
        l.asn,
    ))];
    for f in &l.families {
        caps.push(BgpCapability::MultiProtocolExtensions(
            MultiProtocolExtensionsCapability::new(f.address_type()),
        ));
    }
    caps.push(BgpCapability::RouteRefresh);
    if let Some((time, restarted)) = l.graceful_restart {
        caps.push(BgpCapability::GracefulRestartCapability(
            GracefulRestartCapability::new(
                restarted,
                false,
                time,
                l.families
                    .iter()
                    .map(|f| GracefulRestartAddressFamily::new(true, f.address_type()))
                    .collect::<Vec<_>>(),
            ),
        ));
    }
    let my_as = u16::try_from(l.asn).unwrap_or(AS_TRANS);
    encode(&BgpMessage::Open(BgpOpenMessage::new(
        my_as,
        l.hold_time,
        l.router_id,
        vec![BgpOpenMessageParameter::new_capabilities(caps)],
    )))
}

/// What the peer said of itself in OPEN, checked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeerOpen {
    /// Its AS (from the 4-octet capability when sent).
    pub asn: u32,
    /// Its hold time.
    pub hold_time: u16,
    /// Its BGP identifier.
    pub router_id: Ipv4Addr,
    /// Whether it offered 4-byte AS numbers.
    pub four_octet_as: bool,
    /// The unicast families it offered (IPv4 alone if it sent no
    /// multiprotocol capability at all: RFC 4760 §8).
    pub families: Vec<Family>,
    /// Whether it offered route refresh.
    pub route_refresh: bool,
    /// Its graceful-restart time, if it offered graceful restart.
    pub graceful_restart: Option<u16>,
}

/// Parses and checks the peer's OPEN (RFC 4271 §6.2) against the AS we
/// expect of it.
pub fn parse_open(
    frame: &Frame,
    expect_as: u32,
    local_as: u32,
    our_id: Ipv4Addr,
) -> Result<PeerOpen, Notify> {
    let body = frame.body();
    if body.first() != Some(&4) {
        return Err(Notify::new(
            2,
            1,
            4u16.to_be_bytes().to_vec(),
            format!("the peer speaks BGP version {}", body.first().unwrap_or(&0)),
        ));
    }
    // Checked before parsing, which would fail with no subcode to send.
    let hold_time = u16::from_be_bytes([body[3], body[4]]);
    if hold_time == 1 || hold_time == 2 {
        return Err(Notify::new(
            2,
            6,
            vec![],
            format!("the peer's hold time {hold_time} s (must be 0 or at least 3)"),
        ));
    }
    let mut ctx = BgpParsingContext::default();
    let msg = BgpMessage::parse(&mut SliceReader::new(&frame.bytes), &mut ctx)
        .map_err(|e| Notify::new(2, 0, vec![], format!("malformed OPEN: {e:?}")))?;
    let BgpMessage::Open(o) = msg else {
        return Err(Notify::new(
            2,
            0,
            vec![],
            "an OPEN that does not parse as one",
        ));
    };
    let caps = o.capabilities();
    let four_octet_as = caps
        .iter()
        .any(|c| matches!(c, BgpCapability::FourOctetAs(_)));
    let asn = o.my_asn4();
    if asn != expect_as {
        return Err(Notify::new(
            2,
            2,
            o.my_as().to_be_bytes().to_vec(),
            format!("the peer says it is AS {asn}, configured as AS {expect_as}"),
        ));
    }
    // RFC 6286: the same identifier is an error within one AS only.
    if o.bgp_id().is_unspecified() || (o.bgp_id() == our_id && asn == local_as) {
        return Err(Notify::new(
            2,
            3,
            vec![],
            format!("the peer's BGP identifier {}", o.bgp_id()),
        ));
    }
    let mut families: Vec<Family> = caps
        .iter()
        .filter_map(|c| match c {
            BgpCapability::MultiProtocolExtensions(m) => {
                Family::from_address_type(m.address_type())
            }
            _ => None,
        })
        .collect();
    let any_mp = caps
        .iter()
        .any(|c| matches!(c, BgpCapability::MultiProtocolExtensions(_)));
    if !any_mp {
        families.push(Family::Ipv4);
    }
    families.sort();
    families.dedup();
    Ok(PeerOpen {
        asn,
        hold_time,
        router_id: o.bgp_id(),
        four_octet_as,
        families,
        route_refresh: caps.iter().any(|c| {
            matches!(
                c,
                BgpCapability::RouteRefresh | BgpCapability::CiscoRouteRefresh
            )
        }),
        graceful_restart: caps.iter().find_map(|c| match c {
            BgpCapability::GracefulRestartCapability(g) => Some(g.time()),
            _ => None,
        }),
    })
}

/// Builds a path attribute, setting the extended-length flag when the value
/// is longer than 255 bytes: netgauze writes such an attribute malformed
/// (no flag, a 2-byte length one short) when it is left off.
pub fn attr(optional: bool, transitive: bool, value: PathAttributeValue) -> PathAttribute {
    let short = PathAttribute::from(optional, transitive, false, false, value)
        .unwrap_or_else(|(v, e)| panic!("flags of {v:?}: {e:?}"));
    // With the flag off, len() counts flags, type, a 1-byte length and the value.
    if short.len() - 3 <= 255 {
        return short;
    }
    PathAttribute::from(optional, transitive, false, true, short.value().clone())
        .unwrap_or_else(|(v, e)| panic!("flags of {v:?}: {e:?}"))
}

/// The attributes every route to one peer carries: where it is sent from and
/// how it is tagged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    /// Our AS, the whole AS_PATH (eBGP: we originate).
    pub local_as: u32,
    /// Whether the AS_PATH is written with 4-byte numbers (both sides
    /// offered them).
    pub four_octet_as: bool,
    /// The next hop of this family's routes.
    pub next_hop: IpAddr,
    /// Standard communities (RFC 1997), `asn:value`.
    pub communities: Vec<(u16, u16)>,
}

impl Attributes {
    fn common(&self) -> Vec<PathAttribute> {
        let path = if self.four_octet_as {
            AsPath::As4PathSegments(
                vec![As4PathSegment::new(
                    AsPathSegmentType::AsSequence,
                    vec![self.local_as],
                )]
                .into(),
            )
        } else {
            let asn = u16::try_from(self.local_as).unwrap_or(AS_TRANS);
            AsPath::As2PathSegments(
                vec![As2PathSegment::new(
                    AsPathSegmentType::AsSequence,
                    vec![asn],
                )]
                .into(),
            )
        };
        let mut out = vec![
            attr(false, true, PathAttributeValue::Origin(Origin::IGP)),
            attr(false, true, PathAttributeValue::AsPath(path)),
        ];
        if !self.communities.is_empty() {
            let list: Vec<Community> = self
                .communities
                .iter()
                .map(|&(a, v)| Community::new((u32::from(a) << 16) | u32::from(v)))
                .collect();
            out.push(attr(
                true,
                true,
                PathAttributeValue::Communities(Communities::new(list)),
            ));
        }
        out
    }
}

fn v4(net: Ipv4Net) -> Ipv4UnicastAddress {
    Ipv4UnicastAddress::new_no_path_id(Ipv4Unicast::from_net(net).expect("a unicast IPv4 prefix"))
}

fn v6(net: Ipv6Net) -> Ipv6UnicastAddress {
    Ipv6UnicastAddress::new(
        None,
        Ipv6Unicast::from_net(net).expect("a unicast IPv6 prefix"),
    )
}

/// Splits items into the fewest UPDATEs, each at most [`MAX_MESSAGE`]
/// bytes: `build` makes the message of a chunk, `size` is one item's share.
fn pack<T: Clone>(
    items: &[T],
    size: impl Fn(&T) -> usize,
    build: impl Fn(Vec<T>) -> BgpMessage,
) -> Vec<Vec<u8>> {
    let overhead = build(Vec::new()).len();
    let mut out = Vec::new();
    let mut chunk = Vec::new();
    let mut total = overhead;
    for item in items {
        let n = size(item);
        if total + n > MAX_MESSAGE && !chunk.is_empty() {
            out.push(encode(&build(std::mem::take(&mut chunk))));
            total = overhead;
        }
        total += n;
        chunk.push(item.clone());
    }
    if !chunk.is_empty() {
        out.push(encode(&build(chunk)));
    }
    out
}

/// UPDATEs announcing `prefixes` (all of `family`) with `a`'s attributes.
/// IPv4 with an IPv4 next hop goes in the NLRI field with NEXT_HOP; IPv6 in
/// MP_REACH_NLRI with the global next hop set explicitly (RFC 4760 §3).
pub fn announce(family: Family, prefixes: &[IpNet], a: &Attributes) -> Vec<Vec<u8>> {
    let common = a.common();
    match (family, a.next_hop) {
        (Family::Ipv4, IpAddr::V4(nh)) => {
            let mut attrs = common;
            attrs.push(attr(
                false,
                true,
                PathAttributeValue::NextHop(NextHop::new(nh)),
            ));
            let nlri: Vec<Ipv4UnicastAddress> = v4s(prefixes).map(v4).collect();
            pack(
                &nlri,
                |p| p.len(),
                |chunk| BgpMessage::Update(BgpUpdateMessage::new(vec![], attrs.clone(), chunk)),
            )
        }
        (Family::Ipv4, IpAddr::V6(nh)) => {
            // RFC 8950: IPv4 routes with an IPv6 next hop, in MP_REACH.
            let nlri: Vec<Ipv4UnicastAddress> = v4s(prefixes).map(v4).collect();
            pack(
                &nlri,
                |p| p.len(),
                |chunk| {
                    mp_update(
                        common.clone(),
                        PathAttributeValue::MpReach(MpReach::Ipv4Unicast {
                            next_hop: IpAddr::V6(nh),
                            next_hop_local: None,
                            nlri: chunk.into(),
                        }),
                    )
                },
            )
        }
        (Family::Ipv6, nh) => {
            let nh = match nh {
                IpAddr::V6(nh) => nh,
                IpAddr::V4(nh) => nh.to_ipv6_mapped(),
            };
            let nlri: Vec<Ipv6UnicastAddress> = v6s(prefixes).map(v6).collect();
            pack(
                &nlri,
                |p| p.len(),
                |chunk| {
                    mp_update(
                        common.clone(),
                        PathAttributeValue::MpReach(MpReach::Ipv6Unicast {
                            next_hop_global: nh,
                            next_hop_local: None,
                            nlri: chunk.into(),
                        }),
                    )
                },
            )
        }
    }
}

/// An UPDATE of `attrs` and one MP_REACH / MP_UNREACH attribute `value`
/// (its NLRI inside it, none in the message's own fields).
fn mp_update(mut attrs: Vec<PathAttribute>, value: PathAttributeValue) -> BgpMessage {
    attrs.push(mp(value));
    BgpMessage::Update(BgpUpdateMessage::new(vec![], attrs, vec![]))
}

/// MP_REACH / MP_UNREACH always carry the extended-length flag, so that the
/// packer's overhead (counted with an empty list) already has the 2-byte
/// length every full one needs.
fn mp(value: PathAttributeValue) -> PathAttribute {
    PathAttribute::from(true, false, false, true, value)
        .unwrap_or_else(|(v, e)| panic!("flags of {v:?}: {e:?}"))
}

fn v4s(prefixes: &[IpNet]) -> impl Iterator<Item = Ipv4Net> + '_ {
    prefixes.iter().filter_map(|p| match p {
        IpNet::V4(n) => Some(*n),
        IpNet::V6(_) => None,
    })
}

fn v6s(prefixes: &[IpNet]) -> impl Iterator<Item = Ipv6Net> + '_ {
    prefixes.iter().filter_map(|p| match p {
        IpNet::V6(n) => Some(*n),
        IpNet::V4(_) => None,
    })
}

/// UPDATEs withdrawing `prefixes` (all of `family`). `mp_v4` withdraws IPv4
/// in MP_UNREACH (when it was announced in MP_REACH, RFC 8950).
pub fn withdraw(family: Family, prefixes: &[IpNet], mp_v4: bool) -> Vec<Vec<u8>> {
    match family {
        Family::Ipv4 if !mp_v4 => {
            let w: Vec<Ipv4UnicastAddress> = v4s(prefixes).map(v4).collect();
            pack(
                &w,
                |p| p.len(),
                |chunk| BgpMessage::Update(BgpUpdateMessage::new(chunk, vec![], vec![])),
            )
        }
        Family::Ipv4 => {
            let w: Vec<Ipv4UnicastAddress> = v4s(prefixes).map(v4).collect();
            pack(
                &w,
                |p| p.len(),
                |chunk| {
                    let nlri = chunk.into();
                    mp_update(
                        vec![],
                        PathAttributeValue::MpUnreach(MpUnreach::Ipv4Unicast { nlri }),
                    )
                },
            )
        }
        Family::Ipv6 => {
            let w: Vec<Ipv6UnicastAddress> = v6s(prefixes).map(v6).collect();
            pack(
                &w,
                |p| p.len(),
                |chunk| {
                    let nlri = chunk.into();
                    mp_update(
                        vec![],
                        PathAttributeValue::MpUnreach(MpUnreach::Ipv6Unicast { nlri }),
                    )
                },
            )
        }
    }
}

/// End-of-RIB for `family` (RFC 4724 §2): an empty UPDATE for IPv4, an
/// empty MP_UNREACH for the others.
pub fn end_of_rib(family: Family) -> Vec<u8> {
    let msg = match family {
        Family::Ipv4 => BgpUpdateMessage::new(vec![], vec![], vec![]),
        Family::Ipv6 => BgpUpdateMessage::new(
            vec![],
            vec![
                PathAttribute::from(
                    true,
                    false,
                    false,
                    false,
                    PathAttributeValue::MpUnreach(MpUnreach::Ipv6Unicast {
                        nlri: vec![].into(),
                    }),
                )
                .unwrap_or_else(|(v, e)| panic!("flags of {v:?}: {e:?}")),
            ],
            vec![],
        ),
    };
    encode(&BgpMessage::Update(msg))
}

/// A ROUTE-REFRESH (RFC 2918): the family asked for, or a NOTIFICATION.
/// `Ok(None)` is a family we do not export (ignored, RFC 2918 §4).
pub fn parse_route_refresh(frame: &Frame) -> Result<Option<Family>, Notify> {
    let b = frame.body();
    if b.len() != 4 {
        return Err(Notify::new(
            7,
            1,
            frame.bytes.clone(),
            format!("a ROUTE-REFRESH of {} bytes", frame.bytes.len()),
        ));
    }
    Ok(Family::from_afi_safi(
        u16::from_be_bytes([b[0], b[1]]),
        b[3],
    ))
}

/// A received NOTIFICATION's code and subcode.
pub fn parse_notification(frame: &Frame) -> (u8, u8) {
    let b = frame.body();
    (
        b.first().copied().unwrap_or(0),
        b.get(1).copied().unwrap_or(0),
    )
}

/// What to do with a received UPDATE (RFC 7606 §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Well formed.
    Fine,
    /// Its routes are to be treated as withdrawn; the session stays.
    TreatAsWithdraw(String),
    /// An attribute is to be ignored; the session stays.
    AttributeDiscard(String),
    /// The session ends with this NOTIFICATION.
    Reset(Notify),
}

/// A received UPDATE, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateCheck {
    /// Prefixes it announces (NLRI field and MP_REACH).
    pub announced: usize,
    /// Prefixes it withdraws (withdrawn field and MP_UNREACH).
    pub withdrawn: usize,
    /// What to do with it.
    pub verdict: Verdict,
}

/// Walks a received UPDATE's fields and attributes and classifies the first
/// error by RFC 7606: framing errors that hide where the NLRI is, broken
/// NLRI and broken MP attributes reset the session; a broken ORIGIN,
/// AS_PATH, NEXT_HOP, MED, LOCAL_PREF or COMMUNITIES, or a missing mandatory
/// attribute, is treat-as-withdraw; a broken ATOMIC_AGGREGATE or AGGREGATOR,
/// or a repeated attribute, is discarded. `four_octet_as` is whether AS
/// numbers are 4 bytes on this session.
pub fn check_update(frame: &Frame, four_octet_as: bool) -> UpdateCheck {
    let b = frame.body();
    let mut c = UpdateCheck {
        announced: 0,
        withdrawn: 0,
        verdict: Verdict::Fine,
    };
    let malformed = |why: String| Verdict::Reset(Notify::new(3, 1, vec![], why));
    let wlen = usize::from(u16::from_be_bytes([b[0], b[1]]));
    if 2 + wlen + 2 > b.len() {
        c.verdict = malformed(format!(
            "withdrawn routes length {wlen} overruns the UPDATE"
        ));
        return c;
    }
    match count_prefixes(&b[2..2 + wlen], 32) {
        Ok(n) => c.withdrawn = n,
        Err(why) => {
            c.verdict = Verdict::Reset(Notify::new(
                3,
                10,
                vec![],
                format!("withdrawn routes: {why}"),
            ));
            return c;
        }
    }
    let at = 2 + wlen;
    let alen = usize::from(u16::from_be_bytes([b[at], b[at + 1]]));
    if at + 2 + alen > b.len() {
        c.verdict = malformed(format!(
            "total path attribute length {alen} overruns the UPDATE"
        ));
        return c;
    }
    let attrs = &b[at + 2..at + 2 + alen];
    let nlri = &b[at + 2 + alen..];
    match count_prefixes(nlri, 32) {
        Ok(n) => c.announced = n,
        Err(why) => {
            c.verdict = Verdict::Reset(Notify::new(3, 10, vec![], format!("NLRI: {why}")));
            return c;
        }
    }
    let mut seen = [false; 256];
    let mut worst = Verdict::Fine;
    let note = |v: Verdict, worst: &mut Verdict| {
        // Reset beats treat-as-withdraw beats discard: keep the strongest.
        let rank = |v: &Verdict| match v {
            Verdict::Fine => 0,
            Verdict::AttributeDiscard(_) => 1,
            Verdict::TreatAsWithdraw(_) => 2,
            Verdict::Reset(_) => 3,
        };
        if rank(&v) > rank(worst) {
            *worst = v;
        }
    };
    let mut pos = 0;
    let mut mp_seen = false;
    while pos < attrs.len() {
        if pos + 3 > attrs.len() {
            note(overrun(mp_seen, "an attribute header"), &mut worst);
            break;
        }
        let flags = attrs[pos];
        let code = attrs[pos + 1];
        let ext = flags & 0x10 != 0;
        let (len, hdr) = if ext {
            if pos + 4 > attrs.len() {
                note(overrun(mp_seen, "an attribute header"), &mut worst);
                break;
            }
            (
                usize::from(u16::from_be_bytes([attrs[pos + 2], attrs[pos + 3]])),
                4,
            )
        } else {
            (usize::from(attrs[pos + 2]), 3)
        };
        if pos + hdr + len > attrs.len() {
            note(
                overrun(mp_seen, &format!("attribute {code} of length {len}")),
                &mut worst,
            );
            break;
        }
        let value = &attrs[pos + hdr..pos + hdr + len];
        pos += hdr + len;
        if code == 14 || code == 15 {
            mp_seen = true;
        }
        if seen[usize::from(code)] {
            note(
                if code == 14 || code == 15 {
                    malformed(format!("attribute {code} (MP) appears twice"))
                } else {
                    Verdict::AttributeDiscard(format!("attribute {code} appears twice"))
                },
                &mut worst,
            );
            continue;
        }
        seen[usize::from(code)] = true;
        note(check_attr(flags, code, value, four_octet_as), &mut worst);
        if code == 14 {
            match mp_prefixes(value, true) {
                Ok(n) => c.announced += n,
                Err(why) => note(Verdict::Reset(Notify::new(3, 9, vec![], why)), &mut worst),
            }
        } else if code == 15 {
            match mp_prefixes(value, false) {
                Ok(n) => c.withdrawn += n,
                Err(why) => note(Verdict::Reset(Notify::new(3, 9, vec![], why)), &mut worst),
            }
        }
    }
    let missing = |code: usize, name: &str| (!seen[code]).then(|| format!("no {name} attribute"));
    let reach = c.announced > 0;
    if reach {
        let need = [missing(1, "ORIGIN"), missing(2, "AS_PATH")];
        let nh = if nlri.is_empty() {
            None
        } else {
            missing(3, "NEXT_HOP")
        };
        if let Some(why) = need.into_iter().chain([nh]).flatten().next() {
            note(Verdict::TreatAsWithdraw(why), &mut worst);
        }
    }
    c.verdict = worst;
    c
}

fn overrun(mp_seen: bool, what: &str) -> Verdict {
    let why = format!("{what} overruns the path attributes");
    if mp_seen {
        // The MP attribute's routes cannot be trusted to be all there.
        Verdict::Reset(Notify::new(3, 1, vec![], why))
    } else {
        Verdict::TreatAsWithdraw(why)
    }
}

#[allow(overlapping_range_endpoints)] // arms with guards, tried in order
fn check_attr(flags: u8, code: u8, v: &[u8], four_octet_as: bool) -> Verdict {
    let optional = flags & 0x80 != 0;
    let transitive = flags & 0x40 != 0;
    let len = v.len();
    let problem: Option<(bool, String)> = match code {
        // (treat-as-withdraw?, why)
        1..=3 if optional || !transitive => {
            Some((true, format!("{} with flags {flags:#04x}", name(code))))
        }
        1 if len != 1 => Some((true, format!("ORIGIN of length {len}"))),
        1 if v[0] > 2 => Some((true, format!("ORIGIN value {}", v[0]))),
        2 => as_path_error(v, four_octet_as).map(|w| (true, w)),
        3..=5 if len != 4 => Some((true, format!("{} of length {len}", name(code)))),
        6 if len != 0 => Some((false, format!("ATOMIC_AGGREGATE of length {len}"))),
        7 if len != if four_octet_as { 8 } else { 6 } => {
            Some((false, format!("AGGREGATOR of length {len}")))
        }
        8 if len == 0 || !len.is_multiple_of(4) => {
            Some((true, format!("COMMUNITIES of length {len}")))
        }
        1..=8 | 14 | 15 => None, // MP attributes are walked by the caller
        _ if !optional => {
            return Verdict::Reset(Notify::new(
                3,
                2,
                vec![flags, code, len as u8],
                format!("unrecognized well-known attribute {code}"),
            ));
        }
        _ => None,
    };
    match problem {
        None => Verdict::Fine,
        Some((true, why)) => Verdict::TreatAsWithdraw(why),
        Some((false, why)) => Verdict::AttributeDiscard(why),
    }
}

fn name(code: u8) -> &'static str {
    match code {
        1 => "ORIGIN",
        2 => "AS_PATH",
        3 => "NEXT_HOP",
        4 => "MULTI_EXIT_DISC",
        5 => "LOCAL_PREF",
        _ => "attribute",
    }
}

fn as_path_error(v: &[u8], four_octet_as: bool) -> Option<String> {
    let width = if four_octet_as { 4 } else { 2 };
    let mut pos = 0;
    while pos < v.len() {
        if pos + 2 > v.len() {
            return Some("AS_PATH: a segment header overruns".into());
        }
        let (kind, count) = (v[pos], usize::from(v[pos + 1]));
        if !(1..=4).contains(&kind) {
            return Some(format!("AS_PATH: segment type {kind}"));
        }
        if count == 0 {
            return Some("AS_PATH: an empty segment".into());
        }
        pos += 2 + count * width;
        if pos > v.len() {
            return Some("AS_PATH: a segment overruns".into());
        }
    }
    None
}

/// Counts the prefixes of an NLRI-shaped field, checking each one's length.
fn count_prefixes(mut b: &[u8], max_bits: u8) -> Result<usize, String> {
    let mut n = 0;
    while let Some(&bits) = b.first() {
        if bits > max_bits {
            return Err(format!("a prefix of length {bits}"));
        }
        let bytes = usize::from(bits).div_ceil(8);
        if 1 + bytes > b.len() {
            return Err(format!("a /{bits} prefix overruns the field"));
        }
        b = &b[1 + bytes..];
        n += 1;
    }
    Ok(n)
}

/// Counts the prefixes in an MP_REACH (`reach`) or MP_UNREACH value of a
/// unicast family; other families' are counted as none.
fn mp_prefixes(v: &[u8], reach: bool) -> Result<usize, String> {
    let name = if reach {
        "MP_REACH_NLRI"
    } else {
        "MP_UNREACH_NLRI"
    };
    if v.len() < 3 {
        return Err(format!("{name} of length {}", v.len()));
    }
    let (afi, safi) = (u16::from_be_bytes([v[0], v[1]]), v[2]);
    let mut rest = &v[3..];
    if reach {
        let Some(&nh_len) = rest.first() else {
            return Err(format!("{name} without a next hop length"));
        };
        let nh_len = usize::from(nh_len);
        // next hop, then one reserved byte
        if 1 + nh_len + 1 > rest.len() {
            return Err(format!("{name}: next hop length {nh_len} overruns"));
        }
        rest = &rest[1 + nh_len + 1..];
    }
    match Family::from_afi_safi(afi, safi) {
        Some(Family::Ipv4) => count_prefixes(rest, 32).map_err(|e| format!("{name}: {e}")),
        Some(Family::Ipv6) => count_prefixes(rest, 128).map_err(|e| format!("{name}: {e}")),
        None => Ok(0),
    }
}

/// `IpAddr` of an IPv4-mapped IPv6 address as IPv4 (what an IPv6 listener
/// reports for an IPv4 peer).
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
