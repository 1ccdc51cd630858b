//! Controller errors as gRPC statuses: the core's class mapped onto a code by
//! the agent's edge's map (one class type for both cores), and the core's
//! message kept (it names the pool, node, block
//! or field at fault).

pub use crate::errors::code;
use tonic::Status;
use trellis_cluster::Error;

/// A controller error as a status with its code and message.
pub fn status(e: Error) -> Status {
    crate::errors::answer(code(e.class()), &e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;
    use trellis_types::InvalidInput;

    #[test]
    fn errors_keep_their_message_and_class() {
        let cases = [
            (
                Error::Invalid(InvalidInput::new("spec.prefix", "x", "not a prefix")),
                Code::InvalidArgument,
                "spec.prefix \"x\"",
            ),
            (
                Error::NotFound("pool \"p\"".into()),
                Code::NotFound,
                "pool \"p\" not found",
            ),
            (
                Error::Exhausted("pool \"p\" has no free block".into()),
                Code::ResourceExhausted,
                "pool \"p\"",
            ),
            (
                Error::Precondition("pool \"p\" has 1 blocks held".into()),
                Code::FailedPrecondition,
                "pool \"p\"",
            ),
            (Error::Compacted(7), Code::OutOfRange, "revision 7"),
            (
                Error::Store(trellis_store::Error::Compacted {
                    prefix: "cluster".into(),
                    requested: 3,
                    oldest: 9,
                }),
                Code::OutOfRange,
                "",
            ),
            (
                Error::Contention {
                    what: "pool \"p\"".into(),
                    attempts: 64,
                },
                Code::Unavailable,
                "pool \"p\"",
            ),
            (
                Error::Corrupt {
                    key: "cluster/pools/p".into(),
                    reason: "eof".into(),
                },
                Code::Internal,
                "cluster/pools/p",
            ),
        ];
        for (e, want, text) in cases {
            let s = status(e);
            assert_eq!(s.code(), want, "{}", s.message());
            assert!(s.message().contains(text), "{}", s.message());
        }
    }
}
