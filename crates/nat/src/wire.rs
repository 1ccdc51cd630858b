//! The nfnetlink wire format: netlink headers, `nfgenmsg`, attributes, batches.
//!
//! Only what trellis sends is here. Numbers come from the kernel UAPI headers
//! `linux/netlink.h`, `linux/netfilter/nfnetlink.h` and `linux/netfilter/nf_tables.h`;
//! each constant keeps its kernel name so it can be looked up there.

/// Netlink header flags (`linux/netlink.h`).
pub(crate) mod nlm {
    pub const F_REQUEST: u16 = 0x1;
    pub const F_ACK: u16 = 0x4;
    pub const F_DUMP: u16 = 0x300;
    pub const F_EXCL: u16 = 0x200;
    pub const F_CREATE: u16 = 0x400;
    pub const F_APPEND: u16 = 0x800;
    /// `nlmsgerr` holds only the header of the failed request.
    pub const F_CAPPED: u16 = 0x100;
    /// `nlmsgerr` is followed by extended-ack attributes.
    pub const F_ACK_TLVS: u16 = 0x200;
    pub const MSG_ERROR: u16 = 2;
    pub const MSG_DONE: u16 = 3;
    /// `NLMSGERR_ATTR_MSG`: the extended ack's human readable message.
    pub const ERR_ATTR_MSG: u16 = 1;
}

/// `NFNL_SUBSYS_NFTABLES`.
pub(crate) const SUBSYS_NFTABLES: u16 = 10;
/// `NFNL_MSG_BATCH_BEGIN` (`NLMSG_MIN_TYPE`).
pub(crate) const MSG_BATCH_BEGIN: u16 = 0x10;
/// `NFNL_MSG_BATCH_END`.
pub(crate) const MSG_BATCH_END: u16 = 0x11;
/// `NFPROTO_UNSPEC`, used in batch delimiters.
pub(crate) const NFPROTO_UNSPEC: u8 = 0;
/// `NFPROTO_INET`: the family of trellis's table.
pub(crate) const NFPROTO_INET: u8 = 1;
/// `NFPROTO_IPV4`.
pub(crate) const NFPROTO_IPV4: u8 = 2;
/// `NFPROTO_IPV6`.
pub(crate) const NFPROTO_IPV6: u8 = 10;

/// `enum nf_tables_msg_types`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub(crate) enum MsgType {
    NewTable = 0,
    DelTable = 2,
    NewChain = 3,
    GetChain = 4,
    NewRule = 6,
    GetRule = 7,
    DelRule = 8,
    NewSet = 9,
    NewSetElem = 12,
    GetSetElem = 13,
    DelSetElem = 14,
}

/// `NFTA_LIST_ELEM`, shared by every nested list.
pub(crate) const NFTA_LIST_ELEM: u16 = 1;
/// `NLA_F_NESTED`: the kernel's strict policies want it on nested attributes.
const NLA_F_NESTED: u16 = 0x8000;
/// Size of `struct nlmsghdr`.
pub(crate) const NLMSG_HDRLEN: usize = 16;
/// Size of `struct nfgenmsg`.
pub(crate) const NFGENMSG_LEN: usize = 4;

/// Rounds up to the 4-byte netlink alignment.
pub(crate) const fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// A growing list of netlink attributes (type-length-value, 4-byte aligned).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Attrs(pub(crate) Vec<u8>);

impl Attrs {
    /// An empty list.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Appends one attribute holding `value` as is.
    pub(crate) fn bytes(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        let len = 4 + value.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(value);
        self.0.resize(align(self.0.len()), 0);
        self
    }

    /// Appends a NUL-terminated string (`NLA_STRING` / `NLA_NUL_STRING`).
    pub(crate) fn str(&mut self, kind: u16, value: &str) -> &mut Self {
        let mut v = value.as_bytes().to_vec();
        v.push(0);
        self.bytes(kind, &v)
    }

    /// Appends a big-endian `u32`, as nf_tables wants every integer attribute.
    pub(crate) fn u32(&mut self, kind: u16, value: u32) -> &mut Self {
        self.bytes(kind, &value.to_be_bytes())
    }

    /// Appends a nested attribute whose content `fill` writes.
    pub(crate) fn nest(&mut self, kind: u16, fill: impl FnOnce(&mut Attrs)) -> &mut Self {
        let mut inner = Attrs::new();
        fill(&mut inner);
        self.bytes(kind | NLA_F_NESTED, &inner.0)
    }

    /// Appends `NFTA_*_DATA`-style nested `nft_data { NFTA_DATA_VALUE = value }`.
    pub(crate) fn data(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        const NFTA_DATA_VALUE: u16 = 1;
        self.nest(kind, |d| {
            d.bytes(NFTA_DATA_VALUE, value);
        })
    }
}

