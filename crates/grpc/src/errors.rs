//! Core errors as gRPC statuses.
//!
//! The core classifies its own errors ([`ErrorClass`]); this edge only maps the
//! class onto a code, one to one, and keeps the core's message, which already
//! names the field or object at fault (`ifname "eth/0": …`,
//! `network "x" not found`).

use tonic::{Code, Status};
use trellis_agent::{Error, ErrorClass};
use trellis_types::InvalidInput;

/// The status code of an error class.
pub fn code(class: ErrorClass) -> Code {
    match class {
        ErrorClass::InvalidArgument => Code::InvalidArgument,
        ErrorClass::NotFound => Code::NotFound,
        ErrorClass::AlreadyExists => Code::AlreadyExists,
        ErrorClass::ResourceExhausted => Code::ResourceExhausted,
        ErrorClass::FailedPrecondition => Code::FailedPrecondition,
        ErrorClass::Unavailable => Code::Unavailable,
        ErrorClass::Internal => Code::Internal,
    }
}

/// A core error as a status with its code and message.
pub fn status(e: Error) -> Status {
    let code = code(e.class());
    if code == Code::Internal {
        tracing::warn!(error = %e, "internal error answered to a client");
    }
    Status::new(code, e.to_string())
}

/// A field refused at the edge, before the core saw it.
pub fn invalid(e: InvalidInput) -> Status {
    Status::invalid_argument(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_map_one_to_one() {
        let all = [
            (ErrorClass::InvalidArgument, Code::InvalidArgument),
            (ErrorClass::NotFound, Code::NotFound),
            (ErrorClass::AlreadyExists, Code::AlreadyExists),
            (ErrorClass::ResourceExhausted, Code::ResourceExhausted),
            (ErrorClass::FailedPrecondition, Code::FailedPrecondition),
            (ErrorClass::Unavailable, Code::Unavailable),
            (ErrorClass::Internal, Code::Internal),
        ];
        for (class, want) in all {
            assert_eq!(code(class), want, "{class:?}");
        }
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
