//! Integration tests of trellis-store-etcd against real etcd members on
//! loopback (one test binary). They need Debian's `etcd-server` (no root)
//! and run with the cargo feature `etcd`, the etcd tier; without it they are
//! listed as ignored.

mod compaction;
mod conformance;
mod failover;
mod leases;
