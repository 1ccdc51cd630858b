//! `trellisd`: parses the configuration, installs logging, and runs the daemon
//! until SIGTERM or SIGINT.

use anyhow::{Context, Result};
use clap::Parser;
use std::process::ExitCode;
use tokio::signal::unix::{SignalKind, signal};
use trellisd::config::{Args, Config};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One readable chain of causes; logging may not be installed yet.
            eprintln!("trellisd: error: {e:#}");
            ExitCode::FAILURE
        }
    }
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the tokio runtime")?;
    runtime.block_on(async {
        let shutdown = signals()?;
        trellisd::run(cfg, shutdown).await
    })
}

/// A future that completes on the first SIGTERM or SIGINT.
fn signals() -> Result<impl Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate()).context("install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("install the SIGINT handler")?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "received");
    })
}
