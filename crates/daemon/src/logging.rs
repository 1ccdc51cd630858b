//! Logging through `tracing`: human-readable or JSON lines on stderr (which
//! journald captures under systemd), filtered by an `EnvFilter` directive.

use crate::Error;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// How log lines are written (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The `EnvFilter` for a directive string (`info`,
/// `info,trellis_cluster=debug`), or an error naming it: what a daemon
/// checks while it validates its configuration.
pub fn filter(directives: &str) -> Result<EnvFilter, Error> {
    EnvFilter::try_new(directives).map_err(|reason| Error::LogFilter {
        filter: directives.to_owned(),
        reason,
    })
}

/// Installs the global subscriber: `format` lines on stderr, filtered by
/// `directives` (see [`filter`]). Colours only when stderr is a terminal.
pub fn init(format: LogFormat, directives: &str) -> Result<(), Error> {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(directives)?)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Human => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(Error::LogSubscriber)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked_and_named() {
        filter("info,trellis_cluster=debug").unwrap();
        let e = filter("trellis=notalevel").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("log level \"trellis=notalevel\" is not a valid filter"),
            "{e}"
        );
    }
}
