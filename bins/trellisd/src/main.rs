//! `trellisd`: parses the configuration, installs logging, and runs the daemon
//! until SIGTERM or SIGINT.

use anyhow::{Context, Result};
use clap::Parser;
use std::process::ExitCode;
use trellisd::config::{Args, Config};

fn main() -> ExitCode {
    trellis_daemon::exit_code("trellisd", run())
}

fn run() -> Result<()> {
    let args = Args::parse();
    let cfg = Config::load(&args)?;
    if args.print_config {
        print!(
            "{}",
            toml::to_string(&cfg).context("encode the configuration")?
        );
        return Ok(());
    }
    trellisd::logging::init(&cfg.log)?;
    trellis_daemon::run(|shutdown| trellisd::run(cfg, shutdown))
}
