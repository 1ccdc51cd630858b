//! The daemon's process: a multi-thread runtime, a shutdown future that
//! SIGTERM or SIGINT completes, and the exit code with the error, if any,
//! on stderr.

use crate::Error;
use crate::error::IoContext;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use tokio::signal::unix::{SignalKind, signal};

/// The future a daemon runs until: it completes on the first SIGTERM or
/// SIGINT (logging which).
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Installs the SIGTERM and SIGINT handlers and returns the future of the
/// first of them. Must be called inside a tokio runtime; the signals are
/// caught from this call on, so a signal sent before the future is polled is
/// not lost.
pub fn shutdown_signals() -> Result<Shutdown, Error> {
    let mut term =
        signal(SignalKind::terminate()).or_io(|| "install the SIGTERM handler".into())?;
    let mut int = signal(SignalKind::interrupt()).or_io(|| "install the SIGINT handler".into())?;
    Ok(Box::pin(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "received");
    }))
}

/// Runs `daemon` on a new multi-thread tokio runtime, giving it the
/// [`Shutdown`] of [`shutdown_signals`], and returns what it returns: what a
/// daemon's `main` does once its configuration and logging are in place.
pub fn run<F, Fut, T, E>(daemon: F) -> Result<T, E>
where
    F: FnOnce(Shutdown) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: From<Error>,
{
    // Before any thread exists, so that every thread inherits it.
    unblock_shutdown_signals()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .or_io(|| "start the tokio runtime".into())?;
    runtime.block_on(async {
        let shutdown = shutdown_signals()?;
        daemon(shutdown).await
    })
}

/// Unblocks SIGTERM and SIGINT in the calling thread. A blocked signal
/// mask is inherited across exec: a daemon started by a parent that blocks
/// them (a supervisor that waits for them with sigwait, as trellis-bench
/// does) would otherwise never see its stop signal, and would run on until
/// SIGKILL without draining or removing its socket.
fn unblock_shutdown_signals() -> Result<(), Error> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None)
        .map_err(std::io::Error::from)
        .or_io(|| "unblock SIGTERM and SIGINT".into())
}

/// The exit code of a daemon's whole run: success, or failure after writing
/// `<name>: error: ` and the error with its chain of causes (`{:#}`, as
/// `anyhow` prints it) to stderr, where it is seen even when logging was
/// never installed.
pub fn exit_code<E: std::fmt::Display>(name: &str, result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
