//! Logging through `tracing`: human-readable or JSON lines on stderr (which
//! journald captures under systemd), filtered by an `EnvFilter` directive.

use crate::config::{Log, LogFormat};
use anyhow::{Context, Result};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. The filter was validated with the config.
pub fn init(log: &Log) -> Result<()> {
    let filter = EnvFilter::try_new(&log.level)
        .with_context(|| format!("log level {:?} is not a valid filter", log.level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match log.format {
        LogFormat::Human => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("install the log subscriber: {e}"))
}
