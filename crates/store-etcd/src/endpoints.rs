//! The etcd members a store talks to, and failover between them.
//!
//! Every request goes through [`Endpoints::call`]: it is sent to the member
//! that answered last (or the one after a member whose connection just
//! failed), and on a failure that carries no answer it moves on to the next
//! member, round after round with a growing pause, until
//! [`FAILOVER_DEADLINE`]. Whether a request may be sent again depends on
//! what it is and on what is known about the failure ([`Failure`]):
//!
//! * a request that never left (the connection could not be made, or closed
//!   before the request was taken), or that the member refused before
//!   proposing it (`etcdserver: no leader`), is sent again elsewhere,
//!   whatever it is;
//! * a request that was sent and whose answer was lost (the connection broke
//!   mid-request, a timeout, `etcdserver: request timed out`) is sent again
//!   only if it is [`Retry::Idempotent`] (a read, a keep-alive); a write
//!   fails with [`Error::Indeterminate`], because a compare-and-swap may
//!   have been applied, and sending it again would report a conflict against
//!   itself, or worse, apply a second time with [`trellis_store::Expect::Any`];
//! * an answer (any other gRPC status) is returned as [`Error::Backend`].
//!
//! Every request carries etcd's `hasleader` metadata: a member that has lost
//! its leader refuses at once (and cancels its watches) instead of holding
//! the request until it times out, so the request moves on to a member that
//! can serve it.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use trellis_store::Error;

/// How long a connection attempt to one member may take before the next is
/// tried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one request may wait for its answer (for a watch: for the
/// stream to open). Longer than etcd's own proposal timeout (5 s plus two
/// election timeouts, 7 s by default), so that etcd says what happened.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(8);
/// How long a request keeps trying members that do not answer: no new
/// round of attempts starts after it (one already under way finishes).
pub const FAILOVER_DEADLINE: Duration = Duration::from_secs(6);
/// The pause after the first round of failures; it doubles each round.
const FIRST_PAUSE: Duration = Duration::from_millis(50);
/// The longest pause between rounds.
const MAX_PAUSE: Duration = Duration::from_secs(1);
/// The largest message accepted from etcd (a listing page, a batch of watch
/// events); etcd itself sends up to 2 GiB, tonic's default is 4 MiB.
pub(crate) const MAX_MESSAGE: usize = 64 << 20;

/// Messages with which a member refuses a request it did not propose.
const NOT_APPLIED: &[&str] = &["etcdserver: no leader", "raft proposal dropped"];

/// Whether a request may be sent again after its answer was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads, keep-alives, revokes, lease grants: sending twice is harmless
    /// (a second lease granted after a lost answer expires unused).
    Idempotent,
    /// Writes: sent again only when it is known they were not applied.
    Write,
}

/// What a failed request tells about its fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Not sent, or refused before it was proposed: try another member.
    NotApplied,
    /// Sent; the answer is lost. Applied or not, nobody knows.
    Lost,
    /// etcd answered with an error.
    Answer,
}

/// Classifies a failed call by its status.
pub(crate) fn classify(status: &Status) -> Failure {
    if never_sent(status) || NOT_APPLIED.iter().any(|m| status.message() == *m) {
        return Failure::NotApplied;
    }
    match status.code() {
        // Transport failures after the request went out (tonic maps a broken
        // connection to Unavailable, Unknown or Internal, a timeout to
        // Cancelled), and etcd's "request timed out" (Unavailable).
        Code::Unavailable
        | Code::Unknown
        | Code::Internal
        | Code::Cancelled
        | Code::DeadlineExceeded => Failure::Lost,
        _ => Failure::Answer,
    }
}

/// Whether the request provably never left: the connection could not be
/// made (tonic's `ConnectError`), or hyper canceled the request, which its
/// HTTP/2 client does only before writing any of it (the connection closed
/// or was not ready before the request was taken).
fn never_sent(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::ConnectError>()
            || e.downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_canceled)
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// One member's address and channel.
struct Member {
    url: String,
    channel: Channel,
}

/// The members of one etcd cluster, and which one answered last.
pub(crate) struct Endpoints {
    members: Vec<Member>,
    current: AtomicUsize,
}

