//! Core errors as gRPC statuses.
//!
//! The core classifies its own errors ([`ErrorClass`]); this edge only maps the
//! class onto a code, one to one, and keeps the core's message, which already
//! names the field or object at fault (`ifname "eth/0": …`,
//! `network "x" not found`).

use tonic::{Code, Status};
use trellis_agent::{Error, ErrorClass};
use trellis_types::InvalidInput;

/// Defines `pub fn code(class: $class) -> tonic::Code` for a core's
/// error-class enum whose classes are named after the status codes they map
/// to, so that the map is one to one by construction and the compiler checks
/// that it covers every class; and, for tests, `CLASSES`: every class listed
/// with its code (checked by `assert_one_to_one`). The agent's and the
/// controller's edges share the one map it makes.
macro_rules! codes_by_name {
    ($class:ident { $($name:ident),+ $(,)? }) => {
        /// The status code of an error class: the code of the same name.
        pub fn code(class: $class) -> tonic::Code {
            match class {
                $($class::$name => tonic::Code::$name,)+
            }
        }

        /// Every error class with the status code it maps to.
        #[cfg(test)]
        const CLASSES: &[($class, tonic::Code)] = &[$(($class::$name, tonic::Code::$name)),+];
    };
}
codes_by_name!(ErrorClass {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    ResourceExhausted,
    FailedPrecondition,
    OutOfRange,
    Unavailable,
    Internal,
});

/// A core error as a status with its code and message.
pub fn status(e: Error) -> Status {
    answer(code(e.class()), &e)
}

/// The status of a core error already classified as `code`, keeping the
/// core's message (shared by the agent's and the controller's services). An
/// internal error is logged here, since the client sees only its message.
pub(crate) fn answer(code: Code, e: &dyn std::fmt::Display) -> Status {
    if code == Code::Internal {
        tracing::warn!(error = %e, "internal error answered to a client");
    }
    Status::new(code, e.to_string())
}

/// A field refused at the edge, before the core saw it.
pub fn invalid(e: InvalidInput) -> Status {
    Status::invalid_argument(e.to_string())
}

/// Checks that `code` maps each class of `all` onto the code listed with
/// it, and no two classes onto one code.
#[cfg(test)]
pub(crate) fn assert_one_to_one<C: Copy + std::fmt::Debug>(code: fn(C) -> Code, all: &[(C, Code)]) {
    for (class, want) in all {
        assert_eq!(code(*class), *want, "{class:?}");
    }
    let codes: std::collections::HashSet<_> = all.iter().map(|(c, _)| code(*c)).collect();
    assert_eq!(codes.len(), all.len(), "two classes share a code");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_map_one_to_one() {
        assert_one_to_one(code, CLASSES);
    }

    #[test]
    fn messages_keep_the_field() {
        let bad = InvalidInput::new("ifname", "eth/0", "contains '/'");
        let s = status(Error::Invalid(bad.clone()));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(
            s.message().starts_with("ifname \"eth/0\""),
            "{}",
            s.message()
        );
        assert_eq!(invalid(bad).message(), s.message());
        let s = status(Error::NetworkInUse {
            network: "n1".into(),
            endpoints: 2,
        });
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert!(s.message().contains("\"n1\""));
    }
}
