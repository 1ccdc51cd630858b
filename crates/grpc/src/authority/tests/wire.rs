//! Test vectors and wire helpers: building client byte streams, and a
//! strict reader of what the rewriter writes, which accepts only literals
//! without indexing, so the server's HPACK table provably stays empty.

use super::super::{FrameError, MAX_FRAME_SIZE, Rewriter};

/// The client preface and an empty SETTINGS frame.
pub(super) const PREFACE_AND_SETTINGS: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";
pub(super) const HEADERS: u8 = 0x1;
pub(super) const CONTINUATION: u8 = 0x9;
pub(super) const END_STREAM: u8 = 0x1;
pub(super) const END_HEADERS: u8 = 0x4;
pub(super) const PADDED: u8 = 0x8;
pub(super) const PRIORITY: u8 = 0x20;

/// RFC 7541 C.3: three requests without Huffman coding, the 2nd and 3rd
/// referring to entries the 1st inserted.
pub(super) const RFC_C3: [&str; 3] = [
    "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
    "8286 84be 5808 6e6f 2d63 6163 6865",
    "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
];

/// RFC 7541 C.4: the same requests with Huffman coding.
pub(super) const RFC_C4: [&str; 3] = [
    "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
    "8286 84be 5886 a8eb 1064 9cbf",
    "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
];

/// grpcio 1.85.3 on `unix:/tmp/probe-dir-x/trellisd.sock`, two calls on one
/// channel (captured from the wire); the 2nd is mostly dynamic-table indices.
pub(super) const GRPCIO: [&str; 2] = [
    "40053a70617468182f7472656c6c69732e76312e4167656e742f537461747573400a3a617574686f\
     7269747921746d7025324670726f62652d6469722d782532467472656c6c6973642e736f636b8386\
     400c636f6e74656e742d74797065106170706c69636174696f6e2f67727063400274650874726169\
     6c6572734014677270632d6163636570742d656e636f64696e67176964656e746974792c20646566\
     6c6174652c20677a6970400c677270632d74696d656f7574043339366d400a757365722d6167656e\
     7430677270632d707974686f6e2f312e38352e3320677270632d632f35382e302e3020286c696e75\
     783b2063687474703229",
    "40053a706174681f2f7472656c6c69732e76312e4167656e742f4c697374456e64706f696e7473c4\
     8386c3c2c1400c677270632d74696d656f7574043430316dc0",
];

pub(super) type Fields = Vec<(String, String)>;

pub(super) fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

pub(super) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut f = len[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Client bytes: the preface and an empty SETTINGS frame, then `frames`.
pub(super) fn conn(frames: &[Vec<u8>]) -> Vec<u8> {
    [PREFACE_AND_SETTINGS.to_vec(), frames.concat()].concat()
}

/// One HEADERS frame per block, streams 1, 3, 5, …
pub(super) fn requests(blocks: &[Vec<u8>]) -> Vec<u8> {
    let frames: Vec<_> = (0u32..)
        .zip(blocks)
        .map(|(i, b)| frame(HEADERS, END_HEADERS | END_STREAM, 2 * i + 1, b))
        .collect();
    conn(&frames)
}

/// The rewriter's output for `input` offered at once, all of it consumed.
pub(super) fn rewrite(input: &[u8]) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::new();
    let used = Rewriter::default().push(input, &mut out)?;
    assert_eq!(used, input.len(), "input left unconsumed");
    Ok(out)
}

/// Frames after the preface: (type, flags, stream, payload).
pub(super) fn frames(bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
    assert_eq!(&bytes[..24], super::super::frames::PREFACE);
    let mut rest = &bytes[24..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        let stream = u32::from_be_bytes(rest[5..9].try_into().unwrap());
        out.push((rest[3], rest[4], stream, rest[9..9 + len].to_vec()));
        rest = &rest[9 + len..];
    }
    out
}

/// Reads an HPACK integer with an `n`-bit prefix.
pub(super) fn int(b: &mut &[u8], n: u8) -> usize {
    let max = (1usize << n) - 1;
    let mut v = usize::from(b[0]) & max;
    *b = &b[1..];
    if v == max {
        let mut shift = 0;
        loop {
            let o = b[0];
            *b = &b[1..];
            v += usize::from(o & 0x7f) << shift;
            shift += 7;
            if o & 0x80 == 0 {
                break;
            }
        }
    }
    v
}

/// Parses a block that must hold only literals without indexing with a
/// literal name and no Huffman coding — nothing that touches a table.
pub(super) fn literals(mut b: &[u8]) -> Fields {
    let mut fields = Vec::new();
    let string = |b: &mut &[u8]| {
        assert_eq!(b[0] & 0x80, 0, "Huffman-coded string in the output");
        let len = int(b, 7);
        let s = String::from_utf8(b[..len].to_vec()).unwrap();
        *b = &b[len..];
        s
    };
    while !b.is_empty() {
        assert!(
            b[0] == 0 || b[0] == 0x10,
            "not a literal without indexing, new name"
        );
        b = &b[1..];
        let name = string(&mut b);
        let value = string(&mut b);
        fields.push((name, value));
    }
    fields
}

/// The header lists the server reads, in order, checking frame sizes and
/// that END_HEADERS closes each block.
pub(super) fn header_lists(out: &[u8]) -> Vec<(u32, Fields)> {
    let mut lists = Vec::new();
    let mut block = Vec::new();
    for (kind, flags, stream, payload) in frames(out) {
        assert!(payload.len() <= MAX_FRAME_SIZE);
        match kind {
            HEADERS => {
                assert!(block.is_empty(), "HEADERS inside an open block");
                let prio = if flags & PRIORITY != 0 { 5 } else { 0 };
                assert_eq!(flags & PADDED, 0, "padding is removed");
                block.extend_from_slice(&payload[prio..]);
            }
            CONTINUATION => block.extend_from_slice(&payload),
            _ => continue,
        }
        if flags & END_HEADERS != 0 {
            lists.push((stream, literals(&block)));
            block.clear();
        }
    }
    assert!(block.is_empty(), "a block without END_HEADERS");
    lists
}

pub(super) fn fields(pairs: &[(&str, &str)]) -> Fields {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

pub(super) fn rfc_requests() -> [Fields; 3] {
    let first = [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
    ];
    let mut second = first.to_vec();
    second.push(("cache-control", "no-cache"));
    let third = [
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/index.html"),
        (":authority", "www.example.com"),
        ("custom-key", "custom-value"),
    ];
    [fields(&first), fields(&second), fields(&third)]
}

pub(super) fn only_fields(lists: Vec<(u32, Fields)>) -> Vec<Fields> {
    lists.into_iter().map(|(_, f)| f).collect()
}

/// What grpcio's second request decodes to, without inserting anything: so
/// that it can be repeated on one connection (steady state), its indices
/// shifted down by the two insertions it no longer makes.
pub(super) fn steady_grpcio_block() -> Vec<u8> {
    let mut b = vec![0x00, 5];
    b.extend_from_slice(b":path");
    b.push(31);
    b.extend_from_slice(b"/trellis.v1.Agent/ListEndpoints");
    b.extend_from_slice(&[0xc3, 0x83, 0x86, 0xc2, 0xc1, 0xc0, 0x00, 12]);
    b.extend_from_slice(b"grpc-timeout");
    b.push(4);
    b.extend_from_slice(b"401m");
    b.push(0xbe);
    b
}
