//! Who serves: the one replica of an HA controller that holds office.
//!
//! Replicas share one store (etcd); one of them is elected leader through a
//! lease (the daemon runs the election) and serves, the others refuse every
//! call with UNAVAILABLE naming the leader, so that clients move there. The
//! store's compare-and-swap still guards every write, so a deposed leader
//! that has not noticed yet cannot give a block two owners: office decides
//! who answers, not what is true.

use crate::Controller;
use tokio::time::Instant;

/// A replica's standing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Office {
    /// This replica serves.
    Leader,
    /// Another replica serves: its name and the address clients use.
    Follower {
        /// The leader's replica name.
        name: String,
        /// The leader's address, as clients list it (`https://host:port`).
        url: String,
    },
    /// No leader is known yet (an election under way, or the store out of
    /// reach).
    Electing,
}

impl Office {
    /// Why a replica that is not the leader refuses a call; `None` for the
    /// leader. The wording `the leader is <url>` is what clients look for to
    /// move to the leader (`trellis-member`'s failover).
    pub fn refusal(&self) -> Option<String> {
        match self {
            Office::Leader => None,
            Office::Follower { name, url } => Some(format!(
                "this controller replica is not the leader: the leader is {url} ({name})"
            )),
            Office::Electing => Some(
                "this controller replica is not the leader, and no leader is elected yet: try again"
                    .into(),
            ),
        }
    }
}

impl Controller {
    /// Called when this replica becomes the leader: every node gets a full
    /// lease from now, as after a restart — what another replica saw of the
    /// nodes' renewals is not known here, and a change of leader must only
    /// ever delay a node's death, never hasten it.
    ///
    /// The controller's watch of the store (its hub) restarts too, with
    /// whatever watches follow it: the changes it typed as a follower carry
    /// the leases and usage a follower knows (none). Those watches end
    /// with an error and watch again, as they do when office is lost.
    pub fn take_office(&self) {
        self.restart_leases(Instant::now());
        self.stop_hub();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_names_the_leader_in_the_words_clients_look_for() {
        let f = Office::Follower {
            name: "ctl-b".into(),
            url: "https://10.0.0.2:7443".into(),
        };
        let why = f.refusal().unwrap();
        assert!(
            why.contains("the leader is https://10.0.0.2:7443 "),
            "{why}"
        );
        assert_eq!(Office::Leader.refusal(), None);
        assert!(Office::Electing.refusal().unwrap().contains("no leader"));
    }
}
