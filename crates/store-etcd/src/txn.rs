//! Trellis writes as one etcd `Txn`, and what its answer means.
//!
//! `put_if`, `delete_if` and `txn` are all one etcd transaction:
//!
//! * `compare`: each op's expectation — [`Expect::Absent`] as
//!   `create_revision == 0`, [`Expect::Revision`]`(r)` as `mod_revision == r`,
//!   [`Expect::Any`] as nothing;
//! * `success`: the puts and deletes, in op order (etcd gives them all the
//!   transaction's revision and reports their events in that order);
//! * `failure`: a read of every key that has an expectation, so that a
//!   refused transaction names its first failing op and that key's actual
//!   revision, as seen atomically with the failed comparison — no second
//!   round trip, no race with a later writer.

use crate::keys::Namespace;
use crate::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::pb::etcdserverpb::request_op::Request;
use crate::pb::etcdserverpb::response_op::Response;
use crate::pb::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, ResponseHeader, TxnRequest,
    TxnResponse,
};
use trellis_store::{Error, Expect, Op};

/// The etcd transaction of `ops`; puts carry `lease` (0: none).
pub(crate) fn request(ns: &Namespace, ops: &[Op], lease: i64) -> TxnRequest {
    let mut txn = TxnRequest::default();
    for op in ops {
        let key = ns.key(op.key());
        if let Some(c) = compare(key.clone(), op.expected()) {
            txn.compare.push(c);
            txn.failure.push(RequestOp {
                request: Some(Request::RequestRange(RangeRequest {
                    key: key.clone(),
                    keys_only: true,
                    ..Default::default()
                })),
            });
        }
        let write = match op {
            Op::Put { value, .. } => Request::RequestPut(PutRequest {
                key,
                value: value.clone(),
                lease,
                ..Default::default()
            }),
            Op::Delete { .. } => Request::RequestDeleteRange(DeleteRangeRequest {
                key,
                ..Default::default()
            }),
        };
        txn.success.push(RequestOp {
            request: Some(write),
        });
    }
    txn
}

/// The comparison that holds exactly when `expected` does.
fn compare(key: Vec<u8>, expected: Expect) -> Option<Compare> {
    let (target, value) = match expected {
        Expect::Any => return None,
        Expect::Absent => (CompareTarget::Create, TargetUnion::CreateRevision(0)),
        Expect::Revision(r) => (
            CompareTarget::Mod,
            TargetUnion::ModRevision(expected_revision(r)),
        ),
    };
    Some(Compare {
        result: CompareResult::Equal as i32,
        target: target as i32,
        key,
        range_end: Vec::new(),
        target_union: Some(value),
    })
}

/// etcd's form of an expected revision. etcd reports an absent key's
/// `mod_revision` as 0, which [`Expect::Revision`]`(0)` must not match, and
/// has no revision above `i64::MAX`: those expectations become -1, which no
/// key meets, so they fail as a conflict like on every backend.
fn expected_revision(r: u64) -> i64 {
    i64::try_from(r).ok().filter(|r| *r > 0).unwrap_or(-1)
}

/// The store revision in an answer's header.
pub(crate) fn revision(header: Option<ResponseHeader>) -> u64 {
    header.map_or(0, |h| u64::try_from(h.revision).unwrap_or(0))
}

/// What an applied transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Applied {
    /// The store revision after it (unchanged if it changed nothing).
    pub(crate) revision: u64,
    /// Per op: whether it was a delete that removed a key.
    pub(crate) deleted: Vec<bool>,
}

