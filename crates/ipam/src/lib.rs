//! Pools, blocks and address allocation over a KvStore