/// One nf_tables request: its type, netlink flags, family and attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    /// The nf_tables message type.
    pub(crate) kind: MsgType,
    /// `NLM_F_*` flags besides `NLM_F_REQUEST` (always set).
    pub(crate) flags: u16,
    /// The `nfgenmsg` family.
    pub(crate) family: u8,
    /// The attributes.
    pub(crate) attrs: Attrs,
}

/// Writes a netlink header + `nfgenmsg` + payload to `out`.
fn put(out: &mut Vec<u8>, ty: u16, flags: u16, seq: u32, family: u8, res_id: u16, payload: &[u8]) {
    let len = NLMSG_HDRLEN + NFGENMSG_LEN + payload.len();
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(&(flags | nlm::F_REQUEST).to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel
    out.push(family);
    out.push(0); // NFNETLINK_V0
    out.extend_from_slice(&res_id.to_be_bytes());
    out.extend_from_slice(payload);
    out.resize(align(out.len()), 0);
}

/// The netlink message type of an nf_tables message.
fn nft_type(kind: MsgType) -> u16 {
    (SUBSYS_NFTABLES << 8) | kind as u16
}

/// Encodes one request on its own (a GET or a dump), with sequence number `seq`.
pub(crate) fn encode_one(msg: &Message, seq: u32) -> Vec<u8> {
    let mut out = Vec::new();
    put(
        &mut out,
        nft_type(msg.kind),
        msg.flags,
        seq,
        msg.family,
        0,
        &msg.attrs.0,
    );
    out
}

/// Encodes `msgs` as one atomic batch. The begin marker takes sequence number
/// `seq`, message `i` takes `seq + 1 + i`, and the end marker comes last.
///
/// Only the last message asks for an ACK: the kernel reports every failing
/// message anyway (with its sequence number, so a failure names its index), and
/// one ACK per message would flood the socket's receive buffer on large
/// batches. Seeing the last message's ACK and no error means the batch committed.
pub(crate) fn encode_batch(msgs: &[Message], seq: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let begin_end =
        |out: &mut Vec<u8>, ty, seq| put(out, ty, 0, seq, NFPROTO_UNSPEC, SUBSYS_NFTABLES, &[]);
    begin_end(&mut out, MSG_BATCH_BEGIN, seq);
    for (i, m) in msgs.iter().enumerate() {
        let s = seq.wrapping_add(1 + i as u32);
        let ack = if i + 1 == msgs.len() { nlm::F_ACK } else { 0 };
        put(
            &mut out,
            nft_type(m.kind),
            m.flags | ack,
            s,
            m.family,
            0,
            &m.attrs.0,
        );
    }
    begin_end(
        &mut out,
        MSG_BATCH_END,
        seq.wrapping_add(1 + msgs.len() as u32),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_to_four_bytes() {
        let mut a = Attrs::new();
        a.str(1, "nat").u32(2, 1);
        #[rustfmt::skip]
        let want = [
            8, 0, 1, 0, b'n', b'a', b't', 0,
            8, 0, 2, 0, 0, 0, 0, 1,
        ];
        assert_eq!(a.0, want);
        let mut b = Attrs::new();
        b.str(1, "trellis");
        assert_eq!(b.0.len(), 12, "4 header + 8 name incl. NUL");
    }

    #[test]
    fn nested_attributes_carry_the_nested_flag() {
        let mut a = Attrs::new();
        a.data(3, &[6]);
        assert_eq!(a.0, [12, 0, 3, 0x80, 5, 0, 1, 0, 6, 0, 0, 0]);
    }

    #[test]
    fn a_batch_is_framed_by_begin_and_end() {
        let msg = Message {
            kind: MsgType::DelTable,
            flags: 0,
            family: NFPROTO_INET,
            attrs: Attrs::new(),
        };
        let bytes = encode_batch(&[msg], 100);
        assert_eq!(bytes.len(), 3 * 20);
        #[rustfmt::skip]
        let begin = [20, 0, 0, 0, 0x10, 0, 1, 0, 100, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10];
        assert_eq!(&bytes[..20], &begin);
        // DELTABLE: type 0x0a02, flags REQUEST|ACK, seq 101, family inet.
        assert_eq!(&bytes[20..28], &[20, 0, 0, 0, 2, 10, 5, 0]);
        assert_eq!(&bytes[28..32], &101u32.to_ne_bytes());
        assert_eq!(&bytes[36..40], &[1, 0, 0, 0]);
        assert_eq!(&bytes[44..46], &[0x11, 0], "end marker");
    }
}
