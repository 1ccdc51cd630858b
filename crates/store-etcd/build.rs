//! Compiles etcd's v3 API (`proto/etcd/api/etcdserverpb/rpc.proto` and its
//! imports, vendored: see `proto/etcd/README.md`) with protox, a protobuf
//! compiler in pure Rust, so building trellis never needs `protoc`. Client
//! code only: trellis talks to etcd, it never serves etcd's API.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest.join("../../proto");
    let rpc = root.join("etcd/api/etcdserverpb/rpc.proto");
    println!("cargo:rerun-if-changed={}", root.join("etcd").display());

    let fds = protox::compile([&rpc], [&root])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
