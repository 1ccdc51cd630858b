//! Where the benchmarked controller keeps its state (`--store`): the redb
//! file in its state directory (one controller, the default), or a fresh
//! three-member etcd cluster on the loopback of the controller's namespace,
//! with the controller as one replica on it (it elects itself; the election
//! is timed by [`wait_for_office`], not by any figure).

use crate::etcd::EtcdCluster;
use anyhow::{Result, bail, ensure};
use std::path::Path;
use std::time::{Duration, Instant};
use trellis_proto::v1::{self as pb, ControllerClient};
use trellis_testlab::Netns;

/// etcd members of every etcd the bench starts.
pub const ETCD_MEMBERS: usize = 3;
/// The TCP port a replica on etcd listens on (plaintext, on its
/// namespace's loopback) and advertises; the cluster bench's nodes use the
/// unix socket all the same.
pub const REPLICA_PORT: u16 = 7444;
/// How long a controller on etcd may take to elect itself.
pub const OFFICE_LIMIT: Duration = Duration::from_secs(30);

/// A store the controller can be run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// redb, a file in the controller's state directory.
    Redb,
    /// A three-member etcd cluster.
    Etcd,
}

impl Store {
    /// Its name on the command line and in the tables.
    pub fn name(self) -> &'static str {
        match self {
            Store::Redb => "redb",
            Store::Etcd => "etcd",
        }
    }

    /// `redb`, `etcd`, or both comma-separated (run in that order, each
    /// once).
    pub fn parse_list(text: &str) -> Result<Vec<Store>> {
        let mut out = Vec::new();
        for word in text.split(',').map(str::trim) {
            let s = match word {
                "redb" => Store::Redb,
                "etcd" => Store::Etcd,
                other => bail!("--store {text:?}: {other:?} is not redb or etcd"),
            };
            ensure!(!out.contains(&s), "--store {text:?}: {word} twice");
            out.push(s);
        }
        Ok(out)
    }

    /// Claim on A → route on B, p99 target in ms: issue 11's on redb,
    /// issue 13's on etcd.
    pub fn route_p99_ms(self) -> f64 {
        match self {
            Store::Redb => 100.0,
            Store::Etcd => 250.0,
        }
    }
}

/// A controller's store, ready: nothing to run for redb; for etcd, its
/// members (dropped after the controller, before the namespace).
pub struct Backing {
    /// The etcd members, for etcd.
    pub etcd: Option<EtcdCluster>,
}

impl Backing {
    /// Makes `store` ready for a controller in `ns`.
    pub fn start(store: Store, ns: &Netns) -> Result<Backing> {
        let etcd = match store {
            Store::Redb => None,
            Store::Etcd => Some(EtcdCluster::start(ns, ETCD_MEMBERS)?),
        };
        Ok(Backing { etcd })
    }

    /// For errors: the tail of each etcd member's log, under a heading
    /// line; nothing for redb.
    pub fn logs(&self) -> String {
        self.etcd
            .as_ref()
            .map(|e| format!("\netcd members' logs (tail):\n{}", e.logs()))
            .unwrap_or_default()
    }

    /// The controller's arguments for this store (none for redb): the
    /// etcd members, and its part as replica `name` listening on
    /// `127.0.0.1:port` in its namespace.
    pub fn controller_args(&self, name: &str, port: u16) -> Vec<String> {
        let Some(etcd) = &self.etcd else {
            return Vec::new();
        };
        let listen = format!("127.0.0.1:{port}");
        let url = format!("http://{listen}");
        [
            "--store",
            &etcd.store_flag(),
            "--name",
            name,
            "--listen",
            &listen,
            "--insecure-tcp",
            "--advertise-url",
            &url,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    }
}

/// Waits until the controller at `socket` serves (answers ControllerStatus:
/// a replica on etcd refuses with UNAVAILABLE until it holds office); how
/// long that took.
pub async fn wait_for_office(socket: &Path) -> Result<Duration> {
    let start = Instant::now();
    let mut ctl = ControllerClient::new(trellis_proto::channel_unix(socket).await?);
    loop {
        match ctl.controller_status(pb::ControllerStatusRequest {}).await {
            Ok(_) => return Ok(start.elapsed()),
            Err(s) if s.code() == tonic::Code::Unavailable && start.elapsed() < OFFICE_LIMIT => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(s) => bail!(
                "the controller does not serve {:.1} s after it started: {} {}",
                start.elapsed().as_secs_f64(),
                s.code(),
                s.message()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_store_lists() {
        assert_eq!(Store::parse_list("redb").unwrap(), [Store::Redb]);
        assert_eq!(
            Store::parse_list("etcd, redb").unwrap(),
            [Store::Etcd, Store::Redb]
        );
        for bad in ["", "sqlite", "redb,redb", "redb,"] {
            assert!(Store::parse_list(bad).is_err(), "{bad:?}");
        }
    }
}
