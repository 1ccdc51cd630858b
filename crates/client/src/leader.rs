//! Reaching the cluster controller, and the leader among an HA
//! controller's replicas.
//!
//! Only the leader serves; a follower refuses every call with UNAVAILABLE
//! and a message naming the leader (`… the leader is <url> (<name>)`, the
//! wording `trellis_cluster`'s office promises clients). So the replicas are
//! asked in turn for their status, and a refusal that names one of them
//! sends the next question there.

use tonic::Code;
use tonic::transport::Channel;
use trellis_proto::v1::{ControllerClient, ControllerStatusRequest};

use crate::{Address, ConnectError, Error, Tls, channel};

/// A client of the cluster controller at `addr`; `setting` names the option
/// `addr` came from, for messages (see [`channel`]).
///
/// Several URLs, comma-separated, are the replicas of an HA controller: the
/// first that answers ControllerStatus is the leader (an answer refusing
/// this caller counts: only the leader checks callers); a follower's
/// refusal naming the leader goes straight there. When none leads, the
/// [`ConnectError::NoLeader`] lists why for each replica tried.
pub async fn controller(
    addr: &Address,
    setting: &str,
    tls: &Tls,
) -> Result<ControllerClient<Channel>, Error> {
    let urls: Vec<&str> = match addr {
        Address::Url(list) if list.contains(',') => list.split(',').map(str::trim).collect(),
        one => return Ok(ControllerClient::new(channel(one, setting, tls).await?)),
    };
    let mut tried = Vec::new();
    let mut next = 0;
    // One try more than there are replicas: a follower may point back at a
    // replica tried already, which has become the leader since.
    for _ in 0..=urls.len() {
        let url = urls[next % urls.len()];
        next += 1;
        let mut client = match channel(&Address::Url(url.to_owned()), setting, tls).await {
            Ok(ch) => ControllerClient::new(ch),
            Err(e) => {
                tried.push(format!("{url}: {e}"));
                continue;
            }
        };
        match client.controller_status(ControllerStatusRequest {}).await {
            Ok(_) => return Ok(client),
            Err(s) if s.code() == Code::Unavailable => {
                let named = leader_in(s.message()).and_then(|l| urls.iter().position(|u| *u == l));
                if let Some(i) = named {
                    next = i;
                }
                tried.push(format!("{url}: {}", s.message()));
            }
            // Answered, if only to refuse this caller: the leader.
            Err(_) => return Ok(client),
        }
    }
    Err(ConnectError::NoLeader { tried }.into())
}

/// The leader's URL in a follower's refusal, if it names one.
fn leader_in(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once("the leader is ")?;
    rest.split_whitespace().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_followers_refusal_names_the_leader() {
        let why =
            "this controller replica is not the leader: the leader is https://10.0.0.2:7443 (ctl2)";
        assert_eq!(leader_in(why), Some("https://10.0.0.2:7443"));
        assert_eq!(leader_in("the store is not reachable"), None);
        assert_eq!(leader_in("the leader is "), None);
    }

    #[tokio::test]
    async fn replicas_that_cannot_be_dialled_are_each_listed() {
        // A port that was just free: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let down = format!("http://127.0.0.1:{port}");
        let addr: Address = format!("https://ctl1.invalid:7443, {down}")
            .parse()
            .unwrap();
        let err = controller(&addr, "--controller", &Tls::default())
            .await
            .unwrap_err();
        let Error::Connect(ConnectError::NoLeader { tried }) = &err else {
            panic!("not NoLeader: {err:?}");
        };
        // One try more than there are replicas, in order.
        assert_eq!(tried.len(), 3, "{tried:?}");
        let no_ca = "https://ctl1.invalid:7443: --controller with https needs --ca";
        assert_eq!(tried[0], no_ca);
        let refused = format!("{down}: cannot connect to {down}: ");
        assert!(tried[1].starts_with(&refused), "{}", tried[1]);
        assert_eq!(tried[2], no_ca);
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("no controller replica leads: {no_ca}; ")),
            "{msg}"
        );
    }
}
