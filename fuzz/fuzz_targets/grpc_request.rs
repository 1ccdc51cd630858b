//! gRPC request conversion: the request bytes of a unary call, decoded as the
//! method's protobuf message (prost, as tonic does) and converted into core
//! types by the method's conversion in `trellis_grpc::input` (the agent),
//! `trellis_grpc::controller::input` (the controller) or `trellis_grpc::bgp`
//! (BGP peers) — every field checked and bounded. A refusal is turned into
//! the INVALID_ARGUMENT status the edge answers, down to its HTTP headers.
//! The controller's reading of a node's `ListHeldBlocks` answer is here too
//! (a node's bytes, read by the controller).
//!
//! Input: the first byte picks the method, the rest is the message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use trellis_grpc::controller::{input as cin, nodes};
use trellis_grpc::{bgp, input};
use trellis_proto::v1 as pb;
use trellis_types::InvalidInput;

/// The edge's answer to a refused request (`trellis_grpc::errors::invalid`),
/// as far as the wire: the message goes into `grpc-message`.
fn refused(e: InvalidInput) {
    tonic::Status::invalid_argument(e.to_string()).into_http::<()>();
}

fn status(s: tonic::Status) {
    s.into_http::<()>();
}

fn check<T>(r: Result<T, InvalidInput>) {
    if let Err(e) = r {
        refused(e);
    }
}

/// Decodes `bytes` as `M`, or returns from the target (tonic answers a
/// message that does not decode INTERNAL, before any conversion).
macro_rules! decode {
    ($m:ty, $bytes:expr) => {
        match <$m>::decode($bytes) {
            Ok(m) => m,
            Err(_) => return,
        }
    };
}

fuzz_target!(|data: &[u8]| {
    let Some((&method, bytes)) = data.split_first() else {
        return;
    };
    match method % 25 {
        // trellis.v1.Agent
        0 => check(input::network_spec(
            decode!(pb::CreateNetworkRequest, bytes).spec,
        )),
        1 => check(input::network_name(
            "name",
            &decode!(pb::GetNetworkRequest, bytes).name,
        )),
        2 => check(input::network_name(
            "name",
            &decode!(pb::DeleteNetworkRequest, bytes).name,
        )),
        3 => check(input::attach_request(decode!(pb::AttachRequest, bytes))),
        4 => {
            let r = decode!(pb::DetachRequest, bytes);
            check(input::handle(&r.container_id, &r.ifname));
        }
        5 => {
            let r = decode!(pb::GetEndpointRequest, bytes);
            check(input::handle(&r.container_id, &r.ifname));
        }
        6 => check(input::filter(decode!(pb::ListEndpointsRequest, bytes))),
        7 => {
            let r = decode!(pb::CheckRequest, bytes);
            check(input::handle(&r.container_id, &r.ifname));
        }
        8 => {
            let r = decode!(pb::GarbageCollectRequest, bytes);
            check(input::gc_network(&r.network));
            check(input::valid(&r.valid));
        }
        // trellis.v1.Controller
        9 => check(cin::pool_spec(decode!(pb::CreatePoolRequest, bytes).spec)),
        10 => check(cin::pool_name(
            "name",
            &decode!(pb::GetPoolRequest, bytes).name,
        )),
        11 => check(cin::pool_name(
            "name",
            &decode!(pb::DeletePoolRequest, bytes).name,
        )),
        12 => check(cin::network_spec(
            decode!(pb::CreateClusterNetworkRequest, bytes).spec,
        )),
        13 => check(cin::network_name(
            "name",
            &decode!(pb::GetClusterNetworkRequest, bytes).name,
        )),
        14 => check(cin::node_spec(decode!(pb::RegisterNodeRequest, bytes).spec)),
        15 => {
            let r = decode!(pb::KeepAliveRequest, bytes);
            check(cin::node_name("node", &r.node));
            check(cin::usage(&r.usage));
        }
        16 => check(cin::node_name(
            "name",
            &decode!(pb::DrainNodeRequest, bytes).name,
        )),
        17 => check(cin::node_name(
            "name",
            &decode!(pb::RemoveNodeRequest, bytes).name,
        )),
        18 => {
            let r = decode!(pb::ClaimBlockRequest, bytes);
            check(cin::node_name("node", &r.node));
            check(cin::pool_name("pool", &r.pool));
        }
        19 => {
            let r = decode!(pb::ReleaseBlockRequest, bytes);
            check(cin::node_name("node", &r.node));
            check(cin::pool_name("pool", &r.pool));
            check(cin::prefix("prefix", &r.prefix));
        }
        20 => check(cin::block_filter(&decode!(pb::ListBlocksRequest, bytes))),
        21 => check(cin::prefixes(
            &decode!(pb::ReleaseIpamRequest, bytes).prefixes,
        )),
        22 => check(cin::node_name(
            "node",
            &decode!(pb::ListNodeEndpointsRequest, bytes).node,
        )),
        // A node's answer, read by the controller.
        23 => {
            for b in decode!(pb::ListHeldBlocksResponse, bytes).blocks {
                if let Err(e) = nodes::held_block(b) {
                    let _ = e.to_string();
                }
            }
        }
        // trellis.v1.Bgp (RemovePeer's one field is an IP address, parsed by std)
        _ => {
            if let Err(s) = bgp::peer_config(decode!(pb::AddBgpPeerRequest, bytes).peer) {
                status(s);
            }
        }
    }
});