/// Reads etcd's answer to [`request`]`(ops)`: what was applied, or the
/// conflict of the first op whose expectation failed.
pub(crate) fn outcome(ops: &[Op], answer: TxnResponse) -> Result<Applied, Error> {
    if answer.succeeded {
        let deleted = answer
            .responses
            .iter()
            .map(|r| matches!(&r.response, Some(Response::ResponseDeleteRange(d)) if d.deleted > 0))
            .collect();
        return Ok(Applied {
            revision: revision(answer.header),
            deleted,
        });
    }
    let checked = ops.iter().filter(|op| op.expected() != Expect::Any);
    for (op, read) in checked.zip(&answer.responses) {
        let actual = match &read.response {
            Some(Response::ResponseRange(r)) => r
                .kvs
                .first()
                .map(|kv| u64::try_from(kv.mod_revision).unwrap_or(0)),
            other => {
                return Err(Error::backend(
                    op.key(),
                    format!("etcd answered a failed transaction's read with {other:?}"),
                ));
            }
        };
        if !op.expected().is_met_by(actual) {
            return Err(Error::Conflict {
                key: op.key().to_owned(),
                expected: op.expected(),
                actual,
            });
        }
    }
    Err(Error::backend(
        ops.first().map_or("", |op| op.key()),
        "etcd refused the transaction, but every expectation holds",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::etcdserverpb::{DeleteRangeResponse, RangeResponse, ResponseOp};
    use crate::pb::mvccpb::KeyValue;

    fn ns() -> Namespace {
        Namespace::new(Some("t")).unwrap()
    }

    #[test]
    fn expectations_become_comparisons() {
        let ops = [
            Op::put("a", b"1".to_vec(), Expect::Absent),
            Op::put("b", b"2".to_vec(), Expect::Any),
            Op::delete("c", Expect::Revision(7)),
        ];
        let txn = request(&ns(), &ops, 0);
        let cmp: Vec<_> = txn
            .compare
            .iter()
            .map(|c| (c.key.as_slice(), c.target, c.target_union.clone()))
            .collect();
        assert_eq!(
            cmp,
            [
                (
                    &b"t/a"[..],
                    CompareTarget::Create as i32,
                    Some(TargetUnion::CreateRevision(0))
                ),
                (
                    &b"t/c"[..],
                    CompareTarget::Mod as i32,
                    Some(TargetUnion::ModRevision(7))
                ),
            ]
        );
        assert_eq!((txn.success.len(), txn.failure.len()), (3, 2));
        assert!(matches!(
            &txn.success[2].request,
            Some(Request::RequestDeleteRange(d)) if d.key == b"t/c"
        ));
    }

    #[test]
    fn revisions_no_key_can_have_never_match() {
        assert_eq!(expected_revision(0), -1);
        assert_eq!(expected_revision(u64::MAX), -1);
        assert_eq!(expected_revision(5), 5);
    }

    #[test]
    fn puts_carry_the_lease() {
        let txn = request(&ns(), &[Op::put("a", vec![], Expect::Absent)], 42);
        assert!(matches!(&txn.success[0].request, Some(Request::RequestPut(p)) if p.lease == 42));
    }

    fn read(mod_revision: Option<i64>) -> ResponseOp {
        ResponseOp {
            response: Some(Response::ResponseRange(RangeResponse {
                kvs: mod_revision
                    .map(|r| KeyValue {
                        mod_revision: r,
                        create_revision: r,
                        ..Default::default()
                    })
                    .into_iter()
                    .collect(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn a_refused_transaction_names_its_first_failing_op() {
        let ops = [
            Op::put("a", vec![], Expect::Revision(3)),
            Op::put("b", vec![], Expect::Any),
            Op::delete("c", Expect::Revision(9)),
            Op::put("d", vec![], Expect::Absent),
        ];
        let answer = TxnResponse {
            succeeded: false,
            responses: vec![read(Some(3)), read(Some(10)), read(Some(4))],
            ..Default::default()
        };
        let err = outcome(&ops, answer).unwrap_err();
        assert!(
            matches!(&err, Error::Conflict { key, expected: Expect::Revision(9), actual: Some(10) } if key == "c"),
            "{err}"
        );
    }

    #[test]
    fn an_applied_transaction_says_which_deletes_removed_a_key() {
        let ops = [Op::delete("a", Expect::Any), Op::delete("b", Expect::Any)];
        let del = |n| ResponseOp {
            response: Some(Response::ResponseDeleteRange(DeleteRangeResponse {
                deleted: n,
                ..Default::default()
            })),
        };
        let answer = TxnResponse {
            header: Some(ResponseHeader {
                revision: 12,
                ..Default::default()
            }),
            succeeded: true,
            responses: vec![del(1), del(0)],
        };
        assert_eq!(
            outcome(&ops, answer).unwrap(),
            Applied {
                revision: 12,
                deleted: vec![true, false]
            }
        );
    }
}
