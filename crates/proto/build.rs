//! Compiles `proto/trellis/v1/{agent,controller,bgp}.proto` with protox (a pure-Rust protobuf
//! compiler), so building trellis never needs `protoc` on the machine. The
//! encoded FileDescriptorSet is written next to the generated code for gRPC
//! server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest.join("../../proto");
    let files = ["agent", "controller", "bgp"].map(|f| root.join(format!("trellis/v1/{f}.proto")));
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let fds = protox::compile(&files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("trellis_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
