//! etcd's v3 API, generated at build time from the vendored `proto/etcd`
//! (see `build.rs`): private to this crate.

#![allow(missing_docs, dead_code, clippy::all, clippy::pedantic)]

pub(crate) mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}
pub(crate) mod mvccpb {
    tonic::include_proto!("mvccpb");
}
pub(crate) mod authpb {
    tonic::include_proto!("authpb");
}