impl Endpoints {
    /// Channels to `urls` (`http://host:port` or `host:port`). They connect
    /// on first use, so a member that is down now is no error; an address
    /// that cannot be one is. Must run inside a tokio runtime.
    pub(crate) fn new(urls: &[String]) -> Result<Self, Error> {
        if urls.is_empty() {
            return Err(Error::backend("", "no etcd endpoint given"));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::backend(
                "",
                "the etcd store must be made inside a tokio runtime",
            ));
        }
        let members = urls
            .iter()
            .map(|url| {
                let channel = endpoint(url)?.connect_lazy();
                Ok(Member {
                    url: url.clone(),
                    channel,
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(Self {
            members,
            current: AtomicUsize::new(0),
        })
    }

    /// The members' addresses, in order.
    pub(crate) fn urls(&self) -> Vec<&str> {
        self.members.iter().map(|m| m.url.as_str()).collect()
    }

    /// Calls `f` with a member's channel, failing over as the module docs
    /// say. `key` names the request in errors.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        key: &str,
        retry: Retry,
        mut f: F,
    ) -> Result<T, Error>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let deadline = Instant::now() + FAILOVER_DEADLINE;
        let mut pause = FIRST_PAUSE;
        loop {
            let first = self.current.load(Ordering::Relaxed);
            let mut failures = Vec::with_capacity(self.members.len());
            for i in 0..self.members.len() {
                let at = (first + i) % self.members.len();
                let member = &self.members[at];
                let status = match f(member.channel.clone()).await {
                    Ok(answer) => {
                        self.current.store(at, Ordering::Relaxed);
                        return Ok(answer);
                    }
                    Err(status) => status,
                };
                let (failure, failed) = self.failed(at, status);
                match (failure, retry) {
                    (Failure::NotApplied, _) | (Failure::Lost, Retry::Idempotent) => {
                        failures.push(failed);
                    }
                    (Failure::Lost, Retry::Write) => {
                        return Err(Error::Indeterminate {
                            key: key.to_owned(),
                            source: Box::new(failed),
                        });
                    }
                    (Failure::Answer, _) => return Err(Error::backend(key, failed)),
                }
            }
            if Instant::now() + pause > deadline {
                return Err(Error::backend(key, Unreachable(failures)));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    /// Records that member `at` failed with `status`. Unless etcd answered,
    /// its connection just failed, and the next request starts at the next
    /// member: a broken connection fails the requests queued on it before
    /// it is seen to be broken.
    fn failed(&self, at: usize, status: Status) -> (Failure, MemberError) {
        let failure = classify(&status);
        if failure != Failure::Answer {
            let next = (at + 1) % self.members.len();
            let _ = self
                .current
                .compare_exchange(at, next, Ordering::Relaxed, Ordering::Relaxed);
        }
        let failed = MemberError {
            url: self.members[at].url.clone(),
            status,
        };
        (failure, failed)
    }
}

/// The tonic endpoint of one member, with the timeouts above and HTTP/2
/// keep-alives, so that a watch on a member that vanished without closing
/// its connection (a partition, a frozen host) ends and moves on.
fn endpoint(url: &str) -> Result<Endpoint, Error> {
    let full = if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    };
    if !full.starts_with("http://") {
        return Err(Error::backend(
            url,
            "etcd endpoint must be http://host:port or host:port (TLS is not supported yet)",
        ));
    }
    let endpoint = Endpoint::from_shared(full).map_err(|e| Error::backend(url, e))?;
    Ok(endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(3))
        .keep_alive_while_idle(true))
}

/// A request as sent, with etcd's "fail at once if you have no leader".
pub(crate) fn request<T>(message: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.metadata_mut().insert(
        "hasleader",
        tonic::metadata::MetadataValue::from_static("true"),
    );
    req
}

/// One member's failure.
#[derive(Debug)]
struct MemberError {
    url: String,
    status: Status,
}

impl std::fmt::Display for MemberError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "etcd at {}: {:?}: {}",
            self.url,
            self.status.code(),
            self.status.message()
        )
    }
}

impl std::error::Error for MemberError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.status)
    }
}

/// Every member failed without an answer until the deadline.
#[derive(Debug)]
struct Unreachable(Vec<MemberError>);

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no etcd member answered within {FAILOVER_DEADLINE:?} (last round:"
        )?;
        for (i, e) in self.0.iter().enumerate() {
            write!(f, "{}{e}", if i == 0 { " " } else { "; " })?;
        }
        f.write_str(")")
    }
}

impl std::error::Error for Unreachable {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_classified_by_what_they_tell() {
        let refused = Status::from_error(Box::new(tonic::ConnectError(
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into(),
        )));
        assert_eq!(refused.code(), Code::Unavailable);
        assert_eq!(classify(&refused), Failure::NotApplied);
        let no_leader = Status::unavailable("etcdserver: no leader");
        assert_eq!(classify(&no_leader), Failure::NotApplied);
        let timed_out = Status::unavailable("etcdserver: request timed out");
        assert_eq!(classify(&timed_out), Failure::Lost);
        let reset = Status::unknown("h2 protocol error: connection reset");
        assert_eq!(classify(&reset), Failure::Lost);
        let too_many = Status::invalid_argument("etcdserver: too many operations in txn request");
        assert_eq!(classify(&too_many), Failure::Answer);
    }

    #[tokio::test]
    async fn addresses_are_checked_at_once_and_connected_later() {
        Endpoints::new(&["127.0.0.1:1".into(), "http://[::1]:2".into()]).unwrap();
        assert!(Endpoints::new(&[]).is_err());
        let tls = Endpoints::new(&["https://a:2379".into()]).err().unwrap();
        assert!(tls.to_string().contains("TLS"), "{tls}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_whose_answer_is_lost_is_not_sent_again() {
        let e = Endpoints::new(&["127.0.0.1:1".into(), "127.0.0.1:2".into()]).unwrap();
        let mut calls = 0;
        let err = e
            .call("k", Retry::Write, |_| {
                calls += 1;
                async { Err::<(), _>(Status::unavailable("etcdserver: request timed out")) }
            })
            .await
            .unwrap_err();
        assert!(err.is_indeterminate(), "{err}");
        assert_eq!(calls, 1);

        let mut calls = 0;
        let err = e
            .call("k", Retry::Idempotent, |_| {
                calls += 1;
                async { Err::<(), _>(Status::unavailable("etcdserver: request timed out")) }
            })
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Backend { .. }), "{err}");
        assert!(
            calls > 2,
            "a read tries every member, round after round: {calls}"
        );
        assert!(err.to_string().contains("127.0.0.1:2"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_request_moves_to_the_next_member_which_stays_current() {
        let e = Endpoints::new(&["127.0.0.1:1".into(), "127.0.0.1:2".into()]).unwrap();
        let mut calls = 0;
        let answer = e
            .call("k", Retry::Write, |_| {
                calls += 1;
                let first = calls == 1;
                async move {
                    if first {
                        Err(Status::unavailable("etcdserver: no leader"))
                    } else {
                        Ok(7)
                    }
                }
            })
            .await
            .unwrap();
        assert_eq!((answer, calls), (7, 2));
        assert_eq!(e.current.load(Ordering::Relaxed), 1);
    }
}
