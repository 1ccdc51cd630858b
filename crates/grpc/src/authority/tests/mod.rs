//! The rewriter against header blocks from real encoders: RFC 7541's own
//! examples (indexing, Huffman, dynamic table reuse across requests) and
//! what grpcio 1.85.3 sent on one channel, plus frame-layer edge cases and
//! malformed input, read back with the strict parser of [`wire`].

mod wire;

use super::block::integer;
use super::{FrameError, MAX_FRAME_SIZE, NormalizeAuthority, Rewriter};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use wire::*;

#[test]
fn rfc_examples_with_indexing_and_huffman_decode_across_requests() {
    for vectors in [RFC_C3, RFC_C4] {
        let blocks: Vec<_> = vectors.iter().map(|h| hex(h)).collect();
        let out = rewrite(&requests(&blocks)).unwrap();
        // A valid authority is kept as it came.
        assert_eq!(only_fields(header_lists(&out)), rfc_requests());
    }
}

#[test]
fn grpcio_requests_get_localhost_and_keep_every_other_field() {
    let blocks: Vec<_> = GRPCIO.iter().map(|h| hex(h)).collect();
    let lists = header_lists(&rewrite(&requests(&blocks)).unwrap());
    let common = [
        (":authority", "localhost"),
        (":method", "POST"),
        (":scheme", "http"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("grpc-accept-encoding", "identity, deflate, gzip"),
    ];
    let agent = (
        "user-agent",
        "grpc-python/1.85.3 grpc-c/58.0.0 (linux; chttp2)",
    );
    let mut first = vec![(":path", "/trellis.v1.Agent/Status")];
    first.extend(common);
    first.extend([("grpc-timeout", "396m"), agent]);
    let mut second = vec![(":path", "/trellis.v1.Agent/ListEndpoints")];
    second.extend(common);
    second.extend([("grpc-timeout", "401m"), agent]);
    assert_eq!(lists, [(1, fields(&first)), (3, fields(&second))]);
}

#[test]
fn invalid_authorities_are_replaced_and_valid_ones_kept() {
    let cases = [
        ("run%2Ftrellis%2Ftrellisd.sock", "localhost"),
        ("/run/trellis/trellisd.sock", "localhost"),
        ("", "localhost"),
        ("localhost", "localhost"),
        ("trellisd:50051", "trellisd:50051"),
        ("[::1]:8080", "[::1]:8080"),
    ];
    for (sent, seen) in cases {
        // Literal with incremental indexing, indexed name 1 (:authority).
        let mut block = vec![0x41];
        integer(&mut block, sent.len(), 7, 0);
        block.extend_from_slice(sent.as_bytes());
        block.push(0xbe); // and the entry just inserted, by index
        let lists = header_lists(&rewrite(&requests(&[block])).unwrap());
        let want = fields(&[(":authority", seen), (":authority", seen)]);
        assert_eq!(lists, [(1, want)], "{sent:?}");
    }
}

#[test]
fn table_size_updates_are_followed() {
    let c3 = |i: usize| hex(RFC_C3[i]);
    // Shrinking to 0 evicts what the first request inserted; growing back
    // does not restore it, so index 62 no longer exists.
    let evicted = [vec![0x20, 0x3f, 0xe1, 0x1f], c3(1)].concat();
    let err = rewrite(&requests(&[c3(0), evicted])).unwrap_err();
    assert!(matches!(err, FrameError::Hpack { stream: 3, .. }), "{err}");
    assert!(err.to_string().contains("index"), "{err}");

    // A table of 64 bytes keeps only the newest entry (":authority" is
    // 10 + 15 + 32 = 57 bytes; "cache-control: no-cache" 53).
    let small = [vec![0x3f, 0x21], c3(1)].concat();
    let out = rewrite(&requests(&[c3(0), small])).unwrap();
    assert_eq!(only_fields(header_lists(&out))[1], rfc_requests()[1]);
    let after = hex("82 86 84 be");
    let lists = header_lists(
        &rewrite(&requests(&[
            c3(0),
            [vec![0x3f, 0x21], c3(1)].concat(),
            after,
        ]))
        .unwrap(),
    );
    assert_eq!(
        lists[2].1.last().unwrap(),
        &("cache-control".into(), "no-cache".into())
    );
    let gone = hex("82 86 84 bf");
    let err = rewrite(&requests(&[
        c3(0),
        [vec![0x3f, 0x21], c3(1)].concat(),
        gone,
    ]))
    .unwrap_err();
    assert!(matches!(err, FrameError::Hpack { stream: 5, .. }), "{err}");

    // Above the 4096 bytes the server allows (RFC 7541 §6.3).
    let too_big = [vec![0x3f, 0xe2, 0x1f], c3(0)].concat();
    let err = rewrite(&requests(&[too_big])).unwrap_err();
    assert!(err.to_string().contains("size"), "{err}");
}

#[test]
fn padding_is_removed_and_priority_and_end_stream_kept() {
    let block = hex(RFC_C4[0]);
    let prio = [0x80, 0, 0, 3, 41];
    let payload = [&[7][..], &prio, &block, &[0; 7]].concat();
    let flags = PADDED | PRIORITY | END_HEADERS | END_STREAM;
    let out = rewrite(&conn(&[frame(HEADERS, flags, 5, &payload)])).unwrap();
    let f = frames(&out);
    let (kind, flags, stream, payload) = &f[1];
    assert_eq!(
        (*kind, *flags, *stream),
        (HEADERS, PRIORITY | END_HEADERS | END_STREAM, 5)
    );
    assert_eq!(payload[..5], prio);
    assert_eq!(literals(&payload[5..]), rfc_requests()[0]);
}

#[test]
fn other_frames_pass_untouched() {
    let data = frame(
        0x0,
        END_STREAM,
        1,
        b"\x00\x00\x00\x00\x05\x82\x86\x84\x41\x00",
    );
    let others = [
        frame(0x4, 0, 0, &[0, 4, 0, 1, 0, 0]),      // SETTINGS
        frame(0x8, 0, 0, &[0, 0, 0x10, 0]),         // WINDOW_UPDATE
        frame(0x6, 0, 0, b"pingpong"),              // PING
        frame(0x3, 0, 1, &[0, 0, 0, 8]),            // RST_STREAM
        frame(0x0, 0x8, 3, &[2, b'h', b'i', 0, 0]), // padded DATA
        frame(0x2, 0, 3, &[0, 0, 0, 1, 16]),        // PRIORITY
        frame(0xfa, 0xff, 7, b"unknown type"),      // extension frame
        frame(0x4, 1, 0, &[]),                      // SETTINGS ack
    ];
    let input = conn(&[
        others.concat(),
        frame(HEADERS, END_HEADERS, 9, &hex(RFC_C3[0])),
        data.clone(),
    ]);
    let out = rewrite(&input).unwrap();
    let prefix = [PREFACE_AND_SETTINGS.to_vec(), others.concat()].concat();
    assert_eq!(out[..prefix.len()], prefix);
    assert!(out.ends_with(&data));
}

#[test]
fn blocks_split_over_continuations_are_joined_and_large_ones_split() {
    // A 20 000-byte value: three frames in, and the rewritten block is
    // still over 16 384 bytes, so it leaves as HEADERS plus CONTINUATION.
    let value = "v".repeat(20_000);
    let mut block = hex("8286 84");
    block.push(0x00);
    integer(&mut block, 5, 7, 0);
    block.extend_from_slice(b"x-big");
    integer(&mut block, value.len(), 7, 0);
    block.extend_from_slice(value.as_bytes());
    let (a, rest) = block.split_at(10_000);
    let (b, c) = rest.split_at(8_000);
    let input = conn(&[
        frame(HEADERS, END_STREAM, 1, a),
        frame(CONTINUATION, 0, 1, b),
        frame(CONTINUATION, END_HEADERS, 1, c),
    ]);
    let out = rewrite(&input).unwrap();
    let f = frames(&out);
    let kinds: Vec<_> = f[1..]
        .iter()
        .map(|(k, fl, s, p)| (*k, *fl, *s, p.len()))
        .collect();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert_eq!(kinds[0], (HEADERS, END_STREAM, 1, MAX_FRAME_SIZE));
    assert_eq!(
        (kinds[1].0, kinds[1].1, kinds[1].2),
        (CONTINUATION, END_HEADERS, 1)
    );
    let lists = header_lists(&out);
    assert_eq!(lists[0].1[3], ("x-big".to_owned(), value));
}

/// Hands out its bytes one at a time.
struct Trickle(Vec<u8>, usize);

impl AsyncRead for Trickle {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some(b) = this.0.get(this.1) {
            buf.put_slice(&[*b]);
            this.1 += 1;
        }
        Poll::Ready(Ok(()))
    }
}

