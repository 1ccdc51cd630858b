//! `trellis-controller`: parses the flags, installs logging, and runs the
//! cluster controller until SIGTERM or SIGINT (then exits 0).

use anyhow::Result;
use clap::Parser;
use std::process::ExitCode;
use trellis_controller::config::{Args, Config};

fn main() -> ExitCode {
    trellis_daemon::exit_code("trellis-controller", run())
}

fn run() -> Result<()> {
    let cfg = Config::resolve(Args::parse())?;
    trellis_daemon::logging::init(cfg.log_format, &cfg.log_level)?;
    trellis_daemon::run(|shutdown| trellis_controller::run(cfg, shutdown))
}
