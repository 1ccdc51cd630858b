//! A gRPC C-core client's bytes, as grpcio 1.85.3 wrote them (its socket
//! path percent-encoded as `:authority`), answered by `serve_unix`: the
//! call succeeds instead of ending in RST_STREAM(PROTOCOL_ERROR). The
//! Python client itself runs in trellisd's tests; this one needs no Python,
//! and no root: only the socket matters, so the agent runs on the fake
//! kernel (unprivileged tier).

use crate::util::Harness;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// grpcio's first request on a channel to `unix:/tmp/probe-dir-x/trellisd.sock`
/// (`:authority` is `tmp%2Fprobe-dir-x%2Ftrellisd.sock`), calling
/// `/trellis.v1.Agent/Status`, its `grpc-timeout` raised from 396m to 300S.
const GRPCIO_STATUS: &str = "\
    40053a70617468182f7472656c6c69732e76312e4167656e742f537461747573400a3a617574686f\
    7269747921746d7025324670726f62652d6469722d782532467472656c6c6973642e736f636b8386\
    400c636f6e74656e742d74797065106170706c69636174696f6e2f677270634002746508747261696c\
    6572734014677270632d6163636570742d656e636f64696e67176964656e746974792c206465666c61\
    74652c20677a6970400c677270632d74696d656f75740433303053400a757365722d6167656e743067\
    7270632d707974686f6e2f312e38352e3320677270632d632f35382e302e3020286c696e75783b2063\
    687474703229";

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    let digit = |p: &[u8]| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap();
    digits.chunks(2).map(digit).collect()
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut f = len[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Reads one frame: (type, flags, stream, payload).
async fn read_frame(s: &mut UnixStream) -> (u8, u8, u32, Vec<u8>) {
    let mut head = [0; 9];
    s.read_exact(&mut head).await.expect("a frame header");
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let mut payload = vec![0; len];
    s.read_exact(&mut payload).await.expect("a frame payload");
    let stream = u32::from_be_bytes(head[5..9].try_into().unwrap());
    (head[3], head[4], stream, payload)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_bytes_with_a_socket_path_authority_get_an_answer() {
    let h = Harness::fake().await;
    let mut s = UnixStream::connect(h.path("trellis.sock")).await.unwrap();
    let request = [
        PREFACE.to_vec(),
        frame(0x4, 0, 0, &[]),
        frame(0x1, 0x4, 1, &hex(GRPCIO_STATUS)),
        frame(0x0, 0x1, 1, &[0, 0, 0, 0, 0]), // an empty StatusRequest
    ];
    s.write_all(&request.concat()).await.unwrap();
    let mut message = Vec::new();
    let answer = async {
        loop {
            match read_frame(&mut s).await {
                (0x4, 0, _, _) => s.write_all(&frame(0x4, 0x1, 0, &[])).await.unwrap(),
                (0x3, _, 1, code) => panic!("RST_STREAM on the call: {code:?}"),
                (0x7, _, _, goaway) => panic!("GOAWAY: {goaway:?}"),
                (0x0, _, 1, data) => message.extend_from_slice(&data),
                (0x1, flags, 1, _) if flags & 0x1 != 0 => break, // trailers
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), answer)
        .await
        .expect("an answer within 30 s");
    // A length-prefixed StatusResponse naming the node.
    assert!(message.len() > 5, "{message:?}");
    assert!(message.windows(5).any(|w| w == b"node1"), "{message:?}");
    drop(s);
    h.stop().await;
}
