//! [`EtcdStore`]: trellis-store's [`KvStore`](trellis_store::KvStore) kept in
//! an etcd cluster, so that controllers on several machines share one
//! highly available store; plus leases, the seam for electing one of them.
//!
//! # Design decisions
//!
//! * **A client of our own, generated in-tree, no `protoc`.** etcd's v3 API
//!   is vendored (`proto/etcd`, Apache-2.0, see its README) and compiled by
//!   `build.rs` with protox and tonic-prost-build, client side only, as
//!   `trellis-proto` does for trellis's API. The `etcd-client` crate needs
//!   `protoc` at build time and brings a general-purpose client (auth,
//!   locks, elections, TLS options) whose retries we would have to
//!   second-guess; the part trellis needs is small and its failure handling
//!   is exactly what matters here. The generated code is private: nothing
//!   else in trellis talks to etcd except through [`KvStore`](trellis_store::KvStore)
//!   and the lease methods.
//! * **Every write is one etcd `Txn`.** An expectation is a comparison
//!   ([`Expect::Absent`](trellis_store::Expect::Absent) ⇔ `create_revision == 0`,
//!   [`Expect::Revision`](trellis_store::Expect::Revision) ⇔ `mod_revision == r`),
//!   a multi-op [`KvStore::txn`](trellis_store::KvStore::txn) is one etcd
//!   transaction, all or nothing, and its failure branch reads every
//!   checked key so that a conflict names the key and its actual revision
//!   without a second round trip (see `txn.rs`). etcd's revision *is* the
//!   store revision: a fresh etcd starts at 1; a transaction's writes all
//!   take one revision (the trait allows it); a transaction that changes
//!   nothing (deletes of absent keys) takes none, as the conformance suite
//!   wants. etcd takes at most [`MAX_TXN_OPS`] ops per transaction
//!   (`--max-txn-ops`); a larger one is refused before it is sent.
//! * **Namespaces, subtrees as byte ranges.** [`EtcdStore::connect`] takes an
//!   optional key prefix, so several trellis clusters, or tests, share one
//!   etcd. A trellis prefix (a subtree, `a/b` never matching `a/bc`) is the
//!   byte range `[a/b, a/b0)`, and the few siblings inside it (`a/b-1`) are
//!   dropped on arrival (see `keys.rs`). Revisions stay etcd's, shared by
//!   every namespace: a store's revisions increase but skip the others'.
//! * **Failover that never guesses about a write.** A store holds a channel
//!   to every member and sends to the one that answered last. A request that
//!   provably was not applied (no connection could be made; `etcdserver: no
//!   leader`) moves on to the next member; a read whose answer was lost is
//!   sent again too; a write whose answer was lost fails with
//!   [`Error::Indeterminate`](trellis_store::Error::Indeterminate), a variant
//!   added to the store's error for this backend: the compare-and-swap may
//!   have been applied, and only the caller, re-reading, can tell (see
//!   `endpoints.rs`). What that costs, measured by the tests: a follower's
//!   death, at most the one write in flight on it; the leader's, also the
//!   writes a follower forwarded to it before noticing, which etcd holds
//!   for its proposal timeout (7 s by default) before answering "request
//!   timed out".
//! * **Durable on return.** etcd answers a write once a majority of members
//!   hold it on disk, so [`KvStore::txn_unsynced`](trellis_store::KvStore::txn_unsynced)
//!   is [`KvStore::txn`](trellis_store::KvStore::txn) and
//!   [`KvStore::sync`](trellis_store::KvStore::sync) has nothing to do (the
//!   trait's defaults).
//! * **Watches resume where they stopped.** One etcd watch stream per
//!   trellis watch; when its member dies, the stream is created again on
//!   another member from the revision after the last event, so callers see
//!   neither a gap nor a repeat. A watch from a compacted revision fails with
//!   [`Error::Compacted`](trellis_store::Error::Compacted) (see `watch.rs`).
//!   etcd keeps every revision until compacted: run it with
//!   `--auto-compaction-retention`, or call [`EtcdStore::compact`].
//! * **Leases as inherent methods.** [`EtcdStore::grant_lease`],
//!   [`EtcdStore::keep_alive`], [`EtcdStore::revoke`] and
//!   [`EtcdStore::put_if_with_lease`] are what leader election needs (see
//!   `lease.rs` for the recipe); the embedded stores have one owner and no
//!   use for them, so they stay off the trait.
//!
//! Not yet: TLS and authentication towards etcd (endpoints are `http://`).
//!
//! The integration tests (`tests/it`) start real etcd members on loopback
//! (Debian's `etcd-server`): the conformance suite, failover in a
//! three-member cluster, leases and compaction. They run with the cargo
//! feature `etcd` (the etcd tier), and are listed as ignored without it.

mod endpoints;
mod keys;
mod lease;
mod pb;
mod store;
mod txn;
mod watch;

pub use endpoints::{CONNECT_TIMEOUT, FAILOVER_DEADLINE, REQUEST_TIMEOUT};
pub use keys::MAX_TXN_OPS;
pub use lease::LeaseId;
pub use store::EtcdStore;

#[cfg(feature = "testing")]
pub mod testing;
