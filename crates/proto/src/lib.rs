//! The trellis.v1 gRPC API as Rust types, generated at build time from
//! `proto/trellis/v1/agent.proto` (the node agent), `bgp.proto` (the node's
//! BGP peers) and `proto/trellis/v1/controller.proto` (the cluster controller).
//!
//! Generated code lives here and nowhere else (STYLE convention 8): the service
//! crate (`trellis-grpc`) and the clients (`netctl`, tests) depend on this crate,
//! the core (`trellis-agent`) never does. The build uses protox, a protobuf
//! compiler in pure Rust, so no `protoc` is needed anywhere.

mod unix;

pub use unix::{ConnectError, channel_unix, channel_unix_lazy, connect_unix};

/// The `trellis.v1` package: messages, `agent_client::AgentClient`,
/// `agent_server::{Agent, AgentServer}`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("trellis.v1");

    pub use agent_client::AgentClient;
    pub use agent_server::{Agent, AgentServer};
    pub use bgp_client::BgpClient;
    pub use bgp_server::{Bgp, BgpServer};
    pub use controller_client::ControllerClient;
    pub use controller_server::{Controller, ControllerServer};
}

/// The encoded `FileDescriptorSet` of `trellis.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/trellis_descriptor.bin"));

/// The fully qualified name of the service, as health checks and reflection
/// know it.
pub const SERVICE_NAME: &str = "trellis.v1.Agent";

/// The fully qualified name of the controller's service.
pub const CONTROLLER_SERVICE_NAME: &str = "trellis.v1.Controller";

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn descriptor_set_holds_the_agent_service() {
        let fds = prost_types_free_decode(FILE_DESCRIPTOR_SET);
        assert!(
            fds.contains("trellis.v1"),
            "package missing from the descriptor set"
        );
        assert!(fds.contains("Agent"));
    }

    /// The descriptor decodes as protobuf; its text contains the names.
    fn prost_types_free_decode(bytes: &[u8]) -> String {
        // Decoding as an empty message checks the wire format without pulling
        // in prost-types; the names are plain UTF-8 inside.
        let _ = v1::ListNetworksRequest::decode(bytes).expect("valid protobuf");
        String::from_utf8_lossy(bytes).into_owned()
    }

    #[test]
    fn messages_round_trip() {
        let spec = v1::NetworkSpec {
            name: "n".into(),
            mode: v1::NetworkMode::Bridge as i32,
            subnets: vec!["10.0.0.0/24".into()],
            ..Default::default()
        };
        let bytes = spec.encode_to_vec();
        assert_eq!(v1::NetworkSpec::decode(&bytes[..]).unwrap(), spec);
    }
}
