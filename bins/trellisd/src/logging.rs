//! Logging through `tracing`: human-readable or JSON lines on stderr (which
//! journald captures under systemd), filtered by an `EnvFilter` directive
//! ([`trellis_daemon::logging`]).

use crate::config::{Log, LogFormat};

/// Installs the global subscriber. The filter was validated with the config.
pub fn init(log: &Log) -> Result<(), trellis_daemon::Error> {
    let format = match log.format {
        LogFormat::Human => trellis_daemon::LogFormat::Human,
        LogFormat::Json => trellis_daemon::LogFormat::Json,
    };
    trellis_daemon::logging::init(format, &log.level)
}
