//! Exit codes, one per class of failure, so that scripts can tell "no such
//! endpoint" from "trellisd is down" without parsing messages. trellisd and
//! the cluster controller share them: a gRPC status means the same whichever
//! server sent it.

use std::process::ExitCode;

use tonic::Code;

/// Shown at the end of `netctl --help`.
pub const HELP: &str = "\
Exit codes:
  0   success
  1   other failure (INTERNAL, UNKNOWN, local I/O, …)
  2   bad command line (nothing was sent)
  3   cannot connect to trellisd or the controller
  4   INVALID_ARGUMENT or OUT_OF_RANGE
  5   NOT_FOUND
  6   ALREADY_EXISTS
  7   FAILED_PRECONDITION or ABORTED
  8   RESOURCE_EXHAUSTED
  9   PERMISSION_DENIED or UNAUTHENTICATED
  10  UNAVAILABLE or DEADLINE_EXCEEDED (e.g. not ready)
  11  check or ipam check found problems, gc could not remove everything,
      or status is not ready";

/// Bad command line; clap exits with this code on its own errors too.
pub const USAGE: u8 = 2;
/// No connection to trellisd or the controller.
pub const CONNECT: u8 = 3;
/// The request went through but the answer reports a problem (drift found by
/// `check`, blocks held wrongly found by `ipam check`, removals that failed in
/// `gc`, `status` not ready).
pub const PROBLEMS: u8 = 11;

/// A [`Failure`] with exit code `code`.
pub fn fail(code: u8, message: String) -> anyhow::Error {
    Failure { code, message }.into()
}

/// A bad command line found after clap's checks (nothing was sent): exit
/// code [`USAGE`].
pub fn usage(message: String) -> anyhow::Error {
    fail(USAGE, message)
}

/// The exit code for a gRPC status code.
pub fn for_code(code: Code) -> u8 {
    match code {
        Code::Ok => 0,
        Code::InvalidArgument | Code::OutOfRange => 4,
        Code::NotFound => 5,
        Code::AlreadyExists => 6,
        Code::FailedPrecondition | Code::Aborted => 7,
        Code::ResourceExhausted => 8,
        Code::PermissionDenied | Code::Unauthenticated => 9,
        Code::Unavailable | Code::DeadlineExceeded => 10,
        _ => 1,
    }
}

/// The canonical name of a status code, as the gRPC spec spells it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A failure that knows its exit code. Anything else that reaches `main` as an
/// `anyhow::Error` is inspected for a `tonic::Status` and otherwise exits 1.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: u8,
    /// The line printed after `error: `.
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Standard output was closed by its reader (`netctl watch | head`).
#[derive(Debug)]
pub struct OutputClosed;

impl std::fmt::Display for OutputClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for OutputClosed {}

/// An error writing the output: [`OutputClosed`] for a broken pipe, so that
/// only that one is taken for a reader that is done.
pub fn output(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        OutputClosed.into()
    } else {
        anyhow::Error::new(e).context("write the output")
    }
}

/// The message and exit code of an error: a server status prints as
/// `CODE: message`, a connection failure says where it tried.
pub fn report(err: &anyhow::Error) -> (String, ExitCode) {
    if let Some(f) = err.downcast_ref::<Failure>() {
        return (f.message.clone(), ExitCode::from(f.code));
    }
    if let Some(status) = err.chain().find_map(|e| e.downcast_ref::<tonic::Status>()) {
        let line = status_line(status);
        return (line, ExitCode::from(for_code(status.code())));
    }
    (format!("{err:#}"), ExitCode::from(1))
}

/// `INVALID_ARGUMENT: ifname "a/b": …`; a status with no message prints its
/// code alone.
pub fn status_line(status: &tonic::Status) -> String {
    let name = code_name(status.code());
    match status.message() {
        "" => name.to_owned(),
        msg => format!("{name}: {msg}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_print_code_and_message() {
        let status =
            tonic::Status::invalid_argument("ifname \"a/b\": interface name may not contain '/'");
        let (line, code) = report(&anyhow::Error::new(status));
        assert_eq!(
            line,
            "INVALID_ARGUMENT: ifname \"a/b\": interface name may not contain '/'"
        );
        assert_eq!(code, ExitCode::from(4));
    }

    #[test]
    fn only_a_broken_pipe_on_the_output_counts_as_a_reader_that_is_done() {
        let closed = output(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(closed.is::<OutputClosed>());
        let full = output(std::io::Error::from(std::io::ErrorKind::StorageFull));
        assert!(!full.is::<OutputClosed>());
        assert!(
            format!("{full:#}").starts_with("write the output"),
            "{full:#}"
        );
        // The same errno on the connection to trellisd is a failure.
        let conn = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("cannot connect");
        assert!(!conn.is::<OutputClosed>());
        assert_eq!(report(&conn).1, ExitCode::from(1));
    }

    #[test]
    fn statuses_behind_context_are_found() {
        let err = anyhow::Error::new(tonic::Status::not_found("network \"x\""))
            .context("network inspect x");
        let (line, code) = report(&err);
        assert_eq!(line, "NOT_FOUND: network \"x\"");
        assert_eq!(code, ExitCode::from(5));
        let (line, _) = report(&anyhow::Error::new(tonic::Status::internal("")));
        assert_eq!(line, "INTERNAL");
    }

    #[test]
    fn every_code_has_a_distinct_name_and_documented_exit() {
        let codes = (0..=16).map(Code::from_i32).collect::<Vec<_>>();
        let names: std::collections::BTreeSet<_> = codes.iter().map(|c| code_name(*c)).collect();
        assert_eq!(names.len(), 17);
        for c in codes {
            let exit = for_code(c).to_string();
            assert!(HELP.contains(&format!("\n  {exit} ")), "{c:?} → {exit}");
        }
    }
}