async fn read_all(input: Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    NormalizeAuthority::new(Trickle(input, 0))
        .read_to_end(&mut out)
        .await?;
    Ok(out)
}

#[tokio::test]
async fn one_byte_reads_give_the_same_bytes_as_one_read() {
    let grpcio: Vec<_> = GRPCIO.iter().map(|h| hex(h)).collect();
    let block = hex(RFC_C4[0]);
    let (a, b) = block.split_at(5);
    let input = [
        requests(&grpcio),
        frame(0x0, END_STREAM, 1, b"\0\0\0\0\0"),
        frame(
            HEADERS,
            PRIORITY,
            7,
            &[[0, 0, 0, 1, 9].as_slice(), a].concat(),
        ),
        frame(CONTINUATION, END_HEADERS, 7, b),
        frame(0x6, 0, 0, b"12345678"),
    ]
    .concat();
    let whole = rewrite(&input).unwrap();
    assert_eq!(read_all(input).await.unwrap(), whole);
    assert_eq!(header_lists(&whole).len(), 3);
}

#[tokio::test]
async fn malformed_input_fails_the_connection() {
    let ok = hex(RFC_C3[0]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("preface", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
        (
            "maximum frame size",
            conn(&[frame(
                HEADERS,
                END_HEADERS,
                1,
                &vec![0x82; MAX_FRAME_SIZE + 1],
            )]),
        ),
        ("index", conn(&[frame(HEADERS, END_HEADERS, 1, &[0x80])])),
        (
            "index",
            conn(&[frame(HEADERS, END_HEADERS, 1, &[0xff, 0x80, 0x01])]),
        ),
        (
            "octets",
            conn(&[frame(HEADERS, END_HEADERS, 1, &ok[..ok.len() - 3])]),
        ),
        (
            "Huffman",
            conn(&[frame(
                HEADERS,
                END_HEADERS,
                1,
                &hex("8286 8441 8cff ffff ffff ffff ffff ffff ffff"),
            )]),
        ),
        (
            "after a header field",
            conn(&[frame(HEADERS, END_HEADERS, 1, &[0x82, 0x20])]),
        ),
        (
            "padding",
            conn(&[frame(HEADERS, END_HEADERS | PADDED, 1, &[9, 0x82])]),
        ),
        (
            "padding",
            conn(&[frame(HEADERS, END_HEADERS | PRIORITY, 1, &[0, 0])]),
        ),
        (
            "expected a CONTINUATION",
            conn(&[frame(HEADERS, 0, 1, &ok), frame(0x0, 0, 1, b"x")]),
        ),
        (
            "expected a CONTINUATION",
            conn(&[
                frame(HEADERS, 0, 1, &ok),
                frame(CONTINUATION, END_HEADERS, 3, &[]),
            ]),
        ),
        (
            "without a HEADERS",
            conn(&[frame(CONTINUATION, END_HEADERS, 1, &ok)]),
        ),
    ];
    for (what, input) in cases {
        let err = rewrite(&input).unwrap_err().to_string();
        assert!(err.contains(what), "{what}: {err}");
        let io = read_all(input).await.unwrap_err();
        assert_eq!(io.kind(), std::io::ErrorKind::InvalidData, "{what}");
        assert!(io.to_string().contains(what), "{what}: {io}");
    }
    // A header block that never ends is bounded.
    let mut frames = vec![frame(HEADERS, 0, 1, &[0x82; MAX_FRAME_SIZE])];
    frames.extend((0..64).map(|_| frame(CONTINUATION, 0, 1, &[0x82; MAX_FRAME_SIZE])));
    let err = rewrite(&conn(&frames)).unwrap_err();
    assert!(
        matches!(err, FrameError::BlockTooLarge { stream: 1 }),
        "{err}"
    );
}

#[tokio::test]
async fn a_connection_cut_mid_frame_ends_at_the_last_whole_frame() {
    let input = requests(&[hex(RFC_C3[0])]);
    let whole = rewrite(&input).unwrap();
    let cut = [
        input,
        frame(HEADERS, END_HEADERS, 3, &hex(RFC_C3[1]))[..12].to_vec(),
    ]
    .concat();
    assert_eq!(read_all(cut).await.unwrap(), whole);
}

/// Not a benchmark with asserts: prints what one request's header block
/// costs, the first of a grpcio channel (all literals) and a later one
/// (dynamic table indices), in whatever profile the test is built.
#[test]
fn cost_per_request() {
    let blocks: Vec<_> = GRPCIO.iter().map(|h| hex(h)).collect();
    let first = conn(&[frame(HEADERS, END_HEADERS, 1, &blocks[0])]);
    let later = frame(HEADERS, END_HEADERS, 3, &steady_grpcio_block());
    let mut rw = Rewriter::default();
    let mut out = Vec::with_capacity(1024);
    rw.push(&first, &mut out).unwrap();
    out.clear();
    rw.push(&later, &mut out).unwrap();
    assert_eq!(
        header_lists(&[&first[..24], &out].concat())[0].1,
        header_lists(&rewrite(&requests(&blocks)).unwrap())[1].1
    );
    let n = 20_000;
    let t = Instant::now();
    for _ in 0..n {
        out.clear();
        rw.push(&later, &mut out).unwrap();
    }
    let later_ns = t.elapsed().as_nanos() / n;
    let t = Instant::now();
    for _ in 0..n / 10 {
        out.clear();
        Rewriter::default().push(&first, &mut out).unwrap();
    }
    let first_ns = t.elapsed().as_nanos() / (n / 10);
    let huff = conn(&RFC_C4.map(|h| frame(HEADERS, END_HEADERS, 1, &hex(h))));
    let t = Instant::now();
    for _ in 0..n / 10 {
        out.clear();
        Rewriter::default().push(&huff, &mut out).unwrap();
    }
    let huff_ns = t.elapsed().as_nanos() / (n / 10) / 3;
    println!(
        "authority rewrite per request: {later_ns} ns (grpcio, later request on a channel), \
         {first_ns} ns (grpcio, first request, new connection state), \
         {huff_ns} ns (RFC 7541 C.4, Huffman-coded)"
    );
}
